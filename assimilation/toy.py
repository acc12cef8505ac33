"""Lorenz-96, the classic chaotic toy model for testing data assimilation (Lorenz 1996).

``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` on a ring of n variables (indices
modulo n), F = 8 the standard forcing (chaotic for n >= 4 at F = 8; 40 variables is the
benchmark of Lorenz & Emanuel 1998, Sakov & Oke 2008 and DAPPER).  Integrated with classical
fourth-order Runge–Kutta; ``dt`` 0.05 time units ("6 hours") is the standard step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lorenz96_rhs", "lorenz96_step", "lorenz96_run"]


def lorenz96_rhs(x: np.ndarray, F: float = 8.0) -> np.ndarray:
    """Tendency of states ``x`` (..., n): the ring runs along the last axis."""
    return (np.roll(x, -1, axis=-1) - np.roll(x, 2, axis=-1)) * np.roll(x, 1, axis=-1) - x + F


def lorenz96_step(x: np.ndarray, dt: float = 0.05, F: float = 8.0) -> np.ndarray:
    """One RK4 step of ``dt`` time units for states ``x`` (..., n) (members on leading axes)."""
    k1 = lorenz96_rhs(x, F)
    k2 = lorenz96_rhs(x + 0.5 * dt * k1, F)
    k3 = lorenz96_rhs(x + 0.5 * dt * k2, F)
    k4 = lorenz96_rhs(x + dt * k3, F)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def lorenz96_run(x0: np.ndarray, n_steps: int, dt: float = 0.05, F: float = 8.0) -> np.ndarray:
    """The trajectory (n_steps + 1, ..., n) from ``x0`` (row 0)."""
    out = np.empty((n_steps + 1, *np.shape(x0)))
    out[0] = x0
    for k in range(n_steps):
        out[k + 1] = lorenz96_step(out[k], dt, F)
    return out
