"""A model-agnostic ensemble Kalman filter analysis, written in the papers' symbols.

One analysis maps a forecast ensemble to an analysed one::

    Ea, diag = analysis(E, HE, y, R, method="etkf", inflation=1.02, rtps=0.0,
                        localization=None, rng=None)

Shapes: ``E`` (N members, n state elements); ``HE`` (N, m) the members' predicted
observations; ``y`` (m,) the observation; ``R`` (m,) observation-error variances or an
(m, m) covariance.  Nothing here knows about brains: the state is whatever the caller stacks
(parameters, hemodynamic states, a toy model's variables).

Steps, in order (each also usable on its own):

1. multiplicative inflation of the prior anomalies ``A = E - mean(E)`` and ``Y = HE -
   mean(HE)`` by ``inflation`` (Anderson & Anderson 1999);
2. the update, in ensemble space after whitening by ``R^(-1/2)`` (``S = Y R^(-1/2)``,
   ``d = (y - mean(HE)) R^(-1/2)``, ``C = S S^T + (N - 1) I_N``):

   - ``"etkf"``: the ensemble transform Kalman filter with the symmetric square root (Bishop et
     al. 2001; Hunt, Kostelich & Szunyogh 2007): ``w = C^(-1) S d``,
     ``T = sqrt(N - 1) C^(-1/2)``, ``Ea = mean(E) + (w + T) A`` (rows: members);
   - ``"enkf"``: the stochastic, perturbed-observation EnKF (Burgers, van Leeuwen & Evensen
     1998; Evensen 2009): ``D = y + e_i``, ``e_i ~ N(0, R)`` centred over members,
     ``Ea = E + (D - HE) R^(-1/2) S^T C^(-1) A``, the Kalman gain in ensemble space;

3. local analysis when ``localization`` is given (LETKF, Hunt et al. 2007; domain
   localization for the stochastic filter): every group of state elements gets its own
   update in which observation j's inverse error variance is multiplied by the group's weight
   ``w_gj`` in [0, 1] (R-localization; Gaspari–Cohn weights of a distance, or 1 within a
   region and 0 outside).  Groups with identical weight rows share one transform, so a brain
   localized by region costs one N x N eigendecomposition per region, not per unit;
4. relaxation to prior spread (RTPS, Whitaker & Hamill 2012): each element's analysed
   anomalies are rescaled so that its spread is ``rtps * sigma_b + (1 - rtps) * sigma_a``
   (``sigma_b`` the spread before inflation).

The cost is O(N^2 m + N^3) per distinct weight row plus O(N^2 n) for the transform: small
next to N forecasts of any model that is worth filtering.  Deterministic for a given ``rng``
(only ``"enkf"`` draws random numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dtb.errors import ArgumentError

__all__ = ["Diagnostics", "Localization", "analysis", "inflate", "rtps", "gaspari_cohn",
           "rank_histogram", "ranks", "spread", "rmse", "spread_error_ratio"]

METHODS = ("etkf", "enkf")


@dataclass(frozen=True)
class Diagnostics:
    """What one analysis saw, in observation space (shapes: m observations).

    ``innovation`` (m,): y - mean(HE) (before inflation); ``innovation_mean``: its mean;
    ``innovation_var``: mean of its squares; ``expected_var``: mean of diag(HPH^T + R) with
    the inflated prior, the value ``innovation_var`` should match on average when the
    ensemble spread is right (Desroziers et al. 2005); ``normalized_innovation``: the
    chi-square statistic d^T (HPH^T + R)^(-1) d / m, about 1 for a consistent filter;
    ``prior_spread_obs`` / ``posterior_spread_obs``: the RMS spread of HE before inflation and
    of the analysed predicted observations (linearised, ``(w + T) Y``; None for a local
    analysis, where each group has its own); ``n_groups``: the
    number of distinct local transforms computed.
    """

    innovation: np.ndarray
    innovation_mean: float
    innovation_var: float
    expected_var: float
    normalized_innovation: float
    prior_spread_obs: float
    posterior_spread_obs: float | None
    n_groups: int


@dataclass(frozen=True)
class Localization:
    """Observation weights for local analyses.

    ``weights`` (G, m) in [0, 1]: weight of observation j in the analysis of group g;
    ``state_group`` (n,) int: the group of every state element (0..G-1).  Build one with
    ``by_distance`` (Gaspari–Cohn of a distance, e.g. between units and observed regions, in
    mm or in connectivity hops) or ``by_membership`` (a unit sees only its own region's
    observations, plus any listed global elements that see everything).
    """

    weights: np.ndarray
    state_group: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=float)
        g = np.asarray(self.state_group, dtype=np.int64)
        if w.ndim != 2 or g.ndim != 1:
            raise ArgumentError(f"localization: weights shape {w.shape}, state_group shape "
                                f"{g.shape} -- expected (G, m) and (n,)")
        if not np.all((w >= 0) & (w <= 1)):
            raise ArgumentError("localization.weights: values outside [0, 1] -- expected "
                                "weights in [0, 1]")
        if g.size and (g.min() < 0 or g.max() >= w.shape[0]):
            raise ArgumentError(f"localization.state_group: values in [{g.min()}, {g.max()}] -- "
                                f"expected group indices in [0, {w.shape[0]})")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "state_group", g)

    @classmethod
    def by_distance(cls, distance: np.ndarray, radius: float,
                    state_group: np.ndarray | None = None) -> Localization:
        """Gaspari–Cohn weights of ``distance`` (G, m) with half-width ``radius`` (weights
        reach 0 at 2 x radius); ``state_group`` defaults to one element per group."""
        d = np.asarray(distance, dtype=float)
        grp = np.arange(d.shape[0]) if state_group is None else state_group
        return cls(gaspari_cohn(d / radius), grp)

    @classmethod
    def by_membership(cls, element_region: np.ndarray, obs_region: np.ndarray,
                      ) -> Localization:
        """Each state element (n,) with a region index sees the observations (m,) of its
        own region; an element with region -1 (a global quantity) sees all observations."""
        er = np.asarray(element_region, dtype=np.int64)
        ob = np.asarray(obs_region, dtype=np.int64)
        keys, grp = np.unique(er, return_inverse=True)
        w = np.where(keys[:, None] < 0, 1.0, (keys[:, None] == ob[None, :]).astype(float))
        return cls(w, grp.reshape(-1))


def gaspari_cohn(r: np.ndarray) -> np.ndarray:
    """The Gaspari & Cohn (1999, eq. 4.10) fifth-order compactly supported correlation of the
    scaled distance ``r = d / c`` (1 at 0, 0 from 2 on)."""
    r = np.abs(np.asarray(r, dtype=float))
    out = np.zeros_like(r)
    a = r <= 1
    b = (r > 1) & (r < 2)
    ra = r[a]
    out[a] = -0.25 * ra**5 + 0.5 * ra**4 + 0.625 * ra**3 - 5 / 3 * ra**2 + 1
    rb = r[b]
    out[b] = (rb**5 / 12 - 0.5 * rb**4 + 0.625 * rb**3 + 5 / 3 * rb**2 - 5 * rb + 4
              - 2 / (3 * rb))
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------- helpers


def inflate(E: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the anomalies of ``E`` (N, ...) about the member mean by ``factor``."""
    if factor == 1.0:
        return np.array(E, dtype=float)
    mu = E.mean(axis=0)
    return mu + factor * (E - mu)


