"""The SONATA spike-file layout dtb writes and reads: file and part names, the ``sorting``
enum, the root attributes, ``spikes.h5`` over the per-rank parts (virtual datasets), and a
whole ``spikes.h5`` made in memory.  The layout itself is described in :mod:`dtb.io.sonata`,
which records spikes in it.

Public API: :data:`SPIKES`, :data:`PARTS_DIR`, :func:`part_name`, :func:`spill_name`,
:func:`sample_ids`, :class:`Slice`, :data:`SORTINGS`, :func:`set_sorting`,
:func:`read_sorting`, :func:`sortings`, :func:`master_image`, :func:`spikes_image`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SONATA_MAGIC = 0x0A7A
SONATA_VERSION = (0, 1)
SPIKES = "spikes.h5"
PARTS_DIR = "spikes"


def part_name(rank: int) -> str:
    """The part file of ``rank``, relative to the run directory."""
    return f"{PARTS_DIR}/rank-{rank:05d}.h5"


def spill_name(rank: int) -> str:
    """The spill file of ``rank``, relative to the run directory (hidden: not an output)."""
    return f"{PARTS_DIR}/.rank-{rank:05d}.spill"


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


SORTINGS = ("none", "by_id", "by_time")  # SONATA's ``sorting`` enum: uint8 codes 0, 1, 2


def sorting_dtype() -> np.dtype:
    """The HDF5 enum type of SONATA's ``sorting`` attribute (uint8: none 0, by_id 1,
    by_time 2), as libsonata reads it (a string attribute cannot be converted to it)."""

    return h5py.enum_dtype({name: i for i, name in enumerate(SORTINGS)}, basetype=np.uint8)


def set_sorting(group: Any, sorting: str) -> None:
    """Write ``sorting`` (one of SORTINGS) on an open h5py group, as the SONATA enum."""
    group.attrs.create("sorting", np.uint8(SORTINGS.index(sorting)), dtype=sorting_dtype())


def read_sorting(attrs: Any) -> str:
    """The ``sorting`` of a spikes group's attributes as a name: the SONATA enum, or the
    string that dtb wrote before it wrote the enum (and other writers may); ``"none"``
    when absent or unknown."""
    v = attrs.get("sorting")
    if v is None:
        return "none"
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return v if v in SORTINGS else "none"
    code = int(np.asarray(v).reshape(-1)[0])
    return SORTINGS[code] if 0 <= code < len(SORTINGS) else "none"


def sonata_root(f: Any) -> None:
    """Write the root attributes bmtk writes (``magic``, ``version``) on an open file."""
    f.attrs["magic"] = np.uint32(SONATA_MAGIC)
    f.attrs["version"] = np.array(SONATA_VERSION, dtype=np.uint32)


def master_image(names: Sequence[str], slices: Sequence[Slice],
                 part_counts: dict[int, dict[str, int]]) -> tuple[memoryview, dict[str, int]]:
    """``spikes.h5`` as bytes: per population, virtual datasets over every rank's part, one
    source segment per slice, slices in increasing id order.  ``part_counts`` is
    {rank: {population: spikes in that rank's part}}.  Returns the image and the spike
    count per population."""

    buf = io.BytesIO()
    totals: dict[str, int] = {}
    with h5py.File(buf, "w") as f:
        sonata_root(f)
        root = f.create_group("spikes")
        for p, name in enumerate(names):
            mine = sorted((s for s in slices if s.population == p and s.count > 0),
                          key=lambda s: s.first)
            firsts = [s.first for s in mine]
            ok = all(a.first + a.size <= b.first for a, b in zip(mine, mine[1:], strict=False))
            n = int(sum(s.count for s in mine))
            totals[name] = n
            g = root.create_group(name)
            set_sorting(g, "by_id" if ok and firsts == sorted(firsts) else "none")
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


def spikes_image(spikes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> memoryview:
    """A SONATA ``spikes.h5`` as bytes, made in memory (about 16 bytes per spike), from
    {population: (times in ms, node ids from 0)}: every population a group, empty ones
    included, sorted by (node id, time) (``sorting = "by_id"``)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["magic"] = np.uint32(SONATA_MAGIC)
        f.attrs["version"] = np.array(SONATA_VERSION, dtype=np.uint32)
        root = f.create_group("spikes")
        for name, (times, ids) in spikes.items():
            g = root.create_group(name)
            set_sorting(g, "by_id")
            times = np.asarray(times, dtype=np.float64)
            ids = np.asarray(ids).astype(np.uint64)
            order = np.lexsort((times, ids))
            ts = g.create_dataset("timestamps", data=times[order])
            ts.attrs["units"] = "ms"
            g.create_dataset("node_ids", data=ids[order])
    return buf.getbuffer()


def sortings(path: Path) -> dict[str, str]:
    """The ``sorting`` of every population in the SONATA file at ``path``."""
    with h5py.File(path, "r") as f:
        return {k: read_sorting(g.attrs) for k, g in f["spikes"].items()}
