"""Scores for a fit, with the baselines that keep them honest.

All series are (T time points, R regions).  A one-step-ahead score means little on its own:
BOLD is smooth, so repeating the last value (persistence) or an AR(1) forecast already
correlates highly with the next sample.  Every tracking score here comes with those two
baselines computed on the same samples (``tracking_report``).

- ``pearson(a, b)``: per-region Pearson correlation over time, (R,);
- ``overall_correlation(a, b)``: one Pearson correlation over all regions and times after
  removing each region's mean (so offsets between regions do not inflate it);
- ``persistence_forecast(x)``: prediction of x[t] by x[t-1], rows 1..T-1;
- ``fit_ar1(x)`` / ``ar1_forecast(x, coef)``: per region, least squares
  ``x[t] = c + phi x[t-1] + e`` (fitted on a training segment), and its one-step prediction;
- ``fc(x)``: functional connectivity, the (R, R) correlation matrix of the regions;
  ``fc_correlation(a, b)``: Pearson correlation of the upper triangles (diagonal excluded) of
  two FC matrices;
- ``interval_coverage(samples, truth, level)``: the fraction of true values inside the
  ensemble's central ``level`` interval (empirical quantiles), for twin experiments;
  ``calibrated_coverage(members, level)``: what that fraction is expected to be for a
  calibrated ensemble of that size (below ``level`` for small ensembles: about 0.66 for
  a 90 % interval of 6 members).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from dtb.errors import ArgumentError

__all__ = ["pearson", "overall_correlation", "persistence_forecast", "fit_ar1", "ar1_forecast",
           "fc", "fc_correlation", "interval_coverage", "calibrated_coverage", "tracking_report",
           "rmse"]


def _2d(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[:, None] if a.ndim == 1 else a


def pearson(a: Any, b: Any) -> np.ndarray:
    """Per-column Pearson correlation of ``a`` and ``b`` (T, R) -> (R,); NaN where a column is
    constant."""
    a, b = _2d(a), _2d(b)
    if a.shape != b.shape:
        raise ArgumentError(f"pearson: shapes {a.shape} and {b.shape} -- expected equal shapes")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)


def overall_correlation(a: Any, b: Any) -> float:
    """One Pearson correlation over every (time, region) sample of ``a`` and ``b`` (T, R),
    each region's mean removed first."""
    a, b = _2d(a), _2d(b)
    return float(pearson((a - a.mean(axis=0)).ravel(), (b - b.mean(axis=0)).ravel())[0])


def rmse(a: Any, b: Any) -> float:
    """Root-mean-square difference of ``a`` and ``b`` (any equal shapes)."""
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def persistence_forecast(x: Any) -> np.ndarray:
    """The persistence prediction of rows 1..T-1 of ``x`` (T, R): ``x[:-1]``."""
    return _2d(x)[:-1].copy()


def fit_ar1(x: Any) -> np.ndarray:
    """Least-squares AR(1) per region of ``x`` (T, R): returns (2, R) rows ``c`` and ``phi``
    of ``x[t] = c + phi x[t-1]``."""
    x = _2d(x)
    if x.shape[0] < 3:
        raise ArgumentError(f"fit_ar1: {x.shape[0]} time points -- expected at least 3")
    prev, nxt = x[:-1], x[1:]
    pm, nm = prev.mean(axis=0), nxt.mean(axis=0)
    var = ((prev - pm) ** 2).sum(axis=0)
    phi = np.divide(((prev - pm) * (nxt - nm)).sum(axis=0), var, out=np.zeros_like(var),
                    where=var > 0)
    return np.stack([nm - phi * pm, phi])


def ar1_forecast(x: Any, coef: np.ndarray) -> np.ndarray:
    """One-step AR(1) prediction of rows 1..T-1 of ``x`` (T, R) with ``coef`` from
    ``fit_ar1`` (fitted on a training segment, not on the scored one)."""
    x = _2d(x)
    return coef[0] + coef[1] * x[:-1]


def fc(x: Any) -> np.ndarray:
    """Functional connectivity: the (R, R) Pearson correlation matrix of ``x`` (T, R)."""
    return np.corrcoef(_2d(x), rowvar=False)


