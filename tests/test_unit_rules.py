"""Unit-structured connectivity (the brain builder's rules): unit-local and long-range.

Expectations are independent: the chosen source unit must lie in the target's unit, the
long-range source groups must follow the connectome row (chi-square), delays must equal
conduction + synaptic delay in whole steps, and a network split into target ranges must
produce the same synapses.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import dtb
from dtb.engine.connectivity import fill, synapse_counts
from dtb.kernels.connect import weight_shift
from dtb.model.network import LongRange, PerUnit, UnitLocal

DT = 0.1
ALPHA = 1e-3


def edges(eng: dtb.Engine, pid: int):
    """(source index in its population, target engine index, delay steps) of projection pid."""
    src, tgt, _, dly = eng.synapses(pid)
    return src, tgt, dly


def test_unit_local_sources_stay_in_the_unit():
    units = (40, 0, 25, 60, 15)
    k = (5, 0, 7, 3, 9)
    pop = dtb.Population("E", sum(units), model="iaf_psc_exp", units=units)
    net = dtb.Network((pop,), (dtb.Projection("E", "E", UnitLocal(k), 10.0, 1.0,
                                              autapses=False),))
    eng = dtb.Engine(net, dt=DT)
    src, tgt, _ = edges(eng, 0)
    bounds = np.concatenate([[0], np.cumsum(units)])
    unit_of = np.searchsorted(bounds, np.arange(sum(units)), side="right") - 1
    assert np.array_equal(unit_of[src], unit_of[tgt])
    assert not np.any(src == tgt)
    counts = np.bincount(tgt, minlength=sum(units))
    np.testing.assert_array_equal(counts, np.asarray(k)[unit_of])


def test_unit_local_uniform_within_unit():
    units = (30, 50)
    pop_e = dtb.Population("E", 80, model="iaf_psc_exp", units=units)
    pop_i = dtb.Population("I", 160, model="iaf_psc_exp", units=(60, 100))
    net = dtb.Network((pop_e, pop_i), (dtb.Projection("E", "I", UnitLocal(200), 1.0, 1.0),))
    eng = dtb.Engine(net, dt=DT)
    src, tgt, _ = edges(eng, 0)
    tgt_in_pop = tgt - 80
    for u, (lo, hi) in enumerate([(0, 30), (30, 80)]):
        sel = (tgt_in_pop >= (0 if u == 0 else 60)) & (tgt_in_pop < (60 if u == 0 else 160))
        obs = np.bincount(src[sel] - lo, minlength=hi - lo)
        assert obs.size == hi - lo
        assert stats.chisquare(obs).pvalue > ALPHA


def _long_range_net(probs, cond, k=400, units=(20, 30, 10, 40), groups=(0, 0, 1, 2),
                    delay=0.0):
    e = dtb.Population("E", sum(units), model="iaf_psc_exp", units=units, groups=groups)
    rule = LongRange(k, np.asarray(probs, float), np.asarray(cond, float))
    return dtb.Network((e,), (dtb.Projection("E", "E", rule, 5.0, delay),))


def test_long_range_source_groups_follow_the_connectome_row():
    probs = [[0.0, 3.0, 1.0], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0]]
    cond = [[0.0, 4.0, 9.0], [4.0, 0.0, 6.3], [9.0, 6.3, 0.0]]
    units, groups = (20, 30, 10, 40), (0, 0, 1, 2)
    eng = dtb.Engine(_long_range_net(probs, cond, units=units, groups=groups), dt=DT)
    src, tgt, dly = edges(eng, 0)
    ub = np.concatenate([[0], np.cumsum(units)])
    grp = np.asarray(groups)[np.searchsorted(ub, np.arange(ub[-1]), side="right") - 1]
    p = np.asarray(probs)
    for g in range(3):
        sel = grp[tgt] == g
        obs = np.bincount(grp[src[sel]], minlength=3)
        exp = p[g] / p[g].sum() * sel.sum()
        nz = exp > 0
        assert obs[~nz].sum() == 0
        assert stats.chisquare(obs[nz], exp[nz]).pvalue > ALPHA
    # delay = conduction rounded to whole steps, at least one step
    c = np.asarray(cond)
    expect = np.maximum(1, np.floor(c[grp[tgt], grp[src]] / DT + 0.5)).astype(int)
    np.testing.assert_array_equal(dly, expect)
    # the exchange window is the smallest conduction delay that can occur (4 ms = 40 steps)
    assert eng.min_delay_steps == 40


def test_long_range_source_neurons_proportional_to_group_membership():
    """Within a group of several units (voxels of a region) every neuron is equally
    likely, so a unit is chosen in proportion to its size."""
    probs = [[0.0, 1.0], [1.0, 0.0]]
    cond = [[0.0, 2.0], [2.0, 0.0]]
    units, groups = (10, 40, 25, 25), (0, 0, 1, 1)
    eng = dtb.Engine(_long_range_net(probs, cond, k=1000, units=units, groups=groups), dt=DT)
    src, tgt, _ = edges(eng, 0)
    sel = tgt >= 50  # targets in group 1 take sources from group 0 (neurons 0..49)
    obs = np.bincount(src[sel], minlength=50)[:50]
    assert stats.chisquare(obs).pvalue > ALPHA


def test_long_range_adds_synaptic_delay_and_per_unit_in_degree():
    probs = [[0.0, 1.0], [1.0, 0.0]]
    cond = [[0.0, 1.26], [1.26, 0.0]]
    units, groups = (30, 30), (0, 1)
    k = (7, 3)
    eng = dtb.Engine(_long_range_net(probs, cond, k=k, units=units, groups=groups,
                                     delay=0.5), dt=DT)
    src, tgt, dly = edges(eng, 0)
    np.testing.assert_array_equal(np.bincount(tgt, minlength=60), np.repeat(k, units))
    np.testing.assert_array_equal(dly, 18)  # 1.26 + 0.5 = 1.76 ms -> 18 steps


def test_same_synapses_for_any_split_of_the_targets():
    """Each rank generates the synapses of its own targets; any split gives the same set."""
    probs = np.array([[1.0, 3.0, 1.0], [1.0, 1.0, 1.0], [2.0, 2.0, 0.5]])
    cond = np.full((3, 3), 3.0)
    units, groups = (20, 30, 10, 40), (0, 0, 1, 2)
    pop = dtb.Population("E", 100, model="iaf_psc_exp", units=units, groups=groups)
    for rule in (LongRange((9, 4, 6, 2), probs, cond), UnitLocal((3, 5, 2, 8))):
        proj = dtb.Projection("E", "E", rule, dtb.Dist.normal(5.0, 1.0, low=0.0), 0.3,
                              autapses=False)
        shift = weight_shift(max(abs(x) for x in proj.weight.bounds()))

        def part(first, count, rule=rule, proj=proj, shift=shift):
            counts = synapse_counts(proj, 3, 42, pop, pop, 7 + first, first, count)
            n = int(counts.sum())
            ind = np.empty(101, np.int64)
            tgt = np.empty(n, np.uint32)
            wq = np.empty(n, np.int16)
            dl = np.empty(n, np.uint16)
            fill(proj, 3, 42, DT, pop, pop, 7 + first, first, counts, first, shift, ind, tgt,
                 wq, dl)
            src = np.repeat(np.arange(100), np.diff(ind))
            out = np.stack([tgt.astype(np.int64), src, wq.astype(np.int64), dl.astype(np.int64)])
            return out[:, np.lexsort(out[::-1])]

        whole = part(0, 100)
        pieces = np.concatenate([part(a, z - a) for a, z in [(0, 13), (13, 50), (50, 100)]],
                                axis=1)
        np.testing.assert_array_equal(whole, pieces[:, np.lexsort(pieces[::-1])])


def test_per_unit_parameters_expand_to_neurons():
    units = (3, 0, 4)
    pop = dtb.Population("E", 7, model="lif_cond", units=units,
                         params={"g_AMPA": PerUnit((0.1, 0.2, 0.3))})
    eng = dtb.Engine(dtb.Network((pop,)), dt=DT)
    from dtb.kernels.rows import L_G0
    np.testing.assert_array_equal(eng.P[L_G0], [0.1] * 3 + [0.3] * 4)


@pytest.mark.parametrize("build,fragment", [
    (lambda: dtb.Network((dtb.Population("E", 10),),
                         (dtb.Projection("E", "E", UnitLocal(2), 1.0, 1.0, receptor="E"),)),
     "source and target populations with units"),
    (lambda: dtb.Network((dtb.Population("E", 10, units=(5, 5)),
                          dtb.Population("I", 10, units=(10,))),
                         (dtb.Projection("E", "I", UnitLocal(2), 1.0, 1.0, receptor="E"),)),
     "the same units"),
    (lambda: dtb.Network((dtb.Population("E", 10, units=(5, 5)),),
                         (dtb.Projection("E", "E", UnitLocal((1, 2, 3)), 1.0, 1.0,
                                         receptor="E"),)),
     "one in-degree per target unit"),
    (lambda: dtb.Network((dtb.Population("E", 10, units=(4, 5)),), ()), "summing to size"),
    (lambda: dtb.Network((dtb.Population("E", 10, units=(5, 5), groups=(1, 0)),), ()),
     "non-decreasing"),
    (lambda: dtb.Network((dtb.Population("E", 10, units=(5, 5),
                                         params={"g_AMPA": PerUnit((1.0,))}),), ()),
     "one per unit"),
    (lambda: _long_range_net([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
                             np.ones((3, 3))), "no long-range inputs"),
    (lambda: _long_range_net(np.ones((3, 3)), -np.ones((3, 3))), "conduction_ms[0][0]"),
    (lambda: _long_range_net(np.ones((2, 2)), np.ones((2, 2))), "covering group 2"),
])
def test_invalid_unit_configurations_are_named(build, fragment):
    with pytest.raises(dtb.ConfigError) as e:
        dtb.Engine(build(), dt=DT)
    assert fragment in str(e.value)
