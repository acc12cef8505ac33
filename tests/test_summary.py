"""FC, FCD and their distances (dtb.assimilation.summary) against independent computations:
plain loops over pairs with numpy.corrcoef, scipy.stats.ks_2samp, and series built with a
known covariance (so FC is known analytically)."""

import numpy as np
import pytest
from scipy import stats

from dtb.assimilation import summary as S
from dtb.errors import ConfigError


def _series_with_cov(cov: np.ndarray, t: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((t, cov.shape[0])) @ np.linalg.cholesky(cov).T


def _known_cov(r: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((r, r))
    c = a @ a.T + r * np.eye(r)
    sd = np.sqrt(np.diag(c))
    return c * np.outer(1 / sd, 1 / sd) * np.outer(np.arange(1, r + 1), np.arange(1, r + 1))


def test_fc_recovers_known_correlation():
    cov = _known_cov()
    sd = np.sqrt(np.diag(cov))
    rho = cov / np.outer(sd, sd)
    x = _series_with_cov(cov, 200_000, 1) + 50.0  # offsets and scales must not matter
    m = S.fc(x)
    # sampling error of a correlation ~ (1 - rho^2) / sqrt(T) < 0.003 here
    np.testing.assert_allclose(m, rho, atol=0.01)
    np.testing.assert_allclose(np.diag(m), 1.0)


def test_fc_matches_pairwise_loops_and_fisher_z():
    x = np.random.default_rng(3).standard_normal((40, 5)).cumsum(axis=0)
    m, z = S.fc(x), S.fc(x, fisher_z=True)
    for i in range(5):
        for j in range(5):
            r = np.corrcoef(x[:, i], x[:, j])[0, 1]
            assert m[i, j] == pytest.approx(r, abs=1e-12)
            if i != j:
                assert z[i, j] == pytest.approx(0.5 * np.log((1 + r) / (1 - r)), abs=1e-9)
    assert np.all(np.diag(z) == 0)


def test_upper_and_fc_fit():
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(S.upper(a), [1, 2, 3, 6, 7, 11])
    rng = np.random.default_rng(4)
    fa, fb = rng.standard_normal((7, 7)), rng.standard_normal((7, 7))
    ua = [fa[i, j] for i in range(7) for j in range(i + 1, 7)]
    ub = [fb[i, j] for i in range(7) for j in range(i + 1, 7)]
    assert S.fc_fit(fa, fb) == pytest.approx(stats.pearsonr(ua, ub)[0], abs=1e-12)
    assert S.fc_fit(fa, 3 * fa + 1) == pytest.approx(1.0)
    # the lower triangle and the diagonal do not count
    fc2 = fa.copy()
    fc2[np.tril_indices(7)] = 99.0
    assert S.fc_fit(fc2, fb) == pytest.approx(S.fc_fit(fa, fb))


def _fcd_loops(x, window, step):
    t, r = x.shape
    ups = []
    s = 0
    while s + window <= t:
        c = np.corrcoef(x[s:s + window].T)
        ups.append([c[i, j] for i in range(r) for j in range(i + 1, r)])
        s += step
    w = len(ups)
    m = np.empty((w, w))
    for a in range(w):
        for b in range(w):
            m[a, b] = np.corrcoef(ups[a], ups[b])[0, 1]
    return np.array(ups), m


@pytest.mark.parametrize("window,step", [(10, 1), (12, 5), (30, 7)])
def test_window_fc_and_fcd_match_loops(window, step):
    x = np.random.default_rng(5).standard_normal((61, 5)).cumsum(axis=0)
    ups, m = _fcd_loops(x, window, step)
    np.testing.assert_allclose(S.window_fc(x, window, step), ups, atol=1e-12)
    np.testing.assert_allclose(S.fcd(x, window, step), m, atol=1e-12)
    w = m.shape[0]
    assert w == (61 - window) // step + 1
    np.testing.assert_allclose(S.fcd_values(x, window, step),
                               [m[a, b] for a in range(w) for b in range(a + 1, w)], atol=1e-12)


def test_fcd_of_a_switching_series_is_known():
    """Two states with different FC patterns: windows inside the same state correlate ~+1,
    windows in different states as the two states' FC triangles do."""
    r = 4
    c1 = 0.2 * np.eye(r) + 0.8 * np.kron(np.eye(2), np.ones((2, 2)))  # couples 0-1, 2-3
    c2 = 0.2 * np.eye(r) + 0.8 * np.kron(np.ones((2, 2)), np.eye(2))  # couples 0-2, 1-3
    x = np.concatenate([_series_with_cov(c1, 4000, 6), _series_with_cov(c2, 4000, 7)])
    m = S.fcd(x, 2000, 2000)  # windows 0,1 in state 1; 2,3 in state 2
    assert m[0, 1] > 0.98 and m[2, 3] > 0.98
    # the two states' FC triangles are [0.8, 0, 0, 0, 0, 0.8] and [0, 0.8, 0, 0, 0.8, 0]:
    # their correlation is -0.5 exactly
    assert m[0, 2] == pytest.approx(-0.5, abs=0.05)


def test_ks_distance_equals_scipy():
    rng = np.random.default_rng(8)
    for n, k, shift in ((50, 70, 0.0), (200, 31, 0.4), (13, 13, 2.0)):
        a, b = rng.standard_normal(n), rng.standard_normal(k) + shift
        ref = stats.ks_2samp(a, b, method="asymp").statistic
        assert S.ks_distance(a, b) == pytest.approx(ref, abs=1e-15)
    ties_a, ties_b = np.array([0, 0, 1, 1, 2.0]), np.array([0, 1, 1, 1, 3.0])
    assert S.ks_distance(ties_a, ties_b) == pytest.approx(
        stats.ks_2samp(ties_a, ties_b, method="asymp").statistic)
    assert S.ks_distance(a, a) == 0.0
    assert S.ks_distance([0, 1], [5, 6]) == 1.0


def test_regional_variance_and_summary():
    cov = _known_cov(5, 2)
    x = _series_with_cov(cov, 100_000, 9)
    np.testing.assert_allclose(S.regional_variance(x), np.diag(cov), rtol=0.02)
    s = S.summary(x[:300], window=50, step=25)
    assert s["fc"].shape == (5, 5) and s["variance"].shape == (5,)
    assert s["fcd_values"].shape == (11 * 10 // 2,)
    assert s["mean_fc"] == pytest.approx(np.mean(S.upper(S.fc(x[:300]))))


def test_bad_input_is_refused_with_the_field_named():
    x = np.zeros((20, 3)) + np.arange(60).reshape(20, 3) ** 1.5
    with pytest.raises(ConfigError, match="window: 50 -- expected at most"):
        S.fcd(x, 50, 1)
    with pytest.raises(ConfigError, match="step: 0"):
        S.window_fc(x, 5, 0)
    with pytest.raises(ConfigError, match=r"series: shape \(20,\)"):
        S.fc(x[:, 0])
    with pytest.raises(ConfigError, match="non-finite"):
        S.fc(np.where(x > 10, np.nan, x))
    with pytest.raises(ConfigError, match="two non-empty"):
        S.ks_distance([], [1.0])
    with pytest.raises(ConfigError, match="square"):
        S.upper(np.zeros((2, 3)))


def test_detrend_against_scipy():
    from scipy.signal import detrend as scipy_detrend

    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 4)) + np.arange(50)[:, None] * [0.1, -0.3, 0.0, 2.0] + 5
    assert np.allclose(S.detrend(x, "linear"), scipy_detrend(x, axis=0, type="linear"))
    assert np.allclose(S.detrend(x, "constant"), x - x.mean(axis=0))
    assert np.array_equal(S.detrend(x, "none"), x)
    with pytest.raises(ConfigError, match="detrend"):
        S.detrend(x, "cubic")
