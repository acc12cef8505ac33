"""Reading recorded BOLD files into (samples, region keys, TR): CSV/TSV tables with a header
of labels or names, ``.npy`` arrays with a label list, HDF5 datasets and 4D NIfTI images with
an atlas.  Every problem is an ``InputError`` naming the file, the field, the value and what
was expected.  :mod:`dtb.assimilation.observations` puts the result together
(``read_bold``).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dtb.errors import InputError
from dtb.io.bids import is_number

PathLike = str | os.PathLike
MISSING = "n/a"        # BIDS' missing value in TSV files


class Text(str):
    """A value shown without quotes in an InputError message."""

    def __repr__(self) -> str:
        return str(self)


def listed(items: Any, most: int = 10) -> Text:
    """At most ``most`` items as a list for a message, with how many there are in all."""
    items = [x.item() if isinstance(x, np.generic) else x for x in items]
    more = f", ... ({len(items)} in all)" if len(items) > most else ""
    return Text("[" + ", ".join(repr(x) for x in items[:most]) + more + "]")


def suffix(p: Path) -> str:
    name = p.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower()


Keys = tuple[np.ndarray | None, tuple[str, ...] | None]


def _cell(v: Any) -> str:
    s = v.decode() if isinstance(v, bytes) else str(v)
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return s


def _labels_from(path: str, field: str, cells: list[str]) -> np.ndarray:
    out = []
    for s in cells:
        try:
            f = float(s)
        except ValueError:
            raise InputError(path, field, s, "integer region labels") from None
        if not f.is_integer() or f <= 0 or f >= 2**63:
            raise InputError(path, field, s, "integer region labels > 0 (and < 2^63)")
        out.append(int(f))
    lab = np.asarray(out, dtype=np.int64)
    uniq, counts = np.unique(lab, return_counts=True)
    if np.any(counts > 1):
        raise InputError(path, field, listed(uniq[counts > 1]), "distinct region labels")
    return lab


def header_keys(path: str, field: str, values: Any) -> Keys:
    """A header (or label list) as ``(labels, None)`` when every cell is a number (integer
    labels > 0), ``(None, names)`` when none is; a mix is refused naming the odd column."""
    cells = [_cell(v) for v in np.atleast_1d(np.asarray(values, dtype=object)).ravel()]
    numeric = [is_number(c) for c in cells]
    if all(numeric):
        return _labels_from(path, field, cells), None
    if any(numeric):
        n = sum(numeric)
        majority = numeric[0] if 2 * n == len(cells) else 2 * n > len(cells)
        j = next(i for i, x in enumerate(numeric) if x != majority)
        kind = "an integer region label" if majority else "a region name"
        raise InputError(path, f"{field} column {j + 1}", cells[j],
                         f"{kind} like the other columns (a header is all region labels or "
                         "all region names)")
    empty = [i for i, c in enumerate(cells) if not c]
    if empty:
        raise InputError(path, f"{field} column {empty[0] + 1}", "", "a region name")
    dup = sorted(c for c, k in Counter(cells).items() if k > 1)
    if dup:
        raise InputError(path, field, listed(dup), "distinct region names")
    return None, tuple(cells)


def _split_rows(path: str) -> tuple[list[str], list[list[str]]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, "file", Text(f"unreadable ({e})"), "a text table") from e
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise InputError(path, "file", Text("empty"), "a header of labels or names and rows "
                         "of values")
    sep = "\t" if "\t" in rows[0] else ("," if "," in rows[0] else None)
    split = (lambda s: [c.strip() for c in s.split(sep)]) if sep else (lambda s: s.split())
    return split(rows[0]), [split(r) for r in rows[1:]]


def read_table(path: str) -> tuple[np.ndarray, Keys, tuple[Any, ...]]:
    """A labelled or named table: data (T, R) with its keys; whole-``n/a`` columns dropped
    (their keys returned as the third item)."""
    header, body = _split_rows(path)
    labels, names = header_keys(path, "header", header)
    keys: list[Any] = labels.tolist() if labels is not None else list(names or ())

    def where(j: int) -> str:
        return f"label {keys[j]}" if labels is not None else f"region {keys[j]!r}"

    data = np.empty((len(body), len(keys)))
    for i, cells in enumerate(body):
        if len(cells) != len(keys):
            raise InputError(path, f"row {i + 1}", Text(f"{len(cells)} values"),
                             f"{len(keys)} values, one per column of the header")
        for j, c in enumerate(cells):
            if c == MISSING:
                data[i, j] = np.nan
                continue
            try:
                data[i, j] = float(c)
            except ValueError:
                raise InputError(path, f"row {i + 1}, {where(j)}", c, "a number") from None
    na = np.array([[c == MISSING for c in cells] for cells in body], bool).reshape(data.shape)
    empty: Any = na.all(axis=0) if len(body) else np.zeros(len(keys), bool)
    partial = np.flatnonzero(na.any(axis=0) & ~empty)
    if partial.size:
        j = int(partial[0])
        raise InputError(path, f"row {int(np.argmax(na[:, j])) + 1}, {where(j)}", MISSING,
                         "a number (n/a is accepted for a whole column only: a region "
                         "without coverage)")
    keep = ~empty
    dropped = tuple(k for k, e in zip(keys, empty, strict=True) if e)
    if labels is not None:
        return data[:, keep], (labels[keep], None), dropped
    kept = tuple(n for n, k in zip(names or (), keep, strict=True) if k)
    return data[:, keep], (None, kept), dropped


def read_label_list(path: str, labels: Any) -> Keys:
    if labels is None:
        raise InputError(path, "labels", None, "labels for a .npy table (labels=[...] or a "
                         "file with one label or name a line)")
    if isinstance(labels, (str, os.PathLike)):
        try:
            items = [ln for ln in Path(labels).read_text(encoding="utf-8").splitlines()
                     if ln.strip()]
        except OSError as e:
            raise InputError(str(labels), "labels", Text(f"unreadable ({e.strerror})"),
                             "a text file of region labels or names, one a line") from e
        return header_keys(str(labels), "labels", items)
    return header_keys(path, "labels", labels)


def read_hdf5(path: str, dataset: str) -> tuple[np.ndarray, Keys, float | None]:
    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, "file", Text(f"unreadable ({e})"), "an HDF5 file") from e
    with h:
        if dataset not in h or not isinstance(h[dataset], h5py.Dataset):
            raise InputError(path, dataset, Text("missing"),
                             f"a (T, R) dataset '{dataset}' (choose one with dataset=)")
        d = h[dataset]
        try:
            data = d[()]
        except (OSError, RuntimeError) as e:     # damaged or cut short inside the data
            raise InputError(path, dataset, Text(f"unreadable ({e})"),
                             "a complete HDF5 file (is it truncated?)") from e
        if "labels" in d.attrs:
            keys = header_keys(path, f"{dataset}.attrs['labels']", d.attrs["labels"])
        elif "labels" in h:
            keys = header_keys(path, "labels", h["labels"][()])
        else:
            raise InputError(path, f"{dataset}.attrs['labels']", Text("missing"),
                             "region labels as an attribute of the dataset or a 'labels' "
                             "dataset")
        tr = d.attrs.get("tr", h.attrs.get("tr"))
    if tr is not None:
        try:
            tr = float(tr)
        except (TypeError, ValueError):
            raise InputError(path, f"{dataset}.attrs['tr']", Text(repr(tr)[:80]),
                             "a repetition time in seconds") from None
    return np.asarray(data), keys, tr


def _masker_means(path: str, img: Any, atlas: str, aimg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Region means of a 4D image through nilearn's NiftiLabelsMasker, the atlas resampled
    (nearest neighbour) onto the BOLD grid; InputError when nilearn is missing."""
    try:
        from nilearn.maskers import NiftiLabelsMasker
    except ImportError:
        raise InputError(atlas, "grid", Text(f"shape {tuple(aimg.shape)}, affine "
                                              f"{np.round(aimg.affine, 3).tolist()}"),
                         f"the BOLD image's grid (shape {tuple(img.shape[:3])}, affine "
                         f"{np.round(img.affine, 3).tolist()}), or the nilearn extra to "
                         "resample the atlas onto it: pip install 'dtb[nilearn]'") from None

    masker = NiftiLabelsMasker(labels_img=aimg, resampling_target="data", strategy="mean",
                               standardize=None, detrend=False)
    try:
        with warnings.catch_warnings():
            # nilearn reports the resampling it was asked for as a warning
            warnings.simplefilter("ignore", UserWarning)
            data = masker.fit_transform(img)
    except Exception as e:  # nilearn raises many kinds for grids it cannot map
        raise InputError(atlas, "resampling", Text(f"{type(e).__name__}: {e}"),
                         f"an atlas that nilearn can resample onto {path}'s grid") from e
    ids = getattr(masker, "region_ids_", None)      # nilearn >= 0.11; labels_ before
    labels = np.array([int(ids[i]) for i in range(data.shape[1])] if ids is not None
                      else [int(v) for v in masker.labels_ if int(v) != 0], np.int64)
    return np.asarray(data, float), labels


