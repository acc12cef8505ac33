"""Issue 14, item 9: the filter must not hang on observations the model cannot produce.

Reproduced first with the real command (``dtb build --demo --neurons 4000``; ``dtb
assimilate`` of a BOLD table drifting as a 1 %/TR random walk, 16 TRs, 4 members, dt 0.5 ms):
after a few analyses q was near 0 and f about 3e4 times rest, the Balloon integrator's
sub-step fell to 1.5e-8 s and the run spun with no output (killed after 5 minutes).  Here the
same drift with fast stand-in members (``RateModel``) drives the same loop, the state the
real run reached is integrated directly, and the physiological box is checked against the
dynamics it is derived from.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from test_assimilate import RateModel

from dtb.assimilation.evaluation import observations_vs_model
from dtb.assimilation.loop import AssimilationConfig, ParamSpec, assimilate
from dtb.assimilation.stop import Abandoned, make_poll
from dtb.errors import ModelError
from dtb.model.hemodynamics import (
    PARAMETER_SETS,
    Hemodynamics,
    bold_range,
    physiological_box,
)

# the state of the stiffest unit when the real run spun (s, log f, log v, log q)
SPUN = np.array([-152.2207724, 10.41525043, 2.08305013, -6.67235675])


class NoisyRateModel(RateModel):
    """A stand-in member whose rates vary as much as a small spiking network's: a
    log-normal activity of its own (SD 0.5 in log rate) around ``5 g`` Hz."""

    def run_rates(self, t_ms):
        self.x = 0.9 * self.x + 0.3 * self.rng.standard_normal(self.n_units)
        return 5.0 * self.g * np.exp(0.5 * self.x)


def drift(T: int, R: int, seed: int = 0) -> np.ndarray:
    """BOLD that drifts as a random walk of 1 % (0.01) per TR in every region."""
    return np.cumsum(0.01 * np.random.default_rng(seed).standard_normal((T, R)), axis=0)


@pytest.mark.timeout(60)
def test_state_the_real_run_reached_raises_instead_of_spinning():
    """Before: ``step`` took sub-steps of ~1e-8 s (2e7 for one 0.2 s step: no end in
    sight).  Now: ModelError at once, naming the unit and its state."""
    h = Hemodynamics(3)
    x = np.zeros((4, 3))
    x[:, 1] = SPUN
    h.set_state(x)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match=r"unit 1: .*q=0\.00127.*rest") as e:
        h.step(np.zeros(3), 0.2)
    assert time.perf_counter() - t0 < 5
    assert e.value.unit == (1,)
    assert "20,000" in str(e.value)          # the cap: 0.2 s / 10 us sub-steps


@pytest.mark.timeout(120)
def test_drifting_observations_do_not_hang_the_filter_and_are_reported():
    """The issue's drift, 16 TRs, 4 members: the run ends, every analysed hemodynamic
    state is inside the physiological box, and the report says the observations were far
    outside what the model produces (the consistent twin below says nothing).  Before: the
    analysed states ended at f = 11 times rest and s = 40/s (the way to the real run's
    q near 0), and nothing was reported."""
    U = R = 8
    T, M = 16, 4
    spec = [ParamSpec("E", "g", 0.5, 2.0)]
    cfg = AssimilationConfig(tr_s=0.8, obs_var=0.002 ** 2, spinup_s=0.0, seed=1)
    rng = np.random.default_rng(3)
    theta0 = rng.uniform(0.8, 1.2, (M, U, 1))
    members = [NoisyRateModel(U, 100 + i) for i in range(M)]
    res = assimilate(members, drift(T, R), np.arange(R), spec, theta0, cfg)
    lo, hi = physiological_box("friston2000")
    x = res.hemo_state
    assert np.all(np.isfinite(x))
    assert np.all((x >= lo[:, None, None] - 1e-12) & (x <= hi[:, None, None] + 1e-12))
    rep = observations_vs_model(SimpleNamespace(obs=drift(T, R), n_assim=T), res,
                                "friston2000")
    assert rep["far_outside"] and rep["far_trs"] and rep["hemo_values_clamped"] > 0

    # a consistent twin: data from a member like the others -> nothing to report
    truth = RateModel(U, 7)
    truth.set_params(spec, np.ones((1, U)))
    h = Hemodynamics(U)
    obs = np.empty((T, R))
    for t in range(T):
        for _ in range(4):
            h.step(0.4 * 2.5 * (truth.run_rates(200.0) - 5.0) / 5.0, 0.2)
        obs[t] = h.bold()
    members = [RateModel(U, 100 + i) for i in range(M)]
    res = assimilate(members, obs, np.arange(R), spec, theta0, cfg,
                     baseline_hz=np.full(U, 5.0))
    rep = observations_vs_model(SimpleNamespace(obs=obs, n_assim=T), res, "friston2000")
    assert not rep["far_outside"], rep


@pytest.mark.parametrize("name", list(PARAMETER_SETS))
def test_the_dynamics_keep_the_physiological_box(name):
    """The box's claim, checked against the model: from random states inside it, under
    constant drives whose steady flow lies in FLOW_RANGE, v, q and s stay inside for as
    long as f does (f itself may overshoot a large step of drive)."""
    lo, hi = physiological_box(name)
    rng = np.random.default_rng(5)
    n = 400
    p = PARAMETER_SETS[name]
    x0 = rng.uniform(lo, hi, (n, 4)).T
    z = p.gamma * (rng.uniform(0.25, 4.0, n) - 1.0)
    h = Hemodynamics(n, name)
    h.set_state(x0)
    f_ok = np.ones(n, bool)
    for _ in range(300):                                   # 30 s
        h.step(z, 0.1)
        x = h.state
        f_ok &= (x[1] >= lo[1]) & (x[1] <= hi[1])
        inside = np.all((x[2:] >= lo[2:, None] - 1e-9) & (x[2:] <= hi[2:, None] + 1e-9),
                        axis=0)
        assert np.all(inside | ~f_ok)
        assert np.all((np.abs(x[0]) <= hi[0] + 1e-9) | ~f_ok)
    assert f_ok.mean() > 0.3                               # the check had cases to check


@pytest.mark.parametrize("name", list(PARAMETER_SETS))
def test_bold_range_bounds_every_state_in_the_box(name):
    """Random states of the box never leave ``bold_range``, and a grid over the box
    reaches both ends."""
    lo, hi = physiological_box(name)
    y_lo, y_hi = bold_range(name)
    rng = np.random.default_rng(2)
    h = Hemodynamics(20_000, name)
    h.set_state(rng.uniform(lo, hi, (20_000, 4)).T)
    y = h.bold()
    assert y.min() >= y_lo - 1e-12 and y.max() <= y_hi + 1e-12
    # a fine grid of the (v, q) faces reaches both ends
    v, q = np.meshgrid(np.linspace(lo[2], hi[2], 401), np.linspace(lo[3], hi[3], 401))
    grid = np.stack([np.zeros(v.size), np.zeros(v.size), v.ravel(), q.ravel()])
    h = Hemodynamics(v.size, name)
    h.set_state(grid)
    assert h.bold().min() == pytest.approx(y_lo, abs=1e-6)
    assert h.bold().max() == pytest.approx(y_hi, abs=1e-5)


def test_clamp_moves_only_what_is_outside():
    h = Hemodynamics(3)
    x = np.zeros((4, 3))
    x[:, 2] = SPUN
    h.set_state(x)
    assert h.clamp_physiological() == 4
    lo, hi = physiological_box()
    np.testing.assert_array_equal(h.state[:, :2], 0.0)
    np.testing.assert_allclose(h.state[:, 2], [lo[0], hi[1], hi[2], lo[3]])
    assert h.clamp_physiological() == 0


def test_a_stop_request_is_seen_inside_a_long_integration():
    """The integration polls: a stop signal seen for longer than the grace period ends a
    step in progress (``Abandoned``) instead of waiting for the TR boundary."""
    now = [0.0]
    stop = SimpleNamespace(signum=15)
    poll = make_poll(stop, grace=5.0, clock=lambda: now[0])

    def ticking():
        now[0] += 0.01
        poll()

    h = Hemodynamics(2, max_substep_s=1e-3)
    with pytest.raises(Abandoned, match="SIGTERM"):
        h.step(np.ones(2), 3600.0, poll=ticking)
    assert 5.0 <= now[0] < 6.0
    assert make_poll(None) is None
