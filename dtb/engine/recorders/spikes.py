"""The spike recorder of a run: ``dtb.io.sonata.SpikeRecorder`` (per-rank SONATA parts,
spilled to disk past a buffer) as a Recorder, writing ``spikes.h5`` at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dtb.engine.recorders.base import BaseRecorder, Writer
from dtb.io.sonata import PARTS_DIR, SpikeRecorder, gather_spikes_write


class SpikeOutput(SpikeRecorder, BaseRecorder):
    """Every spike (``sample`` None) or those of ``sample`` neurons per population, of this
    rank, kept in memory up to ``buffer_bytes`` and spilled beside the parts beyond.  Its
    checkpoint state is the SpikeRecorder's, under ``spikes/``."""

    key = "spikes"

    def __init__(self, engine: Any, run_dir: str | Path, sample: int | None,
                 buffer_bytes: int, comm: Any = None):
        self.run_dir = Path(run_dir)
        self.comm = comm
        super().__init__(engine, sample, spill_dir=self.run_dir / PARTS_DIR,
                         spill_bytes=buffer_bytes)

    def on_spikes(self, steps: np.ndarray, idx: np.ndarray) -> None:
        self.window(steps, idx)

    def finish(self, write: Writer) -> dict[str, Any]:
        """Write this rank's part, then (rank 0) ``spikes.h5`` (a collective)."""
        o = gather_spikes_write(self, self.run_dir, self.comm, write)
        return {} if o is None else {"spikes": o}
