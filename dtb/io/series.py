"""Dense time series (time x column) written in parallel, chunk by chunk, by their owners.

A run's dense outputs (population rates, per-unit rates, BOLD, membrane and synaptic
samples) are 2-D arrays ``(time, column)`` in one Zarr v3 store, ``series.zarr``, with
dimension names and coordinates (``time`` in ms per array, column labels) so that
``xarray.open_zarr`` returns a Dataset backed by dask arrays.  Chunks are
``(chunk_rows, chunk_cols)``: long in time, a block of columns wide (the shape that per-unit
analyses and functional connectivity read), Blosc/zstd compressed.

No rank gathers the data.  Chunk columns (blocks of columns) are assigned to ranks in
contiguous blocks; every rank accumulates its contribution to any column (units may be split
over ranks), and when whole time chunks are complete the contributions travel to the owner of
each chunk column (one ``alltoall`` of small per-owner packets per flush), which sums them and
writes its own chunks.  Rank 0 creates the store's metadata and coordinates first; the others
wait at a barrier before writing.  Sums of integer counts are exact, so the files do not depend
on the number of ranks.

On request the same arrays go to HDF5 as well: each rank appends its own chunk columns to
``series/rank-RRRRR.h5`` and rank 0 writes ``series.h5`` with virtual datasets over the parts
plus the coordinates (HDF5 dimension scales).

Checkpoints (``get_state``/``set_state``) hold the unflushed rows and write positions; a
resumed store (``resume=True``) reopens the Zarr arrays as they are (their written chunks
are complete, and any written after the checkpoint are written again with the same bytes)
and makes each HDF5 part anew from them, since a part file may be torn by a hard stop.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from dtb.errors import ArgumentError, OutputError
from dtb.io.fileio import digest_file
from dtb.io.series_spec import ArraySpec, Consumer, RowBuffer

# ArraySpec lives in dtb.io.series_spec and is re-exported: the recorders find it here
__all__ = ["SERIES_H5", "SERIES_PARTS", "SERIES_ZARR", "ArraySpec", "SeriesStore"]

SERIES_ZARR = "series.zarr"
SERIES_H5 = "series.h5"
SERIES_PARTS = "series"


class SeriesStore:
    """The dense arrays of one run, written in parallel (a collective object: construct,
    ``flush`` and ``close`` it on every rank, in the same order).

    ``cols[name]``: the global columns this rank contributes to; ``add``/``add_counts``
    accumulate into rows >= the flushed row; ``flush(rows_done)`` sends complete time
    chunks (all of them when ``final``) to their owners, which write them.
    """

    def __init__(self, run_dir: Path, specs: Sequence[ArraySpec], cols: dict[str, np.ndarray],
                 comm: Any = None, attrs: dict[str, Any] | None = None, hdf5: bool = False,
                 resume: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / SERIES_ZARR
        self.specs = {s.name: s for s in specs}
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.ranks = comm.Get_size() if comm is not None else 1
        self.buffers = {s.name: RowBuffer(s, cols.get(s.name, np.zeros(0, np.int64)))
                        for s in specs}
        self.consumers: dict[str, list[Consumer]] = {}
        self.hdf5 = hdf5
        self._written: list[str] = []  # files this rank wrote (relative to run_dir)
        self.rows_written: dict[str, int] = {}  # rows this rank wrote, per array (0..n-1)
        self._h5: h5py.File | None = None
        err = None
        if self.rank == 0 and not resume:
            try:
                self._create(attrs or {})
            except OSError as e:
                err = f"{self.path}: cannot create the series store: {e.strerror or e}"
        err = comm.bcast(err, root=0) if comm is not None else err
        if err:
            raise OutputError(err)
        self._arrays = {}

        for s in specs:
            if s.write:
                try:
                    self._arrays[s.name] = zarr.open_array(store=str(self.path / s.name),
                                                           mode="r+", zarr_format=3)
                except (OSError, ValueError, LookupError) as e:
                    # zarr names a missing array with its own errors (FileNotFoundError,
                    # ArrayNotFoundError, a ValueError on v2 metadata): one clear message
                    raise OutputError(f"{self.path / s.name}: cannot open the series array "
                                      f"for writing: {e}") from e
                if resume and self._arrays[s.name].shape != (s.n_rows, s.n_cols):
                    raise OutputError(f"{self.path / s.name}: shape "
                                      f"{self._arrays[s.name].shape} -- expected "
                                      f"{(s.n_rows, s.n_cols)} (the run's recording)")
        if hdf5 and any(s.write and s.owned(self.rank, self.ranks) for s in specs):
            self._open_part()

    # --- metadata (rank 0) ------------------------------------------------------------
    def _create(self, attrs: dict[str, Any]) -> None:
        data_vars, coords, enc = {}, {}, {}
        for s in self.specs.values():
            if not s.write:
                continue
            data_vars[s.name] = xr.Variable(
                (s.time_dim, s.col_dim),
                da.full((s.n_rows, s.n_cols), np.nan, dtype=s.dtype,
                        chunks=(s.chunk_rows, s.chunk_cols)), attrs=dict(s.attrs))
            coords[s.time_dim] = xr.Variable(s.time_dim, np.asarray(s.time, np.float64),
                                             attrs={"units": "ms"})
            coords[s.col_dim] = xr.Variable(s.col_dim, np.asarray(list(s.labels), object))
            for k, v in s.extra_coords.items():
                coords[k] = xr.Variable(s.col_dim, np.asarray(v))
            enc[s.name] = {"chunks": (s.chunk_rows, s.chunk_cols),
                           "compressors": [BloscCodec(cname="zstd", clevel=3,
                                                      shuffle="shuffle")],
                           "fill_value": np.nan}
        ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
        with warnings.catch_warnings():
            # consolidated metadata (every array's metadata in the root zarr.json) is what
            # xarray.open_zarr looks for first: without it, it warns and falls back.  It is
            # zarr-python's extension of Zarr v3, and says so in a warning: readers that do
            # not know it read the arrays' own zarr.json files.  The metadata is final here
            # (shapes and attributes never change), so it is written once, now.
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently "
                                    "not part")
            ds.to_zarr(str(self.path), mode="w", compute=False, zarr_format=3,
                       consolidated=True, encoding=enc)

    # --- accumulation -------------------------------------------------------------------
    def add_counts(self, name: str, rows: np.ndarray, lcols: np.ndarray) -> None:
        """Add one per (row, local column) pair (rows absolute, >= the flushed row)."""
        b = self.buffers[name]
        if len(rows) == 0:
            return
        hi = int(rows.max()) + 1
        b.ensure(hi)
        n_c = len(b.cols)
        flat = np.bincount((rows - b.row0) * n_c + lcols, minlength=(hi - b.row0) * n_c)
        b.data[:hi - b.row0] += flat.reshape(hi - b.row0, n_c)

    def set_row(self, name: str, row: int, values: np.ndarray) -> None:
        """Set one row of this rank's columns (samples)."""
        b = self.buffers[name]
        b.ensure(row + 1)
        b.data[row - b.row0] = values

    # --- flushing -----------------------------------------------------------------------
    def flush(self, rows_done: dict[str, int], final: bool = False) -> None:
        """Send and write, per array, the complete time chunks below ``rows_done[name]``
        (every row when ``final``).  A collective."""
        packets: list[list] = [[] for _ in range(self.ranks)]
        plan = {}
        for name, b in self.buffers.items():
            s = b.spec
            if s.direct:
                continue
            done = min(rows_done.get(name, b.row0), s.n_rows)
            upto = s.n_rows if final else (done // s.chunk_rows) * s.chunk_rows
            if upto <= b.row0:
                continue
            r0 = b.row0
            block = b.take(upto)
            plan[name] = (r0, upto)
            if len(b.cols):
                owners = np.array([s.owner(c, self.ranks) for c in b.cols // s.chunk_cols])
                for o in np.unique(owners):
                    sel = owners == o
                    packets[o].append((name, r0, upto, b.cols[sel], block[:, sel]))
        if not plan:
            return
        got = self.comm.alltoall(packets) if self.comm is not None else packets
        incoming: dict[str, list] = {}
        for src in got:
            for name, r0, r1, cols, block in src:
                incoming.setdefault(name, []).append((r0, r1, cols, block))
        for name, (r0, r1) in plan.items():
            self._write_owned(name, r0, r1, incoming.get(name, []))

    def _write_owned(self, name: str, r0: int, r1: int, parts: list) -> None:
        s = self.specs[name]
        for c in s.owned(self.rank, self.ranks):
            c0, c1 = c * s.chunk_cols, min(s.n_cols, (c + 1) * s.chunk_cols)
            acc = np.zeros((r1 - r0, c1 - c0))
            for p0, p1, cols, block in parts:
                assert (p0, p1) == (r0, r1)
                sel = (cols >= c0) & (cols < c1)
                if sel.any():
                    acc[:, cols[sel] - c0] += block[:, sel]
            for fn in self.consumers.get(name, []):
                fn(r0, r1, np.arange(c0, c1), acc)
            if not s.write:
                continue
            out = acc
            if s.row_scale is not None:
                out = out * s.row_scale[r0:r1, None]
            if s.col_scale is not None:
                out = out * s.col_scale[None, c0:c1]
            self.write_block(name, r0, r1, c0, c1, out)

    def write_block(self, name: str, r0: int, r1: int, c0: int, c1: int,
                    block: np.ndarray) -> None:
        """Write rows r0..r1-1, columns c0..c1-1 of array ``name`` (this rank's own chunks)."""
        s = self.specs[name]
        try:
            self._arrays[name][r0:r1, c0:c1] = block.astype(s.dtype)
            if self._h5 is not None:
                self._h5_write(name, r0, r1, c0, c1, block.astype(s.dtype))
        except OSError as e:
            raise OutputError(f"{self.path / name}: cannot write rows {r0}..{r1 - 1}, "
                              f"columns {c0}..{c1 - 1}: {e.strerror or e}") from e
        for tc in range(r0 // s.chunk_rows, math.ceil(r1 / s.chunk_rows)):
            key = f"{SERIES_ZARR}/{name}/c/{tc}/{c0 // s.chunk_cols}"
            if key not in self._written:
                self._written.append(key)
        self.rows_written[name] = max(self.rows_written.get(name, 0), r1)

    # --- checkpoints --------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """This rank's part of the store's progress, arrays only (for dtb.io.checkpoint): the
        buffered rows not yet flushed and their first row, per array; the rows written and
        the chunk files written (for the manifest).  Chunks already written stay on disk."""
        d: dict[str, np.ndarray] = {}
        for name, b in self.buffers.items():
            d[f"buffers/{name}/row0"] = np.array(b.row0, np.int64)
            d[f"buffers/{name}/data"] = b.data.copy()
            d[f"rows_written/{name}"] = np.array(self.rows_written.get(name, 0), np.int64)
        d["written"] = _text_array("\n".join(self._written))
        if self._h5 is not None:
            self._h5.flush()
        return d

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from ``get_state`` of a store of the same run on the same rank of the
        same number of ranks (opened with ``resume=True``).  The HDF5 part, if any, is made
        anew from the Zarr arrays' rows written so far: those chunks were complete before
        the checkpoint, the part file may have been torn by a hard stop."""
        for name, b in self.buffers.items():
            data = np.asarray(d[f"buffers/{name}/data"], float)
            if data.ndim != 2 or data.shape[1] != len(b.cols):
                raise ArgumentError(f"series state {name}: shape {data.shape} -- expected "
                                    f"(rows, {len(b.cols)}) (a state of another run or rank?)")
            b.row0 = int(d[f"buffers/{name}/row0"])
            b.data = data.copy()
            self.rows_written[name] = int(d[f"rows_written/{name}"])
        text = _array_text(d["written"])
        self._written = text.split("\n") if text else []
        if self._h5 is not None:
            self._copy_into_part()

    def _copy_into_part(self) -> None:
        """Rows 0..rows_written-1 of this rank's chunk columns, from Zarr into the HDF5 part,
        one time chunk at a time."""
        for name, n in self.rows_written.items():
            s = self.specs[name]
            if not s.write or n <= 0:
                continue
            arr = self._arrays[name]
            for c in s.owned(self.rank, self.ranks):
                c0, c1 = c * s.chunk_cols, min(s.n_cols, (c + 1) * s.chunk_cols)
                for r0 in range(0, n, s.chunk_rows):
                    r1 = min(n, r0 + s.chunk_rows)
                    self._h5_write(name, r0, r1, c0, c1, np.asarray(arr[r0:r1, c0:c1]))

    # --- HDF5 mirror ----------------------------------------------------------------------
    def _part(self, rank: int) -> str:
        return f"{SERIES_PARTS}/rank-{rank:05d}.h5"

    def _open_part(self) -> None:
        path = self.run_dir / self._part(self.rank)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            h5 = self._h5 = h5py.File(path, "w")
        except OSError as e:
            raise OutputError(f"{path}: cannot create the HDF5 series part: {e}") from e
        for s in self.specs.values():
            own = s.owned(self.rank, self.ranks)
            if not s.write or not own:
                continue
            width = sum(min(s.n_cols, (c + 1) * s.chunk_cols) - c * s.chunk_cols for c in own)
            h5.create_dataset(s.name, shape=(s.n_rows, width), dtype=s.dtype,
                              chunks=(max(1, min(s.n_rows, s.chunk_rows)),
                                      max(1, min(width, s.chunk_cols))),
                              compression="gzip", compression_opts=4, shuffle=True,
                              fillvalue=np.nan)

    def _h5_write(self, name: str, r0: int, r1: int, c0: int, c1: int,
                  block: np.ndarray) -> None:
        s = self.specs[name]
        off = 0
        for c in s.owned(self.rank, self.ranks):
            if c * s.chunk_cols == c0:
                break
            off += min(s.n_cols, (c + 1) * s.chunk_cols) - c * s.chunk_cols
        assert self._h5 is not None  # called only while the part is open
        self._h5[name][r0:r1, off:off + (c1 - c0)] = block

    def _write_h5_master(self) -> None:
        path = self.run_dir / SERIES_H5
        with h5py.File(path, "w") as f:
            for s in self.specs.values():
                if not s.write:
                    continue
                for dim, vals, units in ((s.time_dim, np.asarray(s.time, np.float64), "ms"),
                                         (s.col_dim, np.asarray(list(s.labels), object),
                                          None)):
                    if dim in f:
                        continue
                    if vals.dtype == object:
                        d = f.create_dataset(dim, data=vals.astype(str).astype(object),
                                             dtype=h5py.string_dtype())
                    else:
                        d = f.create_dataset(dim, data=vals)
                    if units:
                        d.attrs["units"] = units
                    d.make_scale(dim)
                layout = h5py.VirtualLayout(shape=(s.n_rows, s.n_cols), dtype=s.dtype)
                for r in range(self.ranks):
                    own = s.owned(r, self.ranks)
                    if not own:
                        continue
                    width = sum(min(s.n_cols, (c + 1) * s.chunk_cols) - c * s.chunk_cols
                                for c in own)
                    src = h5py.VirtualSource(self._part(r), s.name, shape=(s.n_rows, width),
                                             dtype=s.dtype)
                    off = 0
                    for c in own:
                        c0, c1 = c * s.chunk_cols, min(s.n_cols, (c + 1) * s.chunk_cols)
                        layout[:, c0:c1] = src[:, off:off + c1 - c0]
                        off += c1 - c0
                d = f.create_virtual_dataset(s.name, layout, fillvalue=np.nan)
                for k, v in s.attrs.items():
                    d.attrs[k] = v
                d.dims[0].attach_scale(f[s.time_dim])
                d.dims[1].attach_scale(f[s.col_dim])

    # --- closing ------------------------------------------------------------------------
    def close(self) -> dict[str, Any] | None:
        """Flush nothing more; hash this rank's files and (rank 0) describe the store.

        Returns on rank 0 the manifest entries {"series": ..., "series_h5": ...} with every
        file and its SHA-256; None elsewhere.  A collective."""
        files = []
        if self._h5 is not None:
            try:
                self._h5.close()
            except OSError as e:
                raise OutputError(f"{self.run_dir / self._part(self.rank)}: {e}") from e
            self._h5 = None
            files.append(self._part(self.rank))
        files += self._written
        mine = [(rel, *digest_file(self.run_dir / rel)) for rel in files
                if (self.run_dir / rel).is_file()]
        rows = self.comm.gather(mine, root=0) if self.comm is not None else [mine]
        if rows is None:
            return None
        if self.hdf5:
            try:
                self._write_h5_master()
            except OSError as e:
                raise OutputError(f"{self.run_dir / SERIES_H5}: cannot write: {e}") from e
        coords = self._coord_names()
        meta = sorted(str(p.relative_to(self.run_dir)) for p in self.path.rglob("*")
                      if p.is_file() and (p.name == "zarr.json"
                                          or p.relative_to(self.path).parts[0] in coords))
        chunk_rows = sorted(x for r in rows for x in r)
        listing = [(rel, *digest_file(self.run_dir / rel)) for rel in meta] + [
            x for x in chunk_rows if x[0].startswith(SERIES_ZARR)]
        out = {"series": {
            "path": SERIES_ZARR, "format": "zarr", "zarr_format": 3,
            "arrays": {s.name: {"dims": [s.time_dim, s.col_dim],
                                "shape": [s.n_rows, s.n_cols],
                                "chunks": [s.chunk_rows, s.chunk_cols], "dtype": s.dtype,
                                **{k: v for k, v in s.attrs.items()}}
                       for s in self.specs.values() if s.write},
            "files": [{"path": p, "sha256": h, "bytes": n} for p, h, n in sorted(listing)]}}
        if self.hdf5:
            h, n = digest_file(self.run_dir / SERIES_H5)
            out["series_h5"] = {"path": SERIES_H5, "format": "hdf5", "sha256": h, "bytes": n,
                                "parts": [{"path": p, "sha256": hh, "bytes": nn}
                                          for p, hh, nn in chunk_rows
                                          if p.startswith(SERIES_PARTS + "/")]}
        return out

    def _coord_names(self) -> set[str]:
        names = set()
        for s in self.specs.values():
            if s.write:
                names |= {s.time_dim, s.col_dim, *s.extra_coords}
        return names

    def abort(self) -> None:
        """Close an open HDF5 part after a failure (files are removed by the run directory)."""
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:  # noqa: BLE001 - best effort on the failure path
                pass
            self._h5 = None


def _text_array(text: str) -> np.ndarray:
    """A string as a uint8 array (HDF5 checkpoints hold arrays only)."""
    return np.frombuffer(text.encode(), np.uint8).copy()


def _array_text(a: np.ndarray) -> str:
    return np.asarray(a, np.uint8).tobytes().decode()
