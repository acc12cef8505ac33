"""Summary statistics of BOLD series for fitting whole-brain models to data.

Every series is ``(T, R)``: T samples in time (TRs), R regions.  What the field fits
(../shared/reference/whole-brain-fitting.md):

- ``fc(x, fisher_z=False)``: functional connectivity, the (R, R) Pearson correlation matrix
  of the regions (optionally Fisher z = arctanh, diagonal set to 0 then);
  ``upper(m)``: the upper triangle of an (R, R) matrix without the diagonal, (R(R-1)/2,),
  in row-major order (``numpy.triu_indices(R, 1)``);
- ``fc_fit(a, b)``: the FC fit score, Pearson correlation of the upper triangles of two
  (R, R) matrices;
- ``window_fc(x, window, step)``: FC in sliding windows of ``window`` TRs moved by
  ``step`` TRs, (W, R(R-1)/2) upper triangles, W = (T - window) // step + 1;
- ``fcd(x, window, step)``: FC dynamics, the (W, W) matrix of Pearson correlations between
  the windows' FC upper triangles; ``fcd_values`` its upper triangle (the distribution
  that is compared, (W(W-1)/2,));
- ``ks_distance(a, b)``: the two-sample Kolmogorov-Smirnov statistic, the largest
  difference between the empirical distribution functions of two samples (in [0, 1]);
- ``regional_variance(x)``: the variance of each region over time, (R,), in the squared
  units of x;
- ``summary(x, window, step)``: all of them for one series, as a dict.

With a TR of 0.72 s, windows of 30-60 TRs (22-43 s) and steps of 1-5 TRs are usual.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtb.errors import ConfigError

__all__ = ["fc", "upper", "fc_fit", "window_fc", "fcd", "fcd_values", "ks_distance",
           "regional_variance", "summary"]


def _series(x: Any, where: str, min_t: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2:
        raise ConfigError([f"series: shape {a.shape} -- expected (T, R): time x regions"],
                          where)
    if a.shape[0] < min_t or a.shape[1] < 2:
        raise ConfigError([f"series: shape {a.shape} -- expected at least {min_t} time "
                           "points and 2 regions"], where)
    if not np.all(np.isfinite(a)):
        raise ConfigError(["series: non-finite values -- expected finite numbers"], where)
    return a


def _corr_rows(z: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix of the rows of ``z`` (n, m); constant rows give NaN."""
    c = z - z.mean(axis=1, keepdims=True)
    ss = np.sqrt(np.einsum("ij,ij->i", c, c))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = c / ss[:, None]
    out = c @ c.T
    np.clip(out, -1.0, 1.0, out=out)
    return out


def fc(x: Any, fisher_z: bool = False) -> np.ndarray:
    """The (R, R) Pearson correlation matrix of the regions of ``x`` (T, R).

    A constant region gives NaN in its row and column.  ``fisher_z``: arctanh of the
    correlations (values of +-1 clipped to +-(1 - 1e-7)), with the diagonal set to 0.
    """
    a = _series(x, "summary.fc")
    m = _corr_rows(a.T)
    np.fill_diagonal(m, np.where(np.isnan(np.diag(m)), np.nan, 1.0))
    if fisher_z:
        m = np.arctanh(np.clip(m, -1 + 1e-7, 1 - 1e-7))
        np.fill_diagonal(m, 0.0)
    return m


def upper(m: Any) -> np.ndarray:
    """The upper triangle of a square matrix without the diagonal, (R(R-1)/2,)."""
    a = np.asarray(m)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ConfigError([f"matrix: shape {a.shape} -- expected a square (R, R) matrix"],
                          "summary.upper")
    return a[np.triu_indices(a.shape[0], 1)]


def fc_fit(a: Any, b: Any) -> float:
    """Pearson correlation of the upper triangles of two (R, R) matrices (model vs data FC,
    or log-SC vs FC); NaN when either triangle is constant."""
    ua, ub = upper(a).astype(float), upper(b).astype(float)
    if ua.shape != ub.shape:
        raise ConfigError([f"matrices: shapes {np.shape(a)} and {np.shape(b)} -- expected "
                           "the same number of regions"], "summary.fc_fit")
    return float(_corr_rows(np.stack([ua, ub]))[0, 1])


