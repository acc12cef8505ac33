"""Evaluation of a partition: the per-rank model, spike traffic, messages per window
(``message_counts`` is the reference definition) and the exchange window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from dtb.partition import model as partition_model
from dtb.partition.graph import _cut_groups, _lr_weights
from dtb.partition.model import Atoms, _Model

# --- evaluation --------------------------------------------------------------------------

@dataclass
class _RankModel:
    """Rank-level pools and targets for the traffic and message estimates.

    npool (P, F*G) sparse: neurons of family f, region v on each rank (column f*G + v);
    z (F*G, P): expected long-range synapses from one neuron of (f, v) onto each rank;
    cross: unit-local synapses between the blocks of cut units on different ranks, as
    arrays (r_from, r_to, synapses, extra spikes/s); diag_t (P,) spikes/s delivered to
    the rank that emits them.
    """

    npool: Any
    z: np.ndarray
    cross_r: np.ndarray
    cross_c: np.ndarray
    cross_s: np.ndarray
    cross_t: np.ndarray
    diag_t: np.ndarray


def _rank_model(m: _Model, at: Atoms, part: np.ndarray, ranks: int,
                rate_hz: float) -> _RankModel:

    g, nf = m.n_regions, m.n_fam
    cols = (np.arange(nf)[:, None] * g + at.region[None, :]).ravel()
    rows = np.tile(part, nf)
    npool = sp.coo_matrix((at.sizes.ravel().astype(float), (rows, cols)),
                          shape=(ranks, nf * g)).tocsr()
    kw = _lr_weights(m, at)
    z = np.zeros((nf * g, ranks))
    for (s, _, _, p, _), kk in zip(m.lr, kw, strict=True):
        k_rank = sp.coo_matrix((kk, (at.region, part)), shape=(g, ranks)).tocsr()
        zf = np.asarray((k_rank.T @ p).T)  # (G sources, P): sum_h p[h, v] K[h, R]
        nrm = m.region_neurons[s]
        zf = np.divide(zf, nrm[:, None], out=np.zeros_like(zf), where=nrm[:, None] > 0)
        z[s * g:(s + 1) * g] += zf
    # neurons of each atom reaching its own rank (for the delivered total)
    zl_whole = np.zeros((nf, m.sizes.shape[1]))  # unit-local synapses per source neuron
    for s, t, k, _ in m.local:
        zl_whole[s] += np.divide(k * m.sizes[t], m.sizes[s], out=np.zeros(len(k)),
                                 where=m.sizes[s] > 0)
    cr, cc, cs, ct = [], [], [], []
    diag_t = np.zeros(ranks)
    whole = at.pieces == 1
    # whole units: per unit, on its atom's rank
    unit_rank = np.full(m.sizes.shape[1], -1, np.int64)
    wa = np.flatnonzero(whole)
    for lo_, hi_, r in zip(at.unit_lo[wa], at.unit_hi[wa], part[wa], strict=True):
        unit_rank[lo_:hi_] = r
    uw = np.flatnonzero(unit_rank >= 0)
    for f in range(nf):
        zz = z[f * g + m.region[uw], unit_rank[uw]] + zl_whole[f, uw]
        diag_t += np.bincount(unit_rank[uw], weights=m.sizes[f, uw] * -np.expm1(-zz),
                              minlength=ranks)
    # cut units: blocks grouped by rank
    for ids in _cut_groups(at):
        u, v = int(at.unit_lo[ids[0]]), int(at.region[ids[0]])
        rk, inv = np.unique(part[ids], return_inverse=True)
        n_r = np.zeros((nf, len(rk)))
        for f in range(nf):
            n_r[f] = np.bincount(inv, weights=at.sizes[f, ids], minlength=len(rk))
        zl = np.zeros((nf, len(rk)))  # per source neuron of (u, f): synapses onto rank
        for s, t, k, _ in m.local:
            if m.sizes[s, u] > 0:
                zl[s] += k[u] * n_r[t] / m.sizes[s, u]
        zlr = z[np.arange(nf) * g + v][:, rk]  # (F, ranks of u)
        # pairs (i -> j) of the unit's ranks
        syn = n_r.T @ zl  # (from, to)
        ext = rate_hz * np.einsum("fi,fj->ij", n_r, np.exp(-zlr) - np.exp(-zlr - zl))
        diag_t[rk] += np.einsum("fi,fi->i", n_r, -np.expm1(-(zlr + zl)))
        i, j = np.nonzero(~np.eye(len(rk), dtype=bool))
        cr.append(rk[i])
        cc.append(rk[j])
        cs.append(syn[i, j])
        ct.append(ext[i, j])
    return _RankModel(npool, z, _cat(cr, np.int64), _cat(cc, np.int64), _cat(cs, float),
                      _cat(ct, float), rate_hz * diag_t)


def _cat(x: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(x).astype(dtype) if x else np.zeros(0, dtype)


def _p(s: np.ndarray) -> np.ndarray:
    """Probability that at least one of s (Poisson) expected synapses exists."""
    return -np.expm1(-np.maximum(s, 0.0))


def _group_of(ranks: int, per_node: int) -> tuple[np.ndarray, int]:
    grp = np.arange(ranks) // per_node
    return grp, int(grp[-1]) + 1


def _messages(rm: _RankModel, ranks: int, per_node: int, seed: int) -> dict[str, Any]:
    """Expected messages per rank per window, direct and two-level (module docstring)."""
    npool, z = rm.npool, rm.z
    grp, n_grp = _group_of(ranks, per_node)
    # direct: pairwise, in column chunks (sampled above EXACT_PEERS_MAX ranks)

    sampled = ranks > partition_model.EXACT_PEERS_MAX
    if sampled:
        rng = np.random.default_rng(seed)
        cols = np.sort(rng.choice(ranks, partition_model.PEER_SAMPLE, replace=False))
    else:
        cols = np.arange(ranks)
    out_p = np.zeros(ranks)
    in_p = np.full(ranks, np.nan)
    step = max(1, (1 << 23) // max(ranks, 1))
    order = np.argsort(rm.cross_c, kind="stable")
    cc_sorted = rm.cross_c[order]
    for k0 in range(0, len(cols), step):
        c = cols[k0:k0 + step]
        s = np.asarray(npool @ z[:, c])  # (P, |c|)
        a, b = np.searchsorted(cc_sorted, [c[0], c[-1] + 1])
        sel = order[a:b]
        if len(sel):
            pos = np.searchsorted(c, rm.cross_c[sel])
            ok = (pos < len(c)) & (c[np.minimum(pos, len(c) - 1)] == rm.cross_c[sel])
            np.add.at(s, (rm.cross_r[sel][ok], pos[ok]), rm.cross_s[sel][ok])
        s[c, np.arange(len(c))] = 0.0
        pr = _p(s)
        out_p += pr.sum(axis=1)
        in_p[c] = pr.sum(axis=0)
    if sampled:
        out_p *= (ranks - 1) / max(1, len(cols) - 1)
    direct = out_p + in_p
    # two-level
    row_tot, col_tot, own_row, own_col = _inter_totals(rm, ranks, grp, n_grp)
    x_out = np.maximum(row_tot - own_row, 0.0)
    x_in = np.maximum(col_tot - own_col, 0.0)
    s_grp = _group_synapses(rm, grp, n_grp)
    np.fill_diagonal(s_grp, 0.0)
    pg = _p(s_grp)
    relay_out, relay_in = pg.sum(axis=1), pg.sum(axis=0)
    two = np.zeros(ranks)
    for a in range(n_grp):
        r = np.flatnonzero(grp == a)
        sb = np.asarray(npool[r] @ z[:, r])
        _add_cross(sb, rm, r)
        np.fill_diagonal(sb, 0.0)
        q = 0  # relay: the group's first rank
        pr = _p(sb)
        members = np.arange(1, len(r))
        # members: direct with other members, combined messages with the relay
        to_relay = _p(sb[members, q] + x_out[r[members]])
        from_relay = _p(sb[q, members] + x_in[r[members]])
        peer = pr[np.ix_(members, members)]
        two[r[members]] = peer.sum(axis=1) + peer.sum(axis=0) + to_relay + from_relay
        two[r[q]] = to_relay.sum() + from_relay.sum() + relay_out[a] + relay_in[a]
    res = {"direct": direct, "out_peers": out_p, "in_peers": in_p, "two_level": two,
           "groups": n_grp, "relay_messages_between_groups": relay_out + relay_in,
           "peers_sampled": int(len(cols)) if sampled else 0}
    return res


def message_counts(s: np.ndarray, per_node: int, prob=None) -> dict[str, np.ndarray]:
    """Messages per rank per window from a dense (P, P) matrix of synapse counts
    ``s[r, q]`` (from rank r onto rank q), by the definitions in the module docstring:
    ``direct`` (P,) and ``two_level`` (P,).  ``prob`` maps synapse counts to the
    probability that a message is needed (default: 1 where the count is > 0).  The
    reference the planner's own (chunked, expected) counts are checked against."""
    prob = prob or (lambda x: (np.asarray(x) > 0).astype(float))
    s = np.array(s, float)
    n = len(s)
    np.fill_diagonal(s, 0.0)
    pr = prob(s)
    np.fill_diagonal(pr, 0.0)
    direct = pr.sum(axis=1) + pr.sum(axis=0)
    grp, n_grp = _group_of(n, per_node)
    same = grp[:, None] == grp[None, :]
    x_out = np.where(same, 0.0, s).sum(axis=1)
    x_in = np.where(same, 0.0, s).sum(axis=0)
    gm = np.zeros((n_grp, n))
    gm[grp, np.arange(n)] = 1.0
    sg = gm @ s @ gm.T
    np.fill_diagonal(sg, 0.0)
    pg = prob(sg)
    np.fill_diagonal(pg, 0.0)
    two = np.zeros(n)
    for a in range(n_grp):
        r = np.flatnonzero(grp == a)
        q, mem = r[0], r[1:]
        to_relay = prob(s[mem, q] + x_out[mem])
        from_relay = prob(s[q, mem] + x_in[mem])
        peer = pr[np.ix_(mem, mem)]
        two[mem] = peer.sum(axis=1) + peer.sum(axis=0) + to_relay + from_relay
        two[q] = to_relay.sum() + from_relay.sum() + pg[a].sum() + pg[:, a].sum()
    return {"direct": direct, "two_level": two}


