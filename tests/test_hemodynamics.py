"""Balloon–Windkessel: fixed points, linear kernels and convergence against analytic results."""

import math

import numpy as np
import pytest
from scipy.linalg import expm

from dtb.model.hemodynamics import (
    PARAMETER_SETS,
    Hemodynamics,
    drive_from_rate,
    linear_system,
    simulate_bold,
    steady_state,
)

SETS = sorted(PARAMETER_SETS)


@pytest.mark.parametrize("name", SETS)
def test_rest_is_a_fixed_point(name):
    h = Hemodynamics((3, 5), name)
    for _ in range(100):
        h.step(np.zeros((3, 5)), 0.1)
    # exactly 0 but for the rounding of (1 - E0)^1 / E0 to 1 at rest
    np.testing.assert_allclose(h.state, 0.0, atol=1e-13)
    np.testing.assert_allclose(h.bold(), 0.0, atol=1e-13)


def test_published_coefficients():
    p = PARAMETER_SETS["friston2000"]
    assert (p.kappa, p.gamma, p.tau, p.alpha, p.E0, p.V0) == (1.25, 2.5, 1.0, 0.2, 0.8, 0.02)
    assert (p.k1, p.k2, p.k3) == pytest.approx((5.6, 2.0, 1.4))
    s = PARAMETER_SETS["stephan2007"]
    assert (s.k1, s.k2, s.k3) == pytest.approx((4.3 * 84.8 * 0.4 * 0.04, 110 * 0.4 * 0.04, 0.0))


@pytest.mark.parametrize("name", SETS)
def test_steady_state_matches_algebraic_fixed_point(name):
    z = np.array([-0.1, 0.2, 1.0, 3.0])
    h = Hemodynamics(4, name)
    for _ in range(600):                     # 120 s: many decay times of every set
        h.step(z, 0.2)
    s, f, v, q, y = steady_state(z, name)
    x = h.state
    np.testing.assert_allclose(x[0], 0.0, atol=1e-8)
    np.testing.assert_allclose(np.exp(x[1:]), np.stack([f, v, q]), rtol=1e-7)
    np.testing.assert_allclose(h.bold(), y, rtol=1e-6)
    # the algebraic equations themselves: every derivative vanishes there
    p = PARAMETER_SETS[name]
    assert np.allclose(z - p.gamma * (f - 1), 0)
    assert np.allclose(f - v ** (1 / p.alpha), 0)
    assert np.allclose(f * (1 - (1 - p.E0) ** (1 / f)) / p.E0 - v ** (1 / p.alpha) * q / v, 0)


@pytest.mark.parametrize("name", SETS)
def test_small_impulse_matches_linear_kernel(name):
    """A small, brief drive: the BOLD response equals eps * c expm(A t) b (matrix exponential
    of the Jacobian at rest, an independent computation) to first order."""
    A, b, c = linear_system(name)
    eps, width, dt = 1e-4, 0.01, 0.01
    T = 2000
    drive = np.zeros((T, 1))
    drive[0] = eps / width                    # area eps: an impulse of strength eps
    y = simulate_bold(drive, dt, name)[:, 0]
    t = dt * np.arange(1, T + 1)
    # response to a box of width `width`: integral of the kernel over the box
    M = np.linalg.solve(A, expm(A * width) - np.eye(4))      # int_0^w expm(A u) du
    k = np.array([c @ expm(A * (tt - width)) @ M @ b for tt in t]) * eps / width
    assert np.max(np.abs(y - k)) < 1e-3 * np.max(np.abs(k))


def test_flow_response_is_the_damped_oscillator_of_friston2000():
    """Linearised, f - 1 obeys f'' + kappa f' + gamma (f - 1) = z: for an impulse,
    f - 1 = exp(-kappa t / 2) sin(w t) / w with w = sqrt(gamma - kappa^2 / 4), the kernel of
    TVB's first-order Volterra BOLD monitor (tau_s 0.8 s, tau_f 0.4 s)."""
    p = PARAMETER_SETS["friston2000"]
    eps = 1e-5
    h = Hemodynamics(1, "friston2000")
    h.set_state(np.array([[eps], [0.0], [0.0], [0.0]]))      # s(0) = eps: impulse response
    w = math.sqrt(p.gamma - p.kappa ** 2 / 4)
    for k in range(1, 401):
        h.step(0.0, 0.01)
        t = 0.01 * k
        want = eps * math.exp(-p.kappa * t / 2) * math.sin(w * t) / w
        assert abs(float(h.flow[0]) - 1 - want) < 1e-3 * eps


