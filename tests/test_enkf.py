"""EnKF core: exact identities with the Kalman filter, and Lorenz-96 against published scores."""

import numpy as np
import pytest

from dtb.assimilation.enkf import (
    Localization,
    analysis,
    gaspari_cohn,
    rank_histogram,
    ranks,
    rmse,
    rtps,
    spread_error_ratio,
)
from dtb.assimilation.toy import lorenz96_rhs, lorenz96_step


def _linear_problem(N, n=5, m=3, seed=0):
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((m, n))
    E = rng.standard_normal((N, n)) @ rng.standard_normal((n, n)) + rng.standard_normal(n)
    R = rng.uniform(0.5, 2.0, m)
    y = rng.standard_normal(m)
    return E, H, R, y


def _kalman(xb, P, H, R, y):
    Rm = np.diag(R) if R.ndim == 1 else R
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + Rm)
    return xb + K @ (y - H @ xb), (np.eye(len(xb)) - K @ H) @ P


@pytest.mark.parametrize("full_R", [False, True])
def test_etkf_is_the_kalman_update_of_the_ensemble_statistics(full_R):
    """Linear H: the ETKF mean is xb + K (y - H xb) and its covariance (I - K H) Pb with the
    ensemble's own mean and covariance -- exactly, for any N."""
    E, H, R, y = _linear_problem(N=8)
    if full_R:
        B = np.random.default_rng(5).standard_normal((3, 3))
        R = B @ B.T + np.eye(3)
    xb, P = E.mean(0), np.cov(E.T)
    xa, Pa = _kalman(xb, P, H, R, y)
    Ea, _ = analysis(E, E @ H.T, y, R, method="etkf")
    np.testing.assert_allclose(Ea.mean(0), xa, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.cov(Ea.T), Pa, rtol=1e-9, atol=1e-12)


def test_stochastic_enkf_mean_update_is_exact_for_small_ensembles():
    """Centred perturbations: the mean increment is K (y - H xb) exactly, for any N."""
    E, H, R, y = _linear_problem(N=6, seed=9)
    xa, _ = _kalman(E.mean(0), np.cov(E.T), H, R, y)
    Ea, _ = analysis(E, E @ H.T, y, R, method="enkf", rng=1)
    np.testing.assert_allclose(Ea.mean(0), xa, rtol=1e-10, atol=1e-12)