def _add_cross(block: np.ndarray, rm: _RankModel, r: np.ndarray) -> None:
    """Add the cut units' unit-local synapses among the ranks r (contiguous) to block."""
    lo, hi = r[0], r[-1] + 1
    sel = ((rm.cross_r >= lo) & (rm.cross_r < hi) & (rm.cross_c >= lo) & (rm.cross_c < hi))
    if sel.any():
        np.add.at(block, (rm.cross_r[sel] - lo, rm.cross_c[sel] - lo), rm.cross_s[sel])


def _inter_totals(rm: _RankModel, ranks: int, grp: np.ndarray, n_grp: int):
    """Per rank: synapses out (row) and in (column) in all, and within its own group."""

    npool, z = rm.npool, rm.z
    gm = sp.coo_matrix((np.ones(ranks), (grp, np.arange(ranks))),
                       shape=(n_grp, ranks)).tocsr()  # group membership (n_grp, P)
    z_grp = np.asarray((gm @ z.T).T)  # (F*G, n_grp)
    n_grp_pool = np.asarray((gm @ npool).todense())  # (n_grp, F*G)
    row_tot = np.asarray(npool @ z.sum(axis=1)).ravel()
    col_tot = np.asarray(npool.sum(axis=0)).ravel() @ z
    own_row = np.asarray(npool.multiply(z_grp[:, grp].T).sum(axis=1)).ravel()
    own_col = np.einsum("pk,kp->p", n_grp_pool[grp], z)
    same = grp[rm.cross_r] == grp[rm.cross_c]
    row_tot += np.bincount(rm.cross_r, weights=rm.cross_s, minlength=ranks)
    col_tot += np.bincount(rm.cross_c, weights=rm.cross_s, minlength=ranks)
    own_row += np.bincount(rm.cross_r[same], weights=rm.cross_s[same], minlength=ranks)
    own_col += np.bincount(rm.cross_c[same], weights=rm.cross_s[same], minlength=ranks)
    return row_tot, col_tot, own_row, own_col


