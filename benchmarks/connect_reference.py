"""The synapse-generation kernels as they were before the build-speed work (issue 16).

Kept, unchanged, as the straightforward per-synapse reference: tests/test_build_kernels.py
checks the current kernels against it bit for bit, and benchmarks/build_speed.py times the
two in one process.  One Philox block per draw, one scalar ``draw()`` call per weight and
delay, a separate scatter pass; and total_number_counts with one freshly constructed numpy
generator per tree node.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from dtb.engine.connectivity import _group_bounds, _target_rows, _unit_bounds
from dtb.kernels import connect as kc
from dtb.kernels.connect import RULE_BERNOULLI, RULE_INDEGREE, RULE_UNIT_LOCAL
from dtb.kernels.philox import (
    CONNECT,
    DELAY,
    TOTAL_NUMBER,
    WEIGHT,
    below,
    block,
    draw,
    make_key1,
    u01,
)
from dtb.model.network import (
    LongRange,
    PairwiseBernoulli,
    Population,
    Projection,
    UnitLocal,
    as_dist,
)


def total_number_counts(seed: int, proj: int, n_post_total: int, n_total: int,
                        first: int, count: int) -> np.ndarray:
    """Synapses per target for fixed_total_number (one generator constructed per node)."""
    out = np.zeros(count, np.int64)
    stack = [(0, n_post_total, n_total)]
    while stack:
        a, b, n = stack.pop()
        if n == 0 or b <= first or a >= first + count:
            continue
        if b - a == 1:
            out[a - first] = n
            continue
        mid = (a + b) // 2
        key = [np.uint64((seed << 32) | (TOTAL_NUMBER << 24) | (proj & 0xFFFFFF)), np.uint64(a)]
        rng = np.random.Generator(np.random.Philox(key=key, counter=[b, 0, 0, 0]))
        left = int(rng.binomial(n, (mid - a) / (b - a)))
        stack.append((a, mid, left))
        stack.append((mid, b, n - left))
    return out


@nb.njit(cache=True)
def _bernoulli_targets(seed, key1, gid, n_pre, p, self_idx, out, o):
    """Sources of one target under pairwise Bernoulli(p) by geometric skipping; writes to
    out[o:] when out is non-empty, returns the count."""
    cnt = 0
    if p <= 0.0:
        return 0
    if p >= 1.0:
        for s in range(n_pre):
            if s == self_idx:
                continue
            if out.shape[0] > 0:
                out[o + cnt] = s
            cnt += 1
        return cnt
    logq = math.log1p(-p)
    pos = -1
    t = 0
    while True:
        w0, w1, w2, w3 = block(seed, key1, gid, 0, t, 0)
        t += 1
        skip = math.floor(math.log(u01(w0, w1)) / logq)
        if skip > n_pre:
            break
        pos += np.int64(skip) + 1
        if pos >= n_pre:
            break
        if pos == self_idx:
            continue
        if out.shape[0] > 0:
            out[o + cnt] = pos
        cnt += 1
    return cnt


@nb.njit(parallel=True, cache=True)
def count_bernoulli(seed, proj, post_gid0, post_first, n_post, n_pre, p, same_pop, autapses):
    """Synapse count of each target under pairwise Bernoulli."""
    key1 = make_key1(CONNECT, proj)
    counts = np.empty(n_post, np.int64)
    dummy = np.empty(0, np.int64)
    for i in nb.prange(n_post):
        self_idx = post_first + i if (same_pop and not autapses) else -1
        counts[i] = _bernoulli_targets(seed, key1, post_gid0 + i, n_pre, p, self_idx, dummy, 0)
    return counts


@nb.njit(parallel=True, cache=True)
def draw_sources(rule, seed, proj, post_gid0, post_first, n_post, n_pre, p, same_pop,
                 autapses, multapses, ptr, src, n_chunks):
    """Sources (index within the source population) of every target, in target order.

    ptr (n_post+1) gives each target's slice of src.  Without multapses the fixed
    in-degree rule rejects repeats (a per-chunk marker array) or, when it asks for more
    than a quarter of the sources, selects sequentially (Knuth's algorithm S).
    """
    key1 = make_key1(CONNECT, proj)
    n_chunks = min(n_post, n_chunks)
    for c in nb.prange(n_chunks):
        lo = c * n_post // n_chunks
        hi = (c + 1) * n_post // n_chunks
        mark = np.zeros(n_pre if (rule == RULE_INDEGREE and not multapses) else 0, np.bool_)
        for i in range(lo, hi):
            gid = post_gid0 + i
            self_idx = post_first + i if (same_pop and not autapses) else -1
            o = ptr[i]
            k = ptr[i + 1] - o
            if rule == RULE_BERNOULLI:
                _bernoulli_targets(seed, key1, gid, n_pre, p, self_idx, src, o)
            elif multapses:
                t = 0
                for j in range(k):
                    while True:
                        w0, w1, w2, w3 = block(seed, key1, gid, 0, t, 0)
                        t += 1
                        s = below(w0, n_pre)
                        if s != self_idx:
                            break
                    src[o + j] = s
            elif 4 * k > n_pre:
                avail = n_pre - (1 if self_idx >= 0 else 0)
                need = k
                j = 0
                for s in range(n_pre):
                    if s == self_idx:
                        continue
                    w0, w1, w2, w3 = block(seed, key1, gid, 0, s, 0)
                    if u01(w0, w1) * avail < need:
                        src[o + j] = s
                        j += 1
                        need -= 1
                        if need == 0:
                            break
                    avail -= 1
            else:
                t = 0
                j = 0
                while j < k:
                    w0, w1, w2, w3 = block(seed, key1, gid, 0, t, 0)
                    t += 1
                    s = below(w0, n_pre)
                    if s == self_idx or mark[s]:
                        continue
                    mark[s] = True
                    src[o + j] = s
                    j += 1
                for j in range(k):
                    mark[src[o + j]] = False


@nb.njit(parallel=True, cache=True)
def draw_sources_units(rule, seed, proj, post_gid0, n_post, t_row, src_lo, src_hi, cum,
                       self_first, ptr, src, sgrp, n_chunks):
    """Sources of unit-structured rules, in target order (multapses allowed).

    RULE_UNIT_LOCAL: target i draws uniformly from [src_lo[u], src_hi[u]), u = t_row[i].
    RULE_LONG_RANGE: target i (group g = t_row[i]) draws a source group v from the
    cumulative row cum[g] (float64, ending at 1), then a neuron uniformly in
    [src_lo[v], src_hi[v]); v is kept in sgrp for the conduction delay.
    self_first >= 0 excludes autapses: target i is source self_first + i.
    """
    key1 = make_key1(CONNECT, proj)
    n_chunks = min(n_post, n_chunks)
    for c in nb.prange(n_chunks):
        lo = c * n_post // n_chunks
        hi = (c + 1) * n_post // n_chunks
        for i in range(lo, hi):
            gid = post_gid0 + i
            self_idx = self_first + i if self_first >= 0 else -1
            row = t_row[i]
            t = 0
            for j in range(ptr[i + 1] - ptr[i]):
                while True:
                    w0, w1, w2, w3 = block(seed, key1, gid, 0, t, 0)
                    t += 1
                    if rule == RULE_UNIT_LOCAL:
                        v = row
                        s = src_lo[v] + below(w0, src_hi[v] - src_lo[v])
                    else:
                        v = np.searchsorted(cum[row], u01(w0, w1), side="right")
                        v = min(v, cum.shape[1] - 1)
                        s = src_lo[v] + below(w2, src_hi[v] - src_lo[v])
                    if s != self_idx and src_hi[v] > src_lo[v]:
                        break
                src[ptr[i] + j] = s
                sgrp[ptr[i] + j] = v


@nb.njit(parallel=True, cache=True)
def draw_weights_delays(seed, proj, post_gid0, n_post, ptr,
                        wkind, wa, wb, wlo, whi, shift,
                        dkind, da, db, dlo, dhi, dt, cond, t_grp, sgrp, wq, dly):
    """Quantised weights (int16) and delays (uint16 steps, floor(d/dt + 1/2) >= 1) per synapse.

    With a conduction matrix cond (G, G) in ms (long-range rules) the delay is
    cond[t_grp[i], sgrp[k]] plus the draw; otherwise cond is empty.
    """
    kw = make_key1(WEIGHT, proj)
    kd = make_key1(DELAY, proj)
    scale = 2.0 ** (32 - shift)
    const_w = wkind == 0
    const_d = dkind == 0
    has_cond = cond.shape[0] > 0
    for i in nb.prange(n_post):
        gid = post_gid0 + i
        for j in range(ptr[i + 1] - ptr[i]):
            w = wa if const_w else draw(wkind, wa, wb, wlo, whi, seed, kw, gid, 0, j)
            q = round(w * scale)
            q = min(max(q, -32767.0), 32767.0)
            wq[ptr[i] + j] = np.int16(q)
            d = da if const_d else draw(dkind, da, db, dlo, dhi, seed, kd, gid, 0, j)
            if has_cond:
                d += cond[t_grp[i], sgrp[ptr[i] + j]]
            ds = math.floor(d / dt + 0.5)  # half steps round up, as NEST does
            ds = min(max(ds, 1.0), 65535.0)
            dly[ptr[i] + j] = np.uint16(ds)


@nb.njit(cache=True)
def scatter_by_source(n_pre, post_base, ptr, src, wq, dly, indptr, tgt, wq_out, dly_out):
    """Re-sort one projection's synapses from target order into source rows.

    indptr (n_pre+1) receives the row offsets (relative to the output slices); targets
    become engine-local indices post_base + i, ascending within each row.
    """
    indptr[:] = 0
    for k in range(src.shape[0]):
        indptr[src[k] + 1] += 1
    for r in range(n_pre):
        indptr[r + 1] += indptr[r]
    nxt = indptr[:-1].copy()
    n_post = ptr.shape[0] - 1
    for i in range(n_post):
        for k in range(ptr[i], ptr[i + 1]):
            r = src[k]
            pos = nxt[r]
            nxt[r] = pos + 1
            tgt[pos] = np.uint32(post_base + i)
            wq_out[pos] = wq[k]
            dly_out[pos] = dly[k]


def fill(proj: Projection, proj_id: int, seed: int, dt: float, pre: Population,
         post: Population, post_gid0: int, post_first: int, counts: np.ndarray,
         post_base: int, shift: int, indptr: np.ndarray, tgt: np.ndarray, wq: np.ndarray,
         dly: np.ndarray) -> None:
    """dtb.engine.connectivity.fill as it was: draw in target order, then scatter.

    Writes indptr (pre.size+1, offsets relative to the output slices) and tgt/wq/dly
    (counts.sum() each); post_base is the engine index of the first target.  Temporary
    memory: 8 bytes per synapse of this projection (12 for long-range rules).
    """
    rule = proj.rule
    n_pre = pre.size
    n_post = len(counts)
    ptr = np.zeros(n_post + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    n_syn = int(ptr[-1])
    src = np.empty(n_syn, np.uint32)
    same = proj.source == proj.target
    cond = np.zeros((0, 0))
    t_grp = np.zeros(0, np.int64)
    sgrp = np.zeros(0, np.int32)
    if isinstance(rule, (UnitLocal, LongRange)):
        if isinstance(rule, UnitLocal):
            code = kc.RULE_UNIT_LOCAL
            ub = _unit_bounds(pre)
            s_lo, s_hi = ub[:-1].copy(), ub[1:].copy()
            t_row = _target_rows(post, post_first, n_post, by_group=False)
            cum = np.zeros((1, 1))
            sg = np.empty(n_syn, np.int32)
        else:
            code = kc.RULE_LONG_RANGE
            n_g = rule.probs.shape[0]
            s_lo, s_hi = _group_bounds(pre, n_g)
            p = np.where((s_hi > s_lo)[None, :], rule.probs, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cum = np.cumsum(p, axis=1) / p.sum(axis=1, keepdims=True)
            cum = np.nan_to_num(cum, nan=1.0)
            cum[:, -1] = 1.0
            t_row = _target_rows(post, post_first, n_post, by_group=True)
            sg = np.empty(n_syn, np.int32)
            cond, t_grp, sgrp = np.asarray(rule.conduction_ms, float), t_row, sg
        self_first = post_first if (same and not proj.autapses) else -1
        draw_sources_units(code, seed, proj_id, post_gid0, n_post, t_row, s_lo, s_hi, cum,
                              self_first, ptr, src, sg, 256)
    else:
        code = {"fixed_indegree": kc.RULE_INDEGREE, "fixed_total_number": kc.RULE_TOTAL,
                "pairwise_bernoulli": kc.RULE_BERNOULLI}[rule.kind]
        p_pair = rule.p if isinstance(rule, PairwiseBernoulli) else 0.0
        draw_sources(code, seed, proj_id, post_gid0, post_first, n_post, n_pre, p_pair, same,
                        proj.autapses, proj.multapses, ptr, src, 256)
    w, d = as_dist(proj.weight), as_dist(proj.delay)
    wq_t = np.empty(n_syn, np.int16)
    dly_t = np.empty(n_syn, np.uint16)
    draw_weights_delays(seed, proj_id, post_gid0, n_post, ptr,
                           w.code, w.a, w.b, w.low, w.high, shift,
                           d.code, d.a, d.b, d.low, d.high, dt, cond, t_grp, sgrp, wq_t, dly_t)
    scatter_by_source(n_pre, post_base, ptr, src, wq_t, dly_t, indptr, tgt, wq, dly)
