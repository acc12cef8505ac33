"""PET inputs (optional; e.g. SV2A synaptic density): per-region values from an image on
the atlas grid, averaged over each label, or from a region table (:func:`read_pet`).
"""

from __future__ import annotations

import numpy as np

from dtb.brain.atlas import AtlasImage, _check_same_grid, _first_voxel, _load_volume
from dtb.brain.reading import PathLike, _listed, _role_path
from dtb.brain.tables import _Table
from dtb.errors import InputError

_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")


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
