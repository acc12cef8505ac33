"""The estimated hyperparameters (``ParamSpec``) and the logit scale the filter holds them
on: ``u = logit((theta - low) / (high - low))``, so that every member stays inside the
bounds whatever the analysis does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.errors import ArgumentError

__all__ = ["ParamSpec", "logit", "expit"]


@dataclass(frozen=True)
class ParamSpec:
    """One estimated hyperparameter: ``population.name`` per unit, bounded in
    ``(low, high)`` (the parameter's units, e.g. g_AMPA a dimensionless scale)."""

    population: str
    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ArgumentError(f"{self.population}.{self.name}: bounds ({self.low}, "
                                f"{self.high}) -- expected finite low < high")

    @property
    def key(self) -> str:
        return f"{self.population}.{self.name}"

    def to_unit(self, theta: np.ndarray) -> np.ndarray:
        return logit((np.asarray(theta, float) - self.low) / (self.high - self.low))

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * expit(u)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def expit(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, float)))