def rtps(Ea: np.ndarray, Eb: np.ndarray, alpha: float) -> np.ndarray:
    """Relaxation to prior spread (Whitaker & Hamill 2012): element-wise, the analysed spread
    becomes ``alpha * sigma_b + (1 - alpha) * sigma_a``; ``Ea``, ``Eb`` (N, n)."""
    if alpha == 0.0:
        return Ea
    mu = Ea.mean(axis=0)
    sa = Ea.std(axis=0, ddof=1)
    sb = Eb.std(axis=0, ddof=1)
    target = alpha * sb + (1 - alpha) * sa
    scale = np.divide(target, sa, out=np.ones_like(sa), where=sa > 0)
    return mu + (Ea - mu) * scale


def spread(E: np.ndarray) -> float:
    """RMS over elements of the ensemble standard deviation (ddof 1) of ``E`` (N, n)."""
    return float(np.sqrt(np.mean(E.var(axis=0, ddof=1))))


def rmse(E: np.ndarray, truth: np.ndarray) -> float:
    """RMS error of the ensemble mean of ``E`` (N, n) against ``truth`` (n,)."""
    return float(np.sqrt(np.mean((E.mean(axis=0) - truth) ** 2)))


def spread_error_ratio(E: np.ndarray, truth: np.ndarray) -> float:
    """``spread(E) / rmse(E, truth)``: about 1 (times sqrt(N/(N+1))) for a well-tuned
    ensemble, below 1 when it is overconfident."""
    return spread(E) / rmse(E, truth)