def _group_synapses(rm: _RankModel, grp: np.ndarray, n_grp: int) -> np.ndarray:
    """(n_grp, n_grp) expected synapses between groups of ranks."""

    ranks = len(grp)
    gm = sp.coo_matrix((np.ones(ranks), (grp, np.arange(ranks))),
                       shape=(n_grp, ranks)).tocsr()
    s = np.asarray((gm @ rm.npool).todense()) @ np.asarray((gm @ rm.z.T).T)
    np.add.at(s, (grp[rm.cross_r], grp[rm.cross_c]), rm.cross_s)
    return s


def _traffic(rm: _RankModel, ranks: int, rate_hz: float) -> dict[str, np.ndarray]:
    """Per rank: spikes/s sent to and received from other ranks, and delivered locally."""
    npool, z = rm.npool, rm.z
    e = -np.expm1(-z)  # (F*G, P) probability a pool neuron is needed on a rank
    e_tot = e.sum(axis=1)
    own = np.asarray(npool.multiply(e.T).sum(axis=1)).ravel()  # pools onto own rank
    out = rate_hz * (np.asarray(npool @ e_tot).ravel() - own)
    n_tot = np.asarray(npool.sum(axis=0)).ravel()
    inn = rate_hz * (n_tot @ e - own)
    out += np.bincount(rm.cross_r, weights=rm.cross_t, minlength=ranks)
    inn += np.bincount(rm.cross_c, weights=rm.cross_t, minlength=ranks)
    return {"out": out, "in": inn, "local": rm.diag_t}


def _window_ms(m: _Model, at: Atoms, part: np.ndarray) -> float | None:
    """The smallest delay (ms) of a synapse that may cross ranks (None: nothing crosses)."""
    best = math.inf
    g = m.n_regions
    lo = np.full(g, np.iinfo(np.int64).max)
    hi = np.full(g, -1)
    np.minimum.at(lo, at.region, part)
    np.maximum.at(hi, at.region, part)
    has = hi >= 0
    single = has & (lo == hi)
    for _, t, k, p, d in m.lr:
        tgt = np.bincount(m.region, weights=k * m.sizes[t], minlength=g) > 0
        ok = (p > 0) & tgt[:, None] & has[None, :]
        # a pair stays on one rank only if both regions sit wholly on the same rank
        same = single[:, None] & single[None, :] & (lo[:, None] == lo[None, :])
        ok &= ~same
        if ok.any():
            best = min(best, d + float(m.conduction_ms[ok].min()))
    cut_units = np.unique(at.unit_lo[at.pieces > 1])
    spread = [u for u in cut_units if len(np.unique(part[at.unit_lo == u])) > 1]
    if spread:
        for _, _, k, d in m.local:
            if np.any(k[spread] > 0):
                best = min(best, d)
    return None if best == math.inf else best
