"""The partition planner (dtb.partition): balance, cut, traffic and message estimates.

Expectations are independent of the planner's own arithmetic: a hand-made brain whose
right cut is known, totals recomputed from the spec, traffic counted on a generated
network, message counts from their definitions on hand-made matrices.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from dtb import partition as pt
from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec, Family, Rule
from dtb.cli.partition import add_partition_parser, run_partition
from dtb.data import demo_inputs
from dtb.errors import ConfigError


@pytest.fixture(scope="module")
def subject() -> BrainSpec:
    """The embedded default subject at region level, default options (20,000 neurons)."""
    return build(**demo_inputs())


@pytest.fixture(scope="module")
def small_subject() -> BrainSpec:
    """The default subject with 4,000 neurons: small enough to generate every synapse."""
    return build(**demo_inputs(), options=BuildOptions(neurons=4000))


@pytest.fixture(scope="module")
def voxel_subject() -> BrainSpec:
    """The default subject at voxel level, 120,000 neurons."""
    return build(**demo_inputs(), options=BuildOptions(level="voxel", neurons=120_000))


def tiny_spec(weights: np.ndarray, neurons: int = 400, k_local: int = 40,
              k_long: int = 20) -> BrainSpec:
    """A region-level brain: one unit per region of ``neurons`` (80 % E), E/I unit-local
    rules and long-range E -> E and E -> I rules over the given connectome."""
    g = len(weights)
    e = np.full(g, int(0.8 * neurons), np.int64)
    i = np.full(g, neurons - int(0.8 * neurons), np.int64)
    fams = [Family("E", "E", "lif_cond", e), Family("I", "I", "lif_cond", i)]
    k = np.full(g, k_local, np.int64)
    kl = np.full(g, k_long, np.int64)
    rules = [Rule(s, t, "unit_local", k, 1.0, 1.0, s) for s in "EI" for t in "EI"]
    rules += [Rule("E", t, "long_range", kl, 1.0, 0.0, "E") for t in "EI"]
    w = np.array(weights, float)
    np.fill_diagonal(w, 0.0)
    lengths = np.full((g, g), 30.0)
    return BrainSpec(
        level="region", region_labels=np.arange(1, g + 1), region_names=[f"r{x}" for x in
                                                                          range(g)],
        region_centres_mm=np.zeros((g, 3)), region_volumes_mm3=np.ones(g),
        region_cortical=np.ones(g, bool), unit_region=np.arange(g),
        unit_coords_mm=np.zeros((g, 3)), unit_volumes_mm3=np.ones(g), weights=w,
        lengths_mm=lengths, conduction_ms=lengths / 3.0, families=fams, rules=rules)


def unit_costs(spec: BrainSpec, rate_hz: float = 5.0) -> np.ndarray:
    """Cost of every unit by the documented formula, from the spec alone."""
    sizes = {f.name: f.sizes for f in spec.families}
    syn = sum(r.k * sizes[r.target] for r in spec.rules)
    return spec.neurons_per_unit() * 1.0 * 10_000 + syn * (1.0 + rate_hz * 1.0)


# --- the partition ---------------------------------------------------------------------

def test_metis_cuts_between_clusters():
    # regions 0 and 2 talk a lot, as do 1 and 3; the clusters barely talk.  In unit order
    # the clusters interleave, so the contiguous split (0,1 | 2,3) is the wrong one.
    w = np.full((4, 4), 0.01)
    w[0, 2] = w[2, 0] = w[1, 3] = w[3, 1] = 1.0
    spec = tiny_spec(w)
    metis = pt.plan(spec, 2)
    contiguous = pt.plan(spec, 2, method="contiguous")
    ranks_of = metis.unit_ranks()
    assert all(len(r) == 1 for r in ranks_of)  # blocks of a unit, if any, kept together
    unit_rank = [r[0] for r in ranks_of]
    assert unit_rank[0] == unit_rank[2] != unit_rank[1] == unit_rank[3]
    assert metis.summary["imbalance"] == pytest.approx(1.0)
    # a fifth of the inputs are long-range (20 of 100); a region draws them from its
    # partner with probability 1 / 1.02 and from each other region with 0.01 / 1.02
    assert metis.summary["cut_synapses"] == pytest.approx(0.2 * 0.02 / 1.02)
    assert contiguous.summary["cut_synapses"] == pytest.approx(0.2 * 1.01 / 1.02)
    assert metis.summary["cut"] < contiguous.summary["cut"]


def test_totals_conserved(subject):
    pl = pt.plan(subject, 16)
    assert pl.cost.sum() == pytest.approx(unit_costs(subject).sum(), rel=1e-12)
    assert pl.neurons.sum() == subject.n_neurons
    sizes = {f.name: f.sizes for f in subject.families}
    assert pl.synapses.sum() == pytest.approx(sum(int((r.k * sizes[r.target]).sum())
                                                  for r in subject.rules))
    assert len(pl.cost) == 16 and np.all(pl.neurons > 0)


@pytest.mark.parametrize("ranks", [16, 64])
def test_balance_region_level(subject, ranks):
    pl = pt.plan(subject, ranks)
    assert pl.summary["imbalance"] <= 1.05
    assert pl.cost.max() / pl.cost.mean() == pytest.approx(pl.summary["imbalance"])


def test_balance_voxel_level(voxel_subject):
    pl = pt.plan(voxel_subject, 16)
    assert pl.summary["imbalance"] <= 1.05
    assert pl.summary["units_cut"] == 0  # voxels are small: none needs cutting
    assert pl.summary["atoms"] < voxel_subject.n_units  # light voxels merged


def test_heavy_units_get_dedicated_ranks(subject):
    ranks = 256  # about 80 neurons a rank: the large regions fill several ranks each
    pl = pt.plan(subject, ranks)
    at = pl.atoms
    assert pl.summary["imbalance"] <= 1.05
    assert at.dedicated.any()
    for r in np.unique(pl.assignment[at.dedicated]):
        assert np.sum(pl.assignment == r) == 1  # a dedicated block is alone on its rank
    # every unit's blocks hold each of its families exactly once
    for f, fam in enumerate(subject.families):
        got = np.bincount(at.unit_lo, weights=np.where(at.pieces > 1, at.sizes[f], 0),
                          minlength=subject.n_units)
        cut = np.unique(at.unit_lo[at.pieces > 1])
        assert np.array_equal(got[cut], fam.sizes[cut])


def test_contiguous_cuts_at_multiples_of_the_mean(subject):
    pl = pt.plan(subject, 16, method="contiguous")
    per_neuron = unit_costs(subject).max() / subject.neurons_per_unit().min()
    # exact up to the neurons at each cut
    assert pl.cost.max() - pl.cost.mean() <= 2 * per_neuron + 1e-6 * pl.cost.mean()
    assert np.all(np.diff([np.mean(pl.atoms.unit_lo[pl.assignment == r])
                           for r in range(16)]) > 0)  # ranks follow unit order


def test_local_ranges_cover_every_neuron_once(subject):
    pl = pt.plan(subject, 64)
    for fam in subject.families:
        owned = np.zeros(int(fam.sizes.sum()), int)
        for r in range(64):
            for a, b in pl.local_ranges(r, subject)[fam.name]:
                owned[a:b] += 1
        assert np.all(owned == 1)


def test_deterministic(voxel_subject):
    a = pt.plan(voxel_subject, 32, seed=3)
    b = pt.plan(voxel_subject, 32, seed=3)
    assert np.array_equal(a.assignment, b.assignment)
    strip = ("wall_s",)
    assert {k: v for k, v in a.summary.items() if k not in strip} == \
        {k: v for k, v in b.summary.items() if k not in strip}


def test_single_rank(subject):
    pl = pt.plan(subject, 1)
    assert pl.summary["cut"] == 0 and pl.summary["window_ms"] is None
    assert pl.messages_direct[0] == 0 and pl.messages_two_level[0] == 0
    assert pl.summary["imbalance"] == pytest.approx(1.0)


def test_window_is_the_smallest_crossing_delay():
    w = np.full((4, 4), 1.0)
    spec = tiny_spec(w)
    spec.conduction_ms = np.full((4, 4), 10.0)
    spec.conduction_ms[0, 1] = spec.conduction_ms[1, 0] = 2.5
    pl = pt.plan(spec, 4)  # one region a rank: no unit is cut, long-range delays only
    assert pl.summary["units_cut"] == 0
    assert pl.summary["window_ms"] == pytest.approx(2.5)


# --- traffic against a generated network -----------------------------------------------

def _generated(spec: BrainSpec, pl: pt.Plan):
    """Every synapse of the spec's network (seed 3), as source and target ranks, and the
    source neurons' global ids."""
    from dtb.engine.simulation import Engine

    net = spec.to_network()
    off = net.offsets()
    rank_of = np.full(net.n_neurons, -1)
    for r in range(pl.ranks):
        for fam, rngs in pl.local_ranges(r, spec).items():
            for a, b in rngs:
                rank_of[off[fam] + a:off[fam] + b] = r
    assert np.all(rank_of >= 0)
    eng = Engine(net, dt=0.1, seed=3, threads=1)
    src, tgt = [], []
    lay = {x.name: x for x in eng.layout}
    for pid, q in enumerate(eng.network.projections):
        s, t, _, _ = eng.synapses(pid)
        src.append(lay[q.source].gid0 + s)
        tgt.append(t)
    src, tgt = np.concatenate(src), np.concatenate(tgt)
    return rank_of[src], rank_of[tgt], src, rank_of


