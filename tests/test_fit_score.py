"""``dtb fit``'s stationarity check of a long free run (``fit_score.segments``) against
correlations known in closed form."""

import numpy as np

from dtb.assimilation import summary as S
from dtb.assimilation.fit_score import score, segments

R, T = 12, 3000


def _factor_series(rng: np.random.Generator, loading: np.ndarray, n: int) -> np.ndarray:
    """x = f l + e, f and e unit white noise: corr_ij = l_i l_j / sqrt((1 + l_i^2)(1 + l_j^2))."""
    return rng.standard_normal((n, 1)) * loading[None, :] + rng.standard_normal((n, R))


def _factor_fc(loading: np.ndarray) -> np.ndarray:
    s = loading / np.sqrt(1.0 + loading**2)
    c = np.outer(s, s)
    np.fill_diagonal(c, 1.0)
    return c


def test_a_run_that_loses_its_correlations_shows_it_segment_by_segment():
    rng = np.random.default_rng(3)
    loading = np.linspace(0.3, 1.5, R)
    test = _factor_series(rng, loading, T)
    run = np.concatenate([_factor_series(rng, loading, T), rng.standard_normal((T, R))])
    seg = segments(run, test)
    assert seg is not None and seg["trs"] == T and len(seg["fc_r"]) == 2
    expected = float(S.upper(_factor_fc(loading)).mean())
    assert abs(seg["mean_fc"][0] - expected) < 0.03
    assert abs(seg["mean_fc"][1]) < 0.03  # independent noise: 1/sqrt(T) ~ 0.02 per pair
    assert seg["fc_r"][0] > 0.9 and abs(seg["fc_r"][1]) < 0.3
    assert abs(seg["self_r"]) < 0.3
    # the whole run averages the two states: it hides what neither stretch shows
    whole = score(run, test, 30, 10)
    assert 0.3 * expected < whole["mean_fc"] < 0.7 * expected
    assert whole["segments"] == seg


def test_a_stationary_run_is_reliable_and_each_piece_is_detrended_alone():
    rng = np.random.default_rng(4)
    loading = np.linspace(0.3, 1.5, R)
    test = _factor_series(rng, loading, T)
    run = _factor_series(rng, loading, 3 * T)
    seg = segments(run, test)
    assert seg is not None and len(seg["fc_r"]) == 3
    assert seg["self_r"] > 0.9 and min(seg["fc_r"]) > 0.9
    # a different line in each stretch (a global detrend would leave these) changes nothing
    t = np.arange(T, dtype=float)
    ramps = np.concatenate([np.outer(t, rng.normal(0, 0.05, R)) for _ in range(3)])
    bent = segments(run + ramps, test)
    assert np.allclose(bent["fc_r"], seg["fc_r"]) and np.allclose(bent["mean_fc"],
                                                                   seg["mean_fc"])
    # ... unless the fit asked for no detrending
    assert not np.allclose(segments(run + ramps, test, "none")["mean_fc"], seg["mean_fc"])


def test_a_run_shorter_than_two_test_lengths_has_no_segments():
    rng = np.random.default_rng(5)
    test = rng.standard_normal((100, R))
    assert segments(rng.standard_normal((199, R)), test) is None
    assert score(rng.standard_normal((150, R)), test, 30, 10)["segments"] is None


def test_the_terminal_summary_prints_the_stretches():
    from pathlib import Path

    from dtb.assimilation.fit_run import summary

    rng = np.random.default_rng(6)
    loading = np.linspace(0.3, 1.5, R)
    test = _factor_series(rng, loading, 500)
    run = np.concatenate([_factor_series(rng, loading, 500), rng.standard_normal((500, R))])
    fitted = score(run, test, 30, 10)
    unfitted = score(rng.standard_normal((500, R)), test, 30, 10)
    m = {"heldout": {"fitted": fitted, "unfitted": unfitted,
                     "baselines": {"log_sc": {"fc_r": 0.4},
                                   "split_half": {"fc_r": 0.9, "fcd_ks": 0.1}}},
         "fit": {"posterior_mean": {"coupling": 0.8}}}
    text = summary({}, m, Path("runs/x"))
    line = next(x for x in text.splitlines() if "stretches of 500 TRs" in x)
    seg = fitted["segments"]
    assert f"FC r {seg['fc_r'][0]:.2f}, {seg['fc_r'][1]:.2f}" in line
    assert f"between stretches {seg['self_r']:.2f}" in line
    assert "stretches" not in summary({}, {**m, "heldout": {**m["heldout"],
                                                             "fitted": unfitted}},
                                      Path("runs/x"))
