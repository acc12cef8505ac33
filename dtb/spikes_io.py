"""Spikes in the SONATA layout, written in parallel without gathering them.

Every rank writes the spikes of the neurons it owns to its own part file
``spikes/rank-RRRRR.h5`` (itself a valid SONATA file), sorted by (node id, time).  Rank 0
gathers only a table of counts (one row per owned slice of a population) and writes
``spikes.h5``, whose datasets are HDF5 virtual datasets over the parts:

``/spikes/<population>/timestamps``  float64 (n,), ms, attribute ``units = "ms"``
``/spikes/<population>/node_ids``    uint64 (n,), numbered from 0 within the population

Each slice a rank owns is one source segment, and segments are laid out in increasing id
order, so ``spikes.h5`` is sorted by (node id, time) (``sorting = "by_id"``) whatever the
number of ranks and however a partition plan cuts the populations: h5py, bmtk and
``dtb.analysis`` read one file, and a 4-rank run's ``spikes.h5`` reads exactly as a
1-rank run's.  The root carries ``magic`` (uint32 0x0A7A) and ``version`` (uint32 [0, 1]) as
bmtk writes them.  The part files must stay beside ``spikes.h5`` (``spikes/``); the virtual
datasets refer to them by relative path.

Spike times: a spike emitted during step s is stamped (s + 1) * dt ms.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SONATA_MAGIC = 0x0A7A
SONATA_VERSION = (0, 1)
SPIKES = "spikes.h5"
PARTS_DIR = "spikes"


def part_name(rank: int) -> str:
    """The part file of ``rank``, relative to the run directory."""
    return f"{PARTS_DIR}/rank-{rank:05d}.h5"


def sample_ids(size: int, n: int) -> np.ndarray:
    """``n`` node ids spread evenly over a population of ``size`` (all of them if n >= size):
    floor(i * size / n) for i < n, int64, increasing.  A pure function of (size, n), so every
    rank agrees on the sample."""
    if n >= size:
        return np.arange(size, dtype=np.int64)
    return (np.arange(n, dtype=np.int64) * size) // n


@dataclass(frozen=True)
class Slice:
    """One contiguous slice of a population owned by one rank, as written in its part:
    node ids ``first .. first+size-1``; ``count`` spikes starting at ``offset`` in the part's
    datasets of that population."""

    population: int
    first: int
    size: int
    rank: int
    offset: int
    count: int


def _sonata_root(f: Any) -> None:
    f.attrs["magic"] = np.uint32(SONATA_MAGIC)
    f.attrs["version"] = np.array(SONATA_VERSION, dtype=np.uint32)


class SpikeRecorder:
    """Collects this rank's spikes through the engine's ``on_window`` hook.

    ``sample``: record every neuron (None) or ``sample`` neurons per population, chosen by
    ``sample_ids`` (node ids keep their population numbering).  ``window(steps, idx)`` takes
    step numbers and engine-local indices, int64 (k,); it only appends (the cost of recording
    every spike is a copy of the arrays the engine reports).
    """

    def __init__(self, engine: Any, sample: int | None = None):
        self.dt = float(engine.dt)
        self.rank = int(engine.rank)
        self.layout = list(engine.layout)
        self.names = [p.name for p in engine.network.populations]
        self.sizes = [p.size for p in engine.network.populations]
        self.sample = sample
        self._lo = np.array([lay.lo for lay in self.layout], np.int64)
        self._keep: np.ndarray | None = None
        if sample is not None:
            keep = np.zeros(engine.n_local, bool)
            for lay in self.layout:
                ids = sample_ids(lay.pop_size, sample)
                mine = ids[(ids >= lay.first) & (ids < lay.first + lay.size)]
                keep[lay.lo + mine - lay.first] = True
            self._keep = keep
        self._steps: list[np.ndarray] = []
        self._idx: list[np.ndarray] = []

    def window(self, steps: np.ndarray, idx: np.ndarray) -> None:
        """Record one window's spikes (steps, engine indices; int64 (k,))."""
        if len(idx) == 0:
            return
        if self._keep is not None:
            sel = self._keep[idx]
            steps, idx = steps[sel], idx[sel]
            if len(idx) == 0:
                return
        self._steps.append(np.array(steps, np.int64, copy=True))
        self._idx.append(np.array(idx, np.int64, copy=True))

    def count(self) -> int:
        """Spikes recorded so far on this rank."""
        return int(sum(len(s) for s in self._steps))

    def get_state(self) -> dict[str, np.ndarray]:
        """This rank's spikes so far (arrays only, for dtb.checkpoint): step numbers and
        engine-local indices, int64 (k,), in the order they were recorded."""
        steps = np.concatenate(self._steps) if self._steps else np.zeros(0, np.int64)
        idx = np.concatenate(self._idx) if self._idx else np.zeros(0, np.int64)
        self._steps, self._idx = [steps], [idx]  # concatenated once, kept that way
        return {"steps": steps.copy(), "idx": idx.copy()}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` (spikes recorded before a checkpoint)."""
        steps = np.asarray(d["steps"], np.int64).ravel()
        idx = np.asarray(d["idx"], np.int64).ravel()
        if len(steps) != len(idx):
            raise ValueError(f"spike recorder state: {len(steps)} steps and {len(idx)} "
                             "indices -- expected as many of each")
        n_local = max((lay.hi for lay in self.layout), default=0)
        if len(idx) and (idx.min() < 0 or idx.max() >= n_local):
            raise ValueError(f"spike recorder state: neuron indices {idx.min()}..{idx.max()} "
                             f"-- expected 0..{n_local - 1} (a state of another rank?)")
        self._steps, self._idx = [steps.copy()], [idx.copy()]

    def part_image(self) -> tuple[memoryview, list[Slice], dict[str, int]]:
        """This rank's part file as bytes (an in-memory HDF5 image), its slice table and its
        spike count per population.  Sorted by (population, node id, step)."""
        import h5py

        steps = np.concatenate(self._steps) if self._steps else np.zeros(0, np.int64)
        idx = np.concatenate(self._idx) if self._idx else np.zeros(0, np.int64)
        self._steps, self._idx = [steps], [idx]
        piece = np.searchsorted(self._lo, idx, side="right") - 1
        pop = np.array([lay.index for lay in self.layout], np.int64)[piece] if len(idx) else \
            np.zeros(0, np.int64)
        first = np.array([lay.first for lay in self.layout], np.int64)
        node = idx - self._lo[piece] + first[piece] if len(idx) else np.zeros(0, np.int64)
        order = np.lexsort((steps, node, pop))
        steps, node, pop = steps[order], node[order], pop[order]
        slices: list[Slice] = []
        counts: dict[str, int] = {}
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            _sonata_root(f)
            root = f.create_group("spikes")
            for p, name in enumerate(self.names):
                a, z = np.searchsorted(pop, [p, p + 1])
                nodes = node[a:z]
                g = root.create_group(name)
                g.attrs["sorting"] = "by_id"
                ts = g.create_dataset("timestamps", data=(steps[a:z] + 1) * self.dt)
                ts.attrs["units"] = "ms"
                g.create_dataset("node_ids", data=nodes.astype(np.uint64))
                counts[name] = int(z - a)
                for lay in sorted((q for q in self.layout if q.index == p),
                                  key=lambda q: q.first):
                    s0, s1 = np.searchsorted(nodes, [lay.first, lay.first + lay.size])
                    slices.append(Slice(p, lay.first, lay.size, self.rank, int(s0),
                                        int(s1 - s0)))
        return buf.getbuffer(), slices, counts


def master_image(names: Sequence[str], slices: Sequence[Slice],
                 part_counts: dict[int, dict[str, int]]) -> tuple[memoryview, dict[str, int]]:
    """``spikes.h5`` as bytes: per population, virtual datasets over every rank's part, one
    source segment per slice, slices in increasing id order.  ``part_counts`` is
    {rank: {population: spikes in that rank's part}}.  Returns the image and the spike
    count per population."""
    import h5py

    buf = io.BytesIO()
    totals: dict[str, int] = {}
    with h5py.File(buf, "w") as f:
        _sonata_root(f)
        root = f.create_group("spikes")
        for p, name in enumerate(names):
            mine = sorted((s for s in slices if s.population == p and s.count > 0),
                          key=lambda s: s.first)
            firsts = [s.first for s in mine]
            ok = all(a.first + a.size <= b.first for a, b in zip(mine, mine[1:], strict=False))
            n = int(sum(s.count for s in mine))
            totals[name] = n
            g = root.create_group(name)
            g.attrs["sorting"] = "by_id" if ok and firsts == sorted(firsts) else "none"
            for ds, dtype in (("timestamps", np.float64), ("node_ids", np.uint64)):
                if n == 0:
                    d = g.create_dataset(ds, shape=(0,), dtype=dtype)
                else:
                    layout = h5py.VirtualLayout(shape=(n,), dtype=dtype)
                    pos = 0
                    for s in mine:
                        total = part_counts[s.rank][name]
                        src = h5py.VirtualSource(part_name(s.rank), f"spikes/{name}/{ds}",
                                                 shape=(total,), dtype=dtype)
                        layout[pos:pos + s.count] = src[s.offset:s.offset + s.count]
                        pos += s.count
                    d = g.create_virtual_dataset(ds, layout)
                if ds == "timestamps":
                    d.attrs["units"] = "ms"
    return buf.getbuffer(), totals


def gather_spikes_write(rec: SpikeRecorder, run_dir: Path, comm: Any,
                        write: Any) -> dict[str, Any] | None:
    """Write this rank's part, then (rank 0) ``spikes.h5``; a collective on several ranks.

    ``write(path, image) -> (sha256, bytes)`` writes bytes atomically (rundir.write_atomic).
    Returns, on rank 0, the manifest's ``outputs["spikes"]`` entry (path, format, sha256,
    bytes, spikes per population, sorting and every part with its checksum); None elsewhere.
    """
    image, slices, counts = rec.part_image()
    path = Path(run_dir) / part_name(rec.rank)
    failure = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = write(path, image)
    except OSError as e:
        failure = e
        digest, size = "", 0
    finally:
        image.release()
    mine = {"path": part_name(rec.rank), "sha256": digest, "bytes": size, "counts": counts,
            "slices": slices, "error": None if failure is None else str(failure)}
    rows = comm.gather(mine, root=0) if comm is not None else [mine]
    if failure is not None:
        raise failure
    if rows is None:
        return None
    bad = [r for r in rows if r["error"]]
    if bad:
        from dtb.errors import OutputError

        raise OutputError(f"{Path(run_dir) / bad[0]['path']}: cannot write the spikes: "
                          f"{bad[0]['error']}")
    all_slices = [s for r in rows for s in r["slices"]]
    part_counts = {i: r["counts"] for i, r in enumerate(rows)}  # rows are in rank order
    img, totals = master_image(rec.names, all_slices, part_counts)
    try:
        m_digest, m_size = write(Path(run_dir) / SPIKES, img)
    finally:
        img.release()
    with_sorting = _sortings(Path(run_dir) / SPIKES)
    return {"path": SPIKES, "format": "sonata", "sha256": m_digest, "bytes": m_size,
            "populations": totals, "sorting": with_sorting,
            "sizes": dict(zip(rec.names, rec.sizes, strict=True)),
            "sample": rec.sample,
            "parts": [{"path": r["path"], "sha256": r["sha256"], "bytes": r["bytes"]}
                      for r in rows]}


def _sortings(path: Path) -> dict[str, str]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: str(g.attrs["sorting"]) for k, g in f["spikes"].items()}
