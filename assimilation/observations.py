"""Recorded BOLD: read region x time tables or 4D NIfTI images, preprocess, match labels.

Accepted files (``read_bold(path, tr_s, ...)``):

- CSV/TSV (``.csv``, ``.tsv``, ``.txt``): a header row of region labels (integers), then one
  row per time point (T rows, R columns);
- ``.npy``: a (T, R) array, with ``labels`` given (a list, or a text file of one label a line);
- HDF5 (``.h5``, ``.hdf5``): a dataset (``dataset=``, default ``"bold"``) of shape (T, R) with
  a ``labels`` attribute (R ints) or a ``labels`` dataset beside it, and optionally a ``tr``
  attribute in seconds (then it must agree with ``tr_s`` if both are given);
- a 4D NIfTI (``.nii``, ``.nii.gz``) with an ``atlas=`` label volume on the same grid: the
  series of each atlas label is the mean over its voxels (label 0 is background); the TR is
  read from the header's 4th zoom (seconds, or milliseconds when the header says ``msec``)
  and checked against ``tr_s``.

The result is a ``BoldData``: ``data`` (T, R) float64, ``labels`` (R,) ints, ``tr_s`` (s).
Every problem is an ``InputError`` naming the file, the field, the value and what was
expected: missing or unreadable files, NaN or infinite samples, a TR that is not positive or
disagrees with the file, unknown or duplicate labels, fewer than ``min_samples`` time points,
constant series.

Preprocessing (``preprocess``), in this order, each optional:

- ``detrend``: remove a least-squares polynomial (``"constant"`` = the mean, ``"linear"``,
  or an integer degree) from every region;
- ``band``: zero-phase Butterworth band-pass ``(low_hz, high_hz)`` (order 2 per side, applied
  forward and backward with ``scipy.signal.sosfiltfilt``; ``low_hz`` 0 for a low-pass,
  ``high_hz`` None for a high-pass); resting-state work typically keeps 0.01-0.1 Hz;
- ``zscore``: every region to mean 0 and standard deviation 1 (ddof 0).

Label matching (``match_labels``) is explicit and by label, never by position: each unit of
the brain takes the observed series of its region's label; observed regions that the brain
lacks and brain regions without an observation are errors unless allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import InputError

__all__ = ["BoldData", "read_bold", "preprocess", "match_labels"]

PathLike = str | os.PathLike
MIN_SAMPLES = 10


class _Text(str):
    """A value shown without quotes in an InputError message."""

    def __repr__(self) -> str:
        return str(self)


def _listed(items: Any, most: int = 10) -> _Text:
    items = [x.item() if isinstance(x, np.generic) else x for x in items]
    more = f", ... ({len(items)} in all)" if len(items) > most else ""
    return _Text("[" + ", ".join(repr(x) for x in items[:most]) + more + "]")


@dataclass(frozen=True)
class BoldData:
    """Observed BOLD: ``data`` (T time points, R regions), ``labels`` (R,) region labels,
    ``tr_s`` the repetition time in seconds, ``source`` the file it came from."""

    data: np.ndarray
    labels: np.ndarray
    tr_s: float
    source: str = ""

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples * self.tr_s


def _suffix(p: Path) -> str:
    name = p.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower()


def _labels_from(path: str, field: str, values: Any) -> np.ndarray:
    out = []
    for v in np.atleast_1d(np.asarray(values, dtype=object)).ravel():
        s = v.decode() if isinstance(v, bytes) else str(v)
        try:
            f = float(s.strip())
        except ValueError:
            raise InputError(path, field, s, "integer region labels") from None
        if not f.is_integer() or f <= 0 or f >= 2**63:
            raise InputError(path, field, s, "integer region labels > 0 (and < 2^63)")
        out.append(int(f))
    lab = np.asarray(out, dtype=np.int64)
    uniq, counts = np.unique(lab, return_counts=True)
    if np.any(counts > 1):
        raise InputError(path, field, _listed(uniq[counts > 1]), "distinct region labels")
    return lab


def _read_table(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, "file", _Text(f"unreadable ({e})"), "a text table") from e
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise InputError(path, "file", _Text("empty"), "a header of labels and rows of values")
    sep = "\t" if "\t" in rows[0] else ("," if "," in rows[0] else None)
    split = (lambda s: [c.strip() for c in s.split(sep)]) if sep else (lambda s: s.split())
    labels = _labels_from(path, "header", split(rows[0]))
    data = np.empty((len(rows) - 1, len(labels)))
    for i, row in enumerate(rows[1:]):
        cells = split(row)
        if len(cells) != len(labels):
            raise InputError(path, f"row {i + 1}", _Text(f"{len(cells)} values"),
                             f"{len(labels)} values, one per label in the header")
        for j, c in enumerate(cells):
            try:
                data[i, j] = float(c)
            except ValueError:
                raise InputError(path, f"row {i + 1}, label {labels[j]}", c,
                                 "a number") from None
    return data, labels


def _read_label_list(path: str, labels: Any) -> np.ndarray:
    if labels is None:
        raise InputError(path, "labels", None, "labels for a .npy table (labels=[...] or a "
                         "file with one label a line)")
    if isinstance(labels, (str, os.PathLike)):
        try:
            items = Path(labels).read_text(encoding="utf-8").split()
        except OSError as e:
            raise InputError(str(labels), "labels", _Text(f"unreadable ({e.strerror})"),
                             "a text file of region labels, one a line") from e
        return _labels_from(str(labels), "labels", items)
    return _labels_from(path, "labels", labels)


def _read_hdf5(path: str, dataset: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    import h5py

    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, "file", _Text(f"unreadable ({e})"), "an HDF5 file") from e
    with h:
        if dataset not in h or not isinstance(h[dataset], h5py.Dataset):
            raise InputError(path, dataset, _Text("missing"),
                             f"a (T, R) dataset '{dataset}' (choose one with dataset=)")
        d = h[dataset]
        try:
            data = d[()]
        except (OSError, RuntimeError) as e:     # damaged or cut short inside the data
            raise InputError(path, dataset, _Text(f"unreadable ({e})"),
                             "a complete HDF5 file (is it truncated?)") from e
        if "labels" in d.attrs:
            labels = _labels_from(path, f"{dataset}.attrs['labels']", d.attrs["labels"])
        elif "labels" in h:
            labels = _labels_from(path, "labels", h["labels"][()])
        else:
            raise InputError(path, f"{dataset}.attrs['labels']", _Text("missing"),
                             "region labels as an attribute of the dataset or a 'labels' "
                             "dataset")
        tr = d.attrs.get("tr", h.attrs.get("tr"))
    if tr is not None:
        try:
            tr = float(tr)
        except (TypeError, ValueError):
            raise InputError(path, f"{dataset}.attrs['tr']", _Text(repr(tr)[:80]),
                             "a repetition time in seconds") from None
    return np.asarray(data), labels, tr


def _read_nifti(path: str, atlas: PathLike | None) -> tuple[np.ndarray, np.ndarray,
                                                               float | None]:
    import nibabel as nib

    if atlas is None:
        raise InputError(path, "atlas", None, "an atlas label volume (atlas=) to average "
                         "the 4D image over regions")
    try:
        img = nib.load(path)
        vol = np.asarray(img.dataobj, dtype=float)
    except Exception as e:  # nibabel raises many kinds for damaged files
        raise InputError(path, "file", _Text(f"unreadable ({type(e).__name__}: {e})"),
                         "a 4D NIfTI image") from e
    if vol.ndim != 4:
        raise InputError(path, "shape", tuple(vol.shape), "a 4D image (x, y, z, time)")
    try:
        aimg = nib.load(atlas)
        lab = np.asarray(aimg.dataobj)
    except Exception as e:
        raise InputError(str(atlas), "file", _Text(f"unreadable ({type(e).__name__}: {e})"),
                         "a 3D NIfTI label volume") from e
    if lab.shape != vol.shape[:3]:
        raise InputError(str(atlas), "shape", tuple(lab.shape),
                         f"the BOLD image's grid {tuple(vol.shape[:3])}")
    if not np.allclose(aimg.affine, img.affine, atol=1e-3):
        raise InputError(str(atlas), "affine", _Text(str(np.round(aimg.affine, 3).tolist())),
                         f"the BOLD image's affine {np.round(img.affine, 3).tolist()}")
    if not np.all(np.equal(np.mod(lab, 1), 0)):
        raise InputError(str(atlas), "labels", _Text("non-integer values"),
                         "integer region labels")
    lab = lab.astype(np.int64)
    labels = np.unique(lab[lab > 0])
    if labels.size == 0:
        raise InputError(str(atlas), "labels", _Text("all voxels 0"), "labelled regions")
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
    return data, labels, tr


def read_bold(path: PathLike, tr_s: float | None = None, labels: Any = None,
              dataset: str = "bold", atlas: PathLike | None = None,
              min_samples: int = MIN_SAMPLES) -> BoldData:
    """Read observed BOLD (see the module docstring for the formats); ``tr_s`` in seconds
    (required unless the file records it; when both are given they must agree to 1 ms)."""
    p = Path(path)
    src = str(path)
    if not p.exists():
        raise InputError(src, "file", _Text("no such file"), "an existing BOLD file")
    if not p.is_file():
        raise InputError(src, "file", _Text("not a regular file"), "a file")
    suf = _suffix(p)
    file_tr = None
    if suf in (".csv", ".tsv", ".txt"):
        data, lab = _read_table(src)
    elif suf == ".npy":
        try:
            data = np.load(src, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(src, "file", _Text(f"unreadable ({e})"), "a .npy array") from e
        lab = _read_label_list(src, labels)
    elif suf in (".h5", ".hdf5"):
        data, lab, file_tr = _read_hdf5(src, dataset)
    elif suf in (".nii", ".nii.gz"):
        data, lab, file_tr = _read_nifti(src, atlas)
    else:
        raise InputError(src, "suffix", suf or _Text("none"),
                         ".csv, .tsv, .txt, .npy, .h5, .hdf5, .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != lab.size:
        raise InputError(src, "shape", tuple(data.shape),
                         f"(time points, {lab.size} regions) matching the labels")
    if not np.issubdtype(data.dtype, np.number):
        raise InputError(src, "data type", str(data.dtype), "real numbers")
    data = data.astype(float)
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        t, r = bad[0]
        raise InputError(src, f"time point {t}, label {lab[r]}", float(data[t, r]),
                         f"finite values ({len(bad)} non-finite in all)")
    if file_tr is not None and tr_s is not None and abs(file_tr - tr_s) > 1e-3:
        raise InputError(src, "tr", file_tr, f"the given TR {tr_s} s (the file and --tr "
                         "disagree)")
    tr = tr_s if tr_s is not None else file_tr
    if tr is None:
        raise InputError(src, "tr", None, "a repetition time in seconds (--tr)")
    if not (np.isfinite(tr) and 0 < tr <= 60):
        raise InputError(src, "tr", tr, "a repetition time in seconds, in (0, 60]")
    if data.shape[0] < min_samples:
        raise InputError(src, "time points", data.shape[0],
                         f"at least {min_samples} time points")
    flat = np.flatnonzero(np.ptp(data, axis=0) == 0)
    if flat.size:
        raise InputError(src, f"label {lab[flat[0]]}", _Text("a constant series"),
                         "a varying signal in every region")
    return BoldData(data, lab, float(tr), src)


def preprocess(bold: BoldData, detrend: str | int | None = None,
               band: tuple[float, float | None] | None = None,
               zscore: bool = False) -> BoldData:
    """Detrend, band-pass and z-score (in that order; see the module docstring)."""
    x = bold.data.copy()
    t = np.arange(x.shape[0], dtype=float)
    if detrend is not None:
        deg = {"constant": 0, "linear": 1}.get(detrend, detrend) if isinstance(
            detrend, str) else detrend
        if not isinstance(deg, (int, np.integer)) or deg < 0:
            raise ValueError(f"detrend: {detrend!r} -- expected 'constant', 'linear' or a "
                             "polynomial degree >= 0")
        tt = (t - t.mean()) / max(t.std(), 1.0)
        V = np.vander(tt, int(deg) + 1)
        coef, *_ = np.linalg.lstsq(V, x, rcond=None)
        x = x - V @ coef
    if band is not None:
        from scipy.signal import butter, sosfiltfilt

        lo, hi = band
        nyq = 0.5 / bold.tr_s
        if lo < 0 or (hi is not None and not lo < hi < nyq) or (hi is None and not lo > 0):
            raise ValueError(f"band: {band!r} -- expected 0 <= low < high < Nyquist "
                             f"({nyq:.4g} Hz at TR {bold.tr_s} s), in Hz")
        if lo > 0 and hi is not None:
            sos = butter(2, [lo, hi], btype="bandpass", fs=1.0 / bold.tr_s, output="sos")
        elif hi is not None:
            sos = butter(2, hi, btype="lowpass", fs=1.0 / bold.tr_s, output="sos")
        else:
            sos = butter(2, lo, btype="highpass", fs=1.0 / bold.tr_s, output="sos")
        if x.shape[0] <= 3 * (2 * sos.shape[0] + 1):
            raise InputError(bold.source, "time points", x.shape[0],
                             f"more than {3 * (2 * sos.shape[0] + 1)} for the band-pass")
        x = sosfiltfilt(sos, x, axis=0)
    if zscore:
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return replace(bold, data=x)


def match_labels(bold: BoldData, unit_labels: Any, allow_unobserved: bool = False,
                 allow_extra: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Map observed regions to the brain's units by label.

    ``unit_labels`` (U,): the region label of every unit (``BrainSpec.unit_labels``).
    Returns ``(obs_index, unit_obs)``: ``obs_index`` (U,) the observed column of every unit
    (-1 where its region is not observed, allowed only with ``allow_unobserved``), and
    ``unit_obs`` (R_used,) the observed columns that some unit has, in file order.  Observed
    labels that no unit has are an error unless ``allow_extra``.
    """
    ul = np.asarray(unit_labels, dtype=np.int64)
    pos = {int(v): i for i, v in enumerate(bold.labels)}
    obs_index = np.array([pos.get(int(v), -1) for v in ul], dtype=np.int64)
    missing = sorted(set(ul[obs_index < 0].tolist()))
    if missing and not allow_unobserved:
        raise InputError(bold.source, "labels", _listed(missing),
                         "an observed series for every region of the brain (these brain "
                         "regions have none; allow unobserved regions to go on)")
    extra = sorted(set(bold.labels.tolist()) - set(ul.tolist()))
    if extra and not allow_extra:
        raise InputError(bold.source, "labels", _listed(extra),
                         "labels of the brain's regions (the brain has no such region)")
    used = np.unique(obs_index[obs_index >= 0])
    if used.size == 0:
        raise InputError(bold.source, "labels", _listed(bold.labels),
                         f"at least one of the brain's region labels {_listed(np.unique(ul))}")
    return obs_index, used
