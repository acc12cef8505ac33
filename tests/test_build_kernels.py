"""The chunked synapse-generation kernels give the bits of the one-draw-at-a-time ones.

benchmarks/connect_reference.py keeps the kernels as they were before the build-speed
work (issue 16): one Philox block per draw, one scalar draw() per weight and delay, a
separate scatter by source, one numpy generator constructed per tree node of the
fixed-total-number split.  Every case here compares the current kernels with that
reference bit for bit, on distributions whose bounds reject a sizeable fraction of the
first draws (so the redraw path runs), lognormal, uniform, constant, conduction delays,
row lengths around the chunk size, and every source-drawing branch.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import dtb
from dtb.engine.connectivity import fill, total_number_counts
from dtb.errors import ConfigError
from dtb.kernels import connect as kc
from dtb.kernels import philox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import connect_reference as ref  # noqa: E402

DT = 0.1
SEED = 12345
NONE2 = np.zeros((0, 0))
NONE_I64 = np.zeros(0, np.int64)
NONE_I32 = np.zeros(0, np.int32)


def _ptr(counts):
    ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


# Row lengths: empty, 1, around one and two chunks, and longer ones.
COUNTS = np.array([0, 1, kc.CHUNK - 1, kc.CHUNK, kc.CHUNK + 1, 2 * kc.CHUNK + 3, 300, 7, 0, 513])

WEIGHTS = {
    "normal_rejecting": dtb.Dist.normal(0.2, 1.0, low=-0.3, high=0.9),  # ~60 % redrawn
    "normal_low": dtb.Dist.normal(87.8, 8.78, low=0.0),
    "normal_high": dtb.Dist.normal(-351.2, 35.12, high=0.0),
    # weights within the error margin of a half quantum (2**-19 here): the exact draw
    # decides about half of them (the fallback of draw_weights_delays)
    "normal_half_quantum": dtb.Dist.normal(30000.5 * 2.0**-19, 2e-15, low=0.0),
    "lognormal_rejecting": dtb.Dist.lognormal(0.0, 1.0, low=0.5, high=3.0),  # ~50 % redrawn
    "lognormal": dtb.Dist.lognormal(-1.0, 0.5),
    "uniform": dtb.Dist.uniform(-3.0, 2.5),
    "constant": dtb.Dist.constant(-60.0),
}
DELAYS = {
    "normal_at_dt": dtb.Dist.normal(0.75, 0.375, low=DT),
    "normal_rejecting": dtb.Dist.normal(1.0, 2.0, low=0.5, high=2.0),  # ~70 % redrawn
    "normal_half_step": dtb.Dist.normal(1.05, 1e-13, low=DT),  # a quarter at 10.5 steps
    "lognormal_rejecting": dtb.Dist.lognormal(0.5, 0.8, low=1.0, high=2.5),
    "uniform": dtb.Dist.uniform(0.1, 3.0),
    "constant": dtb.Dist.constant(1.5),
}


def _redraw_fraction(d):
    """Fraction of first draws outside [low, high] (so the redraw path is exercised)."""
    z = np.random.default_rng(0).standard_normal(100_000)
    x = d.a + d.b * z
    if d.code == 3:
        x = np.exp(x)
    return float(np.mean((x < d.low) | (x > d.high)))


def test_rejecting_cases_reject():
    """The cases named *_rejecting really send a sizeable fraction down the redraw path."""
    for cases in (WEIGHTS, DELAYS):
        for name, d in cases.items():
            if "rejecting" in name:
                assert _redraw_fraction(d) > 0.3, name


def _weights_delays(mod, w, d, cond=NONE2, t_grp=NONE_I64, sgrp=NONE_I32, counts=COUNTS):
    ptr = _ptr(counts)
    n = int(ptr[-1])
    lo, hi = w.bounds()
    shift = kc.weight_shift(max(abs(lo), abs(hi)))
    wq = np.empty(n, np.int16)
    dly = np.empty(n, np.uint16)
    mod.draw_weights_delays(SEED, 11, 4000, len(counts), ptr, w.code, w.a, w.b, w.low, w.high,
                            shift, d.code, d.a, d.b, d.low, d.high, DT, cond, t_grp, sgrp, wq,
                            dly)
    return wq, dly


@pytest.mark.parametrize("wname", list(WEIGHTS))
@pytest.mark.parametrize("dname", list(DELAYS))
def test_weights_delays_bitwise(wname, dname):
    w, d = WEIGHTS[wname], DELAYS[dname]
    wq, dly = _weights_delays(kc, w, d)
    wq_ref, dly_ref = _weights_delays(ref, w, d)
    np.testing.assert_array_equal(wq, wq_ref)
    np.testing.assert_array_equal(dly, dly_ref)
    assert len(np.unique(wq)) > (1 if wname != "constant" else 0)


def test_conduction_delays_bitwise():
    rng = np.random.default_rng(3)
    n_g = 5
    cond = rng.uniform(0.0, 20.0, (n_g, n_g))
    t_grp = rng.integers(0, n_g, len(COUNTS)).astype(np.int64)
    sgrp = rng.integers(0, n_g, int(COUNTS.sum())).astype(np.int32)
    for d in (DELAYS["normal_rejecting"], DELAYS["constant"], DELAYS["uniform"]):
        got = _weights_delays(kc, WEIGHTS["normal_low"], d, cond, t_grp, sgrp)
        want = _weights_delays(ref, WEIGHTS["normal_low"], d, cond, t_grp, sgrp)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def _sources(mod, rule, n_post, n_pre, counts, p=0.0, same=False, autapses=True,
             multapses=True):
    ptr = _ptr(counts)
    src = np.empty(int(ptr[-1]), np.uint32)
    mod.draw_sources(rule, SEED, 7, 900, 1 if same else 0, n_post, n_pre, p, same, autapses,
                     multapses, ptr, src, 256)
    return src


SOURCE_CASES = [  # rule, n_pre, per-target count, same population, autapses, multapses
    (kc.RULE_INDEGREE, 500, 130, True, False, True),      # multapses, self excluded
    (kc.RULE_INDEGREE, 500, 100, True, False, False),     # marker rejection
    (kc.RULE_INDEGREE, 500, 200, True, False, False),     # algorithm S (4k > n_pre)
    (kc.RULE_INDEGREE, 150, 149, True, False, False),     # algorithm S, every other source
    (kc.RULE_INDEGREE, 3000, 70, False, True, False),     # marker rejection, other pop
    (kc.RULE_TOTAL, 3, 5, True, False, True),             # targets 0, 1 reject 1 draw in 3
    (kc.RULE_TOTAL, 2, 40, True, False, True),            # target 0 rejects half its draws
    (kc.RULE_TOTAL, 2000, 65, False, True, True),
]


@pytest.mark.parametrize("case", SOURCE_CASES)
def test_draw_sources_bitwise(case):
    rule, n_pre, k, same, autapses, multapses = case
    n_post = 40
    counts = np.full(n_post, k, np.int64)
    if rule == kc.RULE_TOTAL:
        counts = np.random.default_rng(1).integers(0, 2 * k, n_post).astype(np.int64)
    got = _sources(kc, rule, n_post, n_pre, counts, 0.0, same, autapses, multapses)
    want = _sources(ref, rule, n_post, n_pre, counts, 0.0, same, autapses, multapses)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("p", [0.003, 0.1, 0.6, 1.0])
@pytest.mark.parametrize("same", [False, True])
def test_bernoulli_bitwise(p, same):
    n_post, n_pre = 60, 700
    args = (SEED, 7, 900, 1 if same else 0, n_post, n_pre, p, same, False)
    counts = kc.count_bernoulli(*args)
    np.testing.assert_array_equal(counts, ref.count_bernoulli(*args))
    assert counts.sum() > 0
    got = _sources(kc, kc.RULE_BERNOULLI, n_post, n_pre, counts, p, same, False)
    want = _sources(ref, kc.RULE_BERNOULLI, n_post, n_pre, counts, p, same, False)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rule", [kc.RULE_UNIT_LOCAL, kc.RULE_LONG_RANGE])
def test_draw_sources_units_bitwise(rule):
    rng = np.random.default_rng(5)
    n_post, n_g = 80, 4
    bounds = np.array([0, 30, 30, 100, 260])  # group 1 is empty: its draws are rejected
    lo, hi = bounds[:-1].copy(), bounds[1:].copy()
    t_row = rng.integers(0, n_g, n_post).astype(np.int64)
    t_row[t_row == 1] = 2
    probs = rng.uniform(0.0, 1.0, (n_g, n_g))
    cum = np.cumsum(probs, axis=1) / probs.sum(axis=1, keepdims=True)
    cum[:, -1] = 1.0
    counts = rng.integers(0, 3 * kc.CHUNK, n_post).astype(np.int64)
    ptr = _ptr(counts)
    out = []
    for mod in (kc, ref):
        src = np.empty(int(ptr[-1]), np.uint32)
        sgrp = np.empty(int(ptr[-1]), np.int32)
        mod.draw_sources_units(rule, SEED, 4, 77, n_post, t_row, lo, hi, cum, 10, ptr, src,
                               sgrp, 256)
        out.append((src, sgrp))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_source_rows_layout_matches_scatter():
    """Weights and delays written to their source-row slots equal the old draw-then-scatter."""
    n_pre, n_post, post_base = 300, len(COUNTS), 17
    counts = COUNTS
    ptr = _ptr(counts)
    n = int(ptr[-1])
    src = _sources(kc, kc.RULE_TOTAL, n_post, n_pre, counts, same=False)
    w, d = WEIGHTS["normal_rejecting"], DELAYS["normal_at_dt"]
    wq_t, dly_t = _weights_delays(ref, w, d)
    want = [np.empty(n_pre + 1, np.int64), np.empty(n, np.uint32), np.empty(n, np.int16),
            np.empty(n, np.uint16)]
    ref.scatter_by_source(n_pre, post_base, ptr, src, wq_t, dly_t, *want)
    indptr = np.empty(n_pre + 1, np.int64)
    tgt = np.empty(n, np.uint32)
    slot = src.copy()
    kc.source_rows(n_pre, post_base, ptr, slot, indptr, tgt)
    lo, hi = w.bounds()
    wq = np.empty(n, np.int16)
    dly = np.empty(n, np.uint16)
    kc.draw_weights_delays(SEED, 11, 4000, n_post, ptr, w.code, w.a, w.b, w.low, w.high,
                           kc.weight_shift(max(abs(lo), abs(hi))), d.code, d.a, d.b, d.low,
                           d.high, DT, NONE2, NONE_I64, NONE_I32, wq, dly, slot)
    for a, b in zip((indptr, tgt, wq, dly), want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.sort(slot), np.arange(n))  # every slot written once


def test_total_number_counts_bitwise():
    """The re-keyed generator gives the counts of one generator constructed per node, on
    many seeds, projections, sizes and target ranges (inversion and BTPE binomials)."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        seed = int(rng.integers(0, 2**32))
        proj = int(rng.integers(0, 2**24))
        n_post = int(rng.integers(1, 1500))
        n_total = int(rng.choice([0, 1, 7, 100, 5000, 10**6, 10**9]) + rng.integers(0, 50))
        first = int(rng.integers(0, n_post))
        count = int(rng.integers(1, n_post - first + 1))
        got = total_number_counts(seed, proj, n_post, n_total, first, count)
        want = ref.total_number_counts(seed, proj, n_post, n_total, first, count)
        np.testing.assert_array_equal(got, want)


