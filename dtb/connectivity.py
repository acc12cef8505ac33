"""Per-projection synapse generation for the neurons an engine owns.

The engine asks for the incoming synapses of a contiguous range of target neurons
(``post_first .. post_first + n_post - 1`` within the target population); everything is
a pure function of (seed, projection id, target gid), so any partition of the targets
yields the same synapses.  Storage is by source row (see kernels/connect.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.kernels import connect as kc
from dtb.kernels.philox import TOTAL_NUMBER
from dtb.network import FixedInDegree, FixedTotalNumber, PairwiseBernoulli, Projection


@dataclass
class ProjectionBlock:
    """One projection's synapses on this engine, stored by source row.

    indptr (n_pre+1,) int64 offsets into tgt/wq/dly; shift: weights are wq << shift in
    units of 2**-32; n_synapses; max_delay (steps).
    """

    indptr: np.ndarray
    tgt: np.ndarray
    wq: np.ndarray
    dly: np.ndarray
    shift: int
    n_synapses: int
    max_delay: int


def total_number_counts(seed: int, proj: int, n_post_total: int, n_total: int,
                        first: int, count: int) -> np.ndarray:
    """Synapses per target for NEST's fixed_total_number rule, for targets first..first+count-1.

    The multinomial split of n_total over n_post_total equally likely targets is drawn by
    recursive binomial halving; each tree node has its own generator keyed by
    (seed, projection, node range), so only the nodes above the wanted targets are visited
    and every partition sees the same counts.
    """
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


def generate(proj: Projection, proj_id: int, seed: int, dt: float, n_pre: int,
             post_gid0: int, post_first: int, n_post: int, n_post_total: int,
             post_base: int, weight_bounds: tuple[float, float]) -> ProjectionBlock:
    """Incoming synapses of targets post_first.. (gids post_gid0..) of one projection.

    post_base: engine-local index of the first of these targets.
    """
    rule = proj.rule
    same = proj.source == proj.target
    p = 0.0
    if isinstance(rule, FixedInDegree):
        code = kc.RULE_INDEGREE
        counts = np.full(n_post, rule.k, np.int64)
    elif isinstance(rule, FixedTotalNumber):
        code = kc.RULE_TOTAL
        counts = total_number_counts(seed, proj_id, n_post_total, rule.n, post_first, n_post)
    elif isinstance(rule, PairwiseBernoulli):
        code = kc.RULE_BERNOULLI
        p = rule.p
        counts = kc.count_bernoulli(seed, proj_id, post_gid0, post_first, n_post, n_pre, p,
                                    same, proj.autapses)
    else:  # pragma: no cover - validated earlier
        raise TypeError(rule)
    ptr = np.zeros(n_post + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    n_syn = int(ptr[-1])
    src = np.empty(n_syn, np.int64)
    kc.draw_sources(code, seed, proj_id, post_gid0, post_first, n_post, n_pre, p, same,
                    proj.autapses, proj.multapses, ptr, src, 256)
    w, d = proj.weight, proj.delay
    shift = kc.weight_shift(max(abs(weight_bounds[0]), abs(weight_bounds[1])))
    wq = np.empty(n_syn, np.int16)
    dly = np.empty(n_syn, np.uint16)
    kc.draw_weights_delays(seed, proj_id, post_gid0, n_post, ptr,
                           w.code, w.a, w.b, w.low, w.high, shift,
                           d.code, d.a, d.b, d.low, d.high, dt, wq, dly)
    indptr = np.empty(n_pre + 1, np.int64)
    tgt = np.empty(n_syn, np.uint32)
    wq_s = np.empty(n_syn, np.int16)
    dly_s = np.empty(n_syn, np.uint16)
    kc.scatter_by_source(n_pre, post_base, ptr, src, wq, dly, indptr, tgt, wq_s, dly_s)
    max_delay = int(dly.max()) if n_syn else 1
    return ProjectionBlock(indptr, tgt, wq_s, dly_s, shift, n_syn, max_delay)
