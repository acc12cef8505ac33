"""The recording of a run: the recorders a RecordSpec asks for (dtb.model.record_spec: the
``record:`` section and ``--record`` flags), driven through the simulation's epochs.

``Recording(engine, run_dir, spec, t_ms)`` is a thin composite over the recorders of
``dtb.engine.recorders`` (population counts, spikes, rate series, state samples, BOLD): it
builds them, owns the one ``SeriesStore`` (dtb.io.series) their dense series share, and runs
the engine (``run``), passing them this rank's spikes (``Engine.run(on_window=...)``, batched)
and every epoch boundary (samples; the result does not depend on where epochs end).  It
flushes the store once per epoch after asking each recorder how many of its rows are
complete; ``finish()`` returns the manifest's ``outputs`` on rank 0.
``get_state``/``set_state`` carry the recorders across a checkpoint (dtb.io.checkpoint): a
resumed recording (``resume=True``) reopens the outputs and continues bitwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtb.engine.recorders import (
    BoldRecorder,
    PopulationCounts,
    RateSeries,
    Recorder,
    Span,
    SpikeOutput,
    StateSamples,
    Writer,
    bold_recorder,
    population_rates,
    unit_rates,
)
from dtb.errors import ArgumentError
from dtb.io.series import SeriesStore
from dtb.model.record_spec import RecordSpec


class Recording:
    """Every recorder of one run on this rank (a collective object under MPI).

    ``engine``: a built Engine; ``run_dir``: the run directory (made by rank 0's
    RunDirectory); ``spec``: a validated RecordSpec; ``t_ms``: the model time the run will
    cover (sizes the dense arrays); ``unit_labels``: (n_units,) names of the units;
    ``unit_region_labels``: (n_units,) their integer region labels (a brain's), stored as the
    ``label`` coordinate beside the names.
    ``resume``: the outputs exist already (an interrupted run): open them for writing
    without recreating them, then ``set_state`` from the checkpoint, then the engine's.

    The recorders: ``pop_counts`` (always), ``spikes``, ``rates`` (population and unit
    rates), ``bold``, ``samples`` (None or empty when not recorded), all of them in
    ``recorders`` in the order they are driven; ``store``: their shared series store (None
    when no dense series is recorded).
    """

    def __init__(self, engine: Any, run_dir: str | Path, spec: RecordSpec, t_ms: float,
                 unit_labels: Sequence[str] | None = None, resume: bool = False,
                 unit_region_labels: Sequence[int] | np.ndarray | None = None):
        self.eng = engine
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.comm = engine.comm if engine.ranks > 1 else None
        self.step0 = engine.step
        self.n_steps = int(round(t_ms / engine.dt))
        self.span = Span(self.step0, self.n_steps, engine.dt, spec.chunk_columns)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        # spikes waiting for absorb are bounded like the spike recorder's buffer, so a
        # long chunk (1 % of a long run) cannot pile them up in memory either
        self._absorb_at = max(1, int(spec.spike_buffer_mb * 2**20) // 16)

        self.pop_counts = PopulationCounts(engine, self.comm)
        self.spikes = (SpikeOutput(engine, self.run_dir, spec.spike_sample
                                   if spec.spikes == "sample" else None,
                                   int(spec.spike_buffer_mb * 2**20), self.comm)
                       if spec.spikes != "none" else None)
        self.rates: list[RateSeries] = []
        if spec.rates_ms is not None:
            self.rates.append(population_rates(engine, self.span, spec.rates_ms))
        self.bold: BoldRecorder | None = None
        self.n_units = int(getattr(engine, "n_units", 0) or 0)
        if self.n_units and (spec.units_ms is not None or spec.bold_tr_ms is not None):
            labels = (list(unit_labels) if unit_labels is not None
                      else [f"u{i}" for i in range(self.n_units)])
            units = unit_rates(engine, self.span, spec, labels, unit_region_labels)
            self.rates.append(units)
            if spec.bold_tr_ms is not None:
                self.bold = bold_recorder(self.span, units, spec.bold_tr_ms,
                                          spec.bold_baseline_hz)
        self.samples = (StateSamples(engine, spec.samples, self.span)
                        if spec.samples is not None else None)
        # the order of the series in the store (and in series.zarr's metadata)
        self.recorders: list[Recorder] = [
            r for r in (self.pop_counts, self.spikes, *self.rates, self.bold, self.samples)
            if r is not None]
        self.store = self._make_store(resume)
        if self.comm is not None:
            # the ranks set the outputs up unevenly (rank 0 creates the stores); without
            # this the first exchange of the run waits for the last, and the wait is
            # counted as simulation time
            self.comm.Barrier()

    def _make_store(self, resume: bool) -> SeriesStore | None:
        """The series store of every recorder's arrays (None: none), bound to them."""
        arrays = [a for r in self.recorders for a in r.arrays()]
        if not arrays:
            return None
        dt = self.eng.dt
        attrs = {"dt_ms": dt, "seed": self.eng.seed, "noise_seed": self.eng.noise_seed,
                 "t0_ms": self.step0 * dt, "format": "dtb-series"}
        store = SeriesStore(self.run_dir, [s for s, _ in arrays],
                            {s.name: cols for s, cols in arrays}, self.comm, attrs,
                            self.spec.hdf5, resume=resume)
        for r in self.recorders:
            r.bind(store)
        return store

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
        for r in self.recorders:
            r.on_spikes(steps, idx)

    def sample(self) -> None:
        """The epoch boundary the engine stands at, to every recorder (state samples record
        the state if the step is a sampling step)."""
        for r in self.recorders:
            r.on_epoch(self.eng.step)

    def flush(self, final: bool = False) -> None:
        """Write the complete chunks (a collective): the store's, below the rows each
        recorder says are complete, then each recorder's own."""
        if self.store is not None:
            done: dict[str, int] = {}
            for r in self.recorders:
                done.update(r.rows_done(self.eng.step))
            self.store.flush(done, final=final)
        for r in self.recorders:
            r.flush(final)

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
        dtb.io.checkpoint; names with ``/`` are groups): the step the recording started at
        and its length (``step0``, ``n_steps``), each recorder's state (``pop_counts``,
        ``spikes/...``, ``bold/...``: the BOLD models' state and unwritten rows) and the
        series store's buffers and write positions (``series/...``).  Take it between
        chunks (after ``run`` returned or in ``on_checkpoint``)."""
        self.absorb()
        d: dict[str, np.ndarray] = {"step0": np.array(self.step0, np.int64),
                                    "n_steps": np.array(self.n_steps, np.int64)}
        for r in self.recorders:
            d.update(_under(r.key, r.get_state()))
        if self.store is not None:
            d.update(_under("series", self.store.get_state()))
        return d

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` of a recording of the same run, rank and rank count
        (constructed with ``resume=True``)."""
        for k, want in (("step0", self.step0), ("n_steps", self.n_steps)):
            if int(d[k]) != want:
                raise ArgumentError(f"recording state {k}: {int(d[k])} -- expected {want} "
                                    "(a checkpoint of another run?)")
        groups = {r.key for r in self.recorders if r.key} | ({"series"} if self.store is not None
                                                             else set())
        for key in sorted(groups ^ {k.split("/", 1)[0] for k in d if "/" in k}):
            raise ArgumentError(f"recording state: {key} "
                                f"{'missing' if key in groups else 'unexpected'} -- the "
                                "checkpoint was written with another record section")
        self._pending, self._pending_n = [], 0
        for r in self.recorders:
            r.set_state(d if r.key is None else _sub(d, r.key))
        if self.store is not None:
            self.store.set_state(_sub(d, "series"))

    # --- the end ------------------------------------------------------------------------
    def finish(self, write: Writer) -> dict[str, Any] | None:
        """Flush the last partial chunks, let every recorder write its last outputs
        (``spikes.h5``) and close the series store (a collective).  ``write`` writes bytes
        atomically (RunDirectory.write_atomic).  Returns, on rank 0, the manifest's outputs
        and the spike counts per population: ``{"outputs": {...}, "pop_counts": {...}}``;
        None on other ranks."""
        self.absorb()
        self.flush(final=True)
        outputs: dict[str, Any] = {}
        for r in self.recorders:
            outputs.update(r.finish(write))
        if self.store is not None:
            outputs.update(self.store.close() or {})
        if self.comm is not None and self.comm.Get_rank() != 0:
            return None
        return {"outputs": outputs, "pop_counts": self.pop_counts.totals}

    def abort(self) -> None:
        """Release what the recorders hold open after a failure (the run directory removes
        the files)."""
        if self.store is not None:
            self.store.abort()
        for r in self.recorders:
            r.abort()


def _under(key: str | None, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``d``'s names in the group ``key`` (None: as they are)."""
    return d if key is None else {f"{key}/{k}": v for k, v in d.items()}


def _sub(d: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """The names of ``d`` in the group ``key``, without it."""
    prefix = key + "/"
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


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