def test_inflation_is_the_kalman_update_of_the_inflated_prior():
    E, H, R, y = _linear_problem(N=10)
    xb, P = E.mean(0), np.cov(E.T) * 1.1 ** 2
    xa, Pa = _kalman(xb, P, H, R, y)
    Ea, _ = analysis(E, E @ H.T, y, R, inflation=1.1)
    np.testing.assert_allclose(Ea.mean(0), xa, rtol=1e-10)
    np.testing.assert_allclose(np.cov(Ea.T), Pa, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_stochastic_enkf_mean_is_the_kalman_mean_and_converges_in_covariance():
    """Centred perturbations make the stochastic EnKF's mean update exact; its covariance is
    (I - K H) P up to sampling error O(1/sqrt(N))."""
    E, H, R, y = _linear_problem(N=2000, seed=1)
    xb, P = E.mean(0), np.cov(E.T)
    xa, Pa = _kalman(xb, P, H, R, y)
    Ea, _ = analysis(E, E @ H.T, y, R, method="enkf", rng=np.random.default_rng(2))
    np.testing.assert_allclose(Ea.mean(0), xa, rtol=1e-9, atol=1e-10)
    err = np.abs(np.cov(Ea.T) - Pa) / np.sqrt(np.outer(np.diag(Pa), np.diag(Pa)))
    assert err.max() < 0.1
    # and deterministic for a seed
    Eb, _ = analysis(E, E @ H.T, y, R, method="enkf", rng=2)
    np.testing.assert_array_equal(Ea, Eb)


@pytest.mark.slow
def test_large_ensemble_converges_to_the_true_kalman_filter():
    """Sampled from N(mu, P): with N = 2000 the ETKF posterior matches the Kalman filter
    computed from the true mu, P (not the sample's) within sampling error."""
    rng = np.random.default_rng(3)
    n, m = 4, 2
    B = rng.standard_normal((n, n))
    P = B @ B.T + np.eye(n)
    mu = rng.standard_normal(n)
    H = rng.standard_normal((m, n))
    R = np.array([0.5, 1.5])
    y = H @ mu + 1.0
    xa, Pa = _kalman(mu, P, H, R, y)
    E = rng.multivariate_normal(mu, P, size=2000)
    Ea, _ = analysis(E, E @ H.T, y, R)
    sd = np.sqrt(np.diag(Pa))
    assert np.all(np.abs(Ea.mean(0) - xa) < 0.1 * np.sqrt(np.diag(P)))
    assert np.all(np.abs(np.cov(Ea.T) - Pa) < 0.1 * np.outer(sd, sd) + 0.1 * np.abs(Pa))


def test_nonlinear_observation_operator_uses_ensemble_covariances():
    """For any HE, the ETKF mean increment equals the ensemble-gain form
    Cxy (Cyy + R)^-1 (y - mean HE), Cxy and Cyy the ensemble (cross-)covariances."""
    rng = np.random.default_rng(4)
    E = rng.standard_normal((12, 6))
    HE = np.tanh(E[:, :3]) + E[:, 3:] ** 2
    R = np.array([0.3, 0.2, 0.5])
    y = np.array([0.1, 1.0, -0.2])
    A, Y = E - E.mean(0), HE - HE.mean(0)
    Cxy, Cyy = A.T @ Y / 11, Y.T @ Y / 11
    want = E.mean(0) + Cxy @ np.linalg.solve(Cyy + np.diag(R), y - HE.mean(0))
    Ea, d = analysis(E, HE, y, R)
    np.testing.assert_allclose(Ea.mean(0), want, rtol=1e-10)
    np.testing.assert_allclose(d.innovation, y - HE.mean(0))
    chi2 = (y - HE.mean(0)) @ np.linalg.solve(Cyy + np.diag(R), y - HE.mean(0)) / 3
    assert d.normalized_innovation == pytest.approx(chi2)



@pytest.mark.parametrize(("full_R", "localized"), [(False, False), (True, False),
                                                    (False, True)])
def test_innovation_diagnostics_equal_the_direct_observation_space_formulas(full_R, localized):
    """The ensemble-space (Woodbury) chi-square equals d^T (HPH^T + R)^-1 d / m solved in
    observation space, with m > N, inflation, and diagonal or full R; expected_var equals
    mean(diag(HPH^T + R)); a local analysis reports the same global diagnostics."""
    rng = np.random.default_rng(11)
    N, n, m, infl = 7, 9, 40, 1.3
    E = rng.standard_normal((N, n))
    HE = rng.standard_normal((N, m)) @ rng.standard_normal((m, m)) * 0.3 + 2.0
    y = rng.standard_normal(m) + 2.0
    if full_R:
        B = rng.standard_normal((m, m))
        R = B @ B.T / m + 0.5 * np.eye(m)
        Rm = R
    else:
        R = rng.uniform(0.2, 3.0, m)
        Rm = np.diag(R)
    loc = None
    if localized:
        loc = Localization.by_membership(np.arange(n) % 3, np.arange(m) % 3)
    Y = infl * (HE - HE.mean(0))
    Sig = Y.T @ Y / (N - 1) + Rm
    dy = y - HE.mean(0)
    _, d = analysis(E, HE, y, R, inflation=infl, localization=loc)
    assert d.normalized_innovation == pytest.approx(dy @ np.linalg.solve(Sig, dy) / m,
                                                    rel=1e-10)
    assert d.expected_var == pytest.approx(np.mean(np.diag(Sig)), rel=1e-12)
    assert d.normalized_innovation != pytest.approx(dy @ np.linalg.solve(Rm, dy) / m,
                                                    rel=1e-3)

def test_localization_limits():
    E, H, R, y = _linear_problem(N=9, n=4, m=3)
    HE = E @ H.T
    full, _ = analysis(E, HE, y, R)
    ones = Localization(np.ones((4, 3)), np.arange(4))
    local, d = analysis(E, HE, y, R, localization=ones)
    np.testing.assert_allclose(local, full, rtol=1e-10, atol=1e-12)
    assert d.n_groups == 1                     # identical rows share one transform
    # a group that sees no observation keeps its prior (after inflation)
    w = np.ones((2, 3))
    w[1] = 0.0
    loc = Localization(w, np.array([0, 0, 1, 1]))
    Ea, d = analysis(E, HE, y, R, inflation=1.05, localization=loc)
    xb = E.mean(0)
    np.testing.assert_allclose(Ea[:, 2:], xb[2:] + 1.05 * (E[:, 2:] - xb[2:]), rtol=1e-10)
    assert d.n_groups == 2
    # a group that sees only observation 0 equals a global analysis of observation 0 alone
    w = np.array([[1.0, 0.0, 0.0]])
    only0, _ = analysis(E, HE, y, R, localization=Localization(w, np.zeros(4, int)))
    ref, _ = analysis(E, HE[:, :1], y[:1], R[:1])
    np.testing.assert_allclose(only0, ref, rtol=1e-10, atol=1e-12)


def test_localization_builders():
    loc = Localization.by_membership(np.array([0, 0, 1, -1]), np.array([1, 0, 1]))
    w = loc.weights[loc.state_group]
    np.testing.assert_array_equal(w, [[0, 1, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1]])
    d = np.array([[0.0, 1.0, 2.0, 3.0]])
    np.testing.assert_allclose(Localization.by_distance(d, 1.0).weights,
                               gaspari_cohn(d))
    # Gaspari & Cohn (1999) eq. 4.10: 1 at 0, 5/24 at c (both branches agree), 0 from 2c
    np.testing.assert_allclose(gaspari_cohn(np.array([0.0, 1.0, 1.0 + 1e-12, 2.0, 5.0])),
                               [1.0, 5 / 24, 5 / 24, 0.0, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Localization(np.full((1, 2), 1.5), np.zeros(3, int))


def test_rtps_restores_prior_spread_and_keeps_mean():
    rng = np.random.default_rng(6)
    Eb = rng.standard_normal((10, 5)) * 3
    Ea = rng.standard_normal((10, 5)) + 1
    out = rtps(Ea, Eb, 1.0)
    np.testing.assert_allclose(out.std(0, ddof=1), Eb.std(0, ddof=1))
    np.testing.assert_allclose(out.mean(0), Ea.mean(0))
    half = rtps(Ea, Eb, 0.5)
    np.testing.assert_allclose(half.std(0, ddof=1),
                               0.5 * Eb.std(0, ddof=1) + 0.5 * Ea.std(0, ddof=1))


def test_diagnostic_helpers():
    E = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    assert rmse(E, np.array([1.0, 2.0])) == 0.0
    np.testing.assert_array_equal(ranks(E, np.array([1.5, -1.0])), [2, 0])
    np.testing.assert_array_equal(rank_histogram(np.array([0, 2, 2, 3]), 3), [1, 0, 2, 1])
    assert spread_error_ratio(E, np.array([2.0, 3.0])) == pytest.approx(1.0)


def test_rank_histogram_is_flat_for_a_calibrated_ensemble():
    rng = np.random.default_rng(7)
    E = rng.standard_normal((9, 20000))
    truth = rng.standard_normal(20000)
    h = rank_histogram(ranks(E, truth), 9)
    assert h.sum() == 20000
    assert np.all(np.abs(h / 2000 - 1) < 0.1)


def test_bad_arguments():
    E = np.zeros((4, 3))
    with pytest.raises(ValueError, match="method"):
        analysis(E, E[:, :2], np.zeros(2), np.ones(2), method="pf")
    with pytest.raises(ValueError, match="rng"):
        analysis(E, E[:, :2], np.zeros(2), np.ones(2), method="enkf")
    with pytest.raises(ValueError, match="expected"):
        analysis(E, E[:, :2], np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="variances"):
        analysis(E, E[:, :2], np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        analysis(E, np.full((4, 2), np.nan), np.zeros(2), np.ones(2))


# --------------------------------------------------------------------------- Lorenz-96


def test_lorenz96_tendency_and_energy():
    x = np.arange(6.0)
    # dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, by hand for i = 0 and i = 3
    f = lorenz96_rhs(x, 8.0)
    assert f[0] == pytest.approx((1 - 4) * 5 - 0 + 8)
    assert f[3] == pytest.approx((4 - 1) * 2 - 3 + 8)
    # the advection conserves energy: sum x_i dx_i/dt = -sum x_i^2 + F sum x_i
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40)
    assert x @ lorenz96_rhs(x, 8.0) == pytest.approx(-x @ x + 8 * x.sum())


def _l96_twin(method, N, infl, radius=None, cycles=1500, burn=300, seed=11):
    """Sakov & Oke (2008) setup: 40 variables, F = 8, all observed every 0.05 with R = I."""
    rng = np.random.default_rng(seed)
    n = 40
    x = 8 + rng.standard_normal(n)
    for _ in range(1000):
        x = lorenz96_step(x)
    E = x + rng.standard_normal((N, n))
    loc = None
    if radius is not None:
        i = np.arange(n)
        d = np.abs(i[:, None] - i[None, :])
        loc = Localization.by_distance(np.minimum(d, n - d), radius)
    err, ratio = [], []
    for k in range(cycles):
        x = lorenz96_step(x)
        E = lorenz96_step(E)
        y = x + rng.standard_normal(n)
        E, _ = analysis(E, E, y, np.ones(n), method=method, rng=rng, inflation=infl,
                        localization=loc)
        if k >= burn:
            err.append(rmse(E, x))
            ratio.append(spread_error_ratio(E, x))
    return float(np.mean(err)), float(np.mean(ratio))


def test_lorenz96_etkf_matches_published_rmse():
    """DAPPER's reproduction of Bocquet et al. (2015) fig. 3: ETKF ('Sqrt') N=20,
    infl 1.04 -> time-mean analysis RMSE 0.20; far below the observation error (1.0)."""
    e, ratio = _l96_twin("etkf", 20, 1.04)
    assert 0.17 < e < 0.22
    assert 0.5 < ratio < 2.0


@pytest.mark.slow
def test_lorenz96_stochastic_enkf_matches_published_rmse():
    """Sakov & Oke (2008) table 1 (DAPPER): perturbed-observation EnKF, N=40,
    infl 1.06 -> 0.22."""
    e, _ = _l96_twin("enkf", 40, 1.06)
    assert 0.19 < e < 0.25


def test_lorenz96_letkf_matches_published_rmse():
    """DAPPER: LETKF N=7, infl 1.04, loc_rad 4 (Gaspari–Cohn with half-width 1.82 x 4)
    -> 0.22; a global ETKF with 7 members (rank-deficient) diverges instead."""
    e, _ = _l96_twin("etkf", 7, 1.04, radius=4 * 1.82)
    assert 0.19 < e < 0.25
    e_global, _ = _l96_twin("etkf", 7, 1.04, cycles=600, burn=300)
    assert e_global > 1.0
