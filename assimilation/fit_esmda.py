"""The ES-MDA fit of a brain's parameters to BOLD summary statistics: ``Fitter`` (step by
step, with a checkpointable state) and ``fit`` (all of it), over the forward map of
dtb.assimilation.fit and the ensemble update of dtb.assimilation.inversion.  Parameters on
the unbounded (logit) scale inside, each parameter's own scale outside."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtb.assimilation.enkf import Diagnostics
from dtb.assimilation.fit import NOISE_ITERATION, FitParameter, Forward
from dtb.assimilation.fit_statistics import (  # noqa: F401 - part of this module's API
    BlockBasis,
    FcBasis,
    StatisticsConfig,
    bases,
    fc_basis,
    find,
    n_fc,
    reduce,
    statistics,
)
from dtb.assimilation.inversion import (
    InversionResult,
    Iteration,
    esmda_alphas,
    misfit,
    noise_covariance,
    regression_residuals,
    residual_covariance,
    update,
)
from dtb.errors import ArgumentError, ConfigError

#: where a block's reduction is stored (checkpoints, fit.h5); "basis" is FC's, as before
BASIS_KEY = {"fc": "basis", "variance": "basis_variance"}
_DIAG_SCALARS = ("innovation_mean", "innovation_var", "expected_var", "normalized_innovation",
                 "prior_spread_obs", "posterior_spread_obs", "n_groups")


@dataclass
class FitResult:
    """An inversion's outcome: ``prior`` and ``posterior`` parameter values (N, P),
    ``y`` (m,) the fitted data statistics, ``Gamma`` (m, m) the noise used, ``noise_runs``
    (K, m) the statistics of repeated runs at the prior centre behind it, the
    ``inversion`` (``inversion.InversionResult`` on the unbounded scale) and the
    ``bases`` that reduced blocks of the statistics (FC, log variances; empty: nothing
    was reduced; ``y``, ``Gamma`` and ``noise_runs`` are the reduced statistics)."""

    params: Sequence[FitParameter]
    prior: np.ndarray
    posterior: np.ndarray
    y: np.ndarray
    Gamma: np.ndarray
    noise_runs: np.ndarray
    inversion: Any
    bases: tuple[BlockBasis, ...] = ()

    @property
    def basis(self) -> BlockBasis | None:
        """The FC block's reduction (None: the whole triangle was fitted)."""
        return self.reduction("fc")

    def reduction(self, name: str) -> BlockBasis | None:
        """The reduction of block ``name`` ("fc", "variance"), None where none."""
        return find(self.bases, name)

    @property
    def posterior_mean(self) -> np.ndarray:
        """The mean on the unbounded (logit) scale, mapped back to each parameter's own
        scale, (P,)."""
        u = self.inversion.U.mean(axis=0)
        return np.array([p.from_unbounded(u[k]) for k, p in enumerate(self.params)])


PRIOR_SAMPLING = ("exact", "random")
NOISE_ESTIMATES = ("pooled", "centre")


def prior_normals(rng: np.random.Generator, n: int, p: int, how: str = "exact") -> np.ndarray:
    """(n, p) standard normal draws for a prior ensemble.  ``"random"``: plain draws.
    ``"exact"``: the same draws centred and whitened so that their sample mean is 0 and
    their sample covariance (ddof 1) the identity exactly (second-order exact sampling,
    Evensen 2004); with n <= p members, where no n points have an identity covariance,
    each column is centred and scaled to SD 1 instead."""
    Z = rng.standard_normal((n, p))
    if how == "random" or n < 2:
        return Z
    Z = Z - Z.mean(axis=0)
    if n > p:
        L = np.linalg.cholesky(Z.T @ Z / (n - 1))
        return np.linalg.solve(L, Z.T).T
    return Z / Z.std(axis=0, ddof=1)


