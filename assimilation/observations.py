"""Recorded BOLD: read region x time tables or 4D NIfTI images, preprocess, match labels.

Accepted files (``read_bold(path, tr_s, ...)``):

- CSV/TSV (``.csv``, ``.tsv``, ``.txt``): a header row of region labels (integers) or of
  region names (as XCP-D's and nilearn's ``*_timeseries.tsv`` are headed), then one row per
  time point (T rows, R columns).  ``n/a`` (BIDS' missing value) is accepted for a whole
  column only: a region without coverage, dropped and remembered (``BoldData.no_coverage``);
  ``n/a`` in some rows of a column is refused;
- ``.npy``: a (T, R) array, with ``labels`` given (a list, or a text file of one label or
  name a line);
- HDF5 (``.h5``, ``.hdf5``): a dataset (``dataset=``, default ``"bold"``) of shape (T, R) with
  a ``labels`` attribute (R labels or names) or a ``labels`` dataset beside it, and optionally
  a ``tr`` attribute in seconds;
- a 4D NIfTI (``.nii``, ``.nii.gz``) with an ``atlas=`` label volume: the series of each atlas
  label is the mean over its voxels (label 0 is background).  On the same grid this is done
  here; on another grid (other shape or affine) nilearn's ``NiftiLabelsMasker`` resamples the
  atlas onto the BOLD grid (nearest neighbour) and averages, when the ``nilearn`` extra is
  installed (``pip install 'dtb[nilearn]'``), and the grids are refused otherwise.  The TR is
  read from the header's 4th zoom (seconds, or milliseconds when the header says ``msec``).

A header is either all labels or all names (``dtb.assimilation.boldfiles.header_keys``):
every cell an integer gives labels, no cell a number gives names, a mix is refused naming
the odd column.

The TR (seconds) may come from ``tr_s`` (``--tr``), from the file (HDF5 ``tr``, the NIfTI
header) and from a BIDS JSON sidecar beside the file (``dtb.io.bids.sidecar_tr``:
``RepetitionTime`` in s, or ``SamplingFrequency`` in Hz); every source given must agree to
1 ms, and a disagreement is refused naming both.

The result is a ``BoldData``: ``data`` (T, R) float64, ``labels`` (R,) ints or ``names`` (R,)
strings, ``tr_s`` (s).  ``resolve_regions`` gives named columns their brain labels.
Every problem is an ``InputError`` naming the file, the field, the value and what was
expected: missing or unreadable files, NaN or infinite samples, a TR that is not positive or
disagrees with another source, unknown, ambiguous or duplicate labels and names, fewer than
``min_samples`` time points, constant series.

Preprocessing (``preprocess``), in this order, each optional:

- ``detrend``: remove a least-squares polynomial (``"constant"`` = the mean, ``"linear"``,
  or an integer degree) from every region;
- ``band``: zero-phase Butterworth band-pass ``(low_hz, high_hz)`` (order 2 per side, applied
  forward and backward with ``scipy.signal.sosfiltfilt``; ``low_hz`` 0 for a low-pass,
  ``high_hz`` None for a high-pass); resting-state work typically keeps 0.01-0.1 Hz;
- ``zscore``: every region to mean 0 and standard deviation 1 (ddof 0).

Region matching is explicit, by label or by name, never by position, in both directions
(``resolve_regions`` then ``match_labels``): a header of labels is matched to the brain's
region labels, a header of names to the brain's region names (exactly, case included); each
unit of the brain takes the observed series of its region; observed regions that the brain
lacks and brain regions without an observation are errors unless allowed.  An integer header
cell that is also the *name* of another brain region is ambiguous and refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import butter, sosfiltfilt

from dtb.assimilation.boldfiles import (
    PathLike,
    Text,
    listed,
    read_hdf5,
    read_label_list,
    read_nifti,
    read_table,
    suffix,
)
from dtb.errors import ArgumentError, InputError
from dtb.io.bids import sidecar_tr

__all__ = ["BoldData", "read_bold", "preprocess", "resolve_regions", "match_labels"]

MIN_SAMPLES = 10


@dataclass(frozen=True)
class BoldData:
    """Observed BOLD: ``data`` (T time points, R regions); the columns' regions as ``labels``
    (R,) int64 region labels, or, before ``resolve_regions``, only as ``names`` (R,) region
    names (``labels`` None); ``tr_s`` the repetition time in seconds and ``tr_source`` where
    it came from; ``source`` the file; ``no_coverage`` the labels (or names) of columns that
    were all ``n/a`` and were dropped."""

    data: np.ndarray
    labels: np.ndarray | None
    tr_s: float
    source: str = ""
    names: tuple[str, ...] | None = None
    no_coverage: tuple[Any, ...] = ()
    tr_source: str = ""

    def column(self, r: int) -> str:
        """How column ``r`` is named in messages: ``label 7`` or ``region 'Precentral_L'``."""
        if self.labels is not None:
            return f"label {int(self.labels[r])}"
        return f"region {self.names[r]!r}" if self.names is not None else f"column {r + 1}"

    def keys(self) -> list[Any]:
        """The columns' labels, or their names when only names are known."""
        if self.labels is not None:
            return [int(v) for v in self.labels]
        return list(self.names or ())

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples * self.tr_s


