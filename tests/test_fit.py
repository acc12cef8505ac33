"""Fitting a brain to summary statistics (dtb.assimilation.fit): parameters, the forward map
and a CI-sized twin experiment in which ES-MDA must recover the global coupling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from dtb.assimilation import summary
from dtb.assimilation.fit import (
    FitParameter,
    Forward,
    ForwardConfig,
    StatisticsConfig,
    bold_from_rates,
    fit,
    member_seed,
    simulate_bold,
    statistics,
    with_coupling,
)
from dtb.errors import ConfigError
from dtb.model.hemodynamics import drive_from_rate
from dtb.model.hemodynamics import simulate_bold as hemo_bold


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> object:
    """6 regions, 600 neurons, a sparse symmetric connectome (no atlas: equal volumes)."""
    from dtb.brain.build import BuildOptions, build

    d: Path = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (6, 6))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    w[w < 0.4] = 0
    ln = rng.uniform(20, 80, (6, 6))
    ln = (ln + ln.T) / 2
    np.fill_diagonal(ln, 0)
    head = ",".join(str(i) for i in range(1, 7))
    for name, m in (("sc.csv", w), ("len.csv", ln)):
        (d / name).write_text(head + "\n" + "\n".join(",".join(f"{x:g}" for x in r)
                                                      for r in m) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build(sc=str(d / "sc.csv"), lengths=str(d / "len.csv"),
                     options=BuildOptions(neurons=600))


RATES = ForwardConfig(tr_s=0.05, n_tr=200, spinup_s=0.0, substeps=1, observable="rates")


def test_coupling_scales_only_long_range_weights(tiny):
    out = with_coupling(tiny, 2.5)
    for a, b in zip(tiny.rules, out.rules, strict=True):
        assert b.weight == (2.5 * a.weight if a.kind == "long_range" else a.weight)
    assert any(r.kind == "long_range" for r in tiny.rules)
    assert out.rules is not tiny.rules and tiny.rules[0] is not out.rules[0]
    with pytest.raises(ConfigError, match="coupling"):
        with_coupling(tiny, -1.0)


def test_long_range_drive_onto_one_family_and_in_degree_by_sc_strength(tiny):
    out = with_coupling(tiny, 2.0, {"I": 0.25}, sc_exponent=0.5)
    strength = tiny.weights.sum(axis=1)[tiny.unit_region]
    rel = strength / np.average(strength, weights=tiny.neurons_per_unit())
    for a, b in zip(tiny.rules, out.rules, strict=True):
        if a.kind != "long_range":
            assert b.weight == a.weight and np.array_equal(b.k, a.k)
            continue
        assert b.weight == a.weight * 2.0 * (0.25 if a.target == "I" else 1.0)
        assert np.array_equal(b.k, np.floor(a.k * rel ** 0.5 + 0.5).astype(np.int64))
    with pytest.raises(ConfigError, match="coupling.X"):
        with_coupling(tiny, 1.0, {"X": 1.0})
    for name in ("coupling.I", "sc_exponent"):
        assert FitParameter(name, 0.0, 1.0).structural
    assert not FitParameter("E.I_e", 0.0, 1.0).structural


def test_parameters_map_to_units_and_back():
    nominal = np.array([1.0, 2.0, 4.0])
    assert np.allclose(FitParameter("E.g_AMPA", 0.5, 2).unit_values(1.5, nominal),
                       [1.5, 3.0, 6.0])
    m = np.array([-1.0, 0.0, 1.0])
    shift = FitParameter("E.I_e", -0.2, 0.2, mode="shift", map=m)
    assert np.allclose(shift.unit_values(0.1, nominal), nominal + 0.1 * m)
    p = FitParameter("coupling", 0.25, 8.0)
    x = np.array([0.3, 2.0, 7.9])
    assert np.allclose(p.from_unbounded(p.to_unbounded(x)), x)
    assert p.from_unbounded(0.0) == pytest.approx((0.25 + 8.0) / 2)
    for bad in (dict(name="coupling", low=2, high=1), dict(name="g_AMPA", low=0, high=1),
                dict(name="coupling", low=0, high=1, mode="shift"),
                dict(name="E.I_e", low=0, high=1, mode="scale", map=m)):
        with pytest.raises(ConfigError):
            FitParameter(**bad)


def test_bold_from_rates_is_the_balloon_model_of_the_relative_rate():
    """Against the hemodynamics module's own integration of the same drive (an independent
    path: relative rate -> drive -> Balloon, then region means by hand)."""
    rng = np.random.default_rng(3)
    pieces, U = 160, 4
    rates = 5.0 + rng.gamma(2.0, 1.0, (pieces, U))
    unit_region = np.array([0, 0, 1, 2])
    cfg = ForwardConfig(tr_s=0.5, n_tr=30, substeps=4, spinup_s=5.0)
    out = bold_from_rates(rates, 40, unit_region, 3, cfg)
    base = rates.mean(axis=0)
    b = hemo_bold(drive_from_rate(rates, base), 0.125)               # (pieces, U)
    b = b[40:][cfg.substeps - 1::cfg.substeps]                        # end of every TR
    want = np.stack([b[:, :2].mean(1), b[:, 2], b[:, 3]], axis=1)
    assert out.shape == (30, 3)
    assert np.allclose(out, want, rtol=1e-12, atol=1e-15)
    # a constant rate is rest: no signal at all
    flat = bold_from_rates(np.full((80, U), 7.0), 8, unit_region, 3, cfg)
    assert np.all(np.abs(flat) < 1e-12)


def test_statistics_are_the_summary_functions():
    x = np.random.default_rng(1).normal(size=(120, 5)) + 3.0
    st = StatisticsConfig(fc=True, fcd_quantiles=4, window=20, step=5, variance=True,
                          mean=True)
    v = statistics(x, st)
    fcz = summary.upper(summary.fc(x, fisher_z=True))
    q = np.quantile(summary.fcd_values(x, 20, 5), [0.125, 0.375, 0.625, 0.875])
    assert np.allclose(v, np.concatenate([fcz, q, np.log(x.var(axis=0)),
                                          np.log(x.mean(axis=0))]))
    with pytest.raises(ConfigError, match="none selected"):
        statistics(x, StatisticsConfig(fc=False))


def test_member_seeds_are_distinct_and_reproducible():
    seeds = {member_seed(3, i, m) for i in range(5) for m in range(20)}
    assert len(seeds) == 100
    assert member_seed(3, 1, 2) == member_seed(3, 1, 2) != member_seed(4, 1, 2)


def test_forward_runs_are_deterministic_and_respond_to_their_parameters(tiny):
    params = [FitParameter("coupling", 0.25, 8.0), FitParameter("E.I_e", -0.3, 0.3,
                                                                 mode="shift")]
    cfg = ForwardConfig(tr_s=0.05, n_tr=40, spinup_s=0.0, substeps=1, observable="rates")
    a = simulate_bold(tiny, params, [1.0, 0.0], 5, cfg)
    assert np.array_equal(a, simulate_bold(tiny, params, [1.0, 0.0], 5, cfg))
    assert a.shape == (40, 6) and np.all(a >= 0)
    # more long-range excitation, or more current into E cells: more firing
    assert simulate_bold(tiny, params, [4.0, 0.0], 5, cfg).mean() > 1.3 * a.mean()
    assert simulate_bold(tiny, params, [1.0, 0.2], 5, cfg).mean() > 1.15 * a.mean()
    # less long-range drive onto the inhibitory cells: more firing
    lr_i = [FitParameter("coupling.I", 0.0, 2.0)]
    assert (simulate_bold(tiny, lr_i, [0.0], 5, cfg).mean()
            > 1.15 * simulate_bold(tiny, lr_i, [1.0], 5, cfg).mean())
    with pytest.raises(ConfigError, match="no family"):
        simulate_bold(tiny, [FitParameter("X.I_e", 0, 1)], [0.5], 5, cfg)


@pytest.mark.slow
def test_twin_fit_recovers_the_coupling(tiny):
    """Twin experiment: the truth is the brain at coupling 2 with its own network
    realisation; 8 members from a prior centred at 4.1 (SD 1 on the logit scale), 3 ES-MDA
    iterations on the FC (Fisher z) and log mean rates of 10 s of region rates.  The
    posterior mean must close most of the gap (measured: 5.2 -> 1.55, and 1.8 with another
    fit seed) and the misfit fall."""
    params = [FitParameter("coupling", 0.25, 8.0)]
    st = StatisticsConfig(fc=True, mean=True)
    y = statistics(simulate_bold(tiny, params, [2.0], 424242, RATES), st)
    res = fit(Forward(tiny, params, RATES, st, seed=1), y, members=8, iterations=3, seed=1,
              noise_runs=6)
    prior_err = abs(res.prior[:, 0].mean() - 2.0)
    post_err = abs(res.posterior_mean[0] - 2.0)
    assert prior_err > 2.0
    assert post_err < 0.3 * prior_err
    mis = [float(np.mean(it.misfit)) for it in res.inversion.iterations]
    assert mis[-1] < mis[0] / 2
    assert res.Gamma.shape == (y.size, y.size) and res.noise_runs.shape == (6, y.size)


def test_build_applies_the_long_range_recipe_the_fit_estimates(tiny, tmp_path):
    """dtb build --coupling/--lr-inhibitory/--lr-sc-exponent gives the brain the fit's
    forward runs would build (one transform, dtb.brain.recipe), stored with the options
    and read back from brain.h5."""
    from dtb.brain.spec import BrainSpec
    from dtb.cli.main import main

    d = tmp_path
    head = ",".join(str(i) for i in range(1, 7))
    for name, m in (("sc.csv", tiny.weights), ("len.csv", tiny.lengths_mm)):
        (d / name).write_text(head + "\n" + "\n".join(",".join(repr(float(x)) for x in r)
                                                      for r in m) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["build", "--sc", str(d / "sc.csv"), "--lengths", str(d / "len.csv"),
                     "--neurons", "600", "--coupling", "1.5", "--lr-inhibitory", "0.25",
                     "--lr-sc-exponent", "0.5", "-o", str(d / "b.h5"), "-q"]) == 0
    got = BrainSpec.load(d / "b.h5")
    want = with_coupling(tiny, 1.5, {"I": 0.25}, 0.5)
    assert [(r.source, r.target, r.kind, r.weight) for r in got.rules] == \
        [(r.source, r.target, r.kind, r.weight) for r in want.rules]
    for a, b in zip(got.rules, want.rules, strict=True):
        assert np.array_equal(a.k, b.k)
    assert got.options["lr_inhibitory"] == 0.25 and got.options["lr_sc_exponent"] == 0.5
    with pytest.raises(ConfigError, match="lr_inhibitory"):
        from dtb.brain.build import BuildOptions

        BuildOptions(lr_inhibitory=-1.0).check()
