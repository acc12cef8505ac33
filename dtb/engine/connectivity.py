"""Per-projection synapse generation for the neurons an engine owns.

The engine asks for the incoming synapses of a contiguous range of target neurons
(``post_first .. post_first + n_post - 1`` within the target population); everything is
a pure function of (seed, projection id, target gid), so any partition of the targets
yields the same synapses.  Storage is by source row (see kernels/connect.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.errors import ConfigError
from dtb.kernels import connect as kc
from dtb.kernels.philox import TOTAL_NUMBER
from dtb.model.network import (
    FixedInDegree,
    FixedTotalNumber,
    LongRange,
    PairwiseBernoulli,
    Population,
    Projection,
    UnitLocal,
    as_dist,
)


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
    recursive binomial halving; each tree node has its own Philox stream keyed by
    (seed, projection, node range), so only the nodes above the wanted targets are visited
    and every partition sees the same counts.  One numpy generator serves all nodes: its
    state is set to the node's fresh stream (key, counter, empty buffer) before each draw,
    which gives the numbers a newly constructed ``Philox(key=..., counter=...)`` would,
    without seeding a throw-away SeedSequence from OS entropy per node.
    """
    out = np.zeros(count, np.int64)
    bitgen = np.random.Philox(0)
    rng = np.random.Generator(bitgen)
    state = bitgen.state
    key0 = np.uint64((seed << 32) | (TOTAL_NUMBER << 24) | (proj & 0xFFFFFF))
    key = np.zeros(2, np.uint64)
    counter = np.zeros(4, np.uint64)
    key[0] = key0
    state["state"] = {"counter": counter, "key": key}
    state["buffer"] = np.zeros(4, np.uint64)
    state["buffer_pos"] = 4  # empty: the first draw runs Philox on the node's counter
    state["has_uint32"] = 0
    state["uinteger"] = 0
    stack = [(0, n_post_total, n_total)]
    while stack:
        a, b, n = stack.pop()
        if n == 0 or b <= first or a >= first + count:
            continue
        if b - a == 1:
            out[a - first] = n
            continue
        mid = (a + b) // 2
        key[1] = a
        counter[0] = b
        bitgen.state = state
        left = int(rng.binomial(n, (mid - a) / (b - a)))
        stack.append((a, mid, left))
        stack.append((mid, b, n - left))
    return out


def _unit_bounds(pop: Population) -> np.ndarray:
    """Offsets of the population's units within it: (n_units + 1,) int64."""
    units = pop.unit_sizes
    out = np.zeros(len(units) + 1, np.int64)
    np.cumsum(units, out=out[1:])
    return out