def test_normals_approx_within_bound():
    """normals_approx stays within NORMAL_APPROX_ERR of Box-Muller with libm, with room to
    spare, on random blocks and on the extreme ones (u1 at 2**-53 and 1 - 2**-53, u2 at the
    quadrant and octant edges of the circle)."""
    rng = np.random.default_rng(11)
    n = 400_000
    w = rng.integers(0, 2**32, (4, n), dtype=np.uint64).astype(np.uint32)
    edges = np.array([0, 63, 64, 0x3FFFFFFF, 0x40000000, 0x1FFFFFFF, 0x20000000, 0x7FFFFFFF,
                      0x80000000, 0xBFFFFFFF, 0xC0000000, 0xDFFFFFFF, 0xFFFFFFC0, 0xFFFFFFFF],
                     np.uint32)
    m = len(edges)
    w[0, :m * m] = np.repeat(edges, m)
    w[1, :m * m] = np.tile(edges, m)
    w[2, m * m:2 * m * m] = np.repeat(edges, m)
    w[3, m * m:2 * m * m] = np.tile(edges, m)
    got = np.empty(n)
    philox.normals_approx(w[0], w[1], w[2], w[3], n, got)
    want = np.array([_normal(*col) for col in w.T])
    assert np.max(np.abs(got - want)) < philox.NORMAL_APPROX_ERR / 100


