"""What a simulation asks of the place its partition lives and runs: the backend protocol.

``CpuBackend`` (dtb.engine.cpu: numba kernels on the host arrays) and ``GpuBackend``
(dtb.engine.gpu.backend: CUDA kernels on device copies, or their host build when emulated)
implement it.  Steps are whole time steps of the simulation's ``dt`` (ms); spikes are
(step, engine-local index) pairs of int64 arrays, a spike of step s stamped (s+1)*dt ms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

#: receives a completed chunk's spikes (steps, engine indices) and the steps it advanced
Emit = Callable[[np.ndarray, np.ndarray, int], None]


class Backend(Protocol):
    """Advance the partition, deliver spikes from other ranks, keep the host's copy of the
    state current."""

    def advance(self, n_steps: int, m_max: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        """Advance ``n_steps`` in windows of at most ``m_max`` steps, delivering this
        partition's own spikes after each window; ``emit`` each chunk of spikes as it is
        complete.  Returns all of this call's spikes (steps, indices)."""
        ...

    def advance_window(self, m: int, emit: Emit) -> tuple[np.ndarray, np.ndarray]:
        """One window of ``m`` <= min-delay steps (the distributed loop's unit)."""
        ...

    def deliver_remote(self, steps: np.ndarray, src_pop: np.ndarray,
                       src_idx: np.ndarray) -> None:
        """Deliver spikes from other ranks: emission steps, source population numbers and
        indices within those populations, each (k,)."""
        ...

    def sync_host(self, fields: tuple[str, ...] | None = None) -> None:
        """Bring the dynamic state (``fields`` of V, syn, refr, ring, ou; None: all) into
        the simulation's host arrays."""
        ...

    def params_changed(self) -> None:
        """The host's parameter sets changed (Simulation.set_unit_param)."""
        ...

    def state_changed(self) -> None:
        """The host's state, step and parameter sets were replaced (Simulation.set_state)."""
        ...

    def report(self) -> dict[str, Any] | None:
        """The backend's figures for the manifest (None: nothing beyond the CPU's)."""
        ...
