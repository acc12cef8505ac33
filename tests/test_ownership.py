"""Which neurons each rank owns (no MPI needed: a pure function of network and ranks)."""

from __future__ import annotations

import numpy as np
import pytest

from dtb.brain.build import BuildOptions, build
from dtb.data import demo_inputs
from dtb.engine.decomposition import UPDATE_COST, in_degree_per_neuron, ownership
from dtb.models import microcircuit


@pytest.fixture(scope="module")
def brain():
    return build(**demo_inputs(), options=BuildOptions(neurons=20_000)).to_network()


@pytest.mark.parametrize("ranks", [1, 2, 3, 7, 16])
def test_every_neuron_owned_once_and_cost_balanced(ranks, brain):
    for net in (microcircuit(0.05), brain):
        starts = ownership(net, ranks)
        sizes = [p.size for p in net.populations]
        assert starts.shape == (ranks + 1, len(sizes))
        np.testing.assert_array_equal(starts[0], 0)
        np.testing.assert_array_equal(starts[-1], sizes)
        assert np.all(np.diff(starts, axis=0) >= 0)
        # cost per rank from an independent sum over the owned neurons
        costs = in_degree_per_neuron(net)
        per_rank = [sum(float(np.sum(costs[i][starts[r, i]:starts[r + 1, i]] + UPDATE_COST))
                        for i in range(len(sizes))) for r in range(ranks)]
        assert max(per_rank) / np.mean(per_rank) < 1.05


def test_units_stay_together(brain):
    """A brain's families are cut at the same units: every unit's E and I cells live on the
    same rank, except the at most ranks - 1 units split to balance the load."""
    ranks = 5
    starts = ownership(brain, ranks)
    units = [np.asarray(p.units) for p in brain.populations]
    owner_units = []
    for i, u in enumerate(units):
        unit_of = np.repeat(np.arange(len(u)), u)
        owners = np.zeros(len(unit_of), np.int64)
        for r in range(ranks):
            owners[starts[r, i]:starts[r + 1, i]] = r
        owner_units.append({int(k): set(owners[unit_of == k].tolist()) for k in range(len(u))})
    split = [k for k in owner_units[0]
             if len(owner_units[0][k] | owner_units[1][k]) > 1]
    assert len(split) <= ranks - 1


def test_region_brain_on_few_ranks_keeps_every_unit_whole(brain):
    """82 regions on 2 or 3 ranks: cuts on unit boundaries stay within the balance
    tolerance (1.05), so no unit is split and only tract synapses cross ranks.  (At 4
    ranks the largest regions are too coarse for that, and units are split instead.)"""
    for ranks in (2, 3):
        starts = ownership(brain, ranks)
        for i, p in enumerate(brain.populations):
            bounds = set(np.concatenate([[0], np.cumsum(p.units)]).tolist())
            assert set(starts[:, i].tolist()) <= bounds
