"""Synaptic delays: a spike emitted in step s with a delay of d steps enters the target's
synaptic state at the end of step s + d, i.e. it acts from time stamp + d*dt (NEST)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dtb

DT = 0.1
W = 100.0
TAU_SYN = 2.0


def _delay_network(delay_steps, src_current=2000.0, target_model="iaf_psc_exp"):
    """One DC-driven source; one single-neuron target population per delay."""
    if target_model == "iaf_psc_exp":
        tparams = {"V_th": 1e6, "tau_syn_ex": TAU_SYN}
        rec, w = "ex", W
    else:
        tparams = {"V_th": 1e6, "tau_AMPA": TAU_SYN}
        rec, w = "AMPA", 1.0
    pops = [dtb.Population("src", 1, model="iaf_psc_exp", params={"t_ref": 2.0},
                           inputs=(dtb.DCInput(src_current),), type="E")]
    projs = []
    for d in delay_steps:
        pops.append(dtb.Population(f"t{d}", 1, model=target_model, params=tparams))
        projs.append(dtb.Projection("src", f"t{d}", dtb.FixedInDegree(1), weight=w,
                                    delay=d * DT, receptor=rec))
    return dtb.Network(tuple(pops), tuple(projs)), w


def _arrival_steps(syn_rows: np.ndarray, w: float) -> list[np.ndarray]:
    """Steps (0-based) at whose end a trace took an input: x_k - P11 x_{k-1} ~ w."""
    p11 = math.exp(-DT / TAU_SYN)
    prev = np.vstack([np.zeros((1, syn_rows.shape[1])), syn_rows[:-1]])
    jump = syn_rows - p11 * prev
    assert np.all((np.abs(jump) < 1e-6 * w) | (np.abs(jump - w) < 1e-6 * w))
    return [np.flatnonzero(jump[:, j] > 0.5 * w) for j in range(syn_rows.shape[1])]


@pytest.mark.parametrize("target_model", ["iaf_psc_exp", "lif_cond"])
def test_spike_arrives_exactly_d_steps_later(target_model):
    delays = [1, 2, 3, 7, 15, 40, 123]
    net, w = _delay_network(delays, target_model=target_model)
    eng = dtb.Engine(net, dt=DT)
    n_steps = 800
    rows = []
    for _ in range(n_steps):
        eng.run(DT)
        rows.append(eng.syn[0, 1:].copy())
    t, g = eng.spikes()
    src_steps = np.round(t[g == 0] / DT).astype(int) - 1  # step s is stamped (s+1) dt
    assert len(src_steps) >= 10  # several spikes, also after the ring buffer wraps
    assert np.all(g == 0)
    got = _arrival_steps(np.array(rows), w)
    for j, d in enumerate(delays):
        expected = src_steps[src_steps + d < n_steps] + d
        np.testing.assert_array_equal(got[j], expected, err_msg=f"delay {d} steps")


def test_arrival_independent_of_run_chunking():
    """Delivery at window ends: running in uneven chunks gives the same synaptic state."""
    delays = [3, 5, 11]
    net, _ = _delay_network(delays)
    a = dtb.Engine(net, dt=DT)
    b = dtb.Engine(net, dt=DT)
    assert a.min_delay_steps == 3
    a.run(60.0)
    for chunk in (0.1, 0.7, 1.3, 0.2, 12.5, 0.4, 44.8):
        b.run(chunk)
    assert b.step == a.step == 600
    np.testing.assert_array_equal(a.syn, b.syn)
    np.testing.assert_array_equal(a.V, b.V)
    for x, y in zip(a.spikes(), b.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("delays,expected", [
    ([1.0, 0.3, 2.5], 3),
    ([0.1], 1),
    ([4.0, 12.0], 40),
])
def test_min_delay_steps_constant_delays(delays, expected):
    pops = (dtb.Population("a", 5, model="iaf_psc_exp"),)
    projs = tuple(dtb.Projection("a", "a", dtb.FixedInDegree(2), weight=1.0, delay=d)
                  for d in delays)
    eng = dtb.Engine(dtb.Network(pops, projs), dt=DT)
    assert eng.min_delay_steps == expected
    assert int(eng.synapse_arrays.dly.min()) == expected
    assert sorted(set(eng.synapse_arrays.dly.tolist())) == sorted({round(d / DT) for d in delays})


def test_min_delay_steps_distributed_delays():
    """With a bounded delay distribution the window is the smallest delay the rule allows
    (never more than any drawn delay, and attained when enough synapses are drawn)."""
    delay = dtb.Dist.normal(1.0, 0.5, low=0.45, high=3.0)  # 0.45 ms = 4.5 steps -> 5 (halves up)
    pops = (dtb.Population("a", 200, model="iaf_psc_exp"),)
    projs = (dtb.Projection("a", "a", dtb.FixedInDegree(50), weight=1.0, delay=delay),
             dtb.Projection("a", "a", dtb.FixedInDegree(5), weight=1.0,
                            delay=dtb.Dist.uniform(0.62, 0.9)))
    eng = dtb.Engine(dtb.Network(pops, projs), dt=DT)
    dmin = int(eng.synapse_arrays.dly.min())
    assert eng.min_delay_steps <= dmin
    assert dmin in (4, 5)
    assert eng.min_delay_steps == math.floor(0.45 / DT + 0.5) == 5  # NEST rounds halves up
    assert int(eng.synapse_arrays.dly.max()) <= 30
    assert eng.max_delay_steps == int(eng.synapse_arrays.dly.max())


def test_min_delay_window_from_uniform_delays():
    pops = (dtb.Population("a", 100, model="iaf_psc_exp"),)
    projs = (dtb.Projection("a", "a", dtb.FixedInDegree(20), weight=1.0,
                            delay=dtb.Dist.uniform(0.62, 2.0)),)
    eng = dtb.Engine(dtb.Network(pops, projs), dt=DT)
    assert eng.min_delay_steps == 6
    assert int(eng.synapse_arrays.dly.min()) == 6 and int(eng.synapse_arrays.dly.max()) == 20