def _agreed_tr(src: str, tr_s: float | None, file_tr: float | None,
               side: tuple[str, str, float] | None) -> tuple[float | None, str]:
    """The TR every given source agrees on (to 1 ms) and where it came from."""
    if file_tr is not None and tr_s is not None and abs(file_tr - tr_s) > 1e-3:
        raise InputError(src, "tr", file_tr, f"the given TR {tr_s} s (the file and --tr "
                         "disagree)")
    if side is not None:
        where, field, value = side
        for other, what in ((tr_s, f"the given --tr {tr_s} s (the sidecar and --tr "
                                   "disagree)"),
                            (file_tr, f"the TR in {src}'s header, {file_tr} s (the sidecar "
                                      "and the file disagree)")):
            if other is not None and abs(value - other) > 1e-3:
                raise InputError(where, field, value, what)
    if tr_s is not None:
        return tr_s, "--tr"
    if side is not None:
        return side[2], f"{side[0]} ({side[1]})"
    return file_tr, ("the file" if file_tr is not None else "")


def read_bold(path: PathLike, tr_s: float | None = None, labels: Any = None,
              dataset: str = "bold", atlas: PathLike | None = None,
              min_samples: int = MIN_SAMPLES, sidecar: bool = True) -> BoldData:
    """Read observed BOLD (see the module docstring for the formats); ``tr_s`` in seconds
    (required unless the file or its JSON sidecar records it; every source given must agree
    to 1 ms).  ``sidecar``: read the BIDS sidecar beside the file when there is one."""

    p = Path(path)
    src = str(path)
    if not p.exists():
        raise InputError(src, "file", Text("no such file"), "an existing BOLD file")
    if not p.is_file():
        raise InputError(src, "file", Text("not a regular file"), "a file")
    suf = suffix(p)
    file_tr = None
    dropped: tuple[Any, ...] = ()
    how = ""
    if suf in (".csv", ".tsv", ".txt"):
        data, keys, dropped = read_table(src)
    elif suf == ".npy":
        try:
            data = np.load(src, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(src, "file", Text(f"unreadable ({e})"), "a .npy array") from e
        keys = read_label_list(src, labels)
    elif suf in (".h5", ".hdf5"):
        data, keys, file_tr = read_hdf5(src, dataset)
    elif suf in (".nii", ".nii.gz"):
        data, keys, file_tr, how = read_nifti(src, atlas)
    else:
        raise InputError(src, "suffix", suf or Text("none"),
                         ".csv, .tsv, .txt, .npy, .h5, .hdf5, .nii or .nii.gz")
    lab, names = keys
    n_cols = lab.size if lab is not None else len(names)
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != n_cols:
        raise InputError(src, "shape", tuple(data.shape),
                         f"(time points, {n_cols} regions) matching the labels")
    if not np.issubdtype(data.dtype, np.number):
        raise InputError(src, "data type", str(data.dtype), "real numbers")
    out = BoldData(data.astype(float), lab, 0.0, src, names, dropped)
    bad = np.argwhere(~np.isfinite(out.data))
    if bad.size:
        t, r = bad[0]
        raise InputError(src, f"time point {t}, {out.column(r)}", float(out.data[t, r]),
                         f"finite values ({len(bad)} non-finite in all)")
    tr, tr_from = _agreed_tr(src, tr_s, file_tr, sidecar_tr(p) if sidecar else None)
    if tr is None:
        raise InputError(src, "tr", None, "a repetition time in seconds (--tr, or "
                         "RepetitionTime in a JSON sidecar beside the file)")
    if not (np.isfinite(tr) and 0 < tr <= 60):
        raise InputError(src, "tr", tr, "a repetition time in seconds, in (0, 60]")
    if out.n_samples < min_samples:
        raise InputError(src, "time points", out.n_samples,
                         f"at least {min_samples} time points")
    flat = np.flatnonzero(np.ptp(out.data, axis=0) == 0)
    if flat.size:
        raise InputError(src, out.column(int(flat[0])), Text("a constant series"),
                         "a varying signal in every region")
    if how:
        tr_from = f"{tr_from}; {how}"
    return replace(out, tr_s=float(tr), tr_source=tr_from)


def resolve_regions(bold: BoldData, region_labels: Any, region_names: Any,
                    allow_extra: bool = False) -> BoldData:
    """Give every observed column its brain region label: a header of labels is kept (and
    refused where an integer is also the *name* of another brain region: ambiguous), a
    header of names is matched to ``region_names`` exactly.  Names the brain lacks are an
    error unless ``allow_extra`` (then their columns are dropped).  ``region_labels`` (K,)
    and ``region_names`` (K,) are the brain's (``BrainSpec.region_labels``,
    ``.region_names``).  Returns the BoldData with ``labels`` set (and ``names`` where the
    brain names them)."""
    rl = [int(v) for v in np.asarray(region_labels).ravel()]
    rn = [str(v) for v in region_names]
    name_of = dict(zip(rl, rn, strict=True))
    by_name: dict[str, list[int]] = {}
    for lab, n in zip(rl, rn, strict=True):
        by_name.setdefault(n, []).append(lab)
    src = bold.source
    if bold.labels is not None:
        for j, lab in enumerate(bold.labels.tolist()):
            other = [x for x in by_name.get(str(lab), []) if x != lab]
            if other:
                mine = (f"the brain's label {lab} is region {name_of[lab]!r}"
                        if lab in name_of else f"the brain has no label {lab}")
                raise InputError(src, f"header column {j + 1}", lab,
                                 f"an unambiguous region: read as a label, but {mine} and "
                                 f"its region with label {other[0]} is named '{lab}'")
        names = tuple(name_of.get(lab, str(lab)) for lab in bold.labels.tolist())
        return replace(bold, names=names)
    labels, keep, unknown = [], [], []
    for j, n in enumerate(bold.names or ()):
        hits = by_name.get(n, [])
        if len(hits) > 1:
            raise InputError(src, f"header column {j + 1}", n,
                             f"a region name the brain has once (labels {listed(hits)} "
                             "share it; head the table with labels instead)")
        if hits:
            labels.append(hits[0])
            keep.append(j)
        else:
            unknown.append(n)
    if unknown and not allow_extra:
        folded = {n.casefold(): n for n in rn}
        near = [f"{n!r} (the brain has {folded[n.casefold()]!r})" for n in unknown
                if n.casefold() in folded]
        hint = f"; names differ in case: {', '.join(near[:3])}" if near else ""
        raise InputError(src, "header", listed(unknown),
                         f"names of the brain's regions (it has no region so named; it has "
                         f"{listed(rn, 6)}{hint})")
    if not keep:
        raise InputError(src, "header", listed(bold.names or ()),
                         f"at least one of the brain's region names {listed(rn, 6)}")
    gone = tuple(by_name[n][0] if len(by_name.get(n, [])) == 1 else n
                 for n in bold.no_coverage)
    names = bold.names or ()
    return replace(bold, data=bold.data[:, keep], labels=np.asarray(labels, np.int64),
                   names=tuple(names[j] for j in keep), no_coverage=gone)


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
            raise ArgumentError(f"detrend: {detrend!r} -- expected 'constant', 'linear' or a "
                                "polynomial degree >= 0")
        tt = (t - t.mean()) / max(t.std(), 1.0)
        V = np.vander(tt, int(deg) + 1)
        coef, *_ = np.linalg.lstsq(V, x, rcond=None)
        x = x - V @ coef
    if band is not None:
        lo, hi = band
        nyq = 0.5 / bold.tr_s
        if lo < 0 or (hi is not None and not lo < hi < nyq) or (hi is None and not lo > 0):
            raise ArgumentError(f"band: {band!r} -- expected 0 <= low < high < Nyquist "
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
    """Map observed regions to the brain's units by label (a table headed by names goes
    through ``resolve_regions`` first).

    ``unit_labels`` (U,): the region label of every unit (``BrainSpec.unit_labels``).
    Returns ``(obs_index, unit_obs)``: ``obs_index`` (U,) the observed column of every unit
    (-1 where its region is not observed, allowed only with ``allow_unobserved``), and
    ``unit_obs`` (R_used,) the observed columns that some unit has, in file order.  Observed
    labels that no unit has are an error unless ``allow_extra``.
    """
    if bold.labels is None:
        raise InputError(bold.source, "header", listed(bold.names or ()),
                         "region labels (a table headed by names needs the brain's region "
                         "names: resolve_regions)")
    ul = np.asarray(unit_labels, dtype=np.int64)
    pos = {int(v): i for i, v in enumerate(bold.labels)}
    obs_index = np.array([pos.get(int(v), -1) for v in ul], dtype=np.int64)
    missing = sorted(set(ul[obs_index < 0].tolist()))
    if missing and not allow_unobserved:
        empty = [m for m in missing if m in bold.no_coverage]
        why = (f"; {listed(empty)} are all n/a in the file: no coverage" if empty else "")
        raise InputError(bold.source, "labels", listed(missing),
                         "an observed series for every region of the brain (these brain "
                         f"regions have none{why}; allow unobserved regions to go on)")
    extra = sorted(set(bold.labels.tolist()) - set(ul.tolist()))
    if extra and not allow_extra:
        raise InputError(bold.source, "labels", listed(extra),
                         "labels of the brain's regions (the brain has no such region)")
    used = np.unique(obs_index[obs_index >= 0])
    if used.size == 0:
        raise InputError(bold.source, "labels", listed(bold.labels),
                         f"at least one of the brain's region labels {listed(np.unique(ul))}")
    return obs_index, used