def ranks(E: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of ``truth`` (n,) among the members ``E`` (N, n): (n,) ints in 0..N (the number of
    members below it, ties split at random-free midpoint rounding down)."""
    below = (E < truth).sum(axis=0)
    ties = (E == truth).sum(axis=0)
    return below + ties // 2


def rank_histogram(r: np.ndarray, n_members: int) -> np.ndarray:
    """Counts of ranks ``r`` (any shape, values 0..N) in N + 1 bins: flat for a reliable
    ensemble, U-shaped when it is underdispersive."""
    return np.bincount(np.asarray(r, dtype=np.int64).ravel(), minlength=n_members + 1)


def _whitener(R: np.ndarray, m: int) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """A function x -> x R^(-1/2) on the last axis, and whether R is diagonal."""
    R = np.asarray(R, dtype=float)
    if R.shape == (m,):
        if not np.all(R > 0):
            raise ArgumentError("R: variances <= 0 -- expected observation-error variances > 0")
        s = 1.0 / np.sqrt(R)
        return (lambda x: x * s), True
    if R.shape == (m, m):
        L = np.linalg.cholesky(R)        # raises LinAlgError when not positive definite
        return (lambda x: np.linalg.solve(L, np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
                if x.ndim > 1 else np.linalg.solve(L, x)), False
    raise ArgumentError(f"R: shape {R.shape} -- expected ({m},) variances or ({m}, {m})")


def _normalized_innovation(S: np.ndarray, d: np.ndarray) -> float:
    """The chi-square statistic ``dy^T (HPH^T + R)^(-1) dy / m`` in ensemble space.

    With the whitened anomalies ``S = Y R^(-1/2)`` (N, m) and innovation ``d = dy R^(-1/2)``
    (m,), ``HPH^T + R = R^(1/2) (S^T S / (N - 1) + I_m) R^(T/2)``, and the Woodbury identity
    gives ``(I_m + S^T S / (N - 1))^(-1) = I_m - S^T C^(-1) S`` with the global
    ``C = S S^T + (N - 1) I_N``: the statistic is ``(d.d - (S d)^T C^(-1) (S d)) / m``, an
    N x N solve (O(N^2 m + N^3)) instead of an m x m one (O(m^3)), for diagonal and full R
    alike (the whitening carries R).
    """
    N, m = S.shape
    Sd = S @ d
    C = S @ S.T + (N - 1) * np.eye(N)
    return float(d @ d - Sd @ np.linalg.solve(C, Sd)) / m


# --------------------------------------------------------------------------- analysis


def _check_analysis(E: np.ndarray, HE: np.ndarray, y: np.ndarray, R: np.ndarray, method: str,
                    inflation: float, rtps_alpha: float, localization: Localization | None
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """ConfigError unless ``analysis``'s arguments fit together; the whitener of ``R``."""
    if E.ndim != 2 or HE.ndim != 2 or HE.shape[0] != E.shape[0] or y.shape != HE.shape[1:]:
        raise ArgumentError(f"analysis: E {E.shape}, HE {HE.shape}, y {y.shape} -- expected "
                            "(N, n), (N, m) and (m,)")
    N, n = E.shape
    m = HE.shape[1]
    if N < 2:
        raise ArgumentError(f"analysis: {N} member -- expected at least 2")
    if method not in METHODS:
        raise ArgumentError(f"method: {method!r} -- expected one of {METHODS}")
    if not inflation > 0:
        raise ArgumentError(f"inflation: {inflation!r} -- expected a factor > 0")
    if not 0.0 <= rtps_alpha <= 1.0:
        raise ArgumentError(f"rtps_alpha: {rtps_alpha!r} -- expected a value in [0, 1]")
    if not (np.all(np.isfinite(E)) and np.all(np.isfinite(HE)) and np.all(np.isfinite(y))):
        raise ArgumentError("analysis: non-finite values in E, HE or y -- expected finite numbers")
    white, diagonal = _whitener(R, m)
    if localization is not None:
        if not diagonal:
            raise ArgumentError("R: a full covariance with localization -- expected variances "
                                "(m,): R-localization tapers each observation's weight")
        if localization.weights.shape[1] != m or localization.state_group.shape != (n,):
            raise ArgumentError(f"localization: weights {localization.weights.shape}, "
                                f"state_group {localization.state_group.shape} -- expected "
                                f"(G, {m}) and ({n},)")
    return white


def _perturbed_innovations(S: np.ndarray, d: np.ndarray,
                           rng: np.random.Generator | int | None) -> np.ndarray:
    """``Dw`` (N, m): the whitened ``y + e_i - HE_i`` of the perturbed-observation EnKF,
    ``e_i ~ N(0, I)`` after whitening, centred over the members."""
    N, m = S.shape
    gen = rng if isinstance(rng, np.random.Generator) else (
        np.random.default_rng(rng) if rng is not None else None)
    if gen is None:
        raise ArgumentError("rng: None -- expected a numpy Generator or a seed for the "
                            "perturbed-observation EnKF")
    eps = gen.standard_normal((N, m))
    eps -= eps.mean(axis=0)
    return d[None, :] - S + eps       # whitened y + e_i - (inflated) HE_i; eps ~ N(0, I)


def _weight_groups(localization: Localization | None, n: int, m: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct observation-weight rows (G, m) and the group (n,) of every state
    element: one row of ones and one group for a global analysis."""
    if localization is None:
        return np.ones((1, m)), np.zeros(n, dtype=np.int64)
    wrows, inv = np.unique(localization.weights, axis=0, return_inverse=True)
    return wrows, inv.reshape(-1)[localization.state_group]


def _transforms(S: np.ndarray, d: np.ndarray, wrows: np.ndarray,
                Dw: np.ndarray | None) -> np.ndarray:
    """``X`` (G, N, N), one per weight row, with ``Ea = xb + X A`` (rows: members): the ETKF's
    ``w + T`` when ``Dw`` is None, else the stochastic EnKF's ``I + Dw diag(w) S^T C^-1``."""
    N = S.shape[0]
    # C_g = S diag(w_g) S^T + (N-1) I, for every distinct weight row
    SW = S[None, :, :] * wrows[:, None, :]                        # (G, N, m)
    C = SW @ S.T + (N - 1) * np.eye(N)                            # (G, N, N)
    lam, V = np.linalg.eigh(C)                                    # (G, N), (G, N, N)
    Vt = np.swapaxes(V, 1, 2)
    Cinv = (V / lam[:, None, :]) @ Vt
    if Dw is None:
        w = np.einsum("gij,gj->gi", Cinv, SW @ d)                  # (G, N)
        T = np.sqrt(N - 1) * ((V * lam[:, None, :] ** -0.5) @ Vt)
        return w[:, None, :] + T                 # Ea = xb + X A (rows of X: members)
    # Ea = xb + A + (D - HE) R^-1/2 diag(w) S^T C^-1 A
    return np.eye(N)[None] + ((Dw[None, :, :] * wrows[:, None, :]) @ S.T) @ Cinv


def _apply_transforms(E: np.ndarray, xb: np.ndarray, A: np.ndarray, X: np.ndarray,
               group: np.ndarray) -> np.ndarray:
    """``Ea`` (N, n): every state element's anomalies through its group's transform."""
    G = X.shape[0]
    if G == 1:
        return xb + X[0] @ A
    Ea = np.empty_like(E)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(G + 1))
    for g in range(G):
        cols = order[bounds[g]:bounds[g + 1]]
        if cols.size:
            Ea[:, cols] = xb[cols] + X[g] @ A[:, cols]
    return Ea


def _diagnostics(X: np.ndarray, S: np.ndarray, d: np.ndarray, Y: np.ndarray, dy: np.ndarray,
                 R: np.ndarray, HE: np.ndarray) -> Diagnostics:
    """What the analysis saw, global and in observation space (see ``Diagnostics``); the
    posterior spread only for a global analysis (G = 1)."""
    N, G = Y.shape[0], X.shape[0]
    Ya = X[0] @ Y if G == 1 else None
    chi2 = _normalized_innovation(S, d)
    r_diag = np.asarray(R, dtype=float) if np.ndim(R) == 1 else np.diag(np.asarray(R, float))
    expected_var = float(np.mean(np.sum(Y * Y, axis=0) / (N - 1) + r_diag))
    post = float(np.sqrt(np.mean(Ya.var(axis=0, ddof=1)))) if Ya is not None else None
    return Diagnostics(
        innovation=dy, innovation_mean=float(dy.mean()), innovation_var=float(np.mean(dy**2)),
        expected_var=expected_var, normalized_innovation=chi2,
        prior_spread_obs=float(np.sqrt(np.mean(HE.var(axis=0, ddof=1)))),
        posterior_spread_obs=post, n_groups=G)


def analysis(E: np.ndarray, HE: np.ndarray, y: np.ndarray, R: np.ndarray,
             method: str = "etkf", rng: np.random.Generator | int | None = None,
             inflation: float = 1.0, rtps_alpha: float = 0.0,
             localization: Localization | None = None) -> tuple[np.ndarray, Diagnostics]:
    """The analysed ensemble ``Ea`` (N, n) and the ``Diagnostics`` (see the module docstring).

    ``E`` (N, n) forecast states, ``HE`` (N, m) their predicted observations, ``y`` (m,) the
    observation, ``R`` (m,) error variances or (m, m) covariance (diagonal when localized);
    ``method`` ``"etkf"`` or ``"enkf"`` (needs ``rng``, a Generator or a seed);
    ``inflation`` >= 1 multiplies prior anomalies; ``rtps_alpha`` in [0, 1];
    ``localization`` a ``Localization`` over the n state elements, or None for a global
    analysis.
    """
    E = np.asarray(E, dtype=float)
    HE = np.asarray(HE, dtype=float)
    y = np.asarray(y, dtype=float)
    white = _check_analysis(E, HE, y, R, method, inflation, rtps_alpha, localization)
    n, m = E.shape[1], HE.shape[1]
    xb = E.mean(axis=0)
    A = inflation * (E - xb)
    yb = HE.mean(axis=0)
    Y = inflation * (HE - yb)
    dy = y - yb
    S = white(Y)                                 # (N, m) whitened anomalies
    d = white(dy)                                # (m,)
    Dw = _perturbed_innovations(S, d, rng) if method == "enkf" else None
    wrows, group = _weight_groups(localization, n, m)
    X = _transforms(S, d, wrows, Dw)
    Ea = _apply_transforms(E, xb, A, X, group)
    if rtps_alpha > 0:
        Ea = rtps(Ea, E, rtps_alpha)
    return Ea, _diagnostics(X, S, d, Y, dy, R, HE)
