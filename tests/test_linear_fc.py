"""dtb.assimilation.linear_fc: the linear network's FC against closed forms and an
independent Lyapunov solve, its grid search recovering the point that made a target, and
``dtb fit``'s ``linear_sc`` baseline."""

import numpy as np

from dtb.assimilation import summary as S
from dtb.assimilation.fit_score import baselines
from dtb.assimilation.linear_fc import best_linear_fc, linear_fc


def _sc(r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sc = np.abs(rng.standard_normal((r, r))) ** 3
    sc = (sc + sc.T) / 2
    np.fill_diagonal(sc, 0.0)
    return sc / sc.max()


def _corr(c: np.ndarray) -> np.ndarray:
    return c / np.sqrt(np.outer(np.diag(c), np.diag(c)))


def test_symmetric_coupling_has_the_closed_form():
    """a = 1 keeps W symmetric (the SC plus homotopic pairs): the Lyapunov solution of
    dx = (-I + k W) x dt + dB is then C = (I - k W)^-1 / 2."""
    sc = _sc(8, 3)
    pairs = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    w = sc.copy()
    w[pairs[:, 0], pairs[:, 1]] += 0.3
    w[pairs[:, 1], pairs[:, 0]] += 0.3
    k = 0.9 / np.max(np.linalg.eigvalsh(w))
    expect = _corr(np.linalg.inv(np.eye(8) - k * w) / 2)
    got = linear_fc(sc, 1.0, 0.9, pairs, 0.3)
    np.testing.assert_allclose(got, expect, atol=1e-10)
    np.testing.assert_allclose(np.diag(got), 1.0)


def test_row_scaled_coupling_matches_a_kronecker_solve():
    """a = 0.5: W = D^-0.5 SC is not symmetric; vec(A C + C A^T) = -vec(I) solved with
    Kronecker products."""
    sc = _sc(7, 4)
    r = sc.shape[0]
    m = sc * (sc.sum(axis=1) ** -0.5)[:, None]
    a = -np.eye(r) + 0.95 / np.max(np.real(np.linalg.eigvals(m))) * m
    k = np.kron(np.eye(r), a) + np.kron(a, np.eye(r))
    c = np.linalg.solve(k, -np.eye(r).ravel()).reshape(r, r)
    np.testing.assert_allclose(linear_fc(sc, 0.5, 0.95), _corr(c), atol=1e-10)


def test_a_regional_gain_scales_the_rows_before_the_normalisation():
    """log_gain b m: W's row i times exp(b m_i), then the same Kronecker solve."""
    sc = _sc(7, 6)
    r = sc.shape[0]
    lg = 0.4 * np.linspace(-1.5, 1.5, r)
    m = sc * (sc.sum(axis=1) ** -0.5 * np.exp(lg))[:, None]
    a = -np.eye(r) + 0.9 / np.max(np.real(np.linalg.eigvals(m))) * m
    k = np.kron(np.eye(r), a) + np.kron(a, np.eye(r))
    c = np.linalg.solve(k, -np.eye(r).ravel()).reshape(r, r)
    np.testing.assert_allclose(linear_fc(sc, 0.5, 0.9, log_gain=lg), _corr(c), atol=1e-10)
    # a uniform gain is absorbed by lambda_max
    np.testing.assert_allclose(linear_fc(sc, 0.5, 0.9, log_gain=np.full(r, 0.7)),
                               linear_fc(sc, 0.5, 0.9), atol=1e-10)


def test_grid_search_recovers_the_point_that_made_the_target():
    sc = _sc(12, 5)
    target = linear_fc(sc, 0.25, 0.9)
    best = best_linear_fc(sc, target)
    assert (best["a"], best["g"]) == (0.25, 0.9)
    assert best["fc_r_fit"] > 0.999999


def test_fit_baselines_report_the_linear_network_chosen_on_the_fit_trs():
    """A subject whose BOLD is the linear network's own (simulated by Euler-Maruyama at
    a = 0.75, g = 0.8): the baseline picks that point on the fit TRs and scores the test
    TRs well above log-SC."""
    sc = _sc(10, 6)
    r = sc.shape[0]
    m = sc * (sc.sum(axis=1) ** -0.25)[:, None]
    a = -np.eye(r) + 0.8 / np.max(np.real(np.linalg.eigvals(m))) * m
    rng = np.random.default_rng(7)
    dt, n = 0.05, 200_000
    x = np.zeros(r)
    out = np.empty((n // 20, r))
    noise = rng.standard_normal((n, r)) * np.sqrt(dt)
    for t in range(n):
        x = x + dt * (a @ x) + noise[t]
        if t % 20 == 0:
            out[t // 20] = x
    fit, test = out[: len(out) // 2], out[len(out) // 2:]
    b = baselines(fit, test, sc, None, 30, 5)
    lin = b["linear_sc"]
    assert lin["chosen_on"] == "fit TRs"
    assert lin["a"] == 0.75 and lin["g"] == 0.8
    assert lin["fc_r"] > 0.9 > b["log_sc"]["fc_r"]
    np.testing.assert_allclose(lin["mean_fc"],
                               np.mean(S.upper(linear_fc(sc, 0.75, 0.8))), rtol=1e-12)