def _normal(w0, w1, w2, w3):
    """Box-Muller as normal_pair writes it, here in numpy's libm (the same log and cos)."""
    def u(a, b):
        return ((int(a) >> 6) * 67108864.0 + (int(b) >> 6) + 0.5) * (1.0 / 4503599627370496.0)
    return math.sqrt(-2.0 * math.log(u(w0, w1))) * math.cos(2.0 * math.pi * u(w2, w3))


def test_more_than_2_32_synapses_of_one_projection_on_one_engine_refused():
    """Slots are uint32: fill() refuses, before allocating anything, a projection with 2**32
    synapses or more onto one engine, naming it and the remedy."""
    pre = dtb.Population("A", 10, model="iaf_psc_exp")
    post = dtb.Population("B", 2, model="iaf_psc_exp")
    proj = dtb.Projection("A", "B", dtb.FixedTotalNumber(2**32), weight=1.0, delay=1.0)
    counts = np.array([2**31, 2**31], np.int64)
    with pytest.raises(ConfigError, match=r"A->B: 4294967296 synapses on one engine.*2\*\*32"):
        fill(proj, 0, 1, DT, pre, post, 0, 0, counts, 0, 0, np.empty(11, np.int64),
             np.empty(0, np.uint32), np.empty(0, np.int16), np.empty(0, np.uint16))
