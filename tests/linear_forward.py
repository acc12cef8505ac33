"""A linear-Gaussian forward map in the shape of ``fit.Forward``, for the fitter's tests:
``LinearForward(stats, regions, a, b, sigma, seed)``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dtb.assimilation.fit import FitParameter, StatisticsConfig


class LinearForward:
    """s = a u + b xi + sigma eps (m = a.size statistics, u the one parameter "coupling"):
    a noise with one shared component xi (as FC entries and variances share the
    fluctuations of their regions) and an independent part eps.  ``stats`` says which
    blocks the m statistics form and how the fitter reduces them; ``regions`` their R.
    Each call ``(U, i)`` draws its noise from the seed and the iteration ``i``."""

    def __init__(self, stats: StatisticsConfig, regions: int, a: np.ndarray, b: np.ndarray,
                 sigma: float, seed: int):
        self.params = [FitParameter("coupling", -50.0, 50.0)]
        self.stats = stats
        self.spec = SimpleNamespace(region_labels=np.arange(regions))
        self.a, self.b, self.sigma, self.seed = a, b, sigma, seed

    def values(self, U: np.ndarray) -> np.ndarray:
        return np.atleast_2d(U)

    def __call__(self, U: np.ndarray, i: int) -> np.ndarray:
        U = np.atleast_2d(U)
        rng = np.random.default_rng([self.seed, i])
        xi = rng.standard_normal((U.shape[0], 1))
        return U[:, :1] * self.a + xi * self.b + self.sigma * rng.standard_normal(
            (U.shape[0], self.a.size))
