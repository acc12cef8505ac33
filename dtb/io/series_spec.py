"""The shape of a dense time series (:class:`ArraySpec`: rows, columns, coordinates, chunk
columns and which rank owns each) and a rank's buffer of its unflushed rows
(:class:`RowBuffer`); :class:`dtb.io.series.SeriesStore` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHUNK_ELEMENTS = 1 << 18  # about 1 MB of float32 per chunk
MAX_CHUNK_COLS = 512


@dataclass
class ArraySpec:
    """One dense array: ``n_rows`` x ``n_cols``, dims (time_dim, col_dim).

    ``time``: (n_rows,) ms coordinate; ``labels``: (n_cols,) column labels (str); ``attrs``
    written on the array (units, bin width, ...); ``scale``: (n_rows,) or None, per-row
    factor applied by the owner before writing (counts -> Hz); ``col_scale``: (n_cols,) or
    None, per-column factor; ``write``: False for a series that only feeds ``consumers``;
    ``direct``: True for a series its owners compute themselves and write with
    ``SeriesStore.write_block`` (BOLD), never exchanged.
    """

    name: str
    time_dim: str
    col_dim: str
    time: np.ndarray
    labels: Sequence[str]
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)
    row_scale: np.ndarray | None = None
    col_scale: np.ndarray | None = None
    extra_coords: dict[str, np.ndarray] = field(default_factory=dict)
    chunk_rows: int = 0
    chunk_cols: int = 0
    write: bool = True
    direct: bool = False

    @property
    def n_rows(self) -> int:
        return len(self.time)

    @property
    def n_cols(self) -> int:
        return len(self.labels)

    def __post_init__(self) -> None:
        if not self.chunk_cols:
            self.chunk_cols = max(1, min(self.n_cols, MAX_CHUNK_COLS))
        if not self.chunk_rows:
            self.chunk_rows = max(1, min(max(1, self.n_rows), CHUNK_ELEMENTS // self.chunk_cols))

    @property
    def n_chunk_cols(self) -> int:
        return max(1, math.ceil(self.n_cols / self.chunk_cols))

    def owner(self, chunk_col: int, ranks: int) -> int:
        """The rank that writes chunk column ``chunk_col`` (contiguous blocks of them)."""
        return (chunk_col * ranks) // self.n_chunk_cols

    def owned(self, rank: int, ranks: int) -> list[int]:
        """The chunk columns ``rank`` of ``ranks`` writes."""
        return [c for c in range(self.n_chunk_cols) if self.owner(c, ranks) == rank]


class RowBuffer:
    """This rank's not yet flushed rows of one array, for the columns it contributes to."""

    def __init__(self, spec: ArraySpec, cols: np.ndarray):
        self.spec = spec
        self.cols = np.asarray(cols, np.int64)  # global column ids, increasing
        self.row0 = 0
        self.data = np.zeros((0, len(self.cols)))

    def ensure(self, row_end: int) -> None:
        """Room for the rows up to ``row_end`` (exclusive)."""
        need = row_end - self.row0
        if need > self.data.shape[0]:
            grown = np.zeros((max(need, 2 * self.data.shape[0]), len(self.cols)))
            grown[:self.data.shape[0]] = self.data
            self.data = grown

    def take(self, upto: int) -> np.ndarray:
        """The rows from ``row0`` up to ``upto`` (exclusive), removed from the buffer."""
        n = upto - self.row0
        self.ensure(upto)
        out = self.data[:n].copy()
        self.data[:self.data.shape[0] - n] = self.data[n:]
        self.data[self.data.shape[0] - n:] = 0.0
        self.row0 = upto
        return out


Consumer = Callable[[int, int, np.ndarray, np.ndarray], None]