def fc_correlation(fc_a: np.ndarray, fc_b: np.ndarray) -> float:
    """Pearson correlation of the upper triangles (k = 1) of two (R, R) FC matrices."""
    fc_a, fc_b = np.asarray(fc_a, float), np.asarray(fc_b, float)
    if fc_a.shape != fc_b.shape or fc_a.ndim != 2 or fc_a.shape[0] != fc_a.shape[1]:
        raise ArgumentError(f"fc_correlation: shapes {fc_a.shape} and {fc_b.shape} -- expected "
                            "two (R, R) matrices")
    iu = np.triu_indices(fc_a.shape[0], k=1)
    return float(pearson(fc_a[iu], fc_b[iu])[0])


def interval_coverage(samples: Any, truth: Any, level: float = 0.9) -> float:
    """Fraction of ``truth`` (...) inside the central ``level`` interval of ``samples``
    (N, ...) (empirical quantiles over the N members)."""
    s = np.asarray(samples, float)
    t = np.asarray(truth, float)
    if s.shape[1:] != t.shape:
        raise ArgumentError(f"interval_coverage: samples {s.shape}, truth {t.shape} -- expected "
                            "(N, ...) and (...)")
    if not 0 < level < 1:
        raise ArgumentError(f"level: {level!r} -- expected a probability in (0, 1)")
    lo = np.quantile(s, (1 - level) / 2, axis=0)
    hi = np.quantile(s, (1 + level) / 2, axis=0)
    return float(np.mean((t >= lo) & (t <= hi)))


@lru_cache(maxsize=64)
def calibrated_coverage(members: int, level: float = 0.9) -> float:
    """The expected ``interval_coverage`` of a calibrated ``members``-member ensemble: the
    probability that a truth drawn from the same distribution as the members (exchangeable
    with them) lies in their empirical central ``level`` interval.  Empirical quantiles of M
    samples bracket less than ``level`` of the distribution (roughly level (M - 1) / (M + 1):
    the truth's rank is uniform on 0..M), so a 6-member ensemble that is exactly right
    covers a 90 % interval about 66 % of the time.  Monte Carlo with Gaussian draws and a
    fixed seed (200,000 cases, standard error < 0.0011); other distributions differ by up
    to about 0.02 at 6 members (uniform: exactly level (M - 1) / (M + 1))."""
    if members < 2:
        raise ArgumentError(f"members: {members!r} -- expected at least 2")
    if not 0 < level < 1:
        raise ArgumentError(f"level: {level!r} -- expected a probability in (0, 1)")
    x = np.random.default_rng([members, 90]).standard_normal((200_000, members + 1))
    return interval_coverage(x[:, :members].T, x[:, members], level)


def _summary(r: np.ndarray) -> dict[str, Any]:
    return {"per_region": [None if not np.isfinite(v) else float(v) for v in r],
            "mean": float(np.nanmean(r)) if np.any(np.isfinite(r)) else None}


def tracking_report(pred: Any, obs: Any, train: Any = None) -> dict[str, Any]:
    """One-step-ahead tracking of ``obs`` (T, R) by ``pred`` (T, R) (row t predicts obs[t]
    before it is assimilated), next to persistence and AR(1) on the same rows 1..T-1.
    ``train`` (T', R): the data the AR(1) is fitted on (default: ``obs`` itself, an in-sample
    baseline that favours AR(1)).  Returns a JSON-ready dict of correlations and RMSEs."""
    pred, obs = _2d(pred), _2d(obs)
    coef = fit_ar1(obs if train is None else train)
    target = obs[1:]
    out: dict[str, Any] = {"n_samples": int(target.shape[0]), "n_regions": int(obs.shape[1])}
    for name, p in (("model", pred[1:]), ("persistence", persistence_forecast(obs)),
                    ("ar1", ar1_forecast(obs, coef))):
        out[name] = {"correlation": _summary(pearson(p, target)),
                     "overall_correlation": overall_correlation(p, target),
                     "rmse": rmse(p, target)}
    out["ar1"]["phi"] = [float(v) for v in coef[1]]
    return out
