"""Ensemble members and their MPI layout.

``Member`` is what the assimilation loop needs of a member (set its parameters, run and
return each unit's population rate in Hz); ``EngineMember`` wraps a ``dtb`` Engine (one
process, or a distributed engine on a member communicator whose ranks sum their counts).
``split_members`` splits ``MPI.COMM_WORLD`` into M member communicators of P ranks and
``member_gather`` gathers only the rows (observation space, O(M U)) of each member's rank 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from dtb.assimilation.parameters import ParamSpec
from dtb.errors import ArgumentError

__all__ = ["Member", "EngineMember", "split_members", "member_gather"]


class Member(Protocol):
    """What the loop needs of an ensemble member."""

    n_units: int

    def set_params(self, params: Sequence[ParamSpec], theta: np.ndarray) -> None:
        """Give the member parameter values ``theta`` (P, n_units)."""

    def run_rates(self, t_ms: float) -> np.ndarray:
        """Advance ``t_ms`` ms; the population rate of every unit (n_units,) in Hz."""


class RateEngine(Protocol):
    """What ``EngineMember`` needs of a ``dtb.Engine``: its step ``dt`` (ms), its units and
    every neuron's unit (-1 none), per-unit parameters and a run that reports its spikes
    ``on_window(steps, neuron indices)``.  Optional, read when present: ``comm`` and
    ``ranks`` (a distributed engine), ``min_delay_steps`` and ``exchange.window``."""

    dt: float

    @property
    def n_units(self) -> int: ...

    @property
    def unit_of(self) -> np.ndarray: ...

    def set_unit_param(self, population: str, name: str, values: np.ndarray) -> None: ...

    def run(self, t_ms: float,
            on_window: Callable[[np.ndarray, np.ndarray], None] | None = None) -> object: ...


class EngineMember:
    """A ``dtb.Engine`` as an ensemble member: rates from its spikes per unit (all families of
    a unit together).  On a member communicator of several ranks, every rank of the member
    calls ``run_rates`` and the counts are summed over the member's ranks.

    ``poll``: called after every ``slice_ms`` of model time (rounded up to whole exchange
    windows, so the engine's windows are those of one long run and the results the same),
    so that a stop request is seen within a TR; it may raise."""

    def __init__(self, engine: RateEngine, poll: Callable[[], None] | None = None,
                 slice_ms: float = 25.0):
        self.engine = engine
        self.poll = poll
        window = max(int(getattr(engine, "min_delay_steps", 1)),
                     int(getattr(getattr(engine, "exchange", None), "window", 1)), 1)
        self._slice_steps = window * max(1, math.ceil(slice_ms / engine.dt / window))
        self.n_units = int(engine.n_units)
        uo = np.asarray(engine.unit_of)
        n = np.bincount(uo[uo >= 0], minlength=self.n_units).astype(float)
        self._unit_of = uo
        self.neurons = self._sum(n)
        if np.any(self.neurons == 0):
            raise ArgumentError("engine: units without neurons -- expected every unit populated")

    def _sum(self, x: np.ndarray) -> np.ndarray:
        comm = getattr(self.engine, "comm", None)
        if comm is not None and getattr(self.engine, "ranks", 1) > 1:
            out = np.empty_like(x)
            comm.Allreduce(x, out)
            return out
        return x

    def set_params(self, params: Sequence[ParamSpec], theta: np.ndarray) -> None:
        for k, p in enumerate(params):
            self.engine.set_unit_param(p.population, p.name, theta[k])

    def run_rates(self, t_ms: float) -> np.ndarray:
        counts = np.zeros(self.n_units)
        uo = self._unit_of

        def on_window(steps: np.ndarray, idx: np.ndarray) -> None:
            u = uo[idx]
            counts[:] += np.bincount(u[u >= 0], minlength=self.n_units)

        if self.poll is None:
            self.engine.run(t_ms, on_window=on_window)
        else:
            dt = self.engine.dt
            n, done = int(round(t_ms / dt)), 0
            while done < n:
                k = min(self._slice_steps, n - done)
                self.engine.run(k * dt, on_window=on_window)
                done += k
                self.poll()
        return self._sum(counts) / (self.neurons * t_ms * 1e-3)


def split_members(comm: Any, ranks_per_member: int) -> tuple[Any, int, int]:
    """Split ``comm`` (size M * P) into M member communicators of P consecutive ranks:
    returns ``(member_comm, member_index, M)``.  Build each member's Engine with
    ``comm=member_comm``."""
    size = comm.Get_size()
    if ranks_per_member < 1 or size % ranks_per_member:
        raise ArgumentError(f"ranks per member: {ranks_per_member} -- expected a divisor of the "
                            f"{size} ranks")
    index = comm.Get_rank() // ranks_per_member
    return comm.Split(color=index, key=comm.Get_rank()), index, size // ranks_per_member


def member_gather(comm: Any, member_comm: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A ``gather`` for ``assimilate`` under MPI: the rows of every member's rank 0, in member
    order, on every rank of ``comm`` (only observation-space values and parameters, O(M U))."""

    def gather(x: np.ndarray) -> np.ndarray:
        parts = comm.allgather(np.asarray(x) if member_comm.Get_rank() == 0 else None)
        return np.concatenate([q for q in parts if q is not None], axis=0)

    return gather
