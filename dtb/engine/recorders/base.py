"""What every recorder implements (:class:`Recorder`), its do-nothing defaults
(:class:`BaseRecorder`) and the steps a recording covers (:class:`Span`).

A recorder sees the run through a handful of calls from ``dtb.engine.recording.Recording``,
in this order: ``arrays()`` (the dense series it writes) and ``bind(store)`` once, when the
composite has made the one ``SeriesStore`` all of them share; then, during the run,
``on_spikes`` with the spikes of one or more windows, ``on_epoch`` at every epoch boundary,
``rows_done`` (how many rows of its series are complete) before the composite flushes the
store, and ``flush``; ``get_state``/``set_state`` for checkpoints; ``finish`` at the end (its
manifest outputs) or ``abort`` on a failure.  Steps are engine steps of ``dt`` ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dtb.io.series import ArraySpec, SeriesStore

# ``write(path, image) -> (sha256, bytes)``: writes bytes atomically (RunDirectory.write_atomic)
Writer = Callable[[Path, Any], tuple[str, int]]


@runtime_checkable
class Recorder(Protocol):
    """One observable of a run on this rank (a collective object under MPI: every rank makes
    the same recorders and calls them in the same order).

    ``key``: the group of its checkpoint state in the recording's (``spikes`` holds
    ``spikes/...``); None: its state names stand at the top (``pop_counts``) or it has none.
    """

    @property
    def key(self) -> str | None:
        """The group of its checkpoint state (None: none, or names at the top)."""
        ...

    def arrays(self) -> list[tuple[ArraySpec, np.ndarray]]:
        """The dense series it writes into the shared store, in order: each array's spec and
        the global columns (int64) this rank contributes to."""
        ...

    def bind(self, store: SeriesStore) -> None:
        """The store its ``arrays`` live in (called once, on every rank, if it has any)."""
        ...

    def on_spikes(self, steps: np.ndarray, idx: np.ndarray) -> None:
        """Spikes of one or more windows: step numbers and engine-local indices, int64 (k,)."""
        ...

    def on_epoch(self, step: int) -> None:
        """The simulation stands at engine step ``step`` between windows (an epoch end)."""
        ...

    def rows_done(self, step: int) -> dict[str, int]:
        """Rows of each of its series complete at engine step ``step`` (the store writes the
        whole time chunks below them)."""
        ...

    def flush(self, final: bool) -> None:
        """After the store's flush: write what it writes itself (a collective)."""
        ...

    def get_state(self) -> dict[str, np.ndarray]:
        """What it holds that the outputs do not yet (arrays only, names under ``key``)."""
        ...

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` of the same recorder of the same run and rank."""
        ...

    def finish(self, write: Writer) -> dict[str, Any]:
        """Write its last outputs (a collective); its entries of the manifest's ``outputs``
        on rank 0 ({} elsewhere, or when it writes no file of its own)."""
        ...

    def abort(self) -> None:
        """Release what it holds open after a failure."""
        ...


class BaseRecorder:
    """The protocol's methods doing nothing: a recorder overrides what it takes part in."""

    key: str | None = None

    def arrays(self) -> list[tuple[ArraySpec, np.ndarray]]:
        return []

    def bind(self, store: SeriesStore) -> None:
        pass

    def on_spikes(self, steps: np.ndarray, idx: np.ndarray) -> None:
        pass

    def on_epoch(self, step: int) -> None:
        pass

    def rows_done(self, step: int) -> dict[str, int]:
        return {}

    def flush(self, final: bool) -> None:
        pass

    def get_state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        pass

    def finish(self, write: Writer) -> dict[str, Any]:
        return {}

    def abort(self) -> None:
        pass


@dataclass(frozen=True)
class Span:
    """The steps one recording covers: ``n_steps`` steps of ``dt`` ms from engine step
    ``step0``; ``chunk_columns``: the widest chunk (columns) of a series."""

    step0: int
    n_steps: int
    dt: float
    chunk_columns: int

    def chunk_cols(self, n_cols: int) -> int:
        """Chunk columns of a series of n_cols columns."""
        return max(1, min(n_cols, self.chunk_columns))

    def time_axis(self, bin_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Bin start times (ms) and 1000 / bin width (ms; the last bin may be short)."""
        rows = max(1, math.ceil(self.n_steps / bin_steps))
        start = np.arange(rows) * bin_steps
        width = np.minimum(bin_steps, self.n_steps - start) * self.dt
        return (self.step0 + start) * self.dt, 1000.0 / width
