"""Readers for the imaging inputs a personalized brain is built from.

- sMRI: an atlas (integer label volume) and a grey-matter map on the same voxel grid
  (:func:`read_atlas`, then :func:`regions_from_atlas`), or a per-region volume table
  (:func:`read_region_table`) where only region-level data exist.
- DTI: structural-connectivity weights and tract lengths (:func:`read_connectome`, from
  CSV/TSV/whitespace text or ``.npy``; :func:`read_tvb_zip` for TVB connectivity zips).
- PET (optional): a per-region scaling (:func:`read_pet`).

Region identity is always explicit: integer atlas labels (a header row or a label list, see
:func:`read_label_list`) or region names (TVB zips, name headers).  :func:`match` pairs two
region sets and never falls back to position.  Every problem with an input raises
:class:`dtb.errors.InputError` naming the file, the field, the offending value and what was
expected; no raw numpy, nibabel or zipfile exception escapes for bad input.

Units: lengths and coordinates in mm (the image's world space, usually scanner RAS or MNI),
volumes in mm^3, areas in mm^2.  Matrices are kept as read: entry ``[i, j]`` is row ``i``,
column ``j`` of the file (diffusion matrices are symmetric, so the direction convention rarely
matters; the brain builder documents the one it uses).  Label 0 is the background everywhere.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import InputError

PathLike = str | os.PathLike

MAX_LISTED = 10          # at most this many missing labels/names are listed in a message
GM_MAX = 1.0001          # grey-matter values up to this are accepted (then clipped to 1)
GRID_ATOL = 1e-3         # affines closer than this (mm) describe the same grid
LABEL_MAX = int(np.iinfo(np.int32).max)   # atlas labels are stored as int32
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


class _Text(str):
    """A value shown without quotes in an InputError message ("no such file", "[1, 2]")."""

    def __repr__(self) -> str:
        return str(self)


def _listed(items: Iterable[Any]) -> _Text:
    """Show up to MAX_LISTED labels or names, with the total when there are more."""
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:MAX_LISTED])
    more = f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else ""
    return _Text(f"[{shown}{more}]")


def _plain(x: Any) -> int | float | str:
    """A numpy scalar as a plain Python value for messages (float32 1.2 shows as 1.2)."""
    if isinstance(x, np.floating):
        return float(str(x))
    return x.item() if isinstance(x, np.generic) else x


def _why(e: BaseException) -> _Text:
    """An exception from a library as one line: 'unreadable (EOFError: ...)'."""
    return _Text(f"unreadable ({type(e).__name__}: {' '.join(str(e).split())})")


# --------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class Provenance:
    """Where one input came from: its role, the path as the user gave it, sha256 and size."""

    role: str
    path: str
    sha256: str
    bytes: int


def _existing_file(path: PathLike, role: str) -> Path:
    """The path as a Path, or InputError when it does not name a regular file."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, role, _Text("no such file"), "an existing file")
    if not p.is_file():
        raise InputError(path, role, _Text("not a regular file"), "a file, not a directory")
    return p


def provenance(role: str, path: PathLike) -> Provenance:
    """Hash a file (sha256, read in 1 MiB chunks) and record its size in bytes."""
    p = _existing_file(path, role)
    digest, size = hashlib.sha256(), 0
    try:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise InputError(path, role, _Text(f"unreadable ({e.strerror})"), "a readable file") from e
    return Provenance(role, str(path), digest.hexdigest(), size)


# --------------------------------------------------------------------------- images


@dataclass
class AtlasImage:
    """An atlas and its grey-matter map on one voxel grid.

    labels: (X, Y, Z) int32 region label per voxel, 0 = background.
    gm: (X, Y, Z) float32 grey-matter probability or volume fraction in [0, 1].
    affine: (4, 4) float64 voxel index -> mm.
    voxel_volume_mm3: volume of one voxel (``|det|`` of the affine's 3x3 block), mm^3.
    provenance: roles "atlas" and, when a map was given, "grey_matter".
    """

    labels: np.ndarray
    gm: np.ndarray
    affine: np.ndarray
    voxel_volume_mm3: float
    provenance: list[Provenance]


def _nibabel():
    """Import nibabel, with an install hint when it is missing."""
    try:
        import nibabel
    except ImportError as e:  # pragma: no cover - nibabel is a dependency
        raise ImportError("reading NIfTI images needs nibabel: pip install nibabel") from e
    return nibabel


