"""Region-level sMRI inputs: a per-region volume table (:func:`read_region_table`) and a
region label list or lookup table (:func:`read_label_list`), and the :class:`RegionTable`
that :func:`dtb.brain.atlas.regions_from_atlas` also returns.  Units: volumes in mm^3,
centres in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.brain.reading import PathLike, Provenance, _listed, _Text, provenance
from dtb.brain.tables import _is_number, _parse_bool, _parse_label, _read_rows, _Table
from dtb.errors import InputError


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
