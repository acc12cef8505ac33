"""Spikes per population on this rank, every neuron counted whatever else is recorded: the
manifest's spike counts and rates."""

from __future__ import annotations

from typing import Any

import numpy as np

from dtb.engine.recorders.base import BaseRecorder, Writer
from dtb.errors import ArgumentError


class PopulationCounts(BaseRecorder):
    """Spike counts per population (int64 (n_populations,)) of this rank's neurons.

    Its checkpoint state is the one array ``pop_counts``; ``finish`` sums the ranks' counts
    into ``totals`` (population name -> spikes, on rank 0; None elsewhere).
    """

    key = None

    def __init__(self, engine: Any, comm: Any = None):
        self.comm = comm
        self.names = [p.name for p in engine.network.populations]
        self.pop_of = population_of(engine)
        self.counts = np.zeros(len(self.names), np.int64)
        self.totals: dict[str, int] | None = None

    def on_spikes(self, steps: np.ndarray, idx: np.ndarray) -> None:
        self.counts += np.bincount(self.pop_of[idx], minlength=len(self.counts))

    def get_state(self) -> dict[str, np.ndarray]:
        return {"pop_counts": self.counts.copy()}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        counts = np.asarray(d["pop_counts"], np.int64)
        if counts.shape != self.counts.shape:
            raise ArgumentError(f"recording state pop_counts: shape {counts.shape} -- expected "
                                f"{self.counts.shape}")
        self.counts = counts.copy()

    def finish(self, write: Writer) -> dict[str, Any]:
        """Sum the counts over the ranks (a collective); no file of its own."""
        counts = self.counts if self.comm is None else self.comm.reduce(self.counts, root=0)
        self.totals = (None if counts is None else
                       {n: int(c) for n, c in zip(self.names, counts, strict=True)})
        return {}


def population_of(engine: Any) -> np.ndarray:
    """The population index of each of the engine's local neurons ((n_local,) int64)."""
    pop_of = np.zeros(engine.n_local, np.int64)
    for lay in engine.layout:
        pop_of[lay.lo:lay.hi] = lay.index
    return pop_of
