"""FC of a linear noise-driven network on a structural connectome: a baseline for ``dtb fit``.

Any model whose regions respond linearly to their summed long-range input has, at best, the
stationary correlations of

    dx/dt = -x + g W x / lambda_max(W) + white noise,   W = D^(a - 1) (SC + h H)

with D the in-strengths (row sums), a the in-degree exponent (dtb's ``sc_exponent``: a = 0
normalises rows, as a fixed long-range in-degree does; a = 1 is the SC itself), H optional
homotopic pairs with weight h, and g < 1 the fraction of the instability.  The covariance
solves the Lyapunov equation A C + C A^T = -I, A = -I + g W / lambda_max(W).  Chosen on the
fit TRs over a small grid of (a, g) and scored on the test TRs, it tells a spiking twin's
FC score what a structural recipe alone can reach (benchmarks/fit_ceiling.py: 0.58-0.73 on
the HCP development subjects near the instability, against log-SC's 0.34-0.47).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg as sl

from dtb.assimilation import summary as S

EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
GAINS = (0.5, 0.8, 0.9, 0.95, 0.98)
MAX_REGIONS = 1000  # the Lyapunov solve is O(R^3): a few seconds at 1,000 regions


def linear_fc(sc: np.ndarray, a: float, g: float, pairs: np.ndarray | None = None,
              h: float = 0.0, log_gain: np.ndarray | None = None) -> np.ndarray:
    """The network's stationary correlation matrix (R, R) for the SC ``sc`` (R, R; the
    diagonal is ignored), in-degree exponent ``a``, gain ``g`` in (0, 1); ``pairs`` (P, 2)
    region indices that get ``h`` added both ways (homotopic coupling); ``log_gain`` (R,)
    each region's input times exp(log_gain) (row i of W; the spiking twin's
    ``regional_coupling``), before the normalisation by lambda_max."""
    w = np.array(sc, float)
    r = w.shape[0]
    np.fill_diagonal(w, 0.0)
    if pairs is not None and h:
        p = np.asarray(pairs, np.int64)
        w[p[:, 0], p[:, 1]] += h
        w[p[:, 1], p[:, 0]] += h
    d = w.sum(axis=1)
    scale = np.zeros(r)
    scale[d > 0] = d[d > 0] ** (a - 1.0)
    w *= scale[:, None]
    if log_gain is not None:
        w *= np.exp(np.asarray(log_gain, float))[:, None]
    lam = float(np.max(np.real(np.linalg.eigvals(w))))
    if not lam > 0:
        return np.eye(r)
    c = sl.solve_continuous_lyapunov(-np.eye(r) + g / lam * w, -np.eye(r))
    sd = np.sqrt(np.diag(c))
    return c / np.outer(sd, sd)


def best_linear_fc(sc: np.ndarray, target: np.ndarray,
                   exponents: Sequence[float] = EXPONENTS,
                   gains: Sequence[float] = GAINS) -> dict[str, Any]:
    """The grid point whose FC correlates best with ``target`` (R, R, the fit TRs' FC):
    {"a", "g", "fc_r_fit", "fc"}."""
    best: dict[str, Any] = {"fc_r_fit": -np.inf}
    for a, g in itertools.product(exponents, gains):
        f = linear_fc(sc, a, g)
        r = S.fc_fit(f, target)
        if r > best["fc_r_fit"]:
            best = {"a": float(a), "g": float(g), "fc_r_fit": float(r), "fc": f}
    return best