@pytest.mark.parametrize("method,ranks", [("metis", 8), ("contiguous", 12)])
def test_traffic_matches_generated_network(small_subject, method, ranks):
    pl = pt.plan(small_subject, ranks, method=method)
    if method == "contiguous":
        assert pl.summary["units_cut"] > 0  # exercises the cut units' local traffic
    rs, rt, src, rank_of = _generated(small_subject, pl)
    assert np.array_equal(np.bincount(rank_of, minlength=ranks), pl.neurons)
    assert np.allclose(np.bincount(rt, minlength=ranks), pl.synapses)
    assert np.mean(rs != rt) == pytest.approx(pl.summary["cut_synapses"], rel=0.01)
    # distinct (source neuron, target rank) pairs across ranks: each spike sent once
    key = np.unique(src * ranks + rt)
    s_rank, t_rank = rank_of[key // ranks], key % ranks
    cross = s_rank != t_rank
    out = pl.rate_hz * np.bincount(s_rank[cross], minlength=ranks)
    inn = pl.rate_hz * np.bincount(t_rank[cross], minlength=ranks)
    assert out.sum() == pytest.approx(pl.out_spikes_hz.sum(), rel=0.02)
    assert np.allclose(out, pl.out_spikes_hz, rtol=0.06)
    assert np.allclose(inn, pl.in_spikes_hz, rtol=0.06)
    sent, delivered = out.sum(), pl.rate_hz * len(key)
    assert sent / delivered == pytest.approx(pl.summary["cut"], abs=0.01)
    # messages: the definitions applied to the generated rank-to-rank synapse counts
    s = np.zeros((ranks, ranks))
    np.add.at(s, (rs, rt), 1)
    ref = pt.message_counts(s, pl.ranks_per_node)
    assert ref["direct"].mean() == pytest.approx(pl.messages_direct.mean(), rel=0.05)
    assert ref["two_level"].mean() == pytest.approx(pl.messages_two_level.mean(), rel=0.05)


# --- messages --------------------------------------------------------------------------

def test_message_counts_dense_traffic():
    p, g = 400, 20
    ones = np.ones((p, p))
    m = pt.message_counts(ones, g)
    assert np.all(m["direct"] == 2 * (p - 1))
    relays = np.arange(0, p, g)
    members = np.setdiff1d(np.arange(p), relays)
    # a member: direct with the G - 2 other members both ways, one message each way
    # with its relay; a relay: G - 1 members both ways, the P/G - 1 other relays both ways
    assert np.all(m["two_level"][members] == 2 * (g - 2) + 2)
    assert np.all(m["two_level"][relays] == 2 * (g - 1) + 2 * (p // g - 1))
    assert m["two_level"].max() <= 4 * math.sqrt(p)
    assert np.all(m["two_level"] <= m["direct"])


def test_message_counts_no_traffic_between_groups():
    s = np.kron(np.eye(3), np.ones((4, 4)))  # 3 groups of 4 that talk only inside
    m = pt.message_counts(s, 4)
    assert np.all(m["direct"] == 6)
    assert np.all(m["two_level"] == 6)  # no relay traffic at all


def test_planner_messages_equal_reference(subject):
    pl = pt.plan(subject, 64, routing="two-level", ranks_per_node=6)
    m = pt._model(subject)
    rm = pt._rank_model(m, pl.atoms, pl.assignment, 64, pl.rate_hz)
    s = np.asarray(rm.npool @ rm.z)
    np.add.at(s, (rm.cross_r, rm.cross_c), rm.cross_s)
    ref = pt.message_counts(s, 6, pt._p)
    assert np.allclose(ref["direct"], pl.messages_direct)
    assert np.allclose(ref["two_level"], pl.messages_two_level)
    assert np.array_equal(pl.messages, pl.messages_two_level)
    assert pl.summary["messages_two_level"]["mean"] < pl.summary["messages_direct"]["mean"]


def test_sampled_peer_counts(subject, monkeypatch):
    exact = pt.plan(subject, 96)
    monkeypatch.setattr(pt.model, "EXACT_PEERS_MAX", 32)
    monkeypatch.setattr(pt.model, "PEER_SAMPLE", 48)
    est = pt.plan(subject, 96)
    assert est.summary["peers_sampled_ranks"] == 48
    assert est.out_peers.mean() == pytest.approx(exact.out_peers.mean(), rel=0.1)
    assert np.allclose(est.messages_two_level, exact.messages_two_level)


def test_two_level_grows_like_sqrt_p(voxel_subject):
    for ranks in (64, 256):
        pl = pt.plan(voxel_subject, ranks, method="contiguous")
        s = pl.summary
        assert s["messages_two_level"]["mean"] < s["messages_direct"]["mean"]
        assert s["messages_two_level"]["max"] <= 4 * math.sqrt(ranks) + 2


# --- the graph -------------------------------------------------------------------------

def test_sampled_graph_preserves_cuts(subject):
    m = pt._model(subject)
    cost = pt.Costs().of(m.sizes.sum(axis=0), m.unit_synapses(), 5.0)
    at = pt.make_atoms(m, cost, 16, max_atom=0.0625)
    exact, is_exact = pt.atom_graph(m, at, 5.0)
    sampled, is_exact2 = pt.atom_graph(m, at, 5.0, max_edges=5_000)
    assert is_exact and not is_exact2 and sampled.nnz < exact.nnz
    rng = np.random.default_rng(1)

    def cut(g, part):
        i = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
        return g.data[part[i] != part[g.indices]].sum()

    in_order = ((np.cumsum(at.cost) - at.cost / 2) // (at.cost.sum() / 8)).astype(int)
    by_region = at.region % 8  # whole regions together: no shared-source loss
    for part in (in_order, by_region, rng.integers(0, 8, len(at))):
        assert cut(sampled, part) == pytest.approx(cut(exact, part), rel=0.1)


# --- arguments and the command ---------------------------------------------------------

@pytest.mark.parametrize("kwargs,flag", [
    ({"ranks": 0}, "--ranks"), ({"ranks": 10**7}, "--ranks"), ({"ranks": 2.5}, "--ranks"),
    ({"ranks": 30_000}, "--ranks"), ({"ranks": 4, "routing": "mesh"}, "--routing"),
    ({"ranks": 4, "method": "random"}, "--method"), ({"ranks": 4, "rate_hz": 0}, "--rate"),
    ({"ranks": 4, "ranks_per_node": 0}, "--ranks-per-node"),
    ({"ranks": 4, "ranks_per_node": 5}, "--ranks-per-node"),
])
def test_invalid_arguments(subject, kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        pt.plan(subject, **kwargs)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_partition_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["partition", *argv])


def test_cli_demo(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert run_partition(_parse(["--demo", "--ranks", "16", "--routing", "two-level",
                                    "--json", str(out)])) == 0
    text = capsys.readouterr().out
    assert "imbalance" in text and "messages/window direct" in text and "two-level" in text
    d = json.loads(out.read_text())
    assert d["summary"]["ranks"] == 16 and d["summary"]["routing"] == "two-level"
    assert len(d["per_rank"]["neurons"]) == 16
    assert sum(d["per_rank"]["neurons"]) == 20_000


def test_cli_brain_file(tmp_path, capsys, small_subject):
    path = tmp_path / "brain.h5"
    small_subject.save(path)
    assert run_partition(_parse(["--brain", str(path), "--ranks", "8", "--method",
                                    "contiguous", "--ranks-per-node", "2"])) == 0
    assert "8 ranks, method contiguous" in capsys.readouterr().out


@pytest.mark.parametrize("argv,flag", [
    (["--demo", "--ranks", "16", "--routing", "star"], "--routing"),
    (["--demo", "--ranks", "16", "--method", "kahip"], "--method"),
    (["--demo", "--ranks", "0"], "--ranks"),
    (["--demo", "--ranks", "4", "--json", "/nonexistent/dir/x.json"], "--json"),
])
def test_cli_invalid(argv, flag):
    with pytest.raises(ConfigError, match=flag):
        run_partition(_parse(argv))


def test_message_weight_keeps_regions_compact(voxel_subject):
    def regions_per_rank(pl):
        key = np.unique(pl.assignment * 1000 + pl.atoms.region)
        return np.bincount(key // 1000).mean()

    plain = pt.plan(voxel_subject, 256, costs=pt.Costs(message=0.0))
    compact = pt.plan(voxel_subject, 256)
    assert regions_per_rank(compact) < regions_per_rank(plain)
    assert compact.summary["messages_direct"]["mean"] < plain.summary["messages_direct"]["mean"]
    assert compact.summary["cut"] == pytest.approx(plain.summary["cut"], abs=0.01)
