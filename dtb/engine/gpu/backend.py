"""GPU-resident state of one engine and its time loop (CuPy + the CUDA kernels).

``GpuBackend(engine)`` copies a built CPU ``Engine``'s state, parameters, inputs and
synapses to the device, and advances it there with the CUDA twins of the numba kernels;
the spikes come back to the host in one copy per chunk of windows.

Launches: a window of m <= min-delay steps is two kernels with fixed arguments
(``dtb_dynamics``, one thread per neuron through the m steps; ``dtb_deliver_local``, one
warp per (spike, projection), whose last block advances a device-side control block), so
``graph_windows`` consecutive windows are captured once as a CUDA graph and replayed:
one host call per graph instead of two per window (at the microcircuit's one-step windows,
one per 2 x graph_windows launches).  The record buffer is read back and the chunk ends
when it could otherwise overflow (a bound from the refractory periods), at the end of the
call, or before spikes from other ranks are needed.

``GpuBackend(engine, emulate=True)`` runs the same code path with numpy arrays and the
kernels' host build (one emulated thread at a time): slow, but it checks everything except
CuPy and the GPU itself on any machine.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from dtb.engine.backend import Emit
from dtb.engine.gpu.device import (
    GIB,
    DeviceMemory,
    DeviceMemoryError,
    check_fits,
    device_name,
    estimate,
    max_spikes,
    spike_bound,
)
from dtb.engine.gpu.kernels import CudaKernels, HostKernels
from dtb.errors import ArgumentError
from dtb.model.neurons import MODELS

CTL_T, CTL_COUNT, CTL_WIN, CTL_TICKET, CTL_BASE, CTL_OVERFLOW, CTL_LEN = 0, 1, 2, 3, 4, 5, 8
BLOCK = 256
DEFAULT_RECORD = 1 << 22  # spike record entries (8 bytes each)


class GpuBackend:
    """One engine's partition on one GPU.

    engine: a built dtb.Engine (its arrays are copied, not shared).
    emulate: numpy arrays and the host build of the kernels instead of CuPy and a GPU.
    record_capacity: spike record entries on the device (grown when one window could
    exceed it); graph_windows: windows per CUDA graph (0: plain launches);
    deliver_blocks: blocks of the delivery launches (default: 8 per multiprocessor).
    """

    def __init__(self, engine: Any, *, emulate: bool = False,
                 record_capacity: int = DEFAULT_RECORD, graph_windows: int = 32,
                 deliver_blocks: int | None = None):
        self.engine = engine
        self.emulate = emulate
        self.graph_windows = 0 if emulate else int(graph_windows)
        self.xp: Any  # the array module: numpy (emulated) or cupy
        self.rec_step: Any = None
        self.rec_idx: Any = None
        if emulate:
            self.xp = np
            self.kernels: Any = HostKernels()
            self._deliver_blocks = deliver_blocks or 2
            free = None
        else:
            import cupy

            self.xp = cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.kernels = CudaKernels(self.stream)
            dev = cupy.cuda.Device()
            sms = dev.attributes["MultiProcessorCount"]
            self._deliver_blocks = deliver_blocks or 8 * sms
            free = self._free_bytes()
        e = engine
        self.n = int(e.n_local)
        self.n_pop = len(e.layout)  # layout pieces (a population may have several)
        self.n_populations = len(e.network.populations)
        self.step = int(e.step)
        self.D = int(e.ring.shape[0])
        self.n_ports = int(e.ring.shape[1])
        self.dly8 = int(e.max_delay_steps < 256)
        self._record_min = int(record_capacity)
        self.memory = self._estimate(self._record_min)
        if free is not None:
            check_fits(self.memory, free, self._device_name())
        self._graphs: dict[tuple[int, int], Any] = {}
        # (m, record size, graph windows) -> windows per chunk (the record is sized for
        # such a key already); cleared whenever the spike bound changes (_set_spike_bound)
        self._plans: dict[tuple[int, int, int], int] = {}
        # every allocation and copy on the backend's stream: it does not synchronise with
        # the legacy default stream, so work queued there would be unordered with ours
        with self._on_stream():
            self._upload()
            self._sync()
        self.launches = 0  # host-side launch calls (a graph replay counts one)
        self.graph_error: str | None = None

    # --- construction ------------------------------------------------------------------
    def _estimate(self, record: int) -> DeviceMemory:
        e = self.engine
        csr = e.synapse_arrays
        tables = (e.neurons.P.nbytes + sum(a.nbytes for a in e.inputs) + e.neurons.masks.nbytes
                  + 16 * e.tables.pop_proj.size + 32 * csr.row0.size)
        return estimate(self.n, int(e.n_synapses), int(csr.indptr.size - 1), self.D - 1,
                        self.n_ports, int(e.istate.ou.shape[1]), record, tables)

    def _dev(self, a: np.ndarray, dtype: Any = None) -> Any:
        """A device copy of a (at least one element, so no launch sees a null pointer)."""
        a = np.ascontiguousarray(a, dtype=dtype)
        if a.size == 0:
            a = np.zeros(1, a.dtype)
        return self.xp.array(a, copy=True)

    def _upload(self) -> None:
        e = self.engine
        self.V = self._dev(e.V, np.float64)
        self.syn = self._dev(e.syn, np.float64)
        self.refr = self._dev(e.refr, np.int32)
        self.P = self._dev(e.neurons.P, np.float64)
        self.pid = self._dev(e.neurons.pid, np.int32)
        self.ring = self._dev(e.ring, np.int64)
        self.masks = self._dev(e.neurons.masks, np.float64)
        self.ou_n = int(e.istate.ou.shape[1])
        self.ou = self._dev(e.istate.ou, np.float64)
        (kind, lo, hi, ident, port, a, b, c, wfix, off, cdf) = e.inputs
        self.inputs = tuple(self._dev(x, t) for x, t in (
            (kind, np.int64), (lo, np.int64), (hi, np.int64), (ident, np.int64),
            (port, np.int64), (a, np.float64), (b, np.float64), (c, np.float64),
            (wfix, np.int64), (off, np.int64), (cdf, np.uint64)))
        # the inputs of each population (CSR, ascending input number: the CPU's order)
        pop_in_ptr = np.zeros(self.n_pop + 1, np.int64)
        pop_in: list[int] = []
        for p, lay in enumerate(e.layout):
            pop_in += [k for k in range(len(kind))
                       if lo[k] <= lay.lo and hi[k] >= lay.hi and lay.hi > lay.lo]
            pop_in_ptr[p + 1] = len(pop_in)
        self.pop_in_ptr = self._dev(pop_in_ptr)
        self.pop_in = self._dev(np.array(pop_in, np.int64))
        # "pop" in the kernels' names is a layout piece here
        self.pop_lo = self._dev(e.pieces.lo, np.int64)
        self.pop_first = self._dev(e.pieces.first, np.int64)
        self.pop_gid0 = self._dev(e.part.piece_gid0, np.int64)

        self.pop_model = self._dev(np.array([MODELS[lay.model].code for lay in e.layout]),
                                   np.int64)
        # projections by source: per piece (local spikes), per population (remote ones)
        self.piece_proj_ptr = self._dev(e.pieces.proj_ptr, np.int64)
        self.piece_proj = self._dev(e.pieces.proj, np.int64)
        self.max_q_local = int(np.diff(e.pieces.proj_ptr).max()) if self.n_pop else 0
        self.pop_proj_ptr = self._dev(e.tables.pop_proj_ptr, np.int64)
        self.pop_proj = self._dev(e.tables.pop_proj, np.int64)
        self.max_q = int(np.diff(e.tables.pop_proj_ptr).max()) if self.n_populations else 0
        self._piece_population = np.array([lay.index for lay in e.layout], np.int64)
        self.proj_row0 = self._dev(e.synapse_arrays.row0, np.int64)
        self.proj_port = self._dev(e.synapse_arrays.port, np.int64)
        self.proj_shift = self._dev(e.synapse_arrays.shift, np.int64)
        self.indptr = self._dev(e.synapse_arrays.indptr, np.int64)
        self.tgt = self._dev(e.synapse_arrays.tgt, np.uint32)
        self.wq = self._dev(e.synapse_arrays.wq, np.int16)
        self.dly = self._dev(e.synapse_arrays.dly, np.uint8 if self.dly8 else np.uint16)
        self.ctl = self._dev(np.zeros(CTL_LEN, np.int64))
        self.pop_count = self._dev(np.zeros(max(1, self.n_pop), np.int64))
        self._alloc_record(self._record_min)
        self._set_spike_bound()

    def _alloc_record(self, cap: int) -> None:
        """(Re)allocate the spike record for cap entries (on the backend's stream: call it
        inside _on_stream)."""
        self.rec_step = self.rec_idx = None  # freed first: the pool can reuse them
        self.rec_cap = int(cap)
        self.rec_step = self.xp.empty(self.rec_cap, np.int32)
        self.rec_idx = self.xp.empty(self.rec_cap, np.int32)
        self._graphs = {}  # captured graphs hold the old pointers

    def _device_name(self) -> str:
        return "the host emulation" if self.emulate else f"GPU {self.xp.cuda.Device().id}"

    def _free_bytes(self) -> int | None:
        """Device memory available to this backend: free on the device plus what CuPy's
        pool holds unused (None when emulating)."""
        if self.emulate:
            return None
        import cupy

        return int(cupy.cuda.Device().mem_info[0]
                   + cupy.get_default_memory_pool().free_bytes())

    def _size_record(self, m_max: int) -> None:
        """Make the record hold at least one window's spike bound (DeviceMemoryError when
        that does not fit) and, where memory allows, a chunk of graph_windows windows (the
        growth at most an eighth of the memory available), so that chunks end rarely."""
        key = (m_max, self.rec_cap, self.graph_windows)
        if key in self._plans:  # a distributed run asks once per window: keep it cheap
            return
        need = max(1, self.max_spikes(m_max))
        want = max(need, self.max_spikes(max(1, self.graph_windows) * m_max))
        if want <= self.rec_cap:
            return
        free = self._free_bytes()
        have = self.rec_cap * 8  # freed before the new record is allocated
        if free is not None and want * 8 - have > (free + have) / 8:
            want = need
        if want <= self.rec_cap:
            return
        if free is not None and want * 8 > (free + have) * 0.95:
            raise DeviceMemoryError(
                f"{self._device_name()}: the spike record needs {want * 8 / GIB:.2f} GiB "
                f"({want:,} entries: one window of {m_max} steps can hold that many spikes) "
                f"but {(free + have) / GIB:.2f} GiB are available -- run on more ranks/GPUs")
        self._alloc_record(want)
        self.memory = self._estimate(want)

    def _chunk_windows(self, m_max: int) -> int:
        """Windows of m_max steps per chunk: as many as the record holds by the spike
        bound over the whole chunk (at least one), whole graphs where graphs are used."""
        key = (m_max, self.rec_cap, self.graph_windows)
        if key in self._plans:
            return self._plans[key]
        lo, hi = 1, max(1, self.rec_cap)
        while lo < hi:  # the largest n with max_spikes(n * m_max) <= rec_cap
            mid = (lo + hi + 1) // 2
            if self.max_spikes(mid * m_max) <= self.rec_cap:
                lo = mid
            else:
                hi = mid - 1
        g = self.graph_windows
        if g > 1 and lo > g:
            lo -= lo % g
        self._plans[key] = lo
        return lo

    def _set_spike_bound(self) -> None:
        e = self.engine
        self._spikes_per_neuron = spike_bound(e.layout, e.neurons.P, e.neurons.pid)
        self._plans = {}

    def max_spikes(self, m: int) -> int:
        """An upper bound of the spikes of a window of m steps (device.max_spikes)."""
        return max_spikes(self._spikes_per_neuron, m)

    # --- launches ------------------------------------------------------------------------
    def _dyn_args(self, m: int) -> tuple:
        (kind, lo, hi, ident, port, a, b, c, wfix, off, cdf) = self.inputs
        e = self.engine
        return (self.ctl, np.int32(m), np.float64(e.dt), np.uint32(e.noise_seed), np.int64(self.n),
                self.V, self.syn, self.refr, self.P, self.pid, np.int32(self.n_pop),
                self.pop_lo, self.pop_model, self.pop_gid0, self.pop_in_ptr, self.pop_in,
                self.ring, np.int32(self.D), np.int32(self.n_ports), self.masks, kind, lo, hi,
                ident, port, a, b, c, wfix, off, cdf, self.ou, np.int64(max(1, self.ou_n)),
                self.rec_step, self.rec_idx, np.int64(self.rec_cap), self.pop_count)

    def _syn_args(self, local: bool) -> tuple:
        ptr, proj, q = ((self.piece_proj_ptr, self.piece_proj, self.max_q_local) if local
                        else (self.pop_proj_ptr, self.pop_proj, self.max_q))
        return (ptr, proj, np.int32(q), self.proj_row0,
                self.proj_port, self.proj_shift, self.indptr, self.tgt, self.wq, self.dly,
                np.int32(self.dly8), self.ring, np.int32(self.D), np.int32(self.n_ports),
                np.int64(self.n))

    def _launch_window(self, m: int) -> None:
        """Queue one window of m steps: dynamics, then delivery of its spikes (which also
        closes the window on the device)."""
        k = self.kernels
        k.launch("dtb_dynamics", (self.n + BLOCK - 1) // BLOCK, BLOCK, self._dyn_args(m))
        k.launch("dtb_deliver_local", self._deliver_blocks, BLOCK,
                 (self.ctl, np.int32(m), self.rec_step, self.rec_idx, np.int64(self.rec_cap),
                  np.int32(self.n_pop), self.pop_lo, self.pop_first, *self._syn_args(True)))
        self.launches += 2

    def _run_windows(self, n_windows: int, m: int) -> None:
        """Queue n_windows windows of m steps, as replays of a captured graph where one
        is configured and the rest as plain launches."""
        g = self.graph_windows
        if g > 1 and n_windows >= g:
            graph = self._graphs.get((m, g))
            if graph is None:
                graph = self._capture(m, g)
            if graph is not None:
                for _ in range(n_windows // g):
                    graph.launch(self.stream)
                    self.launches += 1
                n_windows %= g
        for _ in range(n_windows):
            self._launch_window(m)

    def _capture(self, m: int, g: int) -> Any:
        """A CUDA graph of g windows of m steps, or None (plain launches from then on, the
        reason in graph_error) where capturing fails."""
        launches = self.launches
        try:
            self.stream.begin_capture()
            try:
                for _ in range(g):
                    self._launch_window(m)
            finally:
                graph = self.stream.end_capture()
        except Exception as e:  # noqa: BLE001 - any CUDA/CuPy failure: fall back
            self.graph_error = f"{type(e).__name__}: {e}"
            self.graph_windows = 0
            self.launches = launches
            return None
        self.launches = launches
        self._graphs[(m, g)] = graph
        return graph

    def _on_stream(self) -> Any:
        """The context that makes the backend's stream current (every copy and launch
        goes there, in order)."""
        return contextlib.nullcontext() if self.emulate else self.stream

    def _host(self, a: Any) -> np.ndarray:
        return np.array(a) if self.emulate else self.xp.asnumpy(a, stream=self.stream)

    def _sync(self) -> None:
        if not self.emulate:
            self.stream.synchronize()

    def report(self) -> dict[str, Any]:
        """What the manifest records of this backend: device, memory (bytes per synapse
        and per neuron), spike record size, launch calls so far and CUDA-graph use."""
        if self.emulate:
            name = "host emulation"
        else:
            name = device_name(self.xp.cuda.runtime.getDeviceProperties(
                self.xp.cuda.Device().id))
        return {"device": name, "emulated": self.emulate, "memory": self.memory.to_dict(),
                "record_entries": self.rec_cap, "launch_calls": self.launches,
                "graph_windows": self.graph_windows, "graph_error": self.graph_error}

    # --- the public interface ----------------------------------------------------------
    def advance_local(self, n_steps: int, m_max: int) -> tuple[np.ndarray, np.ndarray]:
        """Advance n_steps in windows of m_max steps (the last one shorter), delivering this
        partition's own spikes after each window.

        Returns this call's spikes, sorted by (step, index): steps (int64) and engine-local
        indices (int64), host arrays, the same as the CPU engine records.
        """
        if n_steps < 0 or m_max < 1:
            raise ArgumentError(f"n_steps {n_steps}, m_max {m_max} -- expected >= 0 and >= 1")
        with self._on_stream():
            self._size_record(m_max)
            return self._advance(n_steps, m_max)

    def _advance(self, n_steps: int, m_max: int) -> tuple[np.ndarray, np.ndarray]:
        steps_out, idx_out = [], []
        done = 0
        n_win = self._chunk_windows(m_max)
        while done < n_steps:
            steps = min(n_steps - done, n_win * m_max, 2**31 - 1 - m_max)
            ctl = np.zeros(CTL_LEN, np.int64)
            ctl[CTL_T] = ctl[CTL_BASE] = self.step
            self.ctl[:] = self.xp.asarray(ctl)
            full, tail = divmod(steps, m_max)
            self._run_windows(full, m_max)
            if tail:
                self._run_windows(1, tail)
            ctl = self._host(self.ctl)
            if ctl[CTL_OVERFLOW] or ctl[CTL_COUNT] > self.rec_cap:
                raise RuntimeError(f"GPU spike record overflow ({int(ctl[CTL_COUNT])} > "
                                   f"{self.rec_cap}): the spike bound is wrong")
            if ctl[CTL_T] != self.step + steps:
                raise RuntimeError(f"GPU windows out of step: device at {int(ctl[CTL_T])}, "
                                   f"expected {self.step + steps}")
            k = int(ctl[CTL_COUNT])
            if k:
                st = self._host(self.rec_step[:k]).astype(np.int64) + self.step
                ix = self._host(self.rec_idx[:k]).astype(np.int64)
                order = np.lexsort((ix, st))
                steps_out.append(st[order])
                idx_out.append(ix[order])
            self.step += steps
            done += steps
        if not steps_out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(steps_out), np.concatenate(idx_out)

    def deliver_remote(self, steps: np.ndarray, src_pop: np.ndarray,
                       src_idx: np.ndarray) -> None:
        """Deliver spikes received from other ranks: emission steps, source population
        numbers and indices within those populations, each (k,)."""
        k = len(steps)
        if k == 0 or self.engine.n_synapses == 0:
            return
        warps = k * max(1, self.max_q)
        grid = min(self._deliver_blocks, max(1, (warps * 32 + BLOCK - 1) // BLOCK))
        with self._on_stream():
            args = (np.int64(k), self._dev(steps, np.int64), self._dev(src_pop, np.int64),
                    self._dev(src_idx, np.int64), *self._syn_args(False))
            self.kernels.launch("dtb_deliver_remote", grid, BLOCK, args)
        self.launches += 1

    def population_counts(self, reset: bool = False) -> np.ndarray:
        """This partition's spikes per population (n_populations,) since construction or
        the last reset."""
        with self._on_stream():
            per_piece = self._host(self.pop_count)[:self.n_pop].astype(np.int64)
            if reset:
                self.pop_count[:] = 0
        return np.bincount(self._piece_population, weights=per_piece,
                           minlength=self.n_populations).astype(np.int64)

    STATE = ("V", "syn", "refr", "ring", "ou")

    def to_engine(self, fields: tuple[str, ...] = STATE) -> None:
        """Copy the device's dynamic state into the engine's arrays and step: ``fields``
        of V, syn, refr, ring and OU state (all by default; samples need only V and syn,
        and the ring is most of a partition's state).  The engine's Poisson word cache is
        left as it is: it is a pure function of (neuron, 4-step group), so any content of
        it stays valid."""
        bad = set(fields) - set(self.STATE)
        if bad:
            raise ArgumentError(f"to_engine fields {sorted(bad)} -- expected some of "
                                f"{', '.join(self.STATE)}")
        with self._on_stream():
            self._sync()
            e = self.engine
            for name in fields:
                if name == "ou":
                    if self.ou_n:
                        e.istate.ou[:] = self._host(self.ou)
                elif self.n:
                    getattr(e, name)[:] = self._host(getattr(self, name))
            e.step = self.step

    def upload_params(self) -> None:
        """Copy the engine's parameter sets and each neuron's set to the device (after
        Engine.set_unit_param), leaving the dynamic state where it is."""
        e = self.engine
        with self._on_stream():
            if self.n:
                self.pid[...] = self.xp.asarray(np.ascontiguousarray(e.neurons.pid, np.int32))
            self.P = self._dev(e.neurons.P, np.float64)  # may have grown: a new array
            self._graphs = {}  # they hold the old P
            self._set_spike_bound()
            self._sync()

    def from_engine(self) -> None:
        """Copy the engine's dynamic state, step and parameter sets to the device (after
        Engine.set_state or set_unit_param changed them on the host)."""
        e = self.engine
        with self._on_stream():
            if self.n:
                for name, src, dtype in (("V", e.V, np.float64), ("syn", e.syn, np.float64),
                                         ("refr", e.refr, np.int32), ("ring", e.ring, np.int64),
                                         ("pid", e.neurons.pid, np.int32)):
                    dst = getattr(self, name)
                    if src.shape != dst.shape:
                        raise ArgumentError(f"engine {name} has shape {src.shape} -- expected "
                                            f"{dst.shape}")
                    dst[...] = self.xp.asarray(np.ascontiguousarray(src, dtype))
            if self.ou_n:
                self.ou[...] = self.xp.asarray(np.ascontiguousarray(e.istate.ou, np.float64))
            self.P = self._dev(e.neurons.P, np.float64)  # may have grown: a new array
            self._graphs = {}
            self._set_spike_bound()
            self.step = int(e.step)
            self._sync()

    # --- the backend protocol (dtb.engine.backend) -----------------------------------------
    def advance(self, n_steps: int, m_max: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        st, ix = self.advance_local(n_steps, m_max)
        emit(st, ix, n_steps)
        return st, ix

    def advance_window(self, m: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        return self.advance(m, m, emit)

    def sync_host(self, fields: tuple[str, ...] | None = None) -> None:
        self.to_engine(*(() if fields is None else (fields,)))

    def params_changed(self) -> None:
        self.upload_params()

    def state_changed(self) -> None:
        self.from_engine()

    def get_state(self) -> dict[str, np.ndarray]:
        """Engine.get_state() of the device's state (the same keys and arrays, so a GPU
        state continues on the CPU and back, bitwise)."""
        self.to_engine()
        return self.engine.get_state()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state of Engine.get_state's form (from either backend)."""
        self.engine.set_state(state)
        self.from_engine()
