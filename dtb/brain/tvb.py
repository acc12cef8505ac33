"""TVB connectivity zips (e.g. tvb-data's connectivity_76.zip, :func:`read_tvb_zip`):
members recognised by name as TVB's importer does, ``.bz2``/``.gz`` members decompressed,
regions identified by the names in centres.txt.  Units: mm, mm^2.
"""

from __future__ import annotations

import bz2
import gzip
import zipfile

import numpy as np

from dtb.brain.connectome import Connectome, _finish_weights_lengths
from dtb.brain.matrices import _check_entries
from dtb.brain.reading import (
    PathLike,
    _check_distinct,
    _decode,
    _existing_file,
    _listed,
    _Text,
    _why,
    provenance,
)
from dtb.brain.tables import Rows, _is_number, _numeric_rows, _parse_bool, _whitespace_rows
from dtb.errors import InputError

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