def read_nifti(path: str, atlas: PathLike | None) -> tuple[np.ndarray, Keys, float | None,
                                                               str]:
    """A 4D NIfTI image averaged over the regions of the label volume ``atlas``: data
    (T, R), the labels, the TR the header gives (s; None if none) and how the atlas was
    applied (on the BOLD grid, or resampled by nilearn)."""
    import nibabel as nib

    if atlas is None:
        raise InputError(path, "atlas", None, "an atlas label volume (atlas=) to average "
                         "the 4D image over regions")
    try:
        img: Any = nib.load(path)
        vol = np.asarray(img.dataobj, dtype=float)
    except Exception as e:  # nibabel raises many kinds for damaged files
        raise InputError(path, "file", Text(f"unreadable ({type(e).__name__}: {e})"),
                         "a 4D NIfTI image") from e
    if vol.ndim != 4:
        raise InputError(path, "shape", tuple(vol.shape), "a 4D image (x, y, z, time)")
    try:
        aimg: Any = nib.load(atlas)
        lab = np.asarray(aimg.dataobj)
    except Exception as e:
        raise InputError(str(atlas), "file", Text(f"unreadable ({type(e).__name__}: {e})"),
                         "a 3D NIfTI label volume") from e
    if lab.ndim != 3:
        raise InputError(str(atlas), "shape", tuple(lab.shape), "a 3D label volume")
    if not np.all(np.equal(np.mod(lab, 1), 0)):
        raise InputError(str(atlas), "labels", Text("non-integer values"),
                         "integer region labels")
    how = "atlas on the BOLD grid"
    if lab.shape != vol.shape[:3] or not np.allclose(aimg.affine, img.affine, atol=1e-3):
        data, labels = _masker_means(path, img, str(atlas), aimg)
        how = "atlas resampled onto the BOLD grid (nilearn NiftiLabelsMasker, nearest)"
    else:
        lab = lab.astype(np.int64)
        labels = np.unique(lab[lab > 0])
        if labels.size == 0:
            raise InputError(str(atlas), "labels", Text("all voxels 0"), "labelled regions")
        flat = vol.reshape(-1, vol.shape[3])
        idx = np.searchsorted(labels, lab.ravel())
        keep = lab.ravel() > 0
        sums = np.zeros((labels.size, vol.shape[3]))
        np.add.at(sums, idx[keep], flat[keep])
        counts = np.bincount(idx[keep], minlength=labels.size)
        data = (sums / counts[:, None]).T
    zooms = img.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    if tr is not None:
        unit = img.header.get_xyzt_units()[1]
        if unit == "msec":
            tr *= 1e-3
        elif unit == "usec":
            tr *= 1e-6
    return data, (labels, None), tr, how
