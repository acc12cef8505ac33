"""Spikes in the SONATA layout, written in parallel without gathering them.

Every rank writes the spikes of the neurons it owns to its own part file
``spikes/rank-RRRRR.h5`` (itself a valid SONATA file), sorted by (node id, time).  Rank 0
gathers only a table of counts (one row per owned slice of a population) and writes
``spikes.h5``, whose datasets are HDF5 virtual datasets over the parts:

``/spikes/<population>/timestamps``  float64 (n,), ms, attribute ``units = "ms"``
``/spikes/<population>/node_ids``    uint64 (n,), numbered from 0 within the population
``/spikes/<population>`` attribute ``sorting``: SONATA's HDF5 enum (uint8: none 0,
by_id 1, by_time 2), ``by_id`` here

Each slice a rank owns is one source segment, and segments are laid out in increasing id
order, so ``spikes.h5`` is sorted by (node id, time) (``sorting = "by_id"``) whatever the
number of ranks and however a partition plan cuts the populations: h5py, bmtk and
``dtb.analysis`` read one file, and a 4-rank run's ``spikes.h5`` reads exactly as a
1-rank run's.  The root carries ``magic`` (uint32 0x0A7A) and ``version`` (uint32 [0, 1]) as
bmtk writes them.  The part files must stay beside ``spikes.h5`` (``spikes/``); the virtual
datasets refer to them by relative path.

Spike times: a spike emitted during step s is stamped (s + 1) * dt ms.

Memory: a rank holds at most ``spill_bytes`` of spikes (16 bytes each) in memory; beyond
that it appends them to ``spikes/.rank-RRRRR.spill`` (raw int64 pairs: step, engine-local
index), so a long run's spikes cost disk, not memory, and checkpoints hold only the
unspilled tail plus the length and SHA-256 of every spilled chunk.  The part file is then
written by an external sort: ranges of neurons whose spikes fit the buffer, each read from
the spill, sorted and written in place.  The spill files are removed once the run's
manifest is complete (``RunDirectory.finish``).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dtb.errors import ArgumentError, OutputError
from dtb.io.fileio import write_h5_atomic
from dtb.io.sonata_layout import (
    PARTS_DIR,
    SORTINGS,
    SPIKES,
    Slice,
    master_image,
    part_name,
    read_sorting,
    sample_ids,
    set_sorting,
    sonata_root,
    sortings,
    spill_name,
)

# the layout's names, re-exported: dtb.io.sonata is where readers and the engine find them
__all__ = ["PARTS_DIR", "SORTINGS", "SPIKES", "SPILL_BYTES", "Slice", "SpikeRecorder",
           "gather_spikes_write", "part_name", "read_sorting", "sample_ids", "set_sorting",
           "spill_name"]

SPILL_BYTES = 64 << 20  # default in-memory spike buffer of a rank
_REC = 16  # bytes per spilled spike: int64 step, int64 engine index


class SpikeRecorder:
    """Collects this rank's spikes through the engine's ``on_window`` hook.

    ``sample``: record every neuron (None) or ``sample`` neurons per population, chosen by
    ``sample_ids`` (node ids keep their population numbering).  ``window(steps, idx)`` takes
    step numbers and engine-local indices, int64 (k,); it only appends (the cost of recording
    every spike is a copy of the arrays the engine reports).  ``spill_dir``: where to append
    the spikes once more than ``spill_bytes`` of them are in memory (None: keep them all in
    memory).
    """

    def __init__(self, engine: Any, sample: int | None = None,
                 spill_dir: str | os.PathLike[str] | None = None,
                 spill_bytes: int = SPILL_BYTES):
        self.dt = float(engine.dt)
        self.rank = int(engine.rank)
        self.layout = list(engine.layout)
        self.names = [p.name for p in engine.network.populations]
        self.sizes = [p.size for p in engine.network.populations]
        self.sample = sample
        self.n_local = int(engine.n_local)
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
        self._buffered = 0
        if spill_bytes < _REC:
            raise ArgumentError(f"spill_bytes {spill_bytes} -- expected at least {_REC}")
        self.spill_bytes = int(spill_bytes)
        self.spill_path = (None if spill_dir is None
                           else Path(spill_dir) / Path(spill_name(self.rank)).name)
        self._chunks: list[int] = []      # spikes per spilled chunk
        self._digests: list[bytes] = []   # SHA-256 of each spilled chunk

    @property
    def spilled(self) -> int:
        """Spikes appended to the spill file so far."""
        return int(sum(self._chunks))

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
        self._buffered += len(idx)
        if self.spill_path is not None and self._buffered * _REC >= self.spill_bytes:
            self._spill()

    def count(self) -> int:
        """Spikes recorded so far on this rank."""
        return self.spilled + self._buffered

    def _memory(self) -> tuple[np.ndarray, np.ndarray]:
        steps = np.concatenate(self._steps) if self._steps else np.zeros(0, np.int64)
        idx = np.concatenate(self._idx) if self._idx else np.zeros(0, np.int64)
        self._steps, self._idx = [steps], [idx]  # concatenated once, kept that way
        return steps, idx

    def _spill(self) -> None:
        """Append the in-memory spikes to the spill file (one chunk)."""

        steps, idx = self._memory()
        if not len(idx):
            return
        rec = np.empty((len(idx), 2), np.int64)
        rec[:, 0], rec[:, 1] = steps, idx
        data = rec.tobytes()
        assert self.spill_path is not None
        try:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spill_path, "ab") as f:
                f.write(data)
        except OSError as e:
            raise OutputError(f"{self.spill_path}: cannot append to the spike spill file: "
                              f"{e.strerror or e}") from e
        self._chunks.append(len(idx))
        self._digests.append(hashlib.sha256(data).digest())
        self._steps, self._idx, self._buffered = [], [], 0

    def _spill_records(self, start: int, stop: int) -> np.ndarray:
        """Spilled spikes start..stop-1 as an (k, 2) int64 array (step, index)."""
        assert self.spill_path is not None
        with open(self.spill_path, "rb") as f:
            f.seek(start * _REC)
            data = f.read((stop - start) * _REC)
        if len(data) != (stop - start) * _REC:
            raise ArgumentError(f"{self.spill_path}: {len(data)} bytes at offset {start * _REC}"
                                f" -- expected {(stop - start) * _REC} (truncated spill file)")
        return np.frombuffer(data, np.int64).reshape(-1, 2)

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every recorded spike, spilled ones first, in batches of at most the buffer's
        size: (steps, indices) int64."""
        per = max(1, self.spill_bytes // _REC)
        total = self.spilled
        for a in range(0, total, per):
            r = self._spill_records(a, min(total, a + per))
            yield r[:, 0], r[:, 1]
        steps, idx = self._memory()
        if len(idx):
            yield steps, idx

    # --- checkpoints ----------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """This rank's spikes so far (arrays only, for dtb.io.checkpoint): the in-memory ones
        (step numbers and engine-local indices, int64 (k,), in the order they were
        recorded) and the spill file's chunks (spikes per chunk (c,) int64, SHA-256 (c, 32)
        uint8), which is made durable first."""
        steps, idx = self._memory()
        if self.spill_path is not None and self._chunks:
            with open(self.spill_path, "rb+") as f:
                os.fsync(f.fileno())
        return {"steps": steps.copy(), "idx": idx.copy(),
                "spill_chunks": np.array(self._chunks, np.int64),
                "spill_sha256": np.frombuffer(b"".join(self._digests), np.uint8).reshape(
                    len(self._digests), 32)}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` (spikes recorded before a checkpoint): the spill
        file's chunks are checked against their SHA-256 and the file cut back to them (a run
        killed after the checkpoint may have appended more)."""
        steps = np.asarray(d["steps"], np.int64).ravel()
        idx = np.asarray(d["idx"], np.int64).ravel()
        if len(steps) != len(idx):
            raise ArgumentError(f"spike recorder state: {len(steps)} steps and {len(idx)} "
                                "indices -- expected as many of each")
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_local):
            raise ArgumentError(f"spike recorder state: neuron indices {idx.min()}..{idx.max()} "
                                f"-- expected 0..{self.n_local - 1} (a state of another rank?)")
        chunks = np.asarray(d.get("spill_chunks", np.zeros(0, np.int64)), np.int64).ravel()
        digests = np.asarray(d.get("spill_sha256", np.zeros((0, 32), np.uint8)), np.uint8)
        if digests.shape != (len(chunks), 32):
            raise ArgumentError(f"spike recorder state: spill_sha256 of shape {digests.shape} "
                                f"-- expected ({len(chunks)}, 32)")
        self._chunks = [int(c) for c in chunks]
        self._digests = [bytes(row) for row in digests]
        self._restore_spill()
        self._steps, self._idx, self._buffered = [steps.copy()], [idx.copy()], len(idx)

    def _restore_spill(self) -> None:
        total = self.spilled
        if self.spill_path is None:
            if total:
                raise ArgumentError(f"spike recorder state: {total} spilled spikes -- expected "
                                    "none (this recorder has no spill directory)")
            return
        have = self.spill_path.stat().st_size if self.spill_path.exists() else 0
        if have < total * _REC:
            raise ArgumentError(f"{self.spill_path}: {have} bytes -- expected at least "
                                f"{total * _REC} (the {total} spikes spilled before the "
                                "checkpoint); the spill file was truncated or removed")
        pos = 0
        for k, (n, want) in enumerate(zip(self._chunks, self._digests, strict=True)):
            got = hashlib.sha256(self._spill_records(pos, pos + n).tobytes()).digest()
            if got != want:
                raise ArgumentError(f"{self.spill_path}: chunk {k} (spikes {pos}..{pos + n - 1})"
                                    " does not match the checkpoint's SHA-256 -- the spill "
                                    "file was changed after the checkpoint")
            pos += n
        if have > total * _REC:
            with open(self.spill_path, "rb+") as f:
                f.truncate(total * _REC)
                os.fsync(f.fileno())

    # --- the part file ------------------------------------------------------------------
    def _order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The part's neuron order: key (n_local,) of every engine index in (population,
        node id) order, and the population and node id of each key (n_local,) int64."""
        pop = np.empty(self.n_local, np.int64)
        node = np.empty(self.n_local, np.int64)
        for lay in self.layout:
            pop[lay.lo:lay.hi] = lay.index
            node[lay.lo:lay.hi] = np.arange(lay.first, lay.first + lay.size)
        order = np.lexsort((node, pop))
        key = np.empty(self.n_local, np.int64)
        key[order] = np.arange(self.n_local)
        return key, pop[order], node[order]

    def _slices(self, pop_by_key: np.ndarray, node_by_key: np.ndarray,
                start: np.ndarray) -> tuple[list[Slice], dict[str, int]]:
        """The slice table and spikes per population from ``start`` (n_local + 1,): the
        position of each key's first spike in the part."""
        slices: list[Slice] = []
        counts: dict[str, int] = {}
        for p, name in enumerate(self.names):
            k0, k1 = np.searchsorted(pop_by_key, [p, p + 1])
            counts[name] = int(start[k1] - start[k0])
            nodes = node_by_key[k0:k1]
            for lay in sorted((q for q in self.layout if q.index == p), key=lambda q: q.first):
                a, z = k0 + np.searchsorted(nodes, [lay.first, lay.first + lay.size])
                slices.append(Slice(p, lay.first, lay.size, self.rank,
                                    int(start[a] - start[k0]), int(start[z] - start[a])))
        return slices, counts

    def part_image(self) -> tuple[memoryview, list[Slice], dict[str, int]]:
        """This rank's part file as bytes (an in-memory HDF5 image), its slice table and its
        spike count per population.  Sorted by (population, node id, step).  Only for
        spikes held in memory (nothing spilled): see ``write_part``."""

        if self.spilled:
            raise ArgumentError("part_image: spikes were spilled to disk -- use write_part")
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            slices, counts = self._write_sorted(f)
        return buf.getbuffer(), slices, counts

    def write_part(self, path: Path, write: Any) -> tuple[str, int, list[Slice],
                                                           dict[str, int]]:
        """Write this rank's part file to ``path``: (SHA-256, bytes, slice table, spikes
        per population).  Spikes in memory only: an in-memory image through ``write(path,
        image) -> (sha256, bytes)``.  Spilled spikes: an external sort into a temporary
        file beside ``path``, renamed when complete; memory stays within the buffer size
        (plus about 40 bytes per neuron of this rank: the sort order and counts)."""
        if not self.spilled:
            image, slices, counts = self.part_image()
            try:
                digest, size = write(path, image)
            finally:
                image.release()
            return digest, size, slices, counts

        # through dtb.io.fileio.LatchedFile: a full disk is an OutputError, not a crash in HDF5
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        digest, size, (slices, counts) = write_h5_atomic(path, self._write_sorted, "spikes",
                                                         tmp=tmp)
        return digest, size, slices, counts

    def _write_sorted(self, f: Any) -> tuple[list[Slice], dict[str, int]]:
        """Write every recorded spike into the open HDF5 file f, sorted by (population,
        node id, step): count the spikes per neuron, then, for ranges of neurons whose
        spikes fit the buffer (all of them at once when nothing was spilled), gather,
        sort and write each range in place.  Returns the slice table and the counts."""
        key, pop_by_key, node_by_key = self._order()
        per_key = np.zeros(self.n_local, np.int64)
        for _, idx in self._batches():
            per_key += np.bincount(key[idx], minlength=self.n_local)
        start = np.zeros(self.n_local + 1, np.int64)
        np.cumsum(per_key, out=start[1:])
        slices, counts = self._slices(pop_by_key, node_by_key, start)
        # key ranges whose spikes fit the buffer (a range holds at least one key)
        budget = max(1, self.spill_bytes // _REC if self.spilled else int(start[-1]))
        bounds = [0]
        while bounds[-1] < self.n_local:
            k0 = bounds[-1]
            k1 = int(np.searchsorted(start, start[k0] + budget, side="right")) - 1
            bounds.append(min(self.n_local, max(k1, k0 + 1)))
        pop_k0 = np.searchsorted(pop_by_key, np.arange(len(self.names) + 1))
        sonata_root(f)
        root = f.create_group("spikes")
        ds = []
        for name in self.names:
            g = root.create_group(name)
            set_sorting(g, "by_id")
            ts = g.create_dataset("timestamps", shape=(counts[name],), dtype=np.float64)
            ts.attrs["units"] = "ms"
            ds.append((ts, g.create_dataset("node_ids", shape=(counts[name],),
                                            dtype=np.uint64)))
        for k0, k1 in zip(bounds[:-1], bounds[1:], strict=True):
            if start[k1] == start[k0]:
                continue
            ks, ss = [], []
            for steps, idx in self._batches():
                k = key[idx]
                sel = (k >= k0) & (k < k1)
                ks.append(k[sel])
                ss.append(steps[sel])
            k, st = np.concatenate(ks), np.concatenate(ss)
            order = np.lexsort((st, k))
            k, st = k[order], st[order]
            for p in range(len(self.names)):  # the populations this range covers
                a, z = max(k0, pop_k0[p]), min(k1, pop_k0[p + 1])
                if a >= z or start[z] == start[a]:
                    continue
                i0, i1 = start[a] - start[k0], start[z] - start[k0]
                o0, o1 = start[a] - start[pop_k0[p]], start[z] - start[pop_k0[p]]
                ds[p][0][o0:o1] = (st[i0:i1] + 1) * self.dt
                ds[p][1][o0:o1] = node_by_key[k[i0:i1]].astype(np.uint64)
        return slices, counts


def gather_spikes_write(rec: SpikeRecorder, run_dir: Path, comm: Any,
                        write: Any) -> dict[str, Any] | None:
    """Write this rank's part, then (rank 0) ``spikes.h5``; a collective on several ranks.

    ``write(path, image) -> (sha256, bytes)`` writes bytes atomically (rundir.write_atomic).
    Returns, on rank 0, the manifest's ``outputs["spikes"]`` entry (path, format, sha256,
    bytes, spikes per population, sorting and every part with its checksum); None elsewhere.
    """
    path = Path(run_dir) / part_name(rec.rank)
    failure = None
    slices: list[Slice] = []
    counts: dict[str, int] = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size, slices, counts = rec.write_part(path, write)
    except (OSError, ValueError) as e:  # reported after the gather: no rank is left waiting
        failure = e
        digest, size = "", 0
    mine: dict[str, Any] = {"path": part_name(rec.rank), "sha256": digest, "bytes": size,
                            "counts": counts, "slices": slices,
                            "error": None if failure is None else str(failure)}
    rows = comm.gather(mine, root=0) if comm is not None else [mine]
    if failure is not None:
        raise failure
    if rows is None:
        return None
    bad = [r for r in rows if r["error"]]
    if bad:
        raise OutputError(f"{Path(run_dir) / bad[0]['path']}: cannot write the spikes: "
                          f"{bad[0]['error']}")
    all_slices = [s for r in rows for s in r["slices"]]
    part_counts = {i: r["counts"] for i, r in enumerate(rows)}  # rows are in rank order
    img, totals = master_image(rec.names, all_slices, part_counts)
    try:
        m_digest, m_size = write(Path(run_dir) / SPIKES, img)
    finally:
        img.release()
    with_sorting = sortings(Path(run_dir) / SPIKES)
    return {"path": SPIKES, "format": "sonata", "sha256": m_digest, "bytes": m_size,
            "populations": totals, "sorting": with_sorting,
            "sizes": dict(zip(rec.names, rec.sizes, strict=True)),
            "sample": rec.sample,
            "parts": [{"path": r["path"], "sha256": r["sha256"], "bytes": r["bytes"]}
                      for r in rows]}