def test_bold_peak_times():
    """Peak of the linearised BOLD impulse response: the Stephan 2007 (SPM) set peaks at about
    4-5 s like the canonical HRF; the fast Friston 2000 set (kappa 1.25/s, gamma 2.5/s) peaks
    before the flow's zero crossing pi / w = 2.16 s."""
    t = np.arange(0.0, 30.0, 0.01)
    peaks = {}
    for name in SETS:
        A, b, c = linear_system(name)
        k = np.array([c @ expm(A * tt) @ b for tt in t])
        peaks[name] = t[np.argmax(k)]
    assert 4.0 <= peaks["stephan2007"] <= 5.0
    assert 1.5 <= peaks["friston2000"] <= 2.16
    assert peaks["friston2000"] < peaks["friston2003"] < peaks["stephan2007"]


def test_convergence_fourth_order_in_substep():
    z = np.array([2.0])
    errs = []
    ref = Hemodynamics(1, "friston2000", max_substep_s=0.001)
    for _ in range(40):
        ref.step(z, 0.1)
    for hmax in (0.02, 0.01, 0.005):
        h = Hemodynamics(1, "friston2000", max_substep_s=hmax)
        for _ in range(40):
            h.step(z, 0.1)
        errs.append(float(np.max(np.abs(h.state - ref.state))))
    order = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(order > 3.5), (errs, order)


def test_large_and_abrupt_drive_stays_finite_and_positive():
    h = Hemodynamics(4)
    # 20x the resting flow (a stiff state: sub-steps of about 2 ms) and, at -2.4 just above
    # -gamma, a flow that overshoots towards 0 before settling at 0.04
    z = np.array([50.0, 10.0, -2.4, 0.0])
    for _ in range(50):
        h.step(z, 0.8)
    x = h.state
    assert np.all(np.isfinite(x))
    f, v, q = np.exp(x[1:])
    assert np.all((f > 0) & (v > 0) & (q > 0))
    _, f_ss, _, _, _ = steady_state(z)
    np.testing.assert_allclose(f, f_ss, rtol=1e-6)
    h.step(np.zeros(4), 0.8)                 # and the abrupt release
    assert np.all(np.isfinite(h.state))


def test_state_roundtrip_and_shapes():
    h = Hemodynamics((2, 3), "stephan2007")
    h.step(np.ones((2, 3)), 1.0)
    saved = h.state
    y1 = (h.step(np.ones((2, 3)), 1.0), h.bold())[1]
    h2 = Hemodynamics((2, 3), "stephan2007")
    h2.set_state(saved)
    h2.step(np.ones((2, 3)), 1.0)
    np.testing.assert_array_equal(h2.bold(), y1)
    with pytest.raises(ValueError, match=r"\(4, 2, 3\)"):
        h2.set_state(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="friston2000"):
        Hemodynamics(3, "friston1999")


@pytest.mark.parametrize("name", SETS)
def test_drive_from_rate_sets_the_steady_flow(name):
    """A steady rate r gives flow 1 + flow_gain (r - r0) / r0 in every parameter set; silence
    after a strong activation keeps the flow positive without the floor."""
    rates = np.array([5.0, 10.0, 0.0, 2.5])
    h = Hemodynamics(4, name)
    z = h.drive_from_rate(rates, baseline_hz=5.0, flow_gain=0.4)
    _, f, _, _, _ = steady_state(z, name)
    np.testing.assert_allclose(f, [1.0, 1.4, 0.6, 0.8])
    np.testing.assert_allclose(drive_from_rate([4.0, 9.0], [2.0, 3.0], 0.5, name),
                               0.5 * PARAMETER_SETS[name].gamma * np.array([1.0, 2.0]))
    for r in (20.0, 0.0):                    # 4x the baseline for a minute, then silence
        for _ in range(75):
            h.step(h.drive_from_rate(np.full(4, r)), 0.8)
            assert np.all(h.flow > 2e-3)
    with pytest.raises(ValueError, match="baseline_hz"):
        drive_from_rate([1.0], baseline_hz=0.0)
