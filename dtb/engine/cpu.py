"""The CPU backend: the numba kernels (dtb.kernels) on the simulation's host arrays.

Inside a window neurons evolve independently (kernels/dynamics.py); at its end the window's
spikes are delivered into the delay ring (kernels/delivery.py).  ``advance`` runs many
windows in one compiled loop (kernels/loop.py), handing back spikes in chunks as its record
buffer fills; ``advance_window`` runs one (the distributed loop exchanges after each).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from dtb.engine.backend import Emit
from dtb.kernels import dynamics as kd
from dtb.kernels import exchange as kx
from dtb.kernels.bundles import Route, Scratch
from dtb.kernels.delivery import deliver
from dtb.kernels.loop import run_windows, run_windows_exchanged

_EMPTY = np.zeros(0, np.int64)


class Blocked(Protocol):
    """What ``advance_exchanged`` exchanges through (dtb.engine.exchange.Exchange): its
    ``blocks`` (send, recv, cap) and ``swap``, the hook kernels/exchange.py describes."""

    @property
    def blocks(self) -> Any: ...

    def swap(self, counts: np.ndarray, data: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, int]: ...


class CpuBackend:
    """The CPU backend of one simulation ``sim`` (dtb.engine.simulation.Simulation): its
    arrays are the simulation's own, so there is nothing to copy back and forth."""

    def __init__(self, sim: Any):
        self.sim = sim
        self._buf: dict[str, np.ndarray] = {}
        self._buf_key: tuple[int, int] | None = None

    def buffers(self, m: int) -> dict[str, np.ndarray]:
        """Scratch arrays for the loop with windows of m steps, kept between calls."""
        n = self.sim.n_local
        key = (n, m)
        if self._buf_key != key:
            cap = max(n * m * 4, 1 << 20)
            self._buf = {
                "cur": np.empty(n),
                "spk_step": np.empty(n * m, np.int64), "spk_idx": np.empty(n * m, np.int64),
                "counts": np.zeros(len(self.sim.part.blocks.lo), np.int64),
                "win_step": np.empty(n * m, np.int64), "win_idx": np.empty(n * m, np.int64),
                "win_pop": np.empty(n * m, np.int64), "win_src": np.empty(n * m, np.int64),
                "rec_step": np.empty(cap, np.int64), "rec_idx": np.empty(cap, np.int64),
            }
            self._buf_key = key
        return self._buf

    def _bundles(self, buf: dict[str, np.ndarray]) -> tuple:
        """The kernels' arguments: the partition's bundles and the scratch arrays."""
        part = self.sim.part
        return (part.neurons, part.blocks, part.inputs, part.istate,
                Scratch(buf["cur"], buf["spk_step"], buf["spk_idx"], buf["counts"],
                        buf["win_step"], buf["win_idx"], buf["win_pop"], buf["win_src"]))

    def advance_window(self, m: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        s = self.sim
        buf = self.buffers(s.min_delay_steps)
        neurons, blocks, inputs, istate, scratch = self._bundles(buf)
        kd.advance(s.step, m, s.dt, s.noise_seed, neurons, blocks, inputs, istate, scratch)
        k = kd.gather_spikes(m, blocks.lo, scratch)
        st, ix = buf["win_step"][:k].copy(), buf["win_idx"][:k].copy()
        if k and s.n_synapses:
            pieces = s.part.pieces
            pc = np.searchsorted(pieces.lo, ix, side="right") - 1
            deliver(k, st, pc, ix - pieces.lo[pc] + pieces.first[pc], pieces.proj_ptr,
                    pieces.proj, s.part.synapses, s.ring, s.threads)
        emit(st, ix, m)
        return st, ix

    def advance(self, n_steps: int, m_max: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        s = self.sim
        buf = self.buffers(m_max)
        new_st: list[np.ndarray] = []
        new_ix: list[np.ndarray] = []
        done = 0
        while done < n_steps:
            steps, n_rec = run_windows(s.step, n_steps - done, m_max, s.dt, s.noise_seed,
                                       *self._bundles(buf), s.part.pieces, s.part.synapses,
                                       s.threads, buf["rec_step"], buf["rec_idx"], 0)
            st = buf["rec_step"][:n_rec].copy()
            ix = buf["rec_idx"][:n_rec].copy()
            done += steps
            emit(st, ix, steps)
            if n_rec:
                new_st.append(st)
                new_ix.append(ix)
        if not new_st:
            return _EMPTY.copy(), _EMPTY.copy()
        return np.concatenate(new_st), np.concatenate(new_ix)

    def advance_exchanged(self, n_steps: int, m: int, route: Route, blocks: Blocked,
                          emit: Emit) -> None:
        """Advance ``n_steps`` in windows of ``m`` steps (the exchange window, equal to the
        minimum delay), exchanging each window's spikes with the tables ``route`` through
        ``blocks`` (its fixed blocks ``send``/``recv`` of ``cap``, swapped by its ``swap``,
        an MPI collective: dtb.engine.exchange.Exchange), all in one compiled loop: no
        Python round trip per window but the swap itself."""
        s = self.sim
        buf = self.buffers(m)
        key = kx.register(blocks.swap)
        try:
            done = 0
            while done < n_steps:
                b = blocks.blocks  # replaced when the ranks agree on another block size
                steps, n_rec = run_windows_exchanged(
                    s.step, n_steps - done, m, s.dt, s.noise_seed, *self._bundles(buf),
                    s.part.pieces, s.part.synapses, s.threads, buf["rec_step"],
                    buf["rec_idx"], 0, route, b.send, b.recv, b.cap, key)
                done += steps
                emit(buf["rec_step"][:n_rec].copy(), buf["rec_idx"][:n_rec].copy(), steps)
        finally:
            kx.unregister(key)

    def deliver_remote(self, steps: np.ndarray, src_pop: np.ndarray,
                       src_idx: np.ndarray) -> None:
        s = self.sim
        if len(steps) == 0 or s.n_synapses == 0:
            return
        t = s.part.tables
        deliver(len(steps), steps, src_pop, src_idx, t.pop_proj_ptr, t.pop_proj,
                s.part.synapses, s.ring, s.threads)

    def sync_host(self, fields: tuple[str, ...] | None = None) -> None:
        """Nothing to do: the kernels work on the host arrays."""

    def params_changed(self) -> None:
        """Nothing to do: the kernels read the host's parameter sets."""

    def state_changed(self) -> None:
        """Nothing to do: the kernels read the host's state."""

    def report(self) -> None:
        return None
