"""Recorders: what a run writes besides its manifest, as a RecordSpec says (dtb.model.record_spec:
the ``record:`` section and ``--record`` flags).

``Recording(engine, run_dir, spec, t_ms)`` drives the engine (``run``), collecting this rank's
spikes through ``Engine.run(on_window=...)`` and state samples between chunks of whole steps
(the result does not depend on the chunking), and writes everything in parallel
(dtb.io.sonata, dtb.io.series); ``finish()`` returns the manifest's ``outputs`` on rank 0.
``get_state``/``set_state`` carry the recorders across a checkpoint (dtb.io.checkpoint): a
resumed recording (``resume=True``) reopens the outputs and continues bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.engine.bold import BoldRecorder
from dtb.errors import ArgumentError
from dtb.io.series import ArraySpec, SeriesStore
from dtb.io.sonata import PARTS_DIR, SpikeRecorder, gather_spikes_write, sample_ids
from dtb.model.record_spec import N_SYN, RecordSpec, SampleSpec

# --- the recorders ------------------------------------------------------------------------

@dataclass
class _Counts:
    """A spike-count series: row = step // bin_steps, column = lcol_of[idx] (>= 0)."""

    name: str
    bin_steps: int
    lcol_of: np.ndarray  # (n_local,) local column of each neuron, -1: not counted
    rows_done: int = 0


@dataclass
class _Samples:
    names: list[str]
    idx: np.ndarray          # engine-local indices of this rank's sampled neurons
    every: int
    rows: int


