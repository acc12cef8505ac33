"""DTI inputs: structural-connectivity weights and tract lengths from two matrix files
(:func:`read_connectome`), as a :class:`Connectome`; the checks a weights/lengths pair must
pass whatever its source (also a TVB zip, :mod:`dtb.brain.tvb`).  Units: lengths in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dtb.brain.matching import match
from dtb.brain.matrices import _check_entries, _key_text, _symmetry, read_matrix
from dtb.brain.reading import PathLike, Provenance, _Text
from dtb.errors import InputError


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
