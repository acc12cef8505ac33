"""Connection rules, weight/delay distributions, fixed-point storage and reproducibility.

Expectations are the rules' defining distributions (exact counts, uniform sources,
multinomial and binomial counts, truncated normal weights, rounded normal delays) tested
with fixed seeds, and the published microcircuit synapse numbers.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import pytest
from scipy import stats

import dtb
from dtb.engine.connectivity import generate, total_number_counts
from dtb.kernels import connect as kc
from dtb.kernels import philox as ph
from dtb.models.microcircuit import (
    N_FULL,
    POPULATIONS,
    expected_synapses,
    full_scale_synapses,
    microcircuit,
)

ALPHA = 1e-3
DT = 0.1


def edges(eng: dtb.Engine, pid: int):
    """Synapses of projection pid: source index, target index (both within their
    populations), dequantised weight, delay in steps."""
    src, tgt, w, d = eng.synapses(pid)
    lay = {la.name: la for la in eng.layout}
    return src, tgt - lay[eng.network.projections[pid].target].lo, w, d


def build(pre_n, post_n, rule, weight=1.0, delay=DT, same=False, seed=1, **kw):
    pops = [dtb.Population("pre", pre_n, model="iaf_psc_exp")]
    if not same:
        pops.append(dtb.Population("post", post_n, model="iaf_psc_exp"))
    tgt = "pre" if same else "post"
    proj = dtb.Projection("pre", tgt, rule, weight=weight, delay=delay, **kw)
    return dtb.Engine(dtb.Network(tuple(pops), (proj,)), dt=DT, seed=seed)


def uniform_chi2(counts) -> float:
    return stats.chisquare(np.asarray(counts, float)).pvalue


# --- fixed in-degree -------------------------------------------------------------------------

def test_fixed_indegree_exact_counts_uniform_sources():
    n_pre, n_post, k = 50, 400, 20
    eng = build(n_pre, n_post, dtb.FixedInDegree(k))
    src, tgt, _, _ = edges(eng, 0)
    assert eng.n_synapses == n_post * k
    np.testing.assert_array_equal(np.bincount(tgt, minlength=n_post), k)
    assert uniform_chi2(np.bincount(src, minlength=n_pre)) > ALPHA
    # with multapses, repeats of a source occur at the rate of sampling with replacement:
    # expected distinct sources per target = n_pre (1 - (1 - 1/n_pre)^k)
    distinct = np.array([len(np.unique(src[tgt == i])) for i in range(n_post)])
    exp_distinct = n_pre * (1 - (1 - 1 / n_pre) ** k)
    assert abs(distinct.mean() - exp_distinct) < 5 * distinct.std() / math.sqrt(n_post)


@pytest.mark.parametrize("n,k", [(300, 40), (300, 100), (60, 59)])
def test_fixed_indegree_no_autapses_no_multapses(n, k):
    """Both sampling branches: rejection (4k <= n) and sequential selection (4k > n)."""
    eng = build(n, n, dtb.FixedInDegree(k), same=True, autapses=False, multapses=False)
    src, tgt, _, _ = edges(eng, 0)
    np.testing.assert_array_equal(np.bincount(tgt, minlength=n), k)
    assert not np.any(src == tgt)
    pairs = src * n + tgt
    assert len(np.unique(pairs)) == len(pairs)
    if k < n - 1:
        # each other neuron is an input with the same probability k / (n - 1)
        assert uniform_chi2(np.bincount(src, minlength=n)) > ALPHA
        # and the sequential branch must not favour low or high indices within a target
        rank = src - (src > tgt)  # position among the n-1 allowed sources
        assert stats.kstest((rank + 0.5) / (n - 1), "uniform").pvalue > ALPHA


def test_fixed_indegree_autapses_allowed_occur():
    n, k = 100, 50
    eng = build(n, n, dtb.FixedInDegree(k), same=True, autapses=True, multapses=True)
    src, tgt, _, _ = edges(eng, 0)
    n_aut = int(np.sum(src == tgt))
    # each draw hits the target itself with probability 1/n: Binomial(n k, 1/n)
    assert stats.binomtest(n_aut, n * k, 1 / n).pvalue > ALPHA


# --- fixed total number ----------------------------------------------------------------------

def test_fixed_total_number_exact_total_multinomial_targets():
    n_pre, n_post, n_syn = 40, 300, 6000
    eng = build(n_pre, n_post, dtb.FixedTotalNumber(n_syn))
    src, tgt, _, _ = edges(eng, 0)
    assert eng.n_synapses == n_syn == len(src)
    per_target = np.bincount(tgt, minlength=n_post)
    # Multinomial(n_syn, 1/n_post): Pearson's statistic ~ chi2(n_post - 1)
    assert uniform_chi2(per_target) > ALPHA
    assert per_target.var(ddof=1) == pytest.approx(n_syn / n_post * (1 - 1 / n_post), rel=0.25)
    assert uniform_chi2(np.bincount(src, minlength=n_pre)) > ALPHA


def test_fixed_total_number_no_autapses():
    n = 80
    eng = build(n, n, dtb.FixedTotalNumber(3000), same=True, autapses=False)
    src, tgt, _, _ = edges(eng, 0)
    assert len(src) == 3000
    assert not np.any(src == tgt)


def test_total_number_counts_partition_independent():
    whole = total_number_counts(7, 3, 1000, 123_457, 0, 1000)
    assert whole.sum() == 123_457
    parts = np.concatenate([total_number_counts(7, 3, 1000, 123_457, a, b - a)
                            for a, b in [(0, 17), (17, 500), (500, 999), (999, 1000)]])
    np.testing.assert_array_equal(whole, parts)


# --- pairwise Bernoulli ----------------------------------------------------------------------

def _binom_chi2(counts: np.ndarray, n: int, p: float) -> float:
    dist = stats.binom(n, p)
    m = len(counts)
    lo, hi = int(dist.ppf(1e-4)), int(dist.isf(1e-4))
    while m * dist.cdf(lo) < 5:
        lo += 1
    while m * dist.sf(hi - 1) < 5:
        hi -= 1
    ks = np.arange(lo, hi + 1)
    exp = m * dist.pmf(ks)
    exp[0], exp[-1] = m * dist.cdf(lo), m * dist.sf(hi - 1)
    obs = np.array([np.sum(counts == k) for k in ks], float)
    obs[0], obs[-1] = np.sum(counts <= lo), np.sum(counts >= hi)
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("p", [0.1, 0.01])
def test_pairwise_bernoulli_binomial_counts(p):
    n_pre, n_post = 1000, 2000
    eng = build(n_pre, n_post, dtb.PairwiseBernoulli(p))
    src, tgt, _, _ = edges(eng, 0)
    per_target = np.bincount(tgt, minlength=n_post)
    assert abs(per_target.mean() - n_pre * p) < 5 * math.sqrt(n_pre * p * (1 - p) / n_post)
    assert _binom_chi2(per_target, n_pre, p) > ALPHA
    per_source = np.bincount(src, minlength=n_pre)
    assert _binom_chi2(per_source, n_post, p) > ALPHA
    pairs = src * n_post + tgt
    assert len(np.unique(pairs)) == len(pairs)  # a pair is connected at most once


def test_pairwise_bernoulli_no_autapses_and_extremes():
    n, p = 400, 0.2
    eng = build(n, n, dtb.PairwiseBernoulli(p), same=True, autapses=False)
    src, tgt, _, _ = edges(eng, 0)
    assert not np.any(src == tgt)
    assert _binom_chi2(np.bincount(tgt, minlength=n), n - 1, p) > ALPHA
    full = build(30, 30, dtb.PairwiseBernoulli(1.0), same=True, autapses=False)
    assert full.n_synapses == 30 * 29
    full_aut = build(30, 30, dtb.PairwiseBernoulli(1.0), same=True, autapses=True)
    assert full_aut.n_synapses == 900
    assert build(30, 30, dtb.PairwiseBernoulli(0.0)).n_synapses == 0


# --- partition independence (the distributed engine relies on it) ---------------------------

@pytest.mark.parametrize("rule,multapses", [
    (dtb.FixedInDegree(30), True), (dtb.FixedInDegree(30), False),
    (dtb.FixedInDegree(120), False), (dtb.FixedTotalNumber(5000), True),
    (dtb.PairwiseBernoulli(0.15), True),
])
def test_generate_same_synapses_for_any_target_partition(rule, multapses):
    n = 200
    proj = dtb.Projection("a", "a", rule, weight=dtb.Dist.normal(5.0, 1.0, low=0.0),
                          delay=dtb.Dist.uniform(0.1, 2.0), autapses=False, multapses=multapses)
    gid0 = 1000  # the population's first global id
    bounds = proj.weight.bounds()

    def block(first, count):
        b = generate(proj, 4, 99, DT, n, gid0 + first, first, count, n, first, bounds)
        src = np.repeat(np.arange(n), np.diff(b.indptr))
        out = np.stack([b.tgt.astype(np.int64), src, b.wq.astype(np.int64),
                        b.dly.astype(np.int64)])
        return out[:, np.lexsort(out[::-1])]

    whole = block(0, n)
    parts = np.concatenate([block(a, z - a) for a, z in [(0, 1), (1, 77), (77, 150), (150, 200)]],
                           axis=1)
    parts = parts[:, np.lexsort(parts[::-1])]
    np.testing.assert_array_equal(whole, parts)


# --- weights, delays, fixed point ------------------------------------------------------------

def test_weight_distribution_truncated_normal():
    mean, sd, low, high = 87.8, 30.0, 40.0, 150.0
    eng = build(100, 400, dtb.FixedInDegree(100), weight=dtb.Dist.normal(mean, sd, low, high))
    _, _, w, _ = edges(eng, 0)
    q = 2.0 ** (int(eng.synapse_arrays.shift[0]) - 32)
    assert w.min() >= low - q / 2 and w.max() <= high + q / 2
    ref = stats.truncnorm((low - mean) / sd, (high - mean) / sd, loc=mean, scale=sd)
    assert stats.kstest(w, ref.cdf).pvalue > ALPHA


def test_inhibitory_weights_normal_bounded_above():
    mean, sd = -351.2, 35.12
    eng = build(100, 300, dtb.FixedInDegree(80), weight=dtb.Dist.normal(mean, sd, high=0.0))
    _, _, w, _ = edges(eng, 0)
    assert w.max() <= 0.0
    assert stats.kstest(w, stats.norm(mean, sd).cdf).pvalue > ALPHA


def test_weight_distribution_lognormal():
    mu, sigma = 0.0, 0.5
    eng = build(100, 300, dtb.FixedInDegree(80), weight=dtb.Dist.lognormal(mu, sigma, high=20.0))
    _, _, w, _ = edges(eng, 0)
    assert stats.kstest(w, stats.lognorm(s=sigma, scale=math.exp(mu)).cdf).pvalue > ALPHA


def test_delay_distribution_rounded_normal():
    """round(d / dt) of d ~ Normal(1.5, 0.75) redrawn below dt: discrete probabilities
    P(k) = P((k - 1/2) dt <= d < (k + 1/2) dt | d >= dt)."""
    mean, sd = 1.5, 0.75
    eng = build(100, 500, dtb.FixedInDegree(100), delay=dtb.Dist.normal(mean, sd, low=DT))
    _, _, _, d = edges(eng, 0)
    assert d.min() >= 1
    norm = stats.norm(mean, sd)
    kmax = int(d.max())
    ks = np.arange(1, kmax + 1)
    lo = np.maximum((ks - 0.5) * DT, DT)
    hi = (ks + 0.5) * DT
    prob = (norm.cdf(hi) - norm.cdf(lo)) / norm.sf(DT)
    prob[-1] += norm.sf(hi[-1]) / norm.sf(DT)
    obs = np.bincount(d, minlength=kmax + 1)[1:]
    exp = prob * len(d)
    # pool bins expecting fewer than 5 into their neighbours at the tail
    keep = exp >= 5
    obs_p = np.append(obs[keep], obs[~keep].sum())
    exp_p = np.append(exp[keep], exp[~keep].sum())
    assert stats.chisquare(obs_p, exp_p).pvalue > ALPHA
    # the first bin is half as wide (d >= dt): the redraw, not clipping, bounds the delays
    assert obs[0] == pytest.approx(exp[0], rel=0.1)


@nb.njit
def _reference_weights(kind, a, b, low, high, seed, proj, gid0, n_post, k):
    key1 = ph.make_key1(ph.WEIGHT, proj)
    out = np.empty(n_post * k)
    for i in range(n_post):
        for j in range(k):
            out[i * k + j] = ph.draw(kind, a, b, low, high, seed, key1, gid0 + i, 0, j)
    return out


@pytest.mark.parametrize("dist", [dtb.Dist.normal(87.8, 8.78, low=0.0),
                                  dtb.Dist.normal(-351.2, 35.12, high=0.0),
                                  dtb.Dist.uniform(0.001, 0.02),
                                  dtb.Dist.uniform(-3.0, 2.5)])
def test_weight_quantisation_error_bound(dist):
    """Stored weight q << shift (units 2**-32) is within half a quantum 2**(shift-32) of the
    drawn weight, and the shift is the smallest for which the bounds fit in int16."""
    n_post, k, seed, proj = 300, 40, 17, 9
    lo, hi = dist.bounds()
    shift = kc.weight_shift(max(abs(lo), abs(hi)))
    quantum = 2.0 ** (shift - 32)
    assert max(abs(lo), abs(hi)) / quantum <= 32767
    if shift > 0:
        assert max(abs(lo), abs(hi)) / (quantum / 2) > 32767
    ptr = np.arange(n_post + 1, dtype=np.int64) * k
    wq = np.empty(n_post * k, np.int16)
    dly = np.empty(n_post * k, np.uint16)
    d = dtb.Dist.constant(1.0)
    kc.draw_weights_delays(seed, proj, 500, n_post, ptr, dist.code, dist.a, dist.b, dist.low,
                           dist.high, shift, d.code, d.a, d.b, d.low, d.high, DT,
                           np.zeros((0, 0)), np.zeros(0, np.int64), np.zeros(0, np.int32), wq, dly)
    ref = _reference_weights(dist.code, dist.a, dist.b, dist.low, dist.high, seed, proj, 500,
                             n_post, k)
    err = wq.astype(np.float64) * quantum - ref
    assert np.max(np.abs(err)) <= quantum / 2 * (1 + 1e-9)
    assert np.max(np.abs(err)) > quantum / 4  # the bound is tight, not vacuous
    np.testing.assert_array_equal(dly, 10)


def test_constant_weight_stored_exactly_when_representable():
    eng = build(10, 10, dtb.FixedInDegree(3), weight=-60.0)
    _, _, w, _ = edges(eng, 0)
    np.testing.assert_array_equal(w, -60.0)


def test_bytes_per_synapse():
    eng = build(2000, 2000, dtb.FixedInDegree(100), same=True,
                weight=dtb.Dist.normal(1.0, 0.1, low=0.0), delay=dtb.Dist.uniform(0.1, 3.0))
    csr = eng.synapse_arrays
    assert csr.tgt.itemsize + csr.wq.itemsize + csr.dly.itemsize == 8
    assert eng.bytes_per_synapse <= 8.2


# --- reproducibility -------------------------------------------------------------------------

def _network():
    pops = (dtb.Population("e", 300, model="iaf_psc_exp", type="E"),
            dtb.Population("i", 100, model="iaf_psc_exp", type="I"))
    projs = (
        dtb.Projection("e", "e", dtb.PairwiseBernoulli(0.1), weight=dtb.Dist.normal(10, 2, 0),
                       delay=dtb.Dist.normal(1.5, 0.5, low=0.1), autapses=False),
        dtb.Projection("e", "i", dtb.FixedInDegree(20), weight=12.0, delay=1.0),
        dtb.Projection("i", "e", dtb.FixedTotalNumber(3000), weight=dtb.Dist.uniform(-50, -10),
                       delay=0.5),
        dtb.Projection("i", "i", dtb.FixedInDegree(30), weight=-40.0, delay=0.8,
                       autapses=False, multapses=False),
    )
    return dtb.Network(pops, projs)


def _arrays(eng):
    csr = eng.synapse_arrays
    return [csr.indptr, csr.tgt, csr.wq, csr.dly, csr.shift]


def test_connectivity_identical_for_same_seed_and_differs_otherwise():
    net = _network()
    a, b, c = (dtb.Engine(net, dt=DT, seed=s) for s in (42, 42, 43))
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.n_synapses != c.n_synapses or any(
        not np.array_equal(x, y) for x, y in zip(_arrays(a)[:4], _arrays(c)[:4], strict=True))
    # every projection with a random element changes with the seed
    for pid in range(4):
        ea, ec = edges(a, pid), edges(c, pid)
        differs = [len(x) != len(y) or not np.array_equal(x, y)
                   for x, y in zip(ea, ec, strict=True)]
        assert any(differs), pid


# --- the microcircuit --------------------------------------------------------------------------

def test_full_scale_microcircuit_synapse_total_as_published():
    k = full_scale_synapses()
    assert 0.29e9 < k.sum() < 0.31e9  # "about 0.3 billion synapses"
    # NEST's formula, for one entry: L4E -> L23E with p = 0.0437
    n23, n4 = 20683, 21915
    assert k[0, 2] == round(math.log(1 - 0.0437) / math.log(1 - 1 / (n23 * n4)))


def test_microcircuit_synapse_counts():
    scale = 0.02
    eng = dtb.Engine(microcircuit(scale), dt=DT, seed=1)
    assert eng.n_synapses == expected_synapses(scale)
    sizes = {la.name: la.size for la in eng.layout}
    assert sizes == {n: round(f * scale) for n, f in zip(POPULATIONS, N_FULL, strict=True)}
    # full-scale in-degrees are kept: each projection holds K_full * N_post / N_post_full
    k_full = full_scale_synapses()
    for pid, q in enumerate(eng.network.projections):
        t = POPULATIONS.index(q.target)
        s = POPULATIONS.index(q.source)
        src, tgt, w, d = edges(eng, pid)
        assert len(src) == round(k_full[t, s] * sizes[q.target] / N_FULL[t])
        assert d.min() >= 1
        assert np.all(w > 0) if q.source.endswith("E") else np.all(w < 0)