class Fitter:
    """ES-MDA on the parameters of ``forward`` (a ``Forward``), one step at a time, over a
    state a driver can checkpoint between iterations (``state`` / ``restore``); ``fit`` is
    the plain loop.

    ``start()``: ``noise_runs`` repeated forward runs at the prior centre (other seeds:
    other network realisations, or other noises of the forward's one network unless its
    ``model_error`` is ``"networks"``) give the model's own run-to-run covariance
    (``noise_covariance``); the data statistics are one more draw of such a process, so
    Gamma = (1 + ``data_noise``) times it (``data_noise`` = 1: data as long as the runs).
    Prior: independent normals of SD ``prior_sd`` on the logit scale around ``centre``
    (default: the middle of the bounds).  ``prior_sampling="exact"`` (the default) draws
    them with the prior's moments exactly (``prior_normals``): with 6-8 members a plain
    draw is far from its prior (one parameter's six draws all fell above the centre, and
    the posterior mean stayed where that draw put it); ``"random"`` is the plain draw.
    ``noise="centre"``: Gamma from the noise runs alone, once.  ``"pooled"`` (the
    default): before every update the noise runs are pooled with what the ensemble's own
    runs leave unexplained by a linear fit on its parameters (``regression_residuals``: N -
    P - 1 more degrees of freedom, measured where the ensemble is now).  The run-to-run
    noise of FC grows and shrinks with the parameters (near the coupling edge it is
    larger), and three noise runs give each variance 2 degrees of freedom: Gamma from the
    centre alone made the intervals too narrow (benchmarks/fit_coverage.py).
    ``step()``: one of ``iterations`` updates with ``esmda_alphas(iterations, ratio)``
    (perturbed observations); members draw fresh seeds at every iteration. With
    ``forward.stats.fc_components`` (``variance_components``) > 0 the first step finds a
    ``BlockBasis`` of the prior ensemble's FC (log variances), and the data, the noise
    runs and every later forward run are reduced by it before Gamma and the updates see
    them.

    ``y`` (m,) are the data's statistics before any reduction (``statistics``)."""

    def __init__(self, forward: Forward, y: np.ndarray, members: int, iterations: int,
                 seed: int = 0, noise_runs: int = 8, data_noise: float = 1.0,
                 prior_sd: float = 1.0, centre: Sequence[float] | None = None,
                 ratio: float = 1.0, prior_sampling: str = "exact", noise: str = "pooled"):

        bad = [f"{name}: {v!r} -- expected an integer >= {least}{why}"
               for name, v, least, why in (
                   ("members", members, 2, ""), ("iterations", iterations, 1, ""),
                   ("noise_runs", noise_runs, 3, " (two runs make every standardised "
                    "statistic +-1, a singular covariance that no shrinkage repairs)"))
               if not (isinstance(v, int | np.integer) and v >= least)]
        if prior_sampling not in PRIOR_SAMPLING:
            bad.append(f"prior_sampling: {prior_sampling!r} -- expected one of "
                       f"{list(PRIOR_SAMPLING)}")
        if noise not in NOISE_ESTIMATES:
            bad.append(f"noise: {noise!r} -- expected one of {list(NOISE_ESTIMATES)}")
        if bad:
            raise ConfigError(bad, "fit")
        self.prior_sampling, self.noise = prior_sampling, noise
        self.forward = forward
        self.y_full = np.asarray(y, float)
        self.members, self.n_iter, self.seed = int(members), int(iterations), int(seed)
        self.noise_runs, self.data_noise, self.prior_sd = int(noise_runs), data_noise, prior_sd
        self.alphas = esmda_alphas(self.n_iter, ratio)
        P = len(forward.params)
        self.c = (np.zeros(P) if centre is None
                  else np.array([p.to_unbounded(v)
                                 for p, v in zip(forward.params, centre, strict=True)]))
        self.i = 0                                   # iterations done
        self.S_full: np.ndarray | None = None        # (K, m) noise runs, unreduced
        self.U0: np.ndarray | None = None            # (N, P) prior, unbounded
        self.U: np.ndarray | None = None             # (N, P) the current ensemble
        self.rng: np.random.Generator | None = None
        self.bases: tuple[BlockBasis, ...] = ()
        self.y: np.ndarray | None = None             # (m',) reduced data statistics
        self.Gamma: np.ndarray | None = None
        self.iterations: list[Any] = []

    @property
    def done(self) -> bool:
        return self.i >= self.n_iter

    def start(self) -> None:
        """The noise runs and the prior draws (before the first ``step``)."""
        fw = self.forward
        self.S_full = np.asarray(fw(np.repeat(self.c[None], self.noise_runs, axis=0),
                                    NOISE_ITERATION), float)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
        self.U0 = self.c + self.prior_sd * prior_normals(self.rng, self.members, self.c.size,
                                                         self.prior_sampling)
        self.U = self.U0.copy()
        if not self._reduces:
            self._set_noise(())

    @property
    def basis(self) -> BlockBasis | None:
        """The FC block's reduction, once found (None: none, or not yet)."""
        return find(self.bases, "fc")

    @property
    def _reduces(self) -> bool:
        return bool(self.forward.stats.fc_components or self.forward.stats.variance_components)

    def _reduce(self, S: np.ndarray) -> np.ndarray:
        return reduce(S, self.bases)

    def _started(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
        """The noise runs, the prior, the ensemble and the generator, once ``start`` (or
        ``restore``) made them."""
        if self.S_full is None or self.U0 is None or self.U is None or self.rng is None:
            raise ArgumentError("fit: used before start() -- expected start() or restore() "
                                "first")
        return self.S_full, self.U0, self.U, self.rng

    def _set_noise(self, reductions: tuple[BlockBasis, ...]) -> None:

        S_full = self._started()[0]
        self.bases = reductions
        self.y = self._reduce(self.y_full)
        self.Gamma = (1.0 + self.data_noise) * noise_covariance(self._reduce(S_full),
                                                                floor=1e-12)

    def _local_noise(self, U: np.ndarray, GU: np.ndarray) -> None:
        """Gamma from the noise runs pooled with the ensemble's regression residuals
        (``noise="pooled"``; GU already reduced)."""
        S = self._reduce(self._started()[0])
        res, dof = regression_residuals(U, GU)
        if dof == 0:
            return
        pooled = np.vstack([S - S.mean(axis=0), res])
        self.Gamma = (1.0 + self.data_noise) * residual_covariance(
            pooled, S.shape[0] - 1 + dof, floor=1e-12)

    def step(self) -> Any:
        """One forward evaluation of the ensemble and its update; returns the
        ``inversion.Iteration``."""

        if self.U is None:
            raise ArgumentError("fit: step before start -- expected start() first")
        if self.done:
            raise ArgumentError(f"fit: all {self.n_iter} iterations done -- expected none "
                                "left to step")
        _, _, U, rng = self._started()
        fw = self.forward
        GU = np.asarray(fw(U, self.i), float)
        if self.i == 0 and self._reduces:
            self._set_noise(bases(GU, len(fw.spec.region_labels), fw.stats))
        GU = self._reduce(GU)
        if self.noise == "pooled":
            self._local_noise(U, GU)
        a = float(self.alphas[self.i])
        if self.y is None or self.Gamma is None:
            raise ArgumentError("fit: no noise covariance -- expected start() first")
        Ua, diag = update(U, GU, self.y, self.Gamma, a, method="enkf", rng=rng)
        it = Iteration(U=U, GU=GU, alpha=a, misfit=misfit(GU, self.y, self.Gamma),
                       diagnostics=diag)
        self.iterations.append(it)
        self.U = Ua
        self.i += 1
        return it

    def result(self) -> FitResult:

        fw = self.forward
        S_full, U0, U, _ = self._started()
        if self.y is None or self.Gamma is None:
            raise ArgumentError("fit: result before the noise covariance -- expected a "
                                "step() first")
        return FitResult(fw.params, fw.values(U0), fw.values(U), self.y, self.Gamma,
                         self._reduce(S_full),
                         InversionResult(U=U, GU=None, iterations=list(self.iterations)),
                         self.bases)

    # --- checkpoints ------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything needed to continue: arrays (name -> ndarray) and JSON-able values."""
        S_full, U0, U, rng = self._started()
        arrays: dict[str, np.ndarray] = {"S_full": S_full, "U0": U0, "U": U}
        if self.Gamma is not None:
            arrays["Gamma"] = self.Gamma
        for b in self.bases:
            arrays.update({f"{BASIS_KEY[b.name]}/{k}": v for k, v in b.to_dict().items()})
        diags = []
        for k, it in enumerate(self.iterations):
            arrays.update({f"it{k}/U": it.U, f"it{k}/GU": it.GU, f"it{k}/misfit": it.misfit,
                           f"it{k}/innovation": it.diagnostics.innovation})
            diags.append({n: getattr(it.diagnostics, n) for n in _DIAG_SCALARS}
                         | {"alpha": it.alpha})
        meta = {"i": self.i, "rng": rng.bit_generator.state, "iterations": diags,
                "has_gamma": self.Gamma is not None}
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Continue from a ``state()`` of a fitter made with the same arguments."""

        self.S_full = np.asarray(arrays["S_full"], float)
        self.U0 = np.asarray(arrays["U0"], float)
        self.U = np.asarray(arrays["U"], float)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng"]
        self.i = int(meta["i"])
        self.bases = tuple(
            BlockBasis(*(np.asarray(arrays[f"{key}/{k}"], float)
                         for k in ("centre", "components", "explained")),
                       int(arrays.get(f"{key}/start", 0)), name)
            for name, key in BASIS_KEY.items() if f"{key}/centre" in arrays)
        if meta["has_gamma"]:
            self._set_noise(self.bases)
        self.iterations = []
        for k, d in enumerate(meta["iterations"]):
            diag = Diagnostics(innovation=np.asarray(arrays[f"it{k}/innovation"], float),
                               **{n: d[n] for n in _DIAG_SCALARS})
            self.iterations.append(Iteration(
                U=np.asarray(arrays[f"it{k}/U"], float),
                GU=np.asarray(arrays[f"it{k}/GU"], float), alpha=float(d["alpha"]),
                misfit=np.asarray(arrays[f"it{k}/misfit"], float), diagnostics=diag))
        if self.noise == "pooled" and self.iterations and meta["has_gamma"]:
            self._local_noise(self.iterations[-1].U, self.iterations[-1].GU)


def fit(forward: Forward, y: np.ndarray, members: int, iterations: int, seed: int = 0,
        noise_runs: int = 8, data_noise: float = 1.0, prior_sd: float = 1.0,
        centre: Sequence[float] | None = None, ratio: float = 1.0,
        callback: Callable[[int, Any], None] | None = None,
        prior_sampling: str = "exact", noise: str = "pooled") -> FitResult:
    """Fit ``forward``'s parameters to the data statistics ``y`` (m,) by ES-MDA (see
    ``Fitter`` for the noise, the prior and the FC reduction).  ``callback(i, iteration)``
    after each update."""
    f = Fitter(forward, y, members, iterations, seed, noise_runs, data_noise, prior_sd,
               centre, ratio, prior_sampling, noise)
    f.start()
    while not f.done:
        it = f.step()
        if callback is not None:
            callback(f.i - 1, it)
    return f.result()
