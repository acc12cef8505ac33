"""The simulation: a network instantiated on this process and advanced in time.

``Simulation(network, context, decomposition, seed=, dt=)`` validates the network, makes
the neurons and synapses this rank owns (each synapse on the rank that owns its target;
construction in dtb.engine.build) and ``run(t_ms)`` advances the model in windows of at most
the network's minimum delay: inside a window neurons evolve independently, at its end the
window's spikes are delivered.  Under MPI the ranks exchange spikes at exactly that point
(dtb.engine.exchange).  Where the partition lives and which kernels advance it is the
backend's business (dtb.engine.backend: CpuBackend, GpuBackend); this module owns the time
loop, the exchange, the state and the readers.  ``Engine`` is the same with its context
given as keywords.

Time: steps of ``dt`` ms; a spike emitted during step s is stamped (s+1)*dt ms (as NEST).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dtb.engine import reports
from dtb.engine.backend import Backend
from dtb.engine.build import Partition, PopulationLayout, build_partition
from dtb.engine.compiling import Stopwatch
from dtb.engine.context import Context, check_same_config
from dtb.engine.cpu import CpuBackend
from dtb.engine.decomposition import Ownership
from dtb.engine.decomposition import ownership as cost_slices
from dtb.engine.exchange import Exchange
from dtb.engine.gpu.backend import GpuBackend
from dtb.errors import ArgumentError
from dtb.kernels.connect import FIX_BITS
from dtb.model.config import parse_network
from dtb.model.network import Network, PerUnit, as_dist
from dtb.model.neurons import MODELS, N_PARAM_ROWS, pack


class Simulation:
    """A network instantiated on this process (its part of it under MPI) and advanced in
    time: ``Simulation(network, context, decomposition, seed=, dt=)``.

    ``network``: the recipe (dtb.model.network.Network, or a config dict); ``context``:
    where it runs (dtb.engine.context.Context; default: this process alone, on the CPU);
    ``decomposition``: which rank owns which neurons (dtb.engine.decomposition.Ownership;
    default: equal-cost slices of every population); ``seed`` (an integer in [0, 2**32))
    and ``dt`` (ms) fix the model: the same seed gives the same result on any number of
    ranks.  ``noise_seed`` (default: ``seed``) separates the run's randomness from the
    network's: ``seed`` then draws the synapses and per-neuron parameters (the network
    realisation) and ``noise_seed`` the initial state and the background noise, so one
    network can be run with many noise realisations.

    Attributes after construction: ``n_neurons``, ``n_synapses``, ``bytes_per_synapse``,
    ``min_delay_steps`` (the exchange window), ``max_delay_steps``, ``build_s``; after
    runs ``simulate_s``.  Neither counts first-use compilation of the kernels (seconds in
    ``compile_s``; dtb.engine.compiling).
    """

    def __init__(self, network: Network, context: Context | None = None,
                 decomposition: Ownership | None = None, *, seed: int = 1, dt: float = 0.1,
                 noise_seed: int | None = None):
        watch = Stopwatch()  # build time without first-use compilation (compile_s)
        noise_seed = seed if noise_seed is None else noise_seed
        for name, v in (("seed", seed), ("noise_seed", noise_seed)):
            if not (isinstance(v, int) and 0 <= v < 2**32):
                raise ArgumentError(f"{name}: {v!r} -- expected an integer in [0, 2**32)")
        if not dt > 0:
            raise ArgumentError(f"dt: {dt!r} -- expected a time step in ms > 0")
        self.network = parse_network(network, dt)
        self.dt = float(dt)
        self.seed = int(seed)
        self.noise_seed = int(noise_seed)
        self.context = context = context if context is not None else Context()
        if context.ranks > 1:
            check_same_config(context.comm, self.network, self.dt, self.seed, self.noise_seed)
        self.ownership = _checked(decomposition, self.network, context.ranks)
        self.step = 0
        self._unit_values: dict[tuple[str, str], np.ndarray] = {}
        self.part: Partition = build_partition(self.network, self.dt, self.seed, self.ownership,
                                               context.rank, context.threads,
                                               noise_seed=self.noise_seed)
        self.backend: Backend = (CpuBackend(self) if context.backend == "cpu" else
                                 GpuBackend(self, emulate=context.backend == "gpu-emulated"))
        self._spike_steps: list[np.ndarray] = []
        self._spike_idx: list[np.ndarray] = []
        self.keep_spikes = True  # False: spikes go only to run()'s on_window (recorders)
        self._on_window: Callable[[np.ndarray, np.ndarray], None] | None = None
        self.simulate_s = 0.0
        # the exchange schedule (a handshake between ranks) is part of the build: made
        # lazily in the first run, its collectives counted another rank's late start
        # (opening the outputs) as simulation time
        self.exchange = (Exchange(self, context.routing, context.ranks_per_node)
                         if context.ranks > 1 else None)
        tables = self.part.tables
        self._route = (self.exchange.route(self.part.pop_gid0, tables.pop_proj_ptr,
                                           tables.pop_proj)
                       if self.exchange is not None else None)
        self.build_s = watch.seconds()
        self.compile_s = watch.compile_s

    # where it runs (the context's)
    comm = property(lambda self: self.context.comm)
    rank = property(lambda self: self.context.rank)
    ranks = property(lambda self: self.context.ranks)
    threads = property(lambda self: self.context.threads)
    routing = property(lambda self: self.context.routing)
    ranks_per_node = property(lambda self: self.context.ranks_per_node)

    # what was built (dtb.engine.build.Partition; the kernels' bundles: kernels/bundles.py)
    neurons = property(lambda self: self.part.neurons)
    blocks = property(lambda self: self.part.blocks)
    inputs = property(lambda self: self.part.inputs)
    istate = property(lambda self: self.part.istate)
    pieces = property(lambda self: self.part.pieces)
    synapse_arrays = property(lambda self: self.part.synapses)
    tables = property(lambda self: self.part.tables)
    layout: list[PopulationLayout] = property(lambda self: self.part.layout)  # type: ignore
    gids = property(lambda self: self.part.gids)
    unit_of = property(lambda self: self.part.unit_of)
    n_units = property(lambda self: self.part.n_units)
    ports = property(lambda self: self.part.ports)
    n_local = property(lambda self: self.part.n_local)
    n_neurons = property(lambda self: self.part.n_neurons)
    n_synapses = property(lambda self: self.part.tables.n_synapses)
    min_delay_steps = property(lambda self: self.part.tables.min_delay_steps)
    max_delay_steps = property(lambda self: self.part.tables.max_delay_steps)
    bytes_per_synapse = property(lambda self: self.part.tables.bytes_per_synapse)
    V = property(lambda self: self.part.neurons.V)
    syn = property(lambda self: self.part.neurons.syn)
    refr = property(lambda self: self.part.neurons.refr)
    ring = property(lambda self: self.part.neurons.ring)

    @property
    def partition(self) -> str:
        """How the decomposition was made: "slices", "metis" or "contiguous"."""
        return self.ownership.method

    # --- running ------------------------------------------------------------------------
    def run(self, t_ms: float, on_window: Callable[[np.ndarray, np.ndarray], None] | None = None
            ) -> None:
        """Advance the model by t_ms (rounded to whole steps).

        ``on_window(steps, idx)``, if given, receives this rank's spikes as windows
        complete, window after window: step numbers (a spike of step s is stamped
        (s+1)*dt ms) and engine-local neuron indices (``gids[idx]`` are global ids), int64
        arrays.  Within one call the order is the kernels' (by block of neurons), not by
        time: sorting every window cost the 2-rank microcircuit a fifth of its speed, and
        no consumer needs it.  Every spike of a step < ``self.step`` has been passed on
        when run returns.  The time spent in the callback counts as simulation time.
        """
        n_steps = int(round(t_ms / self.dt))
        if n_steps < 0:
            raise ArgumentError(f"t: {t_ms!r} -- expected a model time >= 0 ms")
        self._advance_steps(n_steps, on_window)

    def run_until(self, step_end: int, on_window: Callable[[np.ndarray, np.ndarray], None]
                  | None = None, epoch_end: Callable[[int], int] | None = None,
                  on_epoch: Callable[[int], bool] | None = None) -> bool:
        """Advance to step ``step_end`` in epochs (Arbor's epoch callback): an epoch ends
        at ``epoch_end(step)`` (capped at step_end; None: one epoch), where
        ``on_epoch(step)`` is called between windows, with every spike so far passed to
        ``on_window``; it returns False to stop there.  Returns True when step_end was
        reached, False when an epoch callback stopped the run.  The result does not depend
        on where epochs end."""
        while self.step < step_end:
            nxt = step_end if epoch_end is None else min(epoch_end(self.step), step_end)
            if nxt <= self.step:
                raise ArgumentError(f"epoch end: step {nxt} -- expected one after the "
                                    f"current step {self.step}")
            self.run((nxt - self.step) * self.dt, on_window)  # an epoch is a run
            if on_epoch is not None and not on_epoch(self.step):
                return self.step >= step_end
        return True

    def _advance_steps(self, n_steps: int,
                       on_window: Callable[[np.ndarray, np.ndarray], None] | None) -> None:
        watch = Stopwatch()
        m_max = self.min_delay_steps
        self._on_window = on_window
        try:
            if self.ranks > 1:
                self._run_distributed(n_steps, m_max)
            else:
                self.backend.advance(n_steps, m_max, self._advanced)
        finally:
            self._on_window = None
            self.simulate_s += watch.seconds()  # first-use compilation goes to compile_s
            self.compile_s += watch.compile_s

    def _advanced(self, st: np.ndarray, ix: np.ndarray, steps: int) -> None:
        """The backend advanced ``steps`` steps with these spikes: keep them (if
        ``keep_spikes``) and pass them on (to ``on_window``)."""
        self.step += steps
        if self.keep_spikes and len(st):
            self._spike_steps.append(st)
            self._spike_idx.append(ix)
        if self._on_window is not None:
            self._on_window(st, ix)

    def kept_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's spikes kept so far (``keep_spikes``), in the order they came: steps
        and engine indices, int64 (``gids[idx]`` are global ids)."""
        if not self._spike_steps:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._spike_steps = [np.concatenate(self._spike_steps)]
        self._spike_idx = [np.concatenate(self._spike_idx)]
        return self._spike_steps[0], self._spike_idx[0]

    def keep(self, steps: np.ndarray, idx: np.ndarray) -> None:
        """Replace the spikes kept so far (``spikes()``) by these (steps, engine indices):
        a resumed run's."""
        self._spike_steps = [np.asarray(steps, np.int64)]
        self._spike_idx = [np.asarray(idx, np.int64)]

    def sync_host(self, fields: tuple[str, ...] | None = None) -> None:
        """Bring the device's state into the engine's arrays: ``fields`` of V, syn, refr,
        ring and OU (None: all), for readers of ``V``/``syn`` (samples) and get_state; a
        no-op on the CPU backend."""
        self.backend.sync_host(None if fields is None else tuple(fields))

    def _run_distributed(self, n_steps: int, m_max: int) -> None:
        """Exchange windows of the smallest delay of any synapse whose source lives on
        another rank (agreed by all ranks); inside them the backend advances and delivers
        local spikes every minimum-delay window.  A spike that crosses ranks cannot act
        before its delay, which is at least the exchange window, so it still reaches the
        ring buffer in time when it is delivered at the window's end."""
        ex = self.exchange  # built with the simulation
        assert ex is not None, "a distributed run without its exchange"
        window = max(m_max, ex.window)
        if window == m_max and ex.routing == "direct" and isinstance(self.backend, CpuBackend):
            # an exchange after every step or few: the whole loop compiled, MPI excepted
            assert self._route is not None
            self.backend.advance_exchanged(n_steps, m_max, self._route, ex, self._advanced)
            return
        done = 0
        while done < n_steps:
            w = min(window, n_steps - done)
            t0 = self.step
            if window == m_max:  # one local window per exchange: skip the fused loop's setup
                st, ix = self.backend.advance_window(w, self._advanced)
            else:
                st, ix = self.backend.advance(w, m_max, self._advanced)
            r_st, r_gid = ex.exchange(t0, st, ix)
            if len(r_st) and self.n_synapses:
                g0 = self.part.pop_gid0
                pop = np.searchsorted(g0, r_gid, side="right") - 1
                self.backend.deliver_remote(r_st, pop, r_gid - g0[pop])
            done += w

    def synapses(self, pid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The synapses of projection pid stored on this engine, by source row: source index
        within its population, target engine index, weight (dequantised, in the target
        model's unit) and delay in steps; each (n_synapses,)."""
        q = self.network.projections[pid]
        n_pre = self.network.population(q.source).size
        csr = self.part.synapses
        r0 = int(csr.row0[pid])
        ptr = csr.indptr[r0:r0 + n_pre + 1]
        a, z = int(ptr[0]), int(ptr[-1])
        src = np.repeat(np.arange(n_pre), np.diff(ptr))
        w = csr.wq[a:z].astype(np.float64) * 2.0 ** (int(csr.shift[pid]) - FIX_BITS)
        return src, csr.tgt[a:z].astype(np.int64), w, csr.dly[a:z].astype(np.int64)

    # --- hyperparameters ---------------------------------------------------------------
    def _unit_population(self, population: str, name: str):
        try:
            i = [p.name for p in self.network.populations].index(population)
        except ValueError:
            raise ArgumentError(f"population: {population!r} -- expected one of "
                                f"{[p.name for p in self.network.populations]}") from None
        pop = self.network.populations[i]
        if pop.units is None:
            raise ArgumentError(f"population {population!r} has no units -- expected a "
                                "population with per-unit structure (a brain family)")
        model = MODELS[pop.model]
        if name not in model.defaults:
            raise ArgumentError(f"{population}.{name}: unknown parameter of {pop.model} -- "
                                f"expected one of {sorted(model.defaults)}")
        return i, pop, model

    def unit_param(self, population: str, name: str) -> np.ndarray:
        """The current per-unit values (n_units of the population,) of a neuron parameter
        (in the model's units, e.g. g_AMPA dimensionless, I_e pA-like), the same on every
        rank."""
        i, pop, model = self._unit_population(population, name)
        key = (population, name)
        if key in self._unit_values:
            return self._unit_values[key].copy()
        raw = pop.params.get(name, model.defaults[name])
        if isinstance(raw, PerUnit):
            return np.asarray(raw.values, float)
        d = as_dist(raw)
        if d.kind != "constant":
            raise ArgumentError(f"{population}.{name}: drawn per neuron ({d.kind}) -- has no "
                                "per-unit value")
        return np.full(len(pop.units), float(d.a))

    def set_unit_param(self, population: str, name: str, values) -> None:
        """Give a neuron parameter new per-unit values ``values`` (n_units,), effective from
        the next step (the hyperparameters data assimilation estimates).  On several ranks
        every rank must pass the same values."""
        i, pop, model = self._unit_population(population, name)
        v = np.asarray(values, float)
        if v.shape != (len(pop.units),) or not np.all(np.isfinite(v)):
            raise ArgumentError(f"{population}.{name}: values of shape {v.shape} -- expected "
                                f"{len(pop.units)} finite values (one per unit)")
        self._unit_values[(population, name)] = v.copy()
        P, pid = self.part.neurons.P, self.part.neurons.pid
        for k, lay in enumerate(self.layout):
            if lay.index != i:
                continue
            ps = self.part.param_sets[k]
            units = self.unit_of[lay.lo:lay.hi]
            if ps.mode == "population":  # becomes one set per unit, appended
                m = len(pop.units)
                ps.vals = {key: np.repeat(x, m) for key, x in ps.vals.items()}
                ps.mode, ps.set0, ps.m = "unit", len(P), m
                P = np.concatenate([P, np.zeros((m, N_PARAM_ROWS))])
                pid[lay.lo:lay.hi] = ps.set0 + units
            ps.vals[name] = v if ps.mode == "unit" else v[units]
            P[ps.set0:ps.set0 + ps.m] = pack(model, ps.vals, self.dt).T
        self.part.neurons = self.part.neurons._replace(P=np.ascontiguousarray(P))
        self.backend.params_changed()

    # --- state (checkpoints, ensemble members) -------------------------------------------
    # state key -> (bundle of the Partition, field): everything that evolves
    _STATE = {"V": ("neurons", "V"), "syn": ("neurons", "syn"), "refr": ("neurons", "refr"),
              "ring": ("neurons", "ring"), "ou": ("istate", "ou"),
              "pq_cache": ("istate", "pq_cache"), "pq_tag": ("istate", "pq_tag"),
              "psets": ("neurons", "P"), "pid": ("neurons", "pid")}

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of everything that evolves: neuron and synapse state, delay ring, input
        generators' state, parameter sets (hyperparameters) and the step; arrays only, so
        it can be written to HDF5.  ``set_state`` of it continues bitwise identically."""
        self.sync_host()
        d = {k: getattr(getattr(self.part, b), f).copy() for k, (b, f) in self._STATE.items()}
        d["step"] = np.array(self.step, np.int64)
        for k, ps in enumerate(self.part.param_sets):
            d[f"piece{k}/mode"] = np.array(("population", "unit", "neuron").index(ps.mode))
            d[f"piece{k}/set0"] = np.array(ps.set0, np.int64)
            for name, x in ps.vals.items():
                d[f"piece{k}/vals/{name}"] = np.asarray(x, float).copy()
        for (pop, name), v in self._unit_values.items():
            d[f"unit_values/{pop}/{name}"] = v.copy()
        return d

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Restore a state from ``get_state`` of a simulation built from the same network,
        dt, seed and layout (ranks); shapes are checked."""
        new: dict[str, dict[str, np.ndarray]] = {"neurons": {}, "istate": {}}
        for k, (b, f) in self._STATE.items():
            x = np.asarray(d[k])
            cur = getattr(getattr(self.part, b), f)
            if k == "syn" and x.shape == (cur.shape[0] - 1, *cur.shape[1:]):
                x = np.concatenate([x, np.zeros_like(x[:1])])  # saved before adaptation
            if k != "psets" and x.shape != cur.shape:
                raise ArgumentError(f"state {k}: shape {x.shape} -- expected {cur.shape} (a "
                                    "state of another network or layout?)")
            new[b][f] = np.ascontiguousarray(x.astype(cur.dtype, copy=True))
        self.part.neurons = self.part.neurons._replace(**new["neurons"])
        self.part.istate = self.part.istate._replace(**new["istate"])
        self.step = int(d["step"])
        for i, ps in enumerate(self.part.param_sets):
            ps.mode = ("population", "unit", "neuron")[int(d[f"piece{i}/mode"])]
            ps.set0 = int(d[f"piece{i}/set0"])
            ps.vals = {name: np.asarray(d.get(f"piece{i}/vals/{name}", x), float).copy()
                       for name, x in ps.vals.items()}  # (a parameter added since: as built)
            ps.m = len(next(iter(ps.vals.values())))
        self._unit_values = {}
        for key, v in d.items():
            if key.startswith("unit_values/"):
                _, pop, name = key.split("/", 2)
                self._unit_values[(pop, name)] = np.asarray(v, float).copy()
        self.backend.state_changed()

    @property
    def P(self) -> np.ndarray:
        """Every neuron's packed parameters, (N_PARAM_ROWS, n) (a copy, for inspection)."""
        return self.part.neurons.P[self.part.neurons.pid].T

    # --- results ------------------------------------------------------------------------
    @property
    def t_ms(self) -> float:
        """Model time reached, ms."""
        return self.step * self.dt

    def spikes(self, gather: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Spikes so far, sorted by (time, gid): times in ms (float64), global ids (int64).

        On several ranks, ``gather`` (a collective: call it on every rank) returns every
        rank's spikes on every rank; otherwise this rank's own.
        """
        st, ix = self.kept_spikes()
        gid = self.gids[ix]
        if gather and self.ranks > 1:
            st = np.concatenate(self.comm.allgather(st))
            gid = np.concatenate(self.comm.allgather(gid))
        order = np.lexsort((gid, st))
        return (st[order] + 1) * self.dt, gid[order]

    # what it reports of itself for the run directory (dtb.engine.reports)
    summary = reports.run_summary
    gpu_report = reports.gpu_report
    distribution_report = reports.distribution_report

    def population_spikes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per population: spike times (ms) and node ids numbered from 0 in the population."""
        t, g = self.spikes()
        out = {}
        for p, g0 in zip(self.network.populations, self.part.pop_gid0, strict=True):
            sel = (g >= g0) & (g < g0 + p.size)
            out[p.name] = (t[sel], g[sel] - g0)
        return out

    def local_index(self, gids: np.ndarray) -> np.ndarray:
        """Engine indices of global ids this rank owns (int64, like ``gids``)."""
        g = np.asarray(gids, np.int64)
        gid0 = self.part.piece_gid0
        k = np.searchsorted(gid0, g, side="right") - 1
        return self.part.pieces.lo[k] + g - gid0[k]

    def rates(self, t_from_ms: float = 0.0) -> dict[str, float]:
        """Mean firing rate per population (Hz) over [t_from_ms, now]."""
        span = (self.t_ms - t_from_ms) * 1e-3
        out = {}
        sizes = {p.name: p.size for p in self.network.populations}
        for name, (t, _) in self.population_spikes().items():
            n = sizes[name]
            out[name] = float(np.sum(t > t_from_ms) / (n * span)) if span > 0 else 0.0
        return out


class Engine(Simulation):
    """``Simulation`` with its context given as keywords, the way a script or a test names
    them: ``Engine(network, dt, seed, threads=, comm=, routing=, ranks_per_node=,
    ownership=, backend=, noise_seed=)``."""

    def __init__(self, network: Network, dt: float = 0.1, seed: int = 1,
                 threads: int | None = None, comm: Any = None, routing: str = "direct",
                 ranks_per_node: int | None = None, ownership: Ownership | None = None,
                 backend: str = "cpu", noise_seed: int | None = None):
        context = Context(comm, threads, backend, routing, ranks_per_node)
        super().__init__(network, context, ownership, seed=seed, dt=dt, noise_seed=noise_seed)


def _checked(ownership: Ownership | None, network: Network, ranks: int) -> Ownership:
    """The decomposition to use: ``ownership`` (checked against the network and the rank
    count) or, if None, equal-cost slices."""
    if ownership is None:
        return Ownership.from_starts(cost_slices(network, ranks))
    sizes = [p.size for p in network.populations]
    if (ownership.ranks != ranks or len(ownership.bounds) != len(sizes)
            or any(int(b[-1]) != n for b, n in zip(ownership.bounds, sizes, strict=True))):
        raise ArgumentError(f"ownership: for {ownership.ranks} ranks and populations of "
                            f"{[int(b[-1]) for b in ownership.bounds]} neurons -- expected "
                            f"{ranks} ranks and populations of {sizes} neurons")
    return ownership
