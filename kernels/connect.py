"""Synapse generation on the rank that owns the target neurons (numba, CPU).

Connectivity is drawn per postsynaptic neuron from the counter-based generator, keyed by
(seed, purpose, projection id, target gid, draw index), so a synapse exists, and has the
same weight and delay, whatever the partition.  Synapses are then stored by *source*
(compressed sparse rows), 8 bytes each:

    target  uint32   index of the target neuron on this engine
    weight  int16    fixed-point mantissa; value = weight << shift[projection] units of 2**-32
    delay   uint16   whole steps (>= 1)

Within a row the targets ascend, so a thread that owns a target range finds its part of a
row by binary search (see delivery.py).

Speed (issue 16): the Philox blocks a target consumes are made CHUNK at a time by
philox.blocks(), whose loop over consecutive counters runs in SIMD lanes.  Normal weights
and delays come from philox.normals_approx (Box-Muller by polynomials, in SIMD lanes);
a stored weight or delay is an integer (quantum, step), and where the approximate value
is not provably on the same side of every rounding edge and bound as the libm one, the
scalar draw() decides.  Redraws and lognormal values use draw() and libm as before.  So
the bits are those of benchmarks/connect_reference.py (tests/test_build_kernels.py).
Weights and delays are written straight to their source-row slots (source_rows() computes
them first), which saves a scatter pass and 4 bytes per synapse of temporary memory.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from dtb.kernels.philox import (
    CONNECT,
    D_CONSTANT,
    D_NORMAL,
    D_UNIFORM,
    DELAY,
    NORMAL_APPROX_ERR,
    WEIGHT,
    below,
    blocks,
    draw,
    make_key1,
    normal_pair,
    normals_approx,
    u01,
)

RULE_INDEGREE = 0
RULE_TOTAL = 1
RULE_BERNOULLI = 2
RULE_UNIT_LOCAL = 3
RULE_LONG_RANGE = 4

CHUNK = 256  # values drawn per batch: long enough for the SIMD loops to pay (64 was 1.4x slower)
FIX_BITS = 32  # fixed-point fraction bits of the input accumulators
WQ_MAX = 32767


def weight_shift(max_abs_weight: float) -> int:
    """The shift s such that weights up to max_abs_weight fit an int16 mantissa.

    A weight w is stored as ``q = round(w * 2**32 / 2**s)``, ``|q| <= 32767``, so the quantum
    is ``2**(s-32)``: a relative error below 2**-16 of the projection's largest weight.
    """
    if max_abs_weight <= 0.0:
        return 0
    need = max_abs_weight * 2.0**FIX_BITS / WQ_MAX
    return max(0, int(math.ceil(math.log2(need))))


@nb.njit(cache=True)
def _bernoulli_targets(seed, key1, gid, n_pre, p, self_idx, out, o, b0, b1, b2, b3):
    """Sources of one target under pairwise Bernoulli(p) by geometric skipping; writes to
    out[o:] when out is non-empty, returns the count.  b0..b3: CHUNK uint32 scratch."""
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
    bp = CHUNK
    while True:
        if bp == CHUNK:
            blocks(seed, key1, gid, 0, t, 0, CHUNK, b0, b1, b2, b3)
            bp = 0
        w0 = b0[bp]
        w1 = b1[bp]
        bp += 1
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
    n_chunks = min(n_post, 256)
    for c in nb.prange(n_chunks):
        b0, b1, b2, b3 = _scratch()
        for i in range(c * n_post // n_chunks, (c + 1) * n_post // n_chunks):
            self_idx = post_first + i if (same_pop and not autapses) else -1
            counts[i] = _bernoulli_targets(seed, key1, post_gid0 + i, n_pre, p, self_idx, dummy,
                                           0, b0, b1, b2, b3)
    return counts


@nb.njit(cache=True)
def _scratch():
    """Four CHUNK-long uint32 buffers for blocks()."""
    return (np.empty(CHUNK, np.uint32), np.empty(CHUNK, np.uint32),
            np.empty(CHUNK, np.uint32), np.empty(CHUNK, np.uint32))


@nb.njit(parallel=True, cache=True)
def draw_sources(rule, seed, proj, post_gid0, post_first, n_post, n_pre, p, same_pop,
                 autapses, multapses, ptr, src, n_chunks):
    """Sources (index within the source population) of every target, in target order.

    ptr (n_post+1) gives each target's slice of src.  Without multapses the fixed
    in-degree rule rejects repeats (a per-chunk marker array) or, when it asks for more
    than a quarter of the sources, selects sequentially (Knuth's algorithm S).  Draw t of
    a target uses block(seed, key1, gid, 0, t, 0) (algorithm S: t = the source index).
    """
    key1 = make_key1(CONNECT, proj)
    n_chunks = min(n_post, n_chunks)
    for c in nb.prange(n_chunks):
        lo = c * n_post // n_chunks
        hi = (c + 1) * n_post // n_chunks
        mark = np.zeros(n_pre if (rule == RULE_INDEGREE and not multapses) else 0, np.bool_)
        b0, b1, b2, b3 = _scratch()
        for i in range(lo, hi):
            gid = post_gid0 + i
            self_idx = post_first + i if (same_pop and not autapses) else -1
            o = ptr[i]
            k = ptr[i + 1] - o
            if rule == RULE_BERNOULLI:
                _bernoulli_targets(seed, key1, gid, n_pre, p, self_idx, src, o, b0, b1, b2, b3)
            elif multapses:
                t = 0
                bp = m = 0
                for j in range(k):
                    while True:
                        if bp == m:  # refill: what the row still needs, a few spare
                            m = min(CHUNK, k - j + 8)
                            blocks(seed, key1, gid, 0, t, 0, m, b0, b1, b2, b3)
                            bp = 0
                        s = below(b0[bp], n_pre)
                        bp += 1
                        t += 1
                        if s != self_idx:
                            break
                    src[o + j] = s
            elif 4 * k > n_pre:
                avail = n_pre - (1 if self_idx >= 0 else 0)
                need = k
                j = 0
                for s0 in range(0, n_pre, CHUNK):
                    m = min(CHUNK, n_pre - s0)
                    blocks(seed, key1, gid, 0, s0, 0, m, b0, b1, b2, b3)
                    for q in range(m):
                        s = s0 + q
                        if s == self_idx:
                            continue
                        if u01(b0[q], b1[q]) * avail < need:
                            src[o + j] = s
                            j += 1
                            need -= 1
                            if need == 0:
                                break
                        avail -= 1
                    if need == 0:
                        break
            else:
                t = 0
                j = 0
                bp = m = 0
                while j < k:
                    if bp == m:  # refill: what the row still needs, a few spare
                        m = min(CHUNK, k - j + 8)
                        blocks(seed, key1, gid, 0, t, 0, m, b0, b1, b2, b3)
                        bp = 0
                    s = below(b0[bp], n_pre)
                    bp += 1
                    t += 1
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
        b0, b1, b2, b3 = _scratch()
        for i in range(lo, hi):
            gid = post_gid0 + i
            self_idx = self_first + i if self_first >= 0 else -1
            row = t_row[i]
            t = 0
            bp = m = 0
            k = ptr[i + 1] - ptr[i]
            for j in range(k):
                while True:
                    if bp == m:  # refill: what the row still needs, a few spare
                        m = min(CHUNK, k - j + 8)
                        blocks(seed, key1, gid, 0, t, 0, m, b0, b1, b2, b3)
                        bp = 0
                    w0 = b0[bp]
                    w1 = b1[bp]
                    w2 = b2[bp]
                    bp += 1
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


@nb.njit(inline="always", cache=True)
def _margin(a, b):
    """Bound on |a + b z' - (a + b z)| for |z' - z| <= NORMAL_APPROX_ERR, |z| < 8.6, with
    the rounding of both evaluations (generously: 1e-14 relative)."""
    return abs(b) * NORMAL_APPROX_ERR + 1e-14 * (abs(a) + 10.0 * abs(b))


@nb.njit(cache=True)
def _draws(kind, a, b, low, high, seed, key1, gid, j0, n, out, apx, b0, b1, b2, b3):
    """Values of draw(kind, a, b, low, high, seed, key1, gid, 0, j0 + l) for l < n.

    out[l] is that value exactly (apx[l] False), or, for a normal distribution, a value
    within _margin(a, b) of it (apx[l] True) that lies further than the margin inside
    [low, high], so the exact draw is accepted at attempt 0 too.  The caller takes an
    approximate value only where every value within the margin gives the same stored
    result, and calls draw() for the exact one elsewhere.  Attempt 0 of all n values comes
    from one blocks() call; redraws (values outside the bounds) and lognormal values use
    draw() and libm, lane by lane.
    """
    if kind == D_CONSTANT:
        for q in range(n):
            out[q] = a
            apx[q] = False
        return
    blocks(seed, key1, gid, 0, j0, 0, n, b0, b1, b2, b3)
    if kind == D_UNIFORM:
        for q in range(n):
            out[q] = a + (b - a) * u01(b0[q], b1[q])
            apx[q] = False
        return
    if kind == D_NORMAL:
        normals_approx(b0, b1, b2, b3, n, out)
        mx = _margin(a, b)
        for q in range(n):
            x = a + b * out[q]
            if x - low > mx and high - x > mx:
                out[q] = x
                apx[q] = True
            else:
                out[q] = draw(kind, a, b, low, high, seed, key1, gid, 0, j0 + q)
                apx[q] = False
        return
    for q in range(n):
        x = math.exp(a + b * normal_pair(b0[q], b1[q], b2[q], b3[q]))
        if not (x >= low and x <= high):
            x = draw(kind, a, b, low, high, seed, key1, gid, 0, j0 + q)
        out[q] = x
        apx[q] = False


@nb.njit(parallel=True, cache=True)
def draw_weights_delays(seed, proj, post_gid0, n_post, ptr,
                        wkind, wa, wb, wlo, whi, shift,
                        dkind, da, db, dlo, dhi, dt, cond, t_grp, sgrp, wq, dly, pos=None):
    """Quantised weights (int16) and delays (uint16 steps, floor(d/dt + 1/2) >= 1) per synapse.

    Synapse j of target i (k = ptr[i] + j, target order) has weight
    draw(wkind, wa, wb, wlo, whi, seed, WEIGHT key, gid, 0, j) and likewise its delay; it is
    written to wq[k], dly[k], or to wq[pos[k]], dly[pos[k]] when pos (its source-row slot,
    from source_rows) is given.  With a conduction matrix cond (G, G) in ms (long-range
    rules) the delay is cond[t_grp[i], sgrp[k]] plus the draw; otherwise cond is empty.

    Normal draws come from normals_approx; the stored integer is the exact one's unless
    the approximate value lies within its error margin of a rounding boundary (a
    half-integer weight quantum, a half step of delay), where draw() gives the exact value
    (for the microcircuit's weights about 3 in 10**9).  The result is bit for bit that of
    the exact draws.
    """
    kw = make_key1(WEIGHT, proj)
    kd = make_key1(DELAY, proj)
    scale = 2.0 ** (32 - shift)  # a power of two: w * scale is exact
    mw = _margin(wa, wb)
    md = _margin(da, db)
    has_cond = cond.shape[0] > 0
    n_chunks = min(n_post, 256)
    for c in nb.prange(n_chunks):
        b0, b1, b2, b3 = _scratch()
        wbuf = np.empty(CHUNK)
        dbuf = np.empty(CHUNK)
        wapx = np.empty(CHUNK, np.bool_)
        dapx = np.empty(CHUNK, np.bool_)
        for i in range(c * n_post // n_chunks, (c + 1) * n_post // n_chunks):
            gid = post_gid0 + i
            base = ptr[i]
            k = ptr[i + 1] - base
            for j0 in range(0, k, CHUNK):
                n = min(CHUNK, k - j0)
                _draws(wkind, wa, wb, wlo, whi, seed, kw, gid, j0, n, wbuf, wapx, b0, b1, b2, b3)
                _draws(dkind, da, db, dlo, dhi, seed, kd, gid, j0, n, dbuf, dapx, b0, b1, b2, b3)
                for q in range(n):
                    e = base + j0 + q
                    y = wbuf[q] * scale
                    if wapx[q]:
                        my = scale * mw + 1e-14 * (abs(y) + 1.0)
                        if math.floor(y + 0.5 - my) != math.floor(y + 0.5 + my):
                            y = draw(wkind, wa, wb, wlo, whi, seed, kw, gid, 0, j0 + q) * scale
                    wv = round(y)
                    wv = min(max(wv, -32767.0), 32767.0)
                    d = dbuf[q]
                    if has_cond:
                        d += cond[t_grp[i], sgrp[e]]
                    v = d / dt + 0.5  # half steps round up, as NEST does
                    if dapx[q]:
                        mv = md / dt + 1e-14 * (abs(v) + abs(d) / dt + 1.0)
                        if math.floor(v - mv) != math.floor(v + mv):
                            d = draw(dkind, da, db, dlo, dhi, seed, kd, gid, 0, j0 + q)
                            if has_cond:
                                d += cond[t_grp[i], sgrp[e]]
                            v = d / dt + 0.5
                    ds = math.floor(v)
                    ds = min(max(ds, 1.0), 65535.0)
                    o = e if pos is None else pos[e]
                    wq[o] = np.int16(wv)
                    dly[o] = np.uint16(ds)


@nb.njit(cache=True)
def source_rows(n_pre, post_base, ptr, src, indptr, tgt):
    """Lay one projection's synapses out by source row; src becomes each synapse's slot.

    In: src (n_syn,) uint32, the source of each synapse in target order (ptr, n_post+1).
    Out: indptr (n_pre+1) row offsets (relative to the output slices); tgt[slot] the
    engine-local target post_base + i, ascending within each row; src[k] the slot of
    synapse k (pass it as pos to draw_weights_delays).  n_syn < 2**32.
    """
    indptr[:] = 0
    for k in range(src.shape[0]):
        indptr[src[k] + 1] += 1
    for r in range(n_pre):
        indptr[r + 1] += indptr[r]
    nxt = indptr[:-1].copy()
    n_post = ptr.shape[0] - 1
    for i in range(n_post):
        t = np.uint32(post_base + i)
        for k in range(ptr[i], ptr[i + 1]):
            r = src[k]
            slot = nxt[r]
            nxt[r] = slot + 1
            tgt[slot] = t
            src[k] = np.uint32(slot)
