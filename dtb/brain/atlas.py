"""Voxel-level sMRI inputs: an atlas (integer label volume) and its grey-matter map on one
voxel grid (:func:`read_atlas`, read with nibabel), and the per-region grey-matter volume
and centre they give (:func:`regions_from_atlas`).  The grid checks here also serve PET
images.  Units: mm (the image's world space), mm^3; label 0 is the background.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dtb.brain.reading import (
    LABEL_MAX,
    PathLike,
    Provenance,
    _existing_file,
    _plain,
    _role_path,
    _Text,
    _why,
    provenance,
)
from dtb.brain.regions import RegionTable
from dtb.errors import InputError

GM_MAX = 1.0001          # grey-matter values up to this are accepted (then clipped to 1)
GRID_ATOL = 1e-3         # affines closer than this (mm) describe the same grid


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
