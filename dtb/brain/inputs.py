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

Where each reader lives (this module is the public entry and re-exports them):
:mod:`dtb.brain.atlas` (images), :mod:`dtb.brain.regions` (region tables, label lists),
:mod:`dtb.brain.matrices` and :mod:`dtb.brain.connectome` (matrix files),
:mod:`dtb.brain.tvb` (TVB zips), :mod:`dtb.brain.pet`, :mod:`dtb.brain.matching`; file
access, provenance and the wording of messages in :mod:`dtb.brain.reading`, text tables in
:mod:`dtb.brain.tables`.
"""

from __future__ import annotations

from dtb.brain.atlas import GM_MAX, GRID_ATOL, AtlasImage, read_atlas, regions_from_atlas
from dtb.brain.connectome import Connectome, read_connectome
from dtb.brain.matching import match
from dtb.brain.matrices import LabelledMatrix, read_matrix
from dtb.brain.pet import read_pet
from dtb.brain.reading import LABEL_MAX, MAX_LISTED, PathLike, Provenance, provenance
from dtb.brain.regions import RegionTable, read_label_list, read_region_table
from dtb.brain.tvb import read_tvb_zip

__all__ = ["AtlasImage", "Connectome", "GM_MAX", "GRID_ATOL", "LABEL_MAX", "LabelledMatrix",
           "MAX_LISTED", "PathLike", "Provenance", "RegionTable", "match", "provenance",
           "read_atlas", "read_connectome", "read_label_list", "read_matrix", "read_pet",
           "read_region_table", "read_tvb_zip", "regions_from_atlas"]
