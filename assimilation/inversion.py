"""Ensemble inversion of summary statistics: ES-MDA and ensemble Kalman inversion.

Where the per-TR filter (``loop.py``) *tracks* a recording, inversion *identifies* the
parameters that make a model's statistics (FC, FCD, regional variance) match the subject's.
The problem, in the papers' symbols:

    y = G(u) + eta,    eta ~ N(0, Gamma)

``u`` (p,) the parameters on an unbounded scale (e.g. logit of bounded ones), ``G`` the forward
map (run a brain, compute statistics of its BOLD; stochastic, so ``Gamma`` must hold the
simulation's own noise as well as the data's: ``noise_covariance``), ``y`` (m,) the data's
statistics.  An ensemble ``U`` (N, p) drawn from the prior is moved by Kalman updates computed
from the ensemble's own covariances of ``(U, G(U))``: derivative-free, and the N forward runs
of one iteration are independent (the caller runs them on member communicators).

* **ES-MDA** (Emerick & Reynolds 2013, Computers & Geosciences 55:3-15): ``N_a`` updates with
  the same data and noise inflated by ``alpha_i`` where ``sum 1/alpha_i = 1``.  For a linear
  ``G`` and Gaussian prior it samples the Bayesian posterior exactly as N grows (with the
  deterministic square-root update: the ensemble's mean and covariance are the exact posterior
  given the prior ensemble's, at any N > p); for nonlinear ``G`` the smaller steps beat a
  single update (the ensemble smoother).
* **EKI** (Iglesias, Law & Stuart 2013, Inverse Problems 29 045001): the same update with
  ``alpha = 1`` repeated: an optimiser (the ensemble collapses toward a data-misfit
  minimiser in the span of the initial ensemble), not a posterior sampler.  Use it to find a
  working point; use ES-MDA for uncertainty.

Each update is ``enkf.analysis`` with ``R = alpha Gamma``: the stochastic EnKF (perturbed
observations) or the ETKF square root.  The interface is ask/tell (``EsmdaState``), so a
driver can checkpoint between iterations and run members anywhere; ``invert`` is the plain
loop for callables.  Nothing here prints, writes files or knows about brains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dtb.assimilation.enkf import Diagnostics, analysis
from dtb.errors import ArgumentError

__all__ = ["esmda_alphas", "update", "Iteration", "InversionResult", "invert",
           "ledoit_wolf", "noise_covariance", "regression_residuals", "residual_covariance",
           "misfit"]


def esmda_alphas(n_iter: int, ratio: float = 1.0) -> np.ndarray:
    """Inflation coefficients (n_iter,) with ``sum(1 / alpha) = 1``.

    ``ratio`` = 1 gives Emerick & Reynolds' constant ``alpha_i = N_a``; ``ratio`` > 1 a
    geometrically decreasing sequence (``alpha_i / alpha_{i+1} = ratio``: cautious first
    steps, where the linearisation is worst; Emerick 2016 recommends this for strongly
    nonlinear problems).
    """
    if not (isinstance(n_iter, int | np.integer) and n_iter >= 1):
        raise ArgumentError(f"n_iter: {n_iter!r} -- expected an integer >= 1")
    if not (np.isfinite(ratio) and ratio >= 1.0):
        raise ArgumentError(f"ratio: {ratio!r} -- expected a finite number >= 1")
    shape = ratio ** -np.arange(n_iter, dtype=float)       # relative alpha_i, decreasing
    return shape * np.sum(1.0 / shape)


def misfit(GU: np.ndarray, y: np.ndarray, Gamma: np.ndarray) -> np.ndarray:
    """Per member, the squared Mahalanobis distance ``(G(u) - y)^T Gamma^-1 (G(u) - y) / m``
    (N,): about 1 + (spread term) when the model fits to within the noise."""
    GU = np.atleast_2d(np.asarray(GU, float))
    r = GU - np.asarray(y, float)
    G = np.asarray(Gamma, float)
    if G.ndim == 1:
        return np.sum(r * r / G, axis=1) / r.shape[1]
    L = np.linalg.cholesky(G)
    z = np.linalg.solve(L, r.T)
    return np.sum(z * z, axis=0) / r.shape[1]


def update(U: np.ndarray, GU: np.ndarray, y: np.ndarray, Gamma: np.ndarray, alpha: float = 1.0,
           method: str = "enkf", rng: np.random.Generator | int | None = None,
           ) -> tuple[np.ndarray, Diagnostics]:
    """One ES-MDA / EKI update: the parameters ``U`` (N, p) given their forward runs ``GU``
    (N, m), the data ``y`` (m,) and noise ``Gamma`` ((m,) variances or (m, m)), inflated by
    ``alpha``.  ``method``: ``"enkf"`` (perturbed observations, needs ``rng``) or ``"etkf"``.
    """
    if not (np.isfinite(alpha) and alpha > 0):
        raise ArgumentError(f"alpha: {alpha!r} -- expected a finite inflation > 0")
    return analysis(U, GU, y, alpha * np.asarray(Gamma, float), method=method, rng=rng)


@dataclass(frozen=True)
class Iteration:
    """What one iteration saw: the ensemble before it ``U`` (N, p), its forward runs
    ``GU`` (N, m), the inflation ``alpha``, the per-member ``misfit`` (N,) and the analysis
    ``diagnostics``."""

    U: np.ndarray
    GU: np.ndarray
    alpha: float
    misfit: np.ndarray
    diagnostics: Diagnostics


@dataclass
class InversionResult:
    """The final ensemble ``U`` (N, p), the forward runs of it ``GU`` (N, m) when the last
    forward evaluation was made (``final_forward=True``), and every ``Iteration``."""

    U: np.ndarray
    GU: np.ndarray | None
    iterations: list[Iteration] = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        return self.U.mean(axis=0)

    @property
    def cov(self) -> np.ndarray:
        return np.atleast_2d(np.cov(self.U, rowvar=False))


def invert(forward: Callable[[np.ndarray, int], np.ndarray], U0: np.ndarray, y: np.ndarray,
           Gamma: np.ndarray, alphas: Sequence[float], method: str = "enkf",
           rng: np.random.Generator | int | None = None, final_forward: bool = True,
           callback: Callable[[int, Iteration], None] | None = None) -> InversionResult:
    """Run ``len(alphas)`` updates from the prior ensemble ``U0`` (N, p).

    ``forward(U, i)`` maps the ensemble (N, p) to statistics (N, m) at iteration ``i`` (the
    caller decides where members run and which seeds they use; pass the iteration so that a
    stochastic model can draw fresh noise); ``alphas`` from ``esmda_alphas`` (ES-MDA) or all
    ones (EKI).  ``callback(i, it)`` is called after each update (progress, checkpoints).
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    U = np.array(U0, dtype=float)
    if U.ndim != 2 or U.shape[0] < 2:
        raise ArgumentError(f"U0: shape {U.shape} -- expected (N >= 2 members, p parameters)")
    its: list[Iteration] = []
    for i, a in enumerate(alphas):
        GU = np.asarray(forward(U, i), dtype=float)
        if GU.ndim != 2 or GU.shape[0] != U.shape[0]:
            raise ArgumentError(f"forward: returned shape {GU.shape} -- expected ({U.shape[0]}, m)")
        Ua, diag = update(U, GU, y, Gamma, float(a), method=method, rng=gen)
        it = Iteration(U=U, GU=GU, alpha=float(a), misfit=misfit(GU, y, Gamma), diagnostics=diag)
        its.append(it)
        if callback is not None:
            callback(i, it)
        U = Ua
    GU_final = np.asarray(forward(U, len(its)), float) if final_forward else None
    return InversionResult(U=U, GU=GU_final, iterations=its)