def _load_volume(path: PathLike, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D image with nibabel: (data (X, Y, Z), affine (4, 4) voxel -> mm).

    Trailing axes of length 1 (a 4-D image holding one volume) are dropped.
    """
    p = _existing_file(path, role)
    nib = _nibabel()
    try:
        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
        affine = np.array(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel, gzip, zlib and numpy all raise their own types
        raise InputError(path, role, _why(e),
                         "a complete image readable by nibabel (.nii, .nii.gz, .mgz)") from e
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, "shape", tuple(data.shape),
                         "a 3-D volume (X, Y, Z), or 4-D holding a single volume")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(path, "affine", _Text(str(affine.tolist())), "a finite 4x4 affine")
    if data.dtype.kind not in "biuf":
        raise InputError(path, "data type", str(data.dtype), "a real numeric image")
    return data, affine


def _first_voxel(mask: np.ndarray) -> tuple[int, ...]:
    """Index (i, j, k) of the first True voxel of a boolean volume (C order)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _as_labels(path: PathLike, data: np.ndarray) -> np.ndarray:
    """Validate a label volume and return it as int32 (integral values, >= 0, some > 0)."""
    if data.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(data) | (data != np.round(data))
        if bad.any():
            v = _first_voxel(bad)
            raise InputError(path, f"voxel {v}", _plain(data[v]),
                             "integer region labels (a parcellation, not a probability map)")
    bad = data < 0
    if bad.any():
        v = _first_voxel(bad)
        raise InputError(path, f"voxel {v}", _plain(data[v]), "labels >= 0 (0 = background)")
    top = data.max()
    if top > LABEL_MAX:
        v = _first_voxel(data == top)
        raise InputError(path, f"voxel {v}", _plain(top), f"labels <= {LABEL_MAX}")
    if top == 0:
        raise InputError(path, "labels", _Text("all voxels 0"), "at least one labelled voxel")
    return data.astype(np.int32)


def _as_gm(path: PathLike, data: np.ndarray) -> np.ndarray:
    """Validate a grey-matter map (finite, 0 <= gm <= GM_MAX) and return it float32 in [0, 1]."""
    gm = data.astype(np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(gm) | (gm < 0) | (gm > GM_MAX)
    if bad.any():
        v = _first_voxel(bad)
        raise InputError(path, f"voxel {v}", _plain(gm[v]),
                         "a grey-matter probability or volume fraction in [0, 1]")
    return np.clip(gm, 0.0, 1.0)


def _check_same_grid(path: PathLike, shape: tuple, affine: np.ndarray,
                     ref_path: str, ref_shape: tuple, ref_affine: np.ndarray) -> None:
    """InputError unless (shape, affine) equal the reference grid (affine within GRID_ATOL)."""
    if tuple(shape) != tuple(ref_shape):
        raise InputError(path, "shape", tuple(shape),
                         f"the grid of {ref_path}: shape {tuple(ref_shape)} "
                         "(resample onto the atlas grid first)")
    if not np.allclose(affine, ref_affine, rtol=0.0, atol=GRID_ATOL):
        i, j = np.unravel_index(int(np.argmax(np.abs(affine - ref_affine))), (4, 4))
        raise InputError(path, f"affine[{i}, {j}]", float(affine[i, j]),
                         f"{float(ref_affine[i, j])} as in {ref_path} (the same grid within "
                         f"{GRID_ATOL} mm; resample onto the atlas grid first)")


def _voxel_volume(path: PathLike, affine: np.ndarray) -> float:
    """Volume of one voxel in mm^3 from the affine; InputError when degenerate."""
    vol = abs(float(np.linalg.det(affine[:3, :3])))
    if not np.isfinite(vol) or vol <= 0.0:
        raise InputError(path, "affine", _Text(str(affine.tolist())),
                         "a voxel-to-mm affine with non-zero voxel volume")
    return vol


def read_atlas(atlas_path: PathLike, gm_path: PathLike | None = None) -> AtlasImage:
    """Read an atlas (parcellation label volume) and its grey-matter map.

    atlas_path: integer labels per voxel, 0 = background (float images must hold whole numbers).
    gm_path: grey-matter probability or volume fraction on the same grid (shape and affine
    within GRID_ATOL mm).  None: every labelled voxel counts as fully grey matter (warns).
    Values up to GM_MAX are accepted for rounding and clipped to 1; Jacobian-modulated maps
    (values > 1) are rejected.
    """
    prov = [provenance("atlas", atlas_path)]
    data, affine = _load_volume(atlas_path, "atlas")
    labels = _as_labels(atlas_path, data)
    voxel_volume = _voxel_volume(atlas_path, affine)
    if gm_path is None:
        warnings.warn(f"{atlas_path}: no grey-matter map given; every labelled voxel counts as "
                      "fully grey matter (region volume = voxels x voxel volume)",
                      UserWarning, stacklevel=2)
        gm = (labels > 0).astype(np.float32)
    else:
        prov.append(provenance("grey_matter", gm_path))
        gm_data, gm_affine = _load_volume(gm_path, "grey_matter")
        _check_same_grid(gm_path, gm_data.shape, gm_affine, str(atlas_path), labels.shape, affine)
        gm = _as_gm(gm_path, gm_data)
    return AtlasImage(labels, gm, affine, voxel_volume, prov)


# --------------------------------------------------------------------------- region tables


@dataclass
class RegionTable:
    """One row per region.

    labels: (K,) int64 atlas labels (> 0).  names: K region names (str(label) when unnamed).
    volumes_mm3: (K,) float64 grey-matter volume per region, > 0.
    centres_mm: (K, 3) float64 or None.  cortical: (K,) bool or None.
    """

    labels: np.ndarray
    names: list[str]
    volumes_mm3: np.ndarray
    centres_mm: np.ndarray | None
    cortical: np.ndarray | None
    provenance: list[Provenance]


def _role_path(prov: list[Provenance], role: str, default: str) -> str:
    """The path recorded for a role, or default when there is none."""
    return next((p.path for p in prov if p.role == role), default)


def regions_from_atlas(img: AtlasImage, names: Mapping[int, str] | None = None) -> RegionTable:
    """Per-region grey-matter volume and centre from an atlas image.

    volume (mm^3) = sum of gm over the label's voxels x voxel volume; centre (mm) = the
    gm-weighted centroid of the voxel indices mapped through the affine.  names: label -> name
    (e.g. from :func:`read_label_list`); labels without one are named str(label).
    InputError for a label whose grey-matter volume is zero (an empty region).
    """
    flat = img.labels.reshape(-1)
    inside = np.flatnonzero(flat > 0)
    labels, inv = np.unique(flat[inside], return_inverse=True)
    w = img.gm.reshape(-1)[inside].astype(np.float64)
    k = len(labels)
    gm_sum = np.bincount(inv, weights=w, minlength=k)
    empty = np.flatnonzero(gm_sum <= 0.0)
    if len(empty):
        lab = int(labels[empty[0]])
        n = int(np.count_nonzero(inv == empty[0]))
        where = _role_path(img.provenance, "grey_matter",
                           _role_path(img.provenance, "atlas", "<atlas>"))
        raise InputError(where, f"label {lab}", _Text(f"{n} voxels, grey-matter volume 0"),
                         "grey matter > 0 in every atlas region (an empty region cannot hold "
                         "neurons)")
    ijk = np.unravel_index(inside, img.labels.shape)
    centre_vox = np.stack([np.bincount(inv, weights=w * ijk[a], minlength=k) / gm_sum
                           for a in range(3)], axis=1)
    centres = centre_vox @ img.affine[:3, :3].T + img.affine[:3, 3]
    names = names or {}
    return RegionTable(labels=labels.astype(np.int64),
                       names=[str(names.get(int(x), int(x))) for x in labels],
                       volumes_mm3=gm_sum * img.voxel_volume_mm3, centres_mm=centres,
                       cortical=None, provenance=list(img.provenance))


# --------------------------------------------------------------------------- text tables

Rows = list[tuple[int, list[str]]]     # (1-based line number, cells)


def _decode(path: str, role: str, raw: bytes) -> str:
    """Bytes as text (UTF-8, BOM dropped); InputError for binary or other encodings."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, role, _Text(f"undecodable byte at offset {e.start}"),
                         "a UTF-8 text file") from e


def _read_bytes(path: PathLike, role: str) -> bytes:
    """The whole file; InputError when it is missing or unreadable."""
    p = _existing_file(path, role)
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputError(path, role, _Text(f"unreadable ({e.strerror})"), "a readable file") from e


def _split_rows(text: str) -> Rows:
    """Non-blank, non-comment ('#') lines split into stripped cells.

    The separator is chosen from the first such line: tab, else comma (CSV quoting honoured),
    else runs of whitespace.
    """
    lines = [(n, s) for n, s in enumerate(text.splitlines(), 1)
             if s.strip() and not s.lstrip().startswith("#")]
    if not lines:
        return []
    first = lines[0][1]
    if "\t" in first:
        return [(n, [c.strip() for c in s.split("\t")]) for n, s in lines]
    if "," in first:
        return [(n, [c.strip() for c in next(csv.reader([s]))]) for n, s in lines]
    return [(n, s.split()) for n, s in lines]


def _whitespace_rows(text: str) -> Rows:
    """Non-blank, non-comment lines split on runs of whitespace (TVB text files)."""
    return [(n, s.split()) for n, s in enumerate(text.splitlines(), 1)
            if s.strip() and not s.lstrip().startswith("#")]


def _read_rows(path: PathLike, role: str) -> Rows:
    """Rows of a text table file; InputError when it holds no data."""
    rows = _split_rows(_decode(str(path), role, _read_bytes(path, role)))
    if not rows:
        raise InputError(path, role, _Text("empty file"), "at least one row of data")
    return rows


def _is_number(cell: str) -> bool:
    """Whether a cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_int(cell: str) -> bool:
    """Whether a cell is a whole number written without a decimal point."""
    return bool(_INT_RE.match(cell))


def _numeric_rows(path: str, role: str, rows: Rows) -> np.ndarray:
    """Cells as a (rows, columns) float64 array; InputError at the first ragged row or bad cell."""
    n = len(rows[0][1])
    for line, cells in rows:
        if len(cells) != n:
            raise InputError(path, f"line {line}", _Text(f"{len(cells)} values"),
                             f"{n} values per row, like the first row")
    try:
        return np.array([cells for _, cells in rows], dtype=np.float64)
    except ValueError:
        pass
    for line, cells in rows:          # slow path: find the cell numpy could not parse
        for j, cell in enumerate(cells):
            if not _is_number(cell):
                raise InputError(path, f"line {line}, column {j + 1}", cell, "a number")
    return np.array([[float(c) for c in cells] for _, cells in rows], dtype=np.float64)


@dataclass
class _Table:
    """A text table with a header row: lower-cased column names, rows and their line numbers."""

    path: str
    header: list[str]
    rows: Rows

    @classmethod
    def read(cls, path: PathLike, role: str, rows: Rows | None = None) -> _Table:
        """Parse a header table; every row must have as many cells as the header."""
        rows = _read_rows(path, role) if rows is None else rows
        header = [c.strip().lower() for c in rows[0][1]]
        dup = next((c for c in header if header.count(c) > 1), None)
        if dup is not None:
            raise InputError(path, f"line {rows[0][0]}: header", dup, "distinct column names")
        for line, cells in rows[1:]:
            if len(cells) != len(header):
                raise InputError(path, f"line {line}", _Text(f"{len(cells)} cells"),
                                 f"{len(header)} cells, one per header column {header}")
        if len(rows) < 2:
            raise InputError(path, role, _Text("a header and no rows"), "one row per region")
        return cls(str(path), header, rows[1:])

    def pick(self, *names: str, required: str | None = None) -> str | None:
        """The first of names present as a column; InputError (naming `required`) when absent."""
        found = [n for n in names if n in self.header]
        if len(found) > 1:
            raise InputError(self.path, "header", _listed(found), "only one of these columns")
        if not found and required:
            raise InputError(self.path, "header", _listed(self.header),
                             f"a {required} column")
        return found[0] if found else None

    def cells(self, col: str) -> list[tuple[int, str]]:
        """(line, cell) of one column."""
        j = self.header.index(col)
        return [(line, cells[j]) for line, cells in self.rows]

    def numbers(self, col: str, expected: str, ok) -> np.ndarray:
        """A column as float64; InputError at the first cell that is not a number or fails ok."""
        out = []
        for line, cell in self.cells(col):
            try:
                v = float(cell)
            except ValueError:
                v = None
            if v is None or not np.isfinite(v) or not ok(v):
                raise InputError(self.path, f"line {line}: column '{col}'", cell, expected)
            out.append(v)
        return np.array(out, dtype=np.float64)

    def labels(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        """Region labels of a column: (labels (K,) int64, keep (rows,) bool).

        Label 0 (the background) rows are dropped (keep False); labels must be distinct
        positive integers.
        """
        out, keep, seen = [], [], {}
        for line, cell in self.cells(col):
            lab = _parse_label(self.path, f"line {line}: column '{col}'", cell)
            keep.append(lab != 0)
            if lab == 0:
                continue
            if lab in seen:
                raise InputError(self.path, f"line {line}: column '{col}'", lab,
                                 f"each region label once (also on line {seen[lab]})")
            seen[lab] = line
            out.append(lab)
        if not out:
            raise InputError(self.path, col, _Text("no labels other than 0"), "region labels > 0")
        return np.array(out, dtype=np.int64), np.array(keep, dtype=bool)


def _parse_label(path: str, field: str, cell: str) -> int:
    """A region label: a whole number >= 0 ("17" or "17.0")."""
    try:
        v = float(cell)
    except ValueError:
        v = float("nan")
    if not np.isfinite(v) or v != int(v) or v < 0 or v > LABEL_MAX:
        raise InputError(path, field, cell, f"a region label: a whole number 0..{LABEL_MAX}")
    return int(v)


def _parse_bool(path: str, field: str, cell: str) -> bool:
    """1/0, true/false, yes/no (any case)."""
    c = cell.strip().lower()
    if c in _TRUE or c in _FALSE:
        return c in _TRUE
    try:
        v = float(c)
    except ValueError:
        v = None
    if v in (0.0, 1.0):
        return v == 1.0
    raise InputError(path, field, cell, "1/0, true/false or yes/no")


def read_region_table(path: PathLike) -> RegionTable:
    """Per-region data as a CSV/TSV table with a header row.

    Columns (any case): 'label' (required, distinct integers > 0; rows with label 0 are the
    background and skipped), 'volume' or 'volume_mm3' (required, mm^3, > 0), optional 'name',
    'x', 'y', 'z' (mm, all three or none) and 'cortical' (1/0, true/false, yes/no).
    """
    prov = [provenance("region_table", path)]
    t = _Table.read(path, "region_table")
    labels, keep = t.labels(t.pick("label", required="'label'"))
    vcol = t.pick("volume", "volume_mm3", required="'volume' (mm^3)")
    volumes = t.numbers(vcol, "a region volume > 0 mm^3 (an empty region cannot hold neurons)",
                        lambda v: v > 0)
    ncol = t.pick("name")
    names = ([c for _, c in t.cells(ncol)] if ncol else [str(x) for x in labels])
    xyz = [c for c in ("x", "y", "z") if c in t.header]
    centres = None
    if xyz and len(xyz) != 3:
        raise InputError(path, "header", _listed(xyz), "all of 'x', 'y', 'z' or none")
    if xyz:
        centres = np.stack([t.numbers(c, "a coordinate in mm", lambda v: True) for c in xyz],
                           axis=1)[keep]
    ccol = t.pick("cortical")
    cortical = (np.array([_parse_bool(t.path, f"line {ln}: column 'cortical'", c)
                          for ln, c in t.cells(ccol)])[keep] if ccol else None)
    if ncol:
        names = [n for n, k in zip(names, keep, strict=True) if k]
    return RegionTable(labels, names, volumes[keep], centres, cortical, prov)


def _read_label_file(path: PathLike) -> tuple[np.ndarray, list[str] | None]:
    """Labels (K,) int64 and names (or None when the file has none); see read_label_list."""
    rows = _read_rows(path, "labels")
    if not _is_number(rows[0][1][0]):
        t = _Table.read(path, "labels", rows)
        labels, keep = t.labels(t.pick("label", "index", required="'label'"))
        ncol = t.pick("name")
        names = [c for (_, c), k in zip(t.cells(ncol), keep, strict=True) if k] if ncol else None
        return labels, names
    out, names, seen = [], [], {}
    for line, cells in rows:
        lab = _parse_label(str(path), f"line {line}", cells[0])
        name = cells[1] if len(cells) > 1 else None
        if name is not None and _is_number(name):
            raise InputError(path, f"line {line}", _Text(" ".join(cells)),
                             "one label per line, or 'label name ...' lines (a lookup table)")
        if lab == 0 and name is not None:
            continue          # the lookup table's background entry ("0 Unknown")
        if lab == 0:
            raise InputError(path, f"line {line}", 0, "region labels > 0 (0 is the background)")
        if lab in seen:
            first_line, first_name = seen[lab]
            if name is not None and name == first_name:
                continue      # an alias line (MRtrix fs_default.txt: Left-Thalamus[-Proper])
            raise InputError(path, f"line {line}", lab,
                             f"each region label once (also on line {first_line})")
        seen[lab] = (line, name)
        out.append(lab)
        names.append(name)
    if not out:
        raise InputError(path, "labels", _Text("no labels other than 0"), "region labels > 0")
    named = any(n is not None for n in names)
    return (np.array(out, dtype=np.int64),
            [n if n is not None else str(lab) for n, lab in zip(names, out, strict=True)]
            if named else None)


def read_label_list(path: PathLike) -> tuple[np.ndarray, list[str]]:
    """Region labels in file order, and their names.

    Accepted: one label per line; a CSV/TSV table with a 'label' (or BIDS 'index') column and
    an optional 'name' column; a lookup table of "label name ..." lines (FreeSurfer LUT
    "17 Left-Hippocampus 220 216 20 0"; MRtrix fs_default.txt, whose second column, the short
    name such as "L.HI", is taken), '#' comments allowed.  Label 0 (the background) rows of a
    table or lookup table are skipped; a repeated lookup-table label with the same name is an
    alias line and skipped.  Returns labels (K,) int64 in file order and K names (str(label)
    where the file gives none).
    """
    labels, names = _read_label_file(path)
    return labels, names if names is not None else [str(x) for x in labels]


# --------------------------------------------------------------------------- matrices


@dataclass
class LabelledMatrix:
    """A region x region matrix and the identity of its rows/columns.

    labels: (K,) int64, or None when the file identifies regions by name only.
    names: K names or None.  values: (K, K) float64, as read.
    provenance: the matrix file and, when one was read, the label file.
    """

    path: str
    labels: np.ndarray | None
    names: list[str] | None
    values: np.ndarray
    provenance: list[Provenance]


def _keys_from_cells(path: str, field: str, cells: list[str]) -> tuple[np.ndarray | None,
                                                                     list[str] | None]:
    """Header cells as (labels, None) when all are integers, else (None, names)."""
    if all(_is_int(c) for c in cells):
        bad = next((c for c in cells if not 0 < int(c) <= LABEL_MAX), None)
        if bad is not None:
            raise InputError(path, field, bad, f"region labels 1..{LABEL_MAX}")
        labels = np.array([int(c) for c in cells], dtype=np.int64)
        _check_distinct(path, field, labels.tolist())
        return labels, None
    if any(c == "" for c in cells):
        raise InputError(path, field, _Text("an empty cell"), "a label or name for every column")
    _check_distinct(path, field, cells)
    return None, list(cells)


def _check_distinct(path: str, field: str, keys: Sequence) -> None:
    """InputError naming the first key listed twice."""
    seen = set()
    for k in keys:
        if k in seen:
            raise InputError(path, field, _plain(k), "each region once")
        seen.add(k)


def _int_header(rows: Rows) -> bool:
    """Whether an all-numeric first row is a header of integer labels: distinct positive
    integers followed by exactly one row per column (a (K+1) x K table, or K+1 columns when a
    row-label column follows)."""
    first = rows[0][1]
    if not all(_is_int(c) and int(c) > 0 for c in first) or len(set(first)) != len(first):
        return False
    body = rows[1:]
    return len(body) == len(first) and all(len(c) in (len(first), len(first) + 1)
                                           for _, c in body)


def _has_row_labels(header: list[str], body: Rows) -> bool:
    """Whether the body's first column holds row labels (pandas-style index column)."""
    n_body, n_head = len(body[0][1]), len(header)
    if n_body == n_head + 1:
        return True
    if n_body != n_head:
        return False
    return (header[0] == "" or not _is_number(body[0][1][0])
            or (not _is_int(header[0]) and all(_is_int(c) for c in header[1:])))


def _text_matrix(path: PathLike, role: str) -> tuple[np.ndarray, list[str] | None]:
    """Values and header cells (None when headerless) of a text matrix.

    A first row with a non-numeric cell is a header of region labels or names; an
    all-integer first row is a header when the table is (K+1) x K (see _int_header).  An
    optional first column of row labels must repeat the header exactly, in the same order.
    """
    rows = _read_rows(path, role)
    if all(_is_number(c) for c in rows[0][1]) and not _int_header(rows):
        return _numeric_rows(str(path), role, rows), None
    header, body = list(rows[0][1]), rows[1:]
    if not body:
        raise InputError(path, role, _Text("a header and no rows"), "one row per region")
    if _has_row_labels(header, body):
        if len(body[0][1]) == len(header):
            header = header[1:]
        for i, (line, cells) in enumerate(body):
            want = header[i] if i < len(header) else _Text("no more rows")
            if cells[0] != want:
                raise InputError(path, f"line {line}, column 1 (row label)", cells[0],
                                 f"{want!r}: row labels in the header's order")
        body = [(line, cells[1:]) for line, cells in body]
    for line, cells in body:
        if len(cells) != len(header):
            raise InputError(path, f"line {line}", _Text(f"{len(cells)} values"),
                             f"{len(header)} values, one per header column")
    return _numeric_rows(str(path), role, body), header


def _npy_matrix(path: PathLike, role: str) -> np.ndarray:
    """A 2-D real array from a .npy file as float64."""
    p = _existing_file(path, role)
    try:
        values = np.load(p, allow_pickle=False)
    except Exception as e:
        raise InputError(path, role, _why(e),
                         "a complete NumPy .npy file holding a 2-D numeric array") from e
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "biuf":
        raise InputError(path, "data type", str(getattr(values, "dtype", type(values))),
                         "a real numeric array")
    return values.astype(np.float64)


def _resolve_labels(labels: PathLike | Sequence[int] | np.ndarray
                    ) -> tuple[np.ndarray, list[str] | None, list[Provenance], str]:
    """labels= as (labels, names, provenance, description): a label file or a sequence of ints."""
    if isinstance(labels, (str, os.PathLike)):
        prov = [provenance("labels", labels)]
        lab, names = _read_label_file(labels)
        return lab, names, prov, str(labels)
    arr = np.asarray(labels)
    if (arr.ndim != 1 or arr.dtype.kind not in "iu" or len(arr) == 0
            or (arr <= 0).any() or (arr > LABEL_MAX).any()):
        raise InputError("labels=", None, _Text(str(arr.tolist())),
                         f"a label file path or a 1-D sequence of integer labels 1..{LABEL_MAX}")
    _check_distinct("labels=", None, arr.tolist())
    return arr.astype(np.int64), None, [], "labels="


def read_matrix(path: PathLike, labels: PathLike | Sequence[int] | None = None,
                *, role: str = "matrix") -> LabelledMatrix:
    """Read a square region x region matrix and the labels of its rows/columns.

    .npy: a 2-D array; labels= is required.  Anything else is text (CSV, TSV or
    whitespace-separated, '#' comments allowed, e.g. MRtrix tck2connectome output): a first
    row with non-numeric cells is a header of integer labels or region names (an optional
    first column of row labels must repeat it in order); without a header, labels= is
    required.  labels=: a label file (:func:`read_label_list`) or a sequence of integers; when
    both a header and labels= are given they must agree.  role names the matrix in messages.
    """
    prov = [provenance(role, path)]
    header = None
    if str(path).lower().endswith(".npy"):
        values = _npy_matrix(path, role)
    else:
        values, header = _text_matrix(path, role)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise InputError(path, "shape", tuple(values.shape), "a square region x region matrix")
    k = values.shape[0]
    head_labels, head_names = (_keys_from_cells(str(path), "header", header)
                               if header is not None else (None, None))
    if labels is None:
        if header is None:
            def expected(how: str) -> str:
                return (f"a header row of region labels, or {how} a label list file (one "
                        "label per line, or 'label'/'name' columns)")

            where = (path, "labels", _Text("none given"))
            raise InputError(*where, expected("labels=")).on_command_line(
                str(InputError(*where, expected("--labels FILE,"))))
        return LabelledMatrix(str(path), head_labels, head_names, values, prov)
    lab, names, lprov, where = _resolve_labels(labels)
    if len(lab) != k:
        raise InputError(where, "labels", _Text(f"{len(lab)} labels"),
                         f"{k} labels, one per row of {path} (label 0, the background or "
                         "unassigned streamlines, is not a region)")
    if header is not None:
        _check_header_agrees(str(path), head_labels, head_names, lab, names, where)
        names = names if names is not None else head_names
    return LabelledMatrix(str(path), lab, names, values, prov + lprov)


def _check_header_agrees(path: str, head_labels: np.ndarray | None,
                         head_names: list[str] | None, labels: np.ndarray,
                         names: list[str] | None, where: str) -> None:
    """InputError unless a header's labels (or names) equal those of labels= in order."""
    if head_labels is not None:
        same = np.array_equal(head_labels, labels)
        shown = head_labels.tolist()
    else:
        same = names is not None and list(names) == list(head_names)
        shown = head_names
    if not same:
        raise InputError(path, "header", _listed(shown),
                         f"the regions of {where} in the same order (or give only one of them)")


def _key_text(labels: np.ndarray | None, names: list[str] | None, i: int) -> str:
    """How region i is shown in messages: label 7, or name 'rA1'."""
    if labels is not None:
        return f"label {int(labels[i])}"
    return f"name {names[i]!r}" if names is not None else f"index {i}"


def _check_entries(path: str, role: str, values: np.ndarray,
                   labels: np.ndarray | None, names: list[str] | None) -> None:
    """InputError at the first entry that is NaN, infinite or negative."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i, j = (int(x) for x in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise InputError(path, f"{role} entry (row {_key_text(labels, names, i)}, column "
                               f"{_key_text(labels, names, j)})", float(values[i, j]),
                         "a finite number >= 0")


def _triangle(values: np.ndarray) -> str | None:
    """'upper' or 'lower' when only that off-diagonal triangle holds non-zeros, else None."""
    if values.shape[0] < 2:
        return None
    upper, lower = np.triu(values, 1).any(), np.tril(values, -1).any()
    if upper != lower:
        return "upper" if upper else "lower"
    return None


def _symmetry(path: str, role: str, values: np.ndarray, symmetrize: bool | None) -> np.ndarray:
    """Apply the symmetrize= policy to one matrix.

    None: InputError when only one triangle holds values (MRtrix's default output).
    True: mirror a triangular matrix, average a full one ((M + M.T) / 2).  False: as read.
    """
    side = _triangle(values)
    if symmetrize is None and side is not None:
        other = "lower" if side == "upper" else "upper"
        def expected(mirror: str, keep: str) -> str:
            return ("a full matrix (MRtrix tck2connectome writes only the upper triangle "
                    f"unless run with -symmetric): re-run with -symmetric, or {mirror} to "
                    f"mirror it{keep}")

        where = (path, f"{role}: {other} triangle", _Text("all zero"))
        raise InputError(*where, expected("pass symmetrize=True",
                                          " (symmetrize=False keeps it as read)")
                         ).on_command_line(str(InputError(*where, expected(
                             "give dtb build --symmetrize", ""))))
    if not symmetrize:
        return values
    if side is not None:
        return values + values.T - np.diag(np.diag(values))
    return (values + values.T) / 2.0


# --------------------------------------------------------------------------- connectomes


@dataclass
class Connectome:
    """Structural connectivity between K regions.

    labels: (K,) int64 atlas labels, or None when regions are identified by name only (TVB
    zips, name headers): :func:`match` then pairs them with the atlas by name.
    names: K names or None.  weights: (K, K) float64 >= 0, finite, diagonal as read.
    lengths_mm: (K, K) float64 tract lengths >= 0, finite, in the order of weights.
    centres_mm (K, 3), areas_mm2 (K,), cortical (K,) bool, hemispheres (K,) bool (True =
    right, TVB convention): None when the source has none.
    """

    labels: np.ndarray | None
    names: list[str] | None
    weights: np.ndarray
    lengths_mm: np.ndarray
    centres_mm: np.ndarray | None
    areas_mm2: np.ndarray | None
    cortical: np.ndarray | None
    provenance: list[Provenance]
    hemispheres: np.ndarray | None = None


def _finish_weights_lengths(wpath: str, lpath: str, w: np.ndarray, l: np.ndarray,
                            symmetrize: bool | None, labels: np.ndarray | None = None,
                            names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """After the entry checks: at least one off-diagonal weight, then the triangle policy,
    then a length > 0 for every off-diagonal connection.

    A connection with a weight but no length is refused, not given the shortest delay:
    streamlines always have a length, so a 0 there is a missing value (lengths from
    another tractography, a thresholded matrix), and one step of delay would make that
    tract the fastest in the brain."""
    if not (w - np.diag(np.diag(w))).any():
        raise InputError(wpath, "weights", _Text("no off-diagonal connection"),
                         "at least one connection > 0 between two regions")
    w = _symmetry(wpath, "weights", w, symmetrize)
    l = _symmetry(lpath, "lengths", l, symmetrize)
    bad = (w > 0) & (l <= 0)
    np.fill_diagonal(bad, False)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise InputError(lpath, f"lengths entry (row {_key_text(labels, names, i)}, column "
                                f"{_key_text(labels, names, j)})", float(l[i, j]),
                         f"a tract length > 0 mm where the weight is > 0 ({float(w[i, j]):g} "
                         f"in {wpath}; {int(bad.sum())} such entries) -- set the weight to 0 "
                         "or give the tract's length")
    return w, l


def read_connectome(weights: PathLike, lengths: PathLike,
                    labels: PathLike | Sequence[int] | None = None,
                    *, symmetrize: bool | None = None) -> Connectome:
    """Structural-connectivity weights and tract lengths (mm) from two matrix files.

    Each file is read by :func:`read_matrix` (labels= serves files without a header).  The
    lengths are reordered to the weights' region order when both name the same regions
    (by label, or by name when either is name-only); any region in one and not the other is
    an InputError.  Entries must be finite and >= 0, with at least one off-diagonal weight.
    symmetrize: None rejects a matrix with one empty triangle (MRtrix's default output),
    True mirrors it (and averages a full matrix with its transpose), False keeps it as read.
    """
    w = read_matrix(weights, labels, role="weights")
    l = read_matrix(lengths, labels, role="lengths")
    if w.values.shape != l.values.shape:
        raise InputError(l.path, "shape", l.values.shape,
                         f"the shape of {w.path}: {w.values.shape}")
    _check_entries(w.path, "weights", w.values, w.labels, w.names)
    _check_entries(l.path, "lengths", l.values, l.labels, l.names)
    idx = match(w.labels, w.names, l, "tract lengths", reference=f"weights ({w.path})")
    wv, lv = _finish_weights_lengths(w.path, l.path, w.values, l.values[np.ix_(idx, idx)],
                                     symmetrize, w.labels, w.names)
    names = w.names
    if names is None and l.names is not None and w.labels is not None and l.labels is not None:
        names = [l.names[i] for i in idx]
    prov = w.provenance + [p for p in l.provenance if p not in w.provenance]
    return Connectome(w.labels, names, wv, lv, None, None, None, prov)


# --------------------------------------------------------------------------- TVB zips

_TVB_KINDS = (  # (kind, substrings of the lower-cased file name), first match wins
    ("orientations", ("orientation",)),
    ("weights", ("weight",)),
    ("lengths", ("tract", "length")),
    ("centres", ("centre", "center")),
    ("areas", ("area",)),
    ("cortical", ("cortical",)),
    ("hemispheres", ("hemisphere",)),
)


def _tvb_kind(member: str) -> str | None:
    """Which TVB array a zip member holds, from its file name (as TVB's importer does)."""
    base = member.rsplit("/", 1)[-1].lower()
    if not base or base.startswith("._") or member.startswith("__MACOSX/"):
        return None
    return next((kind for kind, keys in _TVB_KINDS if any(k in base for k in keys)), None)


def _zip_members(path: PathLike) -> dict[str, tuple[str, str]]:
    """kind -> (member name, text) for the TVB files in a zip (.bz2/.gz members decompressed)."""
    p = _existing_file(path, "tvb_zip")
    found: dict[str, str] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for member in zf.namelist():
                kind = _tvb_kind(member)
                if kind is None or kind == "orientations" or member.endswith("/"):
                    continue
                if kind in found:
                    raise InputError(path, kind, _listed([found[kind], member]),
                                     f"one {kind} file in the archive")
                found[kind] = member
            missing = [k for k in ("weights", "lengths", "centres") if k not in found]
            if missing:
                raise InputError(path, "members", _listed(zf.namelist()),
                                 "a TVB connectivity zip with weights.txt, tract_lengths.txt "
                                 f"and centres.txt (missing: {', '.join(missing)})")
            return {kind: (m, _member_text(path, zf, m)) for kind, m in found.items()}
    except InputError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, OSError, ...
        raise InputError(path, "tvb_zip", _why(e),
                         "a complete zip archive (TVB connectivity)") from e


def _member_text(path: PathLike, zf: zipfile.ZipFile, member: str) -> str:
    """One member's text; .bz2 and .gz members are decompressed."""
    where = f"{path}:{member}"
    try:
        raw = zf.read(member)
        if member.lower().endswith(".bz2"):
            raw = bz2.decompress(raw)
        elif member.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except Exception as e:
        raise InputError(where, None, _why(e),
                         "an intact archive member") from e
    return _decode(where, member, raw)


def _tvb_vector(where: str, kind: str, text: str, k: int) -> np.ndarray:
    """A per-region vector (any line layout) of K numbers."""
    rows = _whitespace_rows(text)
    cells = [(line, c) for line, cs in rows for c in cs]
    if len(cells) != k:
        raise InputError(where, kind, _Text(f"{len(cells)} values"),
                         f"{k} values, one per region of weights.txt")
    for line, c in cells:
        if not _is_number(c):
            raise InputError(where, f"line {line}", c, "a number")
    return np.array([float(c) for _, c in cells], dtype=np.float64)


def _tvb_flags(where: str, kind: str, text: str, k: int) -> np.ndarray:
    """A per-region 0/1 vector as bool."""
    rows = _whitespace_rows(text)
    cells = [(line, c) for line, cs in rows for c in cs]
    if len(cells) != k:
        raise InputError(where, kind, _Text(f"{len(cells)} values"),
                         f"{k} values, one per region of weights.txt")
    return np.array([_parse_bool(where, f"line {line}", c) for line, c in cells], dtype=bool)


def _tvb_centres(where: str, text: str, k: int) -> tuple[list[str], np.ndarray]:
    """Region names and (K, 3) centres from 'name x y z' lines."""
    rows = _whitespace_rows(text)
    if len(rows) != k:
        raise InputError(where, "centres", _Text(f"{len(rows)} lines"),
                         f"{k} lines 'name x y z', one per region of weights.txt")
    names, xyz = [], []
    for line, cells in rows:
        if len(cells) < 4 or _is_number(cells[0]):
            raise InputError(where, f"line {line}", _Text(" ".join(cells)),
                             "'name x y z' (TVB regions are matched to the atlas by name)")
        for c in cells[-3:]:
            if not _is_number(c) or not np.isfinite(float(c)):
                raise InputError(where, f"line {line}", c, "a finite coordinate in mm")
        names.append(" ".join(cells[:-3]))
        xyz.append([float(c) for c in cells[-3:]])
    _check_distinct(where, "region name", names)
    return names, np.array(xyz, dtype=np.float64)


def read_tvb_zip(path: PathLike, *, symmetrize: bool | None = None) -> Connectome:
    """A TVB connectivity zip (e.g. tvb-data's connectivity_76.zip).

    Members are recognised by name as TVB's importer does: weights, tract_lengths, centres
    ('name x y z' per line) required; areas, cortical, hemispheres optional; orientations
    ignored; whitespace-separated numbers.  Regions are identified by the names in centres.txt
    (labels is None), so :func:`match` pairs them with an atlas by name.  symmetrize: as in
    :func:`read_connectome`.
    """
    prov = [provenance("tvb_zip", path)]
    members = _zip_members(path)

    def where(kind: str) -> str:
        return f"{path}:{members[kind][0]}"

    w = _numeric_rows(where("weights"), "weights", _nonempty(where("weights"), members, "weights"))
    l = _numeric_rows(where("lengths"), "lengths", _nonempty(where("lengths"), members, "lengths"))
    for kind, m in (("weights", w), ("lengths", l)):
        if m.shape[0] != m.shape[1]:
            raise InputError(where(kind), "shape", m.shape, "a square region x region matrix")
    k = w.shape[0]
    names, centres = _tvb_centres(where("centres"), members["centres"][1], k)
    if w.shape != l.shape:
        raise InputError(where("lengths"), "shape", l.shape, f"the shape of weights: {w.shape}")
    _check_entries(where("weights"), "weights", w, None, names)
    _check_entries(where("lengths"), "lengths", l, None, names)
    wv, lv = _finish_weights_lengths(where("weights"), where("lengths"), w, l, symmetrize,
                                     None, names)
    areas = cortical = hemis = None
    if "areas" in members:
        areas = _tvb_vector(where("areas"), "areas", members["areas"][1], k)
        bad = np.flatnonzero(~np.isfinite(areas) | (areas < 0))
        if len(bad):
            raise InputError(where("areas"), f"region {names[bad[0]]!r}", float(areas[bad[0]]),
                             "a finite area >= 0 mm^2")
    if "cortical" in members:
        cortical = _tvb_flags(where("cortical"), "cortical", members["cortical"][1], k)
    if "hemispheres" in members:
        hemis = _tvb_flags(where("hemispheres"), "hemispheres", members["hemispheres"][1], k)
    return Connectome(None, names, wv, lv, centres, areas, cortical, prov, hemis)


def _nonempty(where: str, members: dict[str, tuple[str, str]], kind: str) -> Rows:
    """Rows of a TVB member; InputError when it is empty."""
    rows = _whitespace_rows(members[kind][1])
    if not rows:
        raise InputError(where, kind, _Text("empty file"), "a region x region matrix")
    return rows


# --------------------------------------------------------------------------- PET


def read_pet(path: PathLike, atlas: AtlasImage | None = None) -> dict[int, float]:
    """Per-region PET values (e.g. SV2A synaptic density) that scale in-degree or conductance.

    An image (.nii, .nii.gz, .mgz, .mgh) on the atlas grid is averaged over each atlas label
    (atlas required); anything else is a CSV/TSV table with a 'label' column and a 'value'
    column (or exactly one other column besides 'label' and 'name').  Values must be finite
    and > 0.  Returns {label: value}; record its provenance with ``provenance("pet", path)``.
    """
    if str(path).lower().endswith(_IMAGE_SUFFIXES):
        return _pet_image(path, atlas)
    t = _Table.read(path, "pet")
    labels, keep = t.labels(t.pick("label", "index", required="'label'"))
    vcol = t.pick("value")
    if vcol is None:
        rest = [c for c in t.header if c not in ("label", "index", "name")]
        if len(rest) != 1:
            raise InputError(path, "header", _listed(t.header),
                             "a 'value' column (or exactly one column besides 'label'/'name')")
        vcol = rest[0]
    values = t.numbers(vcol, "a PET value > 0", lambda v: v > 0)[keep]
    return {int(lab): float(v) for lab, v in zip(labels, values, strict=True)}


def _pet_image(path: PathLike, atlas: AtlasImage | None) -> dict[int, float]:
    """Mean PET value per atlas label from an image on the atlas grid."""
    if atlas is None:
        raise InputError(path, "atlas", None,
                         "an atlas image on the same grid: a PET map is averaged per region")
    data, affine = _load_volume(path, "pet")
    ref = _role_path(atlas.provenance, "atlas", "the atlas")
    _check_same_grid(path, data.shape, affine, ref, atlas.labels.shape, atlas.affine)
    inside = atlas.labels > 0
    values = data.astype(np.float64)
    bad = inside & ~np.isfinite(values)
    if bad.any():
        v = _first_voxel(bad)
        raise InputError(path, f"voxel {v}", float(values[v]),
                         "finite PET values inside every atlas region")
    labels, inv = np.unique(atlas.labels[inside], return_inverse=True)
    means = (np.bincount(inv, weights=values[inside], minlength=len(labels))
             / np.bincount(inv, minlength=len(labels)))
    bad_r = np.flatnonzero(means <= 0)
    if len(bad_r):
        raise InputError(path, f"label {int(labels[bad_r[0]])}", float(means[bad_r[0]]),
                         "a mean PET value > 0 in every atlas region")
    return {int(lab): float(m) for lab, m in zip(labels, means, strict=True)}


# --------------------------------------------------------------------------- matching


def _keys_of(other: Any) -> tuple[np.ndarray | None, list[str] | None, str | None]:
    """(labels, names, path) of a Connectome, RegionTable, LabelledMatrix or {label: value}."""
    if isinstance(other, Mapping):
        return np.array([int(k) for k in other], dtype=np.int64), None, None
    prov = getattr(other, "provenance", None) or []
    path = getattr(other, "path", None) or (prov[0].path if prov else None)
    return getattr(other, "labels", None), getattr(other, "names", None), path


def match(reference_labels: np.ndarray | Sequence[int] | None,
          reference_names: Sequence[str] | None, other: Any, what: str,
          *, reference: str = "atlas", path: str | None = None,
          allow_extra: bool = False) -> np.ndarray:
    """Pair another region set with a reference one, explicitly: never by position.

    other: a Connectome, RegionTable, LabelledMatrix, or a {label: value} mapping (PET).
    Regions are matched by integer label when both sides have labels, otherwise by name
    (e.g. a TVB connectome against atlas names from a lookup table).  Returns idx (K,) intp
    with ``other_array[idx]`` in the reference's order (``M[np.ix_(idx, idx)]`` for
    matrices).  InputError listing up to MAX_LISTED reference regions missing from `what`
    and, unless allow_extra, regions of `what` missing from the reference.  path: the file
    named in messages (default: the other's first provenance path).
    """
    o_labels, o_names, o_path = _keys_of(other)
    where = path or o_path or what
    if reference_labels is not None and o_labels is not None:
        kind = "labels"
        ref, oth = [int(x) for x in reference_labels], [int(x) for x in o_labels]
    elif reference_names is not None and o_names is not None:
        kind = "names"
        ref, oth = [str(x) for x in reference_names], [str(x) for x in o_names]
    else:
        have = "labels" if o_labels is not None else "names" if o_names is not None else "nothing"
        raise InputError(where, "region identity", _Text(f"the {what} has {have}"),
                         f"integer labels or region names on both the {reference} and the "
                         f"{what} (give the {reference} a lookup table of names to match by "
                         "name)")
    _check_distinct(where, f"{kind} in the {what}", oth)
    _check_distinct(where, f"{kind} in the {reference}", ref)
    pos = {key: i for i, key in enumerate(oth)}
    missing = [key for key in ref if key not in pos]
    if missing:
        raise InputError(where, f"{kind} in the {reference} missing from the {what}",
                         _listed(missing), f"every {reference} region in the {what}")
    if not allow_extra:
        known = set(ref)
        extra = [key for key in oth if key not in known]
        if extra:
            raise InputError(where, f"{kind} in the {what} missing from the {reference}",
                             _listed(extra), f"every {what} region in the {reference}")
    return np.array([pos[key] for key in ref], dtype=np.intp)