class Recording:
    """Every recorder of one run on this rank (a collective object under MPI).

    ``engine``: a built Engine; ``run_dir``: the run directory (made by rank 0's
    RunDirectory); ``spec``: a validated RecordSpec; ``t_ms``: the model time the run will
    cover (sizes the dense arrays); ``unit_labels``: (n_units,) names of the units;
    ``unit_region_labels``: (n_units,) their integer region labels (a brain's), stored as the
    ``label`` coordinate beside the names.
    ``resume``: the outputs exist already (an interrupted run): open them for writing
    without recreating them, then ``set_state`` from the checkpoint, then the engine's.
    """

    def __init__(self, engine: Any, run_dir: str | Path, spec: RecordSpec, t_ms: float,
                 unit_labels: Sequence[str] | None = None, resume: bool = False,
                 unit_region_labels: Sequence[int] | np.ndarray | None = None):

        self.eng = engine
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.comm = engine.comm if engine.ranks > 1 else None
        dt = engine.dt
        self.step0 = engine.step
        self.n_steps = int(round(t_ms / dt))
        n_local = engine.n_local
        net = engine.network
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        # spikes waiting for absorb are bounded like the spike recorder's buffer, so a
        # long chunk (1 % of a long run) cannot pile them up in memory either
        self._absorb_at = max(1, int(spec.spike_buffer_mb * 2**20) // 16)
        self.spikes = (SpikeRecorder(engine, spec.spike_sample if spec.spikes == "sample"
                                     else None, spill_dir=self.run_dir / PARTS_DIR,
                                     spill_bytes=int(spec.spike_buffer_mb * 2**20))
                       if spec.spikes != "none" else None)
        # spikes per population on this rank (for the manifest's rates), every neuron
        self._pop_of = np.zeros(n_local, np.int64)
        for lay in engine.layout:
            self._pop_of[lay.lo:lay.hi] = lay.index
        self.pop_counts = np.zeros(len(net.populations), np.int64)

        specs: list[ArraySpec] = []
        cols: dict[str, np.ndarray] = {}
        self.counts: list[_Counts] = []
        self.bold: BoldRecorder | None = None
        if spec.rates_ms is not None:
            self._add_population_rates(specs, cols)
        self.n_units = int(getattr(engine, "n_units", 0) or 0)
        if self.n_units and (spec.units_ms is not None or spec.bold_tr_ms is not None):
            self._add_unit_series(specs, cols, unit_labels, unit_region_labels)
        self.samples: _Samples | None = (self._add_samples(spec.samples, specs, cols)
                                         if spec.samples is not None else None)

        attrs = {"dt_ms": dt, "seed": engine.seed, "t0_ms": self.step0 * dt,
                 "format": "dtb-series"}
        self.store = (SeriesStore(self.run_dir, specs, cols, self.comm, attrs, spec.hdf5,
                                  resume=resume) if specs else None)
        if self.store is not None and self.bold is not None:
            self.store.consumers["unit_rate"] = [self.bold.consume]
        if self.comm is not None:
            # the ranks set the outputs up unevenly (rank 0 creates the stores); without
            # this the first exchange of the run waits for the last, and the wait is
            # counted as simulation time
            self.comm.Barrier()

    # --- setting up the dense series ----------------------------------------------------------
    def _cc(self, n_cols: int) -> int:
        """Chunk columns of a series of n_cols columns."""
        return max(1, min(n_cols, self.spec.chunk_columns))

    def _time_axis(self, bin_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Bin start times (ms) and 1000 / bin width (ms; the last bin may be short)."""
        dt = self.eng.dt
        rows = max(1, math.ceil(self.n_steps / bin_steps))
        start = np.arange(rows) * bin_steps
        width = np.minimum(bin_steps, self.n_steps - start) * dt
        return (self.step0 + start) * dt, 1000.0 / width

    def _add_population_rates(self, specs: list[ArraySpec], cols: dict[str, np.ndarray]
                              ) -> None:
        net, dt = self.eng.network, self.eng.dt
        bs = int(round(self.spec.rates_ms / dt))
        t, per_s = self._time_axis(bs)
        mine = np.unique(self._pop_of)
        lcol = np.searchsorted(mine, self._pop_of)
        sizes = np.array([p.size for p in net.populations], float)
        specs.append(ArraySpec(
            "population_rate", "time", "population", t, [p.name for p in net.populations],
            attrs={"units": "Hz", "bin_ms": bs * dt,
                   "description": "spikes per neuron per second in bins (t, t + bin_ms]"},
            row_scale=per_s, col_scale=1.0 / sizes, chunk_cols=self._cc(len(net.populations))))
        cols["population_rate"] = mine
        self.counts.append(_Counts("population_rate", bs, lcol))

    def _add_unit_series(self, specs: list[ArraySpec], cols: dict[str, np.ndarray],
                         unit_labels: Sequence[str] | None,
                         unit_region_labels: Sequence[int] | np.ndarray | None) -> None:
        """Unit rates (written if asked for) and, from them, BOLD."""
        spec, net, dt = self.spec, self.eng.network, self.eng.dt
        unit_of = self.eng.unit_of
        per_unit = np.zeros(self.n_units)
        for p in net.populations:
            if p.units is not None:
                per_unit[:len(p.units)] += np.asarray(p.units, float)
        with np.errstate(divide="ignore"):
            inv = np.where(per_unit > 0, 1.0 / np.maximum(per_unit, 1), np.nan)
        self.unit_sizes = per_unit
        labels = (list(unit_labels) if unit_labels is not None
                  else [f"u{i}" for i in range(self.n_units)])
        mine = np.unique(unit_of[unit_of >= 0])
        lcol = np.where(unit_of >= 0, np.searchsorted(mine, unit_of), -1)
        bs = int(round((spec.units_ms if spec.units_ms is not None else 10.0) / dt))
        if spec.bold_tr_ms is not None:
            tr = int(round(spec.bold_tr_ms / dt))
            if tr % bs:  # the hemodynamic drive bin must divide the TR
                bs = math.gcd(tr, bs)
        t, per_s = self._time_axis(bs)
        by_label = ({"label": np.asarray(unit_region_labels, np.int64)}
                    if unit_region_labels is not None else {})
        extra = {"unit_neurons": per_unit.astype(np.int64), **by_label}
        specs.append(ArraySpec(
            "unit_rate", "time_unit", "unit", t, labels,
            attrs={"units": "Hz", "bin_ms": bs * dt,
                   "description": "spikes per neuron per second of each unit, all "
                                  "families, in bins (t, t + bin_ms]"},
            row_scale=per_s, col_scale=inv, extra_coords=extra,
            write=spec.units_ms is not None, chunk_cols=self._cc(self.n_units)))
        cols["unit_rate"] = mine
        self.counts.append(_Counts("unit_rate", bs, lcol))
        self._unit_spec = specs[-1]
        if spec.bold_tr_ms is not None:
            self._add_bold(specs, labels, by_label, bs)

    def _add_bold(self, specs: list[ArraySpec], labels: list[str],
                  by_label: dict[str, np.ndarray], bin_steps: int) -> None:
        spec, dt = self.spec, self.eng.dt
        tr = int(round(spec.bold_tr_ms / dt))
        n_tr = self.n_steps // tr
        self.bold = BoldRecorder(tr, bin_steps, spec.bold_baseline_hz, n_tr, self.unit_sizes,
                                 self._unit_spec.chunk_cols, self.n_steps, dt)
        specs.append(ArraySpec(
            "bold", "time_bold", "unit", (self.step0 + tr * (1 + np.arange(n_tr))) * dt,
            labels, dtype="float64",
            attrs={"units": "1", "tr_ms": tr * dt, "model": "friston2000",
                   "baseline_hz": spec.bold_baseline_hz,
                   "description": "BOLD fractional signal change per unit "
                                  "(Balloon-Windkessel driven by the unit rate)"},
            extra_coords=by_label, chunk_cols=self._unit_spec.chunk_cols, direct=True))

    def _add_samples(self, s: SampleSpec, specs: list[ArraySpec], cols: dict[str, np.ndarray]
                     ) -> _Samples:
        """Membrane and synaptic state of the sampled neurons this rank owns."""
        net, dt = self.eng.network, self.eng.dt
        sel_gid, labels, pops = [], [], []
        for p_i, p in enumerate(net.populations):
            want = dict(s.neurons).get(p.name)
            if want is None:
                continue
            ids = (sample_ids(p.size, want) if isinstance(want, int)
                   else np.asarray(want, np.int64))
            gid0 = sum(q.size for q in net.populations[:p_i])
            sel_gid.append(gid0 + ids)
            labels += [f"{p.name}:{i}" for i in ids]
            pops += [p.name] * len(ids)
        gids = np.concatenate(sel_gid) if sel_gid else np.zeros(0, np.int64)
        rows = self.n_steps // s.every
        t = (self.step0 + s.every * (1 + np.arange(rows))) * dt
        pos = {int(g): i for i, g in enumerate(gids)}
        local = [(pos[int(g)], i) for i, g in enumerate(self.eng.gids) if int(g) in pos] \
            if len(gids) < 10_000 else _match(gids, self.eng.gids)
        local.sort()
        gcols = np.array([c for c, _ in local], np.int64)
        names = ["V"] * ("V" in s.variables) + [f"syn{ch}" for ch in range(N_SYN)
                                                 if "syn" in s.variables]
        extra = {"neuron_population": np.asarray(pops, object),
                 "neuron_gid": gids.astype(np.int64)}
        for name in names:
            attrs = ({"units": "mV", "every_steps": s.every} if name == "V" else
                     {"units": "model-dependent", "every_steps": s.every,
                      "description": f"synaptic state channel {name[3:]} (iaf_psc_exp: 0 "
                                     "ex, 1 in current, pA; lif_cond: 0 AMPA, 1 NMDA, 2 "
                                     "GABA_A, 3 GABA_B traces)"})
            specs.append(ArraySpec(name, "time_sample", "neuron", t, labels, attrs=attrs,
                                   extra_coords=extra, chunk_cols=self._cc(len(labels))))
            cols[name] = gcols
            extra = {}
        return _Samples(names, np.array([i for _, i in local], np.int64), s.every, rows)

    # --- during the run -----------------------------------------------------------------
    def window(self, steps: np.ndarray, idx: np.ndarray) -> None:
        """The engine's on_window hook: keep the window's spikes for the next ``absorb``."""
        if len(idx):
            self._pending.append((steps, idx))
            self._pending_n += len(idx)
            if self._pending_n >= self._absorb_at:
                self.absorb()

    def absorb(self) -> None:
        """Hand the spikes since the last call to the recorders (one vectorized pass)."""
        if not self._pending:
            return
        steps = np.concatenate([s for s, _ in self._pending])
        idx = np.concatenate([i for _, i in self._pending])
        self._pending, self._pending_n = [], 0
        self.pop_counts += np.bincount(self._pop_of[idx], minlength=len(self.pop_counts))
        if self.spikes is not None:
            self.spikes.window(steps, idx)
        if self.store is None:
            return
        rel = steps - self.step0
        for c in self.counts:
            lc = c.lcol_of[idx]
            ok = lc >= 0
            self.store.add_counts(c.name, rel[ok] // c.bin_steps, lc[ok])

    def sample(self) -> None:
        """Record the state now if the step is a sampling step."""
        s, store = self.samples, self.store
        k = self.eng.step - self.step0
        if s is None or store is None or k == 0 or k % s.every or k // s.every > s.rows:
            return
        row = k // s.every - 1
        self.eng.sync_host(("V", "syn"))  # on a GPU the state lives on the device
        for name in s.names:
            v = (self.eng.V[s.idx] if name == "V"
                 else self.eng.syn[int(name[3:]), s.idx])
            store.set_row(name, row, v)

    def flush(self, final: bool = False) -> None:
        """Write the complete chunks (a collective)."""
        if self.store is None:
            return
        k = self.eng.step - self.step0
        done = {c.name: k // c.bin_steps for c in self.counts}
        if self.samples is not None:
            done.update({n: k // self.samples.every for n in self.samples.names})
        self.store.flush(done, final=final)
        if self.bold is not None:
            self.bold.flush(self.store, final)

    def chunk_steps(self) -> int:
        """Steps per engine.run call: whole sampling intervals, else ~1 % of the run in
        whole exchange windows (at least one)."""
        if self.samples is not None:
            return self.samples.every
        m = max(1, int(self.eng.min_delay_steps))
        return max(m, (self.n_steps // 100) // m * m)

    def run(self, progress: Any = None, checkpoint_steps: int | None = None,
            on_checkpoint: Callable[[], None] | None = None,
            stop_requested: Callable[[], bool] | None = None) -> bool:
        """Advance the simulation to the end of the run's model time (from wherever it is:
        a resumed run continues), recording; ``progress.update(step, total)`` after every
        chunk (rank 0).  The chunks are the simulation's epochs (Simulation.run_until).

        ``checkpoint_steps``: chunks also end at every multiple of this many steps from the
        run's start, where ``on_checkpoint()`` is called (not at the end).
        ``stop_requested()`` is asked after every chunk before the end (a collective that
        every rank answers alike: see dtb.cli.main); if it says so, ``on_checkpoint()`` is
        called and the run stops there.  Returns True when the run reached its end, False
        when it stopped on request.  The recorded result does not depend on where chunks
        end (the simulation and the recorders continue across epochs exactly)."""
        total = self.n_steps
        done = self.eng.step - self.step0
        if not 0 <= done <= total:
            raise ArgumentError(f"engine step {self.eng.step}: outside the run's steps "
                                f"{self.step0}..{self.step0 + total}")
        chunk = self.chunk_steps()
        every = checkpoint_steps if checkpoint_steps and checkpoint_steps > 0 else None
        if progress is not None and hasattr(progress, "begin"):
            progress.begin(done)

        def epoch_end(step: int) -> int:
            # a multiple of the chunk (sampling steps stay chunk ends) or a checkpoint step
            k = step - self.step0
            nxt = (k // chunk + 1) * chunk
            if every is not None:
                nxt = min(nxt, (k // every + 1) * every)
            return self.step0 + nxt

        def on_epoch(step: int) -> bool:
            k = step - self.step0
            self.absorb()
            self.sample()
            self.flush()
            if progress is not None:
                progress.update(k, total)
            if k >= total:
                return True
            stop = stop_requested() if stop_requested is not None else False
            if on_checkpoint is not None and (stop or (every is not None and k % every == 0)):
                on_checkpoint()
            return not stop

        finished = self.eng.run_until(self.step0 + total, self.window, epoch_end, on_epoch)
        self.absorb()
        return finished

    # --- checkpoints ----------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Everything the recorders hold that the outputs do not yet (arrays only, for
        dtb.io.checkpoint; names with ``/`` are groups): the step the recording started at,
        spike counts per population, the spike recorder's spikes, the series store's
        buffers and write positions, and the BOLD models' state and unwritten rows.  Take
        it between chunks (after ``run`` returned or in ``on_checkpoint``)."""
        self.absorb()
        d: dict[str, np.ndarray] = {"step0": np.array(self.step0, np.int64),
                                    "n_steps": np.array(self.n_steps, np.int64),
                                    "pop_counts": self.pop_counts.copy()}
        if self.spikes is not None:
            d.update({f"spikes/{k}": v for k, v in self.spikes.get_state().items()})
        if self.store is not None:
            d.update({f"series/{k}": v for k, v in self.store.get_state().items()})
        if self.bold is not None:
            d.update({f"bold/{k}": v for k, v in self.bold.get_state().items()})
        return d

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` of a recording of the same run, rank and rank count
        (constructed with ``resume=True``)."""

        for k, want in (("step0", self.step0), ("n_steps", self.n_steps)):
            if int(d[k]) != want:
                raise ArgumentError(f"recording state {k}: {int(d[k])} -- expected {want} "
                                    "(a checkpoint of another run?)")
        counts = np.asarray(d["pop_counts"], np.int64)
        if counts.shape != self.pop_counts.shape:
            raise ArgumentError(f"recording state pop_counts: shape {counts.shape} -- expected "
                                f"{self.pop_counts.shape}")
        self.pop_counts = counts.copy()
        self._pending, self._pending_n = [], 0

        def sub(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}

        for what, obj in (("spikes/", self.spikes), ("series/", self.store)):
            has = any(k.startswith(what) for k in d)
            if (obj is not None) != has:
                raise ArgumentError(f"recording state: {what.rstrip('/')} "
                                    f"{'missing' if obj is not None else 'unexpected'} -- the "
                                    "checkpoint was written with another record section")
            if obj is not None:
                obj.set_state(sub(what))
        if self.bold is not None:
            self.bold.set_state(sub("bold/"))

    # --- the end ------------------------------------------------------------------------
    def finish(self, write: Callable[[Path, Any], tuple[str, int]]) -> dict[str, Any] | None:
        """Flush the last partial chunks and write spikes.h5 (a collective).  ``write``
        writes bytes atomically (RunDirectory.write_atomic).  Returns, on rank 0, the
        manifest's outputs and the spike counts per population:
        ``{"outputs": {...}, "pop_counts": {...}}``; None on other ranks."""

        self.absorb()
        self.flush(final=True)
        outputs: dict[str, Any] = {}
        if self.spikes is not None:
            o = gather_spikes_write(self.spikes, self.run_dir, self.comm, write)
            if o is not None:
                outputs["spikes"] = o
        if self.store is not None:
            o = self.store.close()
            if o is not None:
                outputs.update(o)
        counts = self.pop_counts
        if self.comm is not None:
            counts = self.comm.reduce(counts, root=0)
        if self.comm is not None and self.comm.Get_rank() != 0:
            return None
        names = [p.name for p in self.eng.network.populations]
        return {"outputs": outputs,
                "pop_counts": {n: int(c) for n, c in zip(names, counts, strict=True)}}

    def abort(self) -> None:
        if self.store is not None:
            self.store.abort()


def _match(gids: np.ndarray, local: np.ndarray) -> list[tuple[int, int]]:
    order = np.argsort(gids)
    pos = np.searchsorted(gids[order], local)
    pos = np.minimum(pos, len(gids) - 1)
    hit = gids[order][pos] == local
    return [(int(order[p]), int(i)) for i, p in zip(np.flatnonzero(hit), pos[hit], strict=True)]


def unit_labels(spec: Any) -> list[str]:
    """Labels of a BrainSpec's units: the region's name (region level), or
    ``<region>#<k>`` for the k-th voxel of a region (voxel level)."""
    names = [str(spec.region_names[int(r)]) for r in spec.unit_region]
    if spec.level == "region":
        return names
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(f"{n}#{k}")
    return out
