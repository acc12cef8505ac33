"""Reproducibility: a run is a pure function of (network, dt, seed, noise_seed).

Same seed -> bitwise identical spikes and state; another seed -> different results;
the numba thread count and the way run() is chunked change nothing.  ``noise_seed``
(default ``seed``) varies the initial state and the noise of one network realisation.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import dtb
from dtb.errors import ArgumentError
from dtb.models.microcircuit import microcircuit

needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="numba has fewer than 2 threads")


def mixed_network() -> dtb.Network:
    """Both models, every input type, heterogeneous parameters and all three rules."""
    lif = {"C": 1.0, "g_L": 0.03, "t_ref": dtb.Dist.uniform(2.0, 5.0)}
    pops = (
        dtb.Population("E", 800, model="iaf_psc_exp", type="E",
                       params={"tau_m": dtb.Dist.normal(10.0, 1.0, low=5.0)},
                       initial={"V": dtb.Dist.normal(-58.0, 5.0)},
                       inputs=(dtb.PoissonInput(8.0, 87.8, 1000),)),
        dtb.Population("I", 200, model="iaf_psc_exp", type="I",
                       initial={"V": dtb.Dist.uniform(-65.0, -50.0)},
                       inputs=(dtb.PoissonInput(8.0, 87.8, 950), dtb.DCInput(5.0))),
        dtb.Population("C", 300, model="lif_cond", type="E", params=lif,
                       initial={"V": dtb.Dist.uniform(-70.0, -55.0)},
                       inputs=(dtb.OUInput(0.8, 0.2, 10.0),)),
    )
    w_e = dtb.Dist.normal(87.8, 8.78, low=0.0)
    w_i = dtb.Dist.normal(-351.2, 35.12, high=0.0)
    d_e = dtb.Dist.normal(1.5, 0.75, low=0.1)
    projs = (
        dtb.Projection("E", "E", dtb.FixedInDegree(80), w_e, d_e),
        dtb.Projection("E", "I", dtb.PairwiseBernoulli(0.1), w_e, d_e),
        dtb.Projection("I", "E", dtb.FixedTotalNumber(16000), w_i, dtb.Dist.uniform(0.3, 1.0)),
        dtb.Projection("I", "I", dtb.FixedInDegree(20), w_i, 0.8, autapses=False,
                       multapses=False),
        dtb.Projection("C", "E", dtb.FixedInDegree(10), w_e, 2.0),
        dtb.Projection("E", "C", dtb.FixedInDegree(30), dtb.Dist.uniform(0.01, 0.05), d_e),
        dtb.Projection("I", "C", dtb.PairwiseBernoulli(0.05), 0.05, 1.0),
        dtb.Projection("C", "C", dtb.FixedInDegree(10), 0.02, 1.2, receptor="NMDA"),
    )
    return dtb.Network(pops, projs)


def run(net, seed=1, t=200.0, threads=None, chunks=None):
    eng = dtb.Engine(net, dt=0.1, seed=seed, threads=threads)
    for c in chunks or [t]:
        eng.run(c)
    return eng


def assert_same(a: dtb.Engine, b: dtb.Engine):
    ta, ga = a.spikes()
    tb, gb = b.spikes()
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(ga, gb)
    np.testing.assert_array_equal(a.V, b.V)
    np.testing.assert_array_equal(a.syn, b.syn)


def test_same_seed_bitwise_identical_and_active():
    net = mixed_network()
    a, b = run(net, seed=7), run(net, seed=7)
    assert_same(a, b)
    rates = a.rates(50.0)
    assert all(r > 0.5 for r in rates.values()), rates  # every population takes part


def test_different_seed_differs():
    net = mixed_network()
    a, b = run(net, seed=7), run(net, seed=8)
    ta, ga = a.spikes()
    tb, gb = b.spikes()
    assert len(ta) != len(tb) or not (np.array_equal(ta, tb) and np.array_equal(ga, gb))
    assert not np.array_equal(a.V, b.V)


def _network_realisation(eng: dtb.Engine) -> list[np.ndarray]:
    """Every projection's synapses and the per-neuron parameters: what ``seed`` draws."""
    out = [x for pid in range(len(eng.network.projections)) for x in eng.synapses(pid)]
    return [*out, eng.neurons.P, eng.neurons.pid]


def test_noise_seed_default_is_seed():
    net = mixed_network()
    a = run(net, seed=7)
    b = dtb.Engine(net, dt=0.1, seed=7, noise_seed=7)
    b.run(200.0)
    assert a.noise_seed == 7
    assert_same(a, b)


def test_noise_seed_keeps_the_network_and_changes_the_run():
    """One network realisation (synapses, drawn parameters) under two noise seeds: the same
    synapses and parameters, another initial V, OU state and spike train; and two network
    seeds under one noise seed: other synapses."""
    net = mixed_network()
    a = dtb.Engine(net, dt=0.1, seed=7, noise_seed=100)
    b = dtb.Engine(net, dt=0.1, seed=7, noise_seed=101)
    c = dtb.Engine(net, dt=0.1, seed=8, noise_seed=100)
    for x, y in zip(_network_realisation(a), _network_realisation(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in
               zip(_network_realisation(a), _network_realisation(c), strict=True))
    assert not np.array_equal(a.V, b.V)                  # drawn initial V
    assert not np.array_equal(a.istate.ou, b.istate.ou)  # the OU input's initial state
    for e in (a, b):
        e.run(100.0)
    ta, ga = a.spikes()
    tb, gb = b.spikes()
    assert len(ta) > 100 and len(tb) > 100
    assert len(ta) != len(tb) or not (np.array_equal(ta, tb) and np.array_equal(ga, gb))
    with pytest.raises(ArgumentError, match="noise_seed"):
        dtb.Engine(net, dt=0.1, seed=7, noise_seed=-1)


def test_run_chunking_does_not_matter():
    net = mixed_network()
    a = run(net, seed=3, t=120.0)
    b = run(net, seed=3, chunks=[0.1, 0.1, 33.3, 0.5, 41.0, 45.0])
    assert b.step == a.step
    assert_same(a, b)


@needs_two_threads
def test_thread_count_does_not_matter():
    net = mixed_network()
    a = run(net, seed=11, threads=1)
    assert a.threads == 1
    b = run(net, seed=11, threads=2)
    assert b.threads == 2
    assert len(a.blocks.lo) != len(b.blocks.lo)  # the work really is split differently
    assert_same(a, b)


@needs_two_threads
def test_engines_with_different_threads_interleaved():
    """Building an engine with another thread count does not disturb a running one."""
    net = mixed_network()
    a = dtb.Engine(net, dt=0.1, seed=5, threads=1)
    a.run(50.0)
    b = dtb.Engine(net, dt=0.1, seed=5, threads=2)
    b.run(50.0)
    a.run(50.0)
    b.run(50.0)
    ref = run(net, seed=5, t=100.0, threads=1)
    assert_same(a, ref)
    assert_same(b, ref)


def test_microcircuit_reproducible():
    net = microcircuit(0.02)
    a, b = run(net, seed=4, t=200.0), run(net, seed=4, t=200.0)
    assert len(a.spikes()[0]) > 1000
    assert_same(a, b)


@needs_two_threads
def test_microcircuit_thread_independent():
    net = microcircuit(0.02)
    a = run(net, seed=4, t=100.0, threads=1)
    b = run(net, seed=4, t=100.0, threads=2)
    assert_same(a, b)