# --------------------------------------------------------------------------- noise


def ledoit_wolf(X: np.ndarray) -> tuple[np.ndarray, float]:
    """The Ledoit & Wolf (2004, J. Multivariate Anal. 88:365) shrinkage estimate of the
    covariance of the rows of ``X`` (K samples, m variables), toward ``mu I``: returns
    ``(Sigma (m, m), shrinkage in [0, 1])``.  Needed when m (3,160 FC entries of 80 regions)
    far exceeds the K repeated runs: the sample covariance is then singular."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ArgumentError(f"X: shape {X.shape} -- expected (K >= 2 samples, m variables)")
    K, m = X.shape
    Xc = X - X.mean(axis=0)
    S = Xc.T @ Xc / K                                       # the MLE, as in the paper
    mu = np.trace(S) / m
    d2 = np.sum((S - mu * np.eye(m)) ** 2)                  # ||S - mu I||_F^2
    X2 = Xc * Xc
    b2 = (np.sum(X2.T @ X2) / K - np.sum(S * S)) / K        # mean ||x x^T - S||_F^2 / K
    b2 = min(b2, d2)
    s = b2 / d2 if d2 > 0 else 1.0
    return s * mu * np.eye(m) + (1.0 - s) * S, float(s)


def noise_covariance(samples: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """The covariance (m, m) of a stochastic forward map's output at fixed parameters, from
    ``samples`` (K repeated runs: other seeds and network realisations, m statistics).

    Each statistic is standardised by its own SD, the correlation shrunk toward the identity
    (``ledoit_wolf``), and the SDs put back: the variances are the sample variances (plus
    ``floor``, for statistics that happened not to vary), the correlations are damped as
    much as K allows.
    """
    X = np.asarray(samples, dtype=float)
    if X.ndim != 2 or X.shape[0] < 3:
        # with K = 2 every standardised column is +-1: Ledoit-Wolf finds nothing to shrink
        # and the estimate is singular
        raise ArgumentError(f"samples: shape {X.shape} -- expected (K >= 3 runs, m statistics)")
    return residual_covariance(X - X.mean(axis=0), X.shape[0] - 1, floor)


def regression_residuals(U: np.ndarray, GU: np.ndarray) -> tuple[np.ndarray, int]:
    """What of an ensemble's forward runs ``GU`` (N, m) its parameters ``U`` (N, p) do not
    explain linearly: the least-squares residuals of GU on [1, U] (N, m) and their degrees
    of freedom N - p - 1 (0 when N <= p + 1: nothing is left to estimate noise from).  For
    a stochastic forward map they estimate its run-to-run noise *where the ensemble is*
    (plus its nonlinearity there, which the linear update cannot use either)."""
    U, GU = np.atleast_2d(np.asarray(U, float)), np.atleast_2d(np.asarray(GU, float))
    X = np.column_stack([np.ones(U.shape[0]), U])
    coef, *_ = np.linalg.lstsq(X, GU, rcond=None)
    return GU - X @ coef, max(U.shape[0] - X.shape[1], 0)


def residual_covariance(residuals: np.ndarray, dof: int, floor: float = 0.0) -> np.ndarray:
    """``noise_covariance`` from mean-zero ``residuals`` (K, m) with ``dof`` degrees of
    freedom (K - 1 for centred repeated runs; pooled groups add theirs): variances
    sum(r^2) / dof (+ ``floor``), correlations shrunk by ``ledoit_wolf``."""
    X = np.asarray(residuals, dtype=float)
    if X.ndim != 2 or dof < 2 or X.shape[0] < 3:
        raise ArgumentError(f"residuals: shape {X.shape}, {dof} degrees of freedom -- "
                            "expected at least 3 rows and 2 degrees of freedom")
    ss = np.sum(X * X, axis=0)
    var = ss / dof + floor
    if not np.all(var > 0):
        raise ArgumentError("samples: a statistic with zero variance across runs -- pass "
                            "floor > 0 (a variance added to every statistic)")
    sd = np.sqrt(ss / X.shape[0])
    safe = np.where(sd > 0, sd, 1.0)
    corr, _ = ledoit_wolf(X / safe)
    dc = np.sqrt(np.clip(np.diag(corr), 1e-300, None))
    corr = corr / np.outer(dc, dc)
    np.fill_diagonal(corr, 1.0)                     # also where a statistic never varied
    sdv = np.sqrt(var)
    return corr * np.outer(sdv, sdv)
