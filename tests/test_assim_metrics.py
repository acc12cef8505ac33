"""Fit metrics and baselines on synthetic data with analytic answers."""

import numpy as np
import pytest

from dtb.assimilation.metrics import (
    ar1_forecast,
    fc,
    fc_correlation,
    fit_ar1,
    interval_coverage,
    overall_correlation,
    pearson,
    persistence_forecast,
    tracking_report,
)


def _ar1(phi, T, R=1, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((T, R))
    x[0] = rng.standard_normal(R) / np.sqrt(1 - np.asarray(phi) ** 2)
    e = rng.standard_normal((T, R))
    for t in range(1, T):
        x[t] = phi * x[t - 1] + e[t]
    return x


def test_ar1_baselines_match_analytic_correlations():
    """For a stationary AR(1) with coefficient phi, corr(x_t, x_{t-1}) = phi: the persistence
    and the optimal one-step predictor phi x_{t-1} both correlate phi with the target, and
    least squares recovers phi to O(1/sqrt(T))."""
    phi = np.array([0.3, 0.8, 0.95])
    x = _ar1(phi, 100_000, 3, seed=1)
    coef = fit_ar1(x)
    np.testing.assert_allclose(coef[1], phi, atol=0.01)
    np.testing.assert_allclose(coef[0], 0.0, atol=0.03)
    np.testing.assert_allclose(pearson(persistence_forecast(x), x[1:]), phi, atol=0.01)
    np.testing.assert_allclose(pearson(ar1_forecast(x, coef), x[1:]), phi, atol=0.01)
    # the optimal predictor's mean squared error is the innovation variance, 1
    assert np.mean((ar1_forecast(x, coef) - x[1:]) ** 2) == pytest.approx(1.0, abs=0.02)
    rep = tracking_report(ar1_forecast(np.vstack([x[:1], x]), coef), x)
    assert rep["model"]["correlation"]["mean"] == pytest.approx(phi.mean(), abs=0.01)
    assert rep["persistence"]["correlation"]["mean"] == pytest.approx(phi.mean(), abs=0.01)
    assert rep["ar1"]["rmse"] == pytest.approx(1.0, abs=0.01)
    assert rep["n_samples"] == 99_999


def test_pearson_and_overall_correlation():
    t = np.linspace(0, 10, 200)
    a = np.stack([np.sin(t), np.cos(t)], 1)
    np.testing.assert_allclose(pearson(a, 3 * a + 1), [1, 1])
    np.testing.assert_allclose(pearson(a, -a), [-1, -1])
    # region offsets do not inflate the overall correlation: independent noise around
    # very different means still scores about 0
    rng = np.random.default_rng(0)
    b = rng.standard_normal((5000, 2)) + [0, 100]
    c = rng.standard_normal((5000, 2)) + [0, 100]
    assert abs(overall_correlation(b, c)) < 0.05
    assert np.isnan(pearson(np.ones((5, 1)), np.arange(5.0)[:, None])[0])


def test_fc_and_fc_correlation_known_covariance():
    C = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.1], [-0.3, 0.1, 1.0]])
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200_000, 3)) @ np.linalg.cholesky(C).T
    np.testing.assert_allclose(fc(x), C, atol=0.01)
    assert fc_correlation(fc(x), C) == pytest.approx(1.0, abs=1e-3)
    assert fc_correlation(C, 2 * C - np.eye(3)) == pytest.approx(1.0)   # diagonal ignored
    Cn = -C + 2 * np.eye(3)
    assert fc_correlation(C, Cn) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="expected"):
        fc_correlation(C, C[:2, :2])


def test_interval_coverage_of_a_calibrated_ensemble():
    rng = np.random.default_rng(3)
    mu = rng.standard_normal(4000)
    samples = mu + rng.standard_normal((200, 4000))
    truth = mu + rng.standard_normal(4000)
    assert interval_coverage(samples, truth, 0.9) == pytest.approx(0.9, abs=0.03)
    assert interval_coverage(samples, truth, 0.5) == pytest.approx(0.5, abs=0.03)
    # an overconfident ensemble (spread 0.2 of the truth's) covers far less
    narrow = mu + 0.2 * rng.standard_normal((200, 4000))
    assert interval_coverage(narrow, truth, 0.9) < 0.4