def _group_bounds(pop: Population, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last index of each group's neurons in the population (G,)."""
    groups = np.asarray(pop.groups if pop.groups is not None
                        else range(len(pop.unit_sizes)))
    ub = _unit_bounds(pop)
    lo = np.zeros(n_groups, np.int64)
    hi = np.zeros(n_groups, np.int64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        lo[g], hi[g] = ub[idx[0]], ub[idx[-1] + 1]
    return lo, hi


def _target_rows(pop: Population, post_first: int, n_post: int, by_group: bool) -> np.ndarray:
    """Unit (or group) index of each target post_first .. post_first + n_post - 1."""
    ub = _unit_bounds(pop)
    unit = np.searchsorted(ub, np.arange(post_first, post_first + n_post), side="right") - 1
    if by_group and pop.groups is not None:
        return np.asarray(pop.groups, np.int64)[unit]
    return unit.astype(np.int64)


def synapse_counts(proj: Projection, proj_id: int, seed: int, pre: Population,
                   post: Population, post_gid0: int, post_first: int,
                   n_post: int) -> np.ndarray:
    """Incoming synapses of each target post_first.. (gids post_gid0..), int64 (n_post,)."""
    rule = proj.rule
    if isinstance(rule, FixedInDegree):
        return np.full(n_post, rule.k, np.int64)
    if isinstance(rule, FixedTotalNumber):
        return total_number_counts(seed, proj_id, post.size, rule.n, post_first, n_post)
    if isinstance(rule, PairwiseBernoulli):
        return kc.count_bernoulli(seed, proj_id, post_gid0, post_first, n_post, pre.size, rule.p,
                                  proj.source == proj.target, proj.autapses)
    if isinstance(rule, (UnitLocal, LongRange)):
        k = (np.full(len(post.unit_sizes), rule.k) if isinstance(rule.k, int)
             else np.asarray(rule.k))
        unit = _target_rows(post, post_first, n_post, by_group=False)
        return k[unit].astype(np.int64)
    raise TypeError(rule)  # pragma: no cover - validated earlier


def fill(proj: Projection, proj_id: int, seed: int, dt: float, pre: Population,
         post: Population, post_gid0: int, post_first: int, counts: np.ndarray,
         post_base: int, shift: int, indptr: np.ndarray, tgt: np.ndarray, wq: np.ndarray,
         dly: np.ndarray) -> None:
    """Draw the synapses counted by synapse_counts and store them by source row.

    Writes indptr (pre.size+1, offsets relative to the output slices) and tgt/wq/dly
    (counts.sum() each); post_base is the engine index of the first target.  Temporary
    memory: 4 bytes per synapse of this projection (8 for long-range rules): the source,
    then the source-row slot, of each synapse in target order.
    """
    rule = proj.rule
    n_pre = pre.size
    n_post = len(counts)
    ptr = np.zeros(n_post + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    n_syn = int(ptr[-1])
    if n_syn >= 2**32:
        raise ConfigError([f"projections: {proj.source}->{proj.target}: {n_syn} synapses on "
                           f"one engine -- expected fewer than 2**32 (use more ranks)"])
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
        kc.draw_sources_units(code, seed, proj_id, post_gid0, n_post, t_row, s_lo, s_hi, cum,
                              self_first, ptr, src, sg, 256)
    else:
        code = {"fixed_indegree": kc.RULE_INDEGREE, "fixed_total_number": kc.RULE_TOTAL,
                "pairwise_bernoulli": kc.RULE_BERNOULLI}[rule.kind]
        p_pair = rule.p if isinstance(rule, PairwiseBernoulli) else 0.0
        kc.draw_sources(code, seed, proj_id, post_gid0, post_first, n_post, n_pre, p_pair, same,
                        proj.autapses, proj.multapses, ptr, src, 256)
    w, d = as_dist(proj.weight), as_dist(proj.delay)
    kc.source_rows(n_pre, post_base, ptr, src, indptr, tgt)  # src now holds each slot
    kc.draw_weights_delays(seed, proj_id, post_gid0, n_post, ptr,
                           w.code, w.a, w.b, w.low, w.high, shift,
                           d.code, d.a, d.b, d.low, d.high, dt, cond, t_grp, sgrp, wq, dly, src)


def generate(proj: Projection, proj_id: int, seed: int, dt: float, n_pre: int,
             post_gid0: int, post_first: int, n_post: int, n_post_total: int,
             post_base: int, weight_bounds: tuple[float, float]) -> ProjectionBlock:
    """Incoming synapses of targets post_first.. (gids post_gid0..) of one projection
    between populations without units, in arrays of their own (the engine fills its
    shared arrays with fill() instead)."""
    pre, post = Population(proj.source, n_pre), Population(proj.target, n_post_total)
    counts = synapse_counts(proj, proj_id, seed, pre, post, post_gid0, post_first, n_post)
    n_syn = int(counts.sum())
    shift = kc.weight_shift(max(abs(weight_bounds[0]), abs(weight_bounds[1])))
    indptr = np.empty(n_pre + 1, np.int64)
    tgt = np.empty(n_syn, np.uint32)
    wq = np.empty(n_syn, np.int16)
    dly = np.empty(n_syn, np.uint16)
    fill(proj, proj_id, seed, dt, pre, post, post_gid0, post_first, counts, post_base, shift,
         indptr, tgt, wq, dly)
    return ProjectionBlock(indptr, tgt, wq, dly, shift, n_syn, int(dly.max()) if n_syn else 1)