def _windows(t: int, window: int, step: int, where: str) -> np.ndarray:
    bad = []
    if not (isinstance(window, (int, np.integer)) and window >= 3):
        bad.append(f"window: {window!r} -- expected a whole number of TRs >= 3")
    if not (isinstance(step, (int, np.integer)) and step >= 1):
        bad.append(f"step: {step!r} -- expected a whole number of TRs >= 1")
    if not bad and window > t:
        bad.append(f"window: {window} -- expected at most the series' length ({t} TRs)")
    if bad:
        raise ConfigError(bad, where)
    return np.arange(0, t - window + 1, step)


def window_fc(x: Any, window: int, step: int, fisher_z: bool = False) -> np.ndarray:
    """FC upper triangles in sliding windows: (W, R(R-1)/2) for windows
    ``x[s:s + window]``, s = 0, step, 2 step, ... while s + window <= T."""
    a = _series(x, "summary.window_fc")
    starts = _windows(a.shape[0], window, step, "summary.window_fc")
    iu = np.triu_indices(a.shape[1], 1)
    out = np.empty((len(starts), len(iu[0])))
    for w, s in enumerate(starts):
        m = _corr_rows(a[s:s + window].T)
        if fisher_z:
            m = np.arctanh(np.clip(m, -1 + 1e-7, 1 - 1e-7))
        out[w] = m[iu]
    return out


def fcd(x: Any, window: int, step: int) -> np.ndarray:
    """The FCD matrix (W, W): Pearson correlation between the FC upper triangles of every
    pair of sliding windows (``window``, ``step`` in TRs; see ``window_fc``)."""
    return _corr_rows(window_fc(x, window, step))


def fcd_values(x: Any, window: int, step: int) -> np.ndarray:
    """The distribution compared between model and data: the upper triangle of the FCD
    matrix without its diagonal, (W(W-1)/2,).  Windows that overlap (lag below
    ``window`` TRs) are included, as is usual."""
    m = fcd(x, window, step)
    if m.shape[0] < 2:
        raise ConfigError([f"window: {window}, step: {step} -- expected at least two "
                           f"windows in {np.shape(x)[0]} TRs"], "summary.fcd_values")
    return upper(m)


def ks_distance(a: Any, b: Any) -> float:
    """The two-sample Kolmogorov-Smirnov statistic ``sup_v |F_a(v) - F_b(v)|`` of two 1-D
    samples (the empirical distribution functions, right-continuous), in [0, 1]."""
    sa = np.sort(np.asarray(a, dtype=float).ravel())
    sb = np.sort(np.asarray(b, dtype=float).ravel())
    if sa.size == 0 or sb.size == 0 or not (np.all(np.isfinite(sa))
                                            and np.all(np.isfinite(sb))):
        raise ConfigError(["samples: expected two non-empty samples of finite numbers"],
                          "summary.ks_distance")
    v = np.concatenate([sa, sb])
    fa = np.searchsorted(sa, v, side="right") / sa.size
    fb = np.searchsorted(sb, v, side="right") / sb.size
    return float(np.max(np.abs(fa - fb)))


def regional_variance(x: Any) -> np.ndarray:
    """Variance over time of each region of ``x`` (T, R) -> (R,) (population variance,
    ddof 0), in the squared units of x."""
    return _series(x, "summary.regional_variance").var(axis=0)


def summary(x: Any, window: int = 60, step: int = 5) -> dict[str, Any]:
    """All statistics of one BOLD series ``x`` (T, R): ``fc`` (R, R), ``fc_z`` (R, R)
    Fisher z, ``mean_fc`` (mean of the upper triangle), ``fcd_values``, ``variance`` (R,)."""
    m = fc(x)
    return {"fc": m, "fc_z": fc(x, fisher_z=True), "mean_fc": float(np.nanmean(upper(m))),
            "fcd_values": fcd_values(x, window, step), "variance": regional_variance(x)}
