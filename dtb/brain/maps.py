"""Spatial maps: per-region values (a cortical gradient, T1w/T2w myelin, receptor density,
...) that regional parameters follow, read from a region table.

A map table is a CSV/TSV file with a header row: a ``label`` column (region labels of the
brain) or a ``name`` column (region names), and one or more numeric columns, each a map
named by its header (case-insensitive)::

    label  name          gradient1  t1t2
    1      Precentral_L  -0.81      1.32
    2      Precentral_R  -0.79      1.30

``read_region_maps`` reads it; ``RegionMaps.for_brain`` orders a map by the brain's
regions (every region of the brain must have a value) and standardises it (mean 0, SD 1
over regions), so that a parameter's bound means "per SD of the map" whatever the map's
units.  ``sc_strength_map`` is the map every brain has: the log of each region's SC
in-strength, standardised the same way.  ``fc_strength_map`` is the map a group FC gives
(``dtb fit --group-fc``): each region's mean correlation with the others, standardised --
how central a region is in the group's functional networks, from other subjects' data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.brain.reading import PathLike, _listed, _Text
from dtb.brain.tables import _Table
from dtb.errors import InputError

__all__ = ["RegionMaps", "read_region_maps", "sc_strength_map", "fc_strength_map",
           "standardise", "SC_STRENGTH", "FC_STRENGTH", "BUILT_IN"]

#: the name of the built-in map of every brain (no table needed)
SC_STRENGTH = "sc_strength"
#: the name of the built-in map of a group FC (``dtb fit --group-fc``)
FC_STRENGTH = "group_fc_strength"
BUILT_IN = (SC_STRENGTH, FC_STRENGTH)
_KEYS = ("label", "name")


@dataclass
class RegionMaps:
    """Maps read from ``path``: ``keys`` the regions' labels (int) or names (str), one per
    row; ``values[map name]`` (rows,) float64."""

    path: str
    key_column: str
    keys: list[int] | list[str]
    values: dict[str, np.ndarray]

    def for_brain(self, name: str, labels: np.ndarray, names: list[str]) -> np.ndarray:
        """Map ``name`` in the order of a brain's regions (``labels`` (R,), ``names`` R),
        standardised; InputError naming the map and the first region it lacks."""
        if name not in self.values:
            raise InputError(self.path, "header", _listed(sorted(self.values)),
                             f"a column named {name!r} (the map a parameter names)")
        brain_keys = ([int(x) for x in labels] if self.key_column == "label"
                      else [str(n) for n in names])
        row = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in brain_keys if k not in row]
        if missing:
            raise InputError(self.path, f"column '{self.key_column}'",
                             _Text(f"no row for region {missing[0]!r}"
                                   + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                      else "")),
                             "a row for every region of the brain")
        v = self.values[name][[row[k] for k in brain_keys]]
        return standardise(v, f"{self.path}: map {name!r}")


def read_region_maps(path: PathLike) -> RegionMaps:
    """The maps of a region table (see the module docstring); InputError naming the file,
    line and column of the first bad cell, a repeated region, or a missing key column."""
    t = _Table.read(path, "region maps")
    key = t.pick(*_KEYS)
    if key is None:
        raise InputError(str(path), "header", _listed(t.header),
                         "a 'label' or 'name' column naming each row's region")
    other = [c for c in _KEYS if c != key and c in t.header]
    cols = [c for c in t.header if c not in (key, *other)]
    if not cols:
        raise InputError(str(path), "header", _listed(t.header),
                         f"at least one map column besides {_listed([key, *other])}")
    keys: list[int] | list[str]
    if key == "label":
        labels, keep = t.labels("label")
        if not keep.all():
            raise InputError(str(path), "column 'label'", 0, "region labels > 0")
        keys = [int(x) for x in labels]
    else:
        keys = [c for _, c in t.cells("name")]
        seen: dict[str, int] = {}
        for line, c in t.cells("name"):
            if c in seen:
                raise InputError(str(path), f"line {line}: column 'name'", c,
                                 f"each region once (also on line {seen[c]})")
            seen[c] = line
    values = {c: t.numbers(c, "a finite number", lambda v: True) for c in cols}
    return RegionMaps(str(path), key, keys, values)


def standardise(v: np.ndarray, what: str) -> np.ndarray:
    """``(v - mean) / SD`` over regions; InputError when ``v`` is constant (a constant map
    is the uniform shift, which needs no map)."""
    v = np.asarray(v, float)
    sd = float(np.std(v))
    if not sd > 1e-12 * max(1.0, float(np.max(np.abs(v)))):
        raise InputError(what, "values", _Text(f"constant ({v[0]:g} in every region)"),
                         "a map that varies between regions (a uniform shift needs no map)")
    return (v - v.mean()) / sd


def sc_strength_map(weights: np.ndarray) -> np.ndarray:
    """The built-in map: log SC in-strength (row sums of ``weights`` (R, R)), standardised;
    regions without connections get the smallest positive strength."""
    s = np.asarray(weights, float).sum(axis=1)
    pos = s[s > 0]
    if pos.size == 0:
        raise InputError("brain", "connectome/weights", _Text("all zero"),
                         "a connectome with connections (the sc_strength map)")
    return standardise(np.log(np.maximum(s, pos.min())), "the sc_strength map")


def fc_strength_map(fc: np.ndarray) -> np.ndarray:
    """The built-in map of a group FC ``fc`` (R, R, correlations): each region's mean
    correlation with the other regions (the diagonal left out), standardised."""
    m = np.array(fc, float)
    np.fill_diagonal(m, 0.0)
    return standardise(m.sum(axis=1) / (m.shape[0] - 1), "the group_fc_strength map")
