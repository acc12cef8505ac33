"""Assignment of atoms to ranks: the contiguous baseline, METIS k-way and the greedy
rebalancing pass."""

from __future__ import annotations

import numpy as np
import pymetis

from dtb.partition.model import (
    DEFAULT_RATE_HZ,
    METIS_SCALE,
    Atoms,
    Costs,
    _atoms_from,
    _Model,
    _per_atom,
)

# --- assignment --------------------------------------------------------------------------

def contiguous_atoms(m: _Model, unit_cost: np.ndarray, ranks: int,
                     costs: Costs | None = None, rate_hz: float = DEFAULT_RATE_HZ
                     ) -> tuple[Atoms, np.ndarray]:
    """The contiguous baseline: units in order, the cumulative cost cut at every multiple
    of the mean rank cost T, so rank r holds cost [r T, (r + 1) T) of that line; a unit
    that straddles a cut is cut there into blocks.  Returns the atoms (runs of whole
    units of one region on one rank, and the blocks) and their ranks."""
    costs = costs or Costs()
    n_u = len(unit_cost)
    target = unit_cost.sum() / ranks
    c0 = np.concatenate([[0.0], np.cumsum(unit_cost)])[:-1]
    r_first = np.minimum((c0 / target).astype(np.int64), ranks - 1)
    r_last = np.minimum(np.ceil((c0 + unit_cost) / target).astype(np.int64) - 1, ranks - 1)
    r_last = np.maximum(r_last, r_first)
    whole = r_first == r_last
    brk = np.ones(n_u, bool)
    brk[1:] = ((m.region[1:] != m.region[:-1]) | (r_first[1:] != r_first[:-1]) |
               ~whole[1:] | ~whole[:-1])
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], n_u)
    ws = whole[starts]
    parts = [(starts[ws], ends[ws], np.zeros(ws.sum(), np.int64), np.ones(ws.sum(), np.int64),
              np.zeros((m.n_fam, ws.sum()), np.int64),
              np.rint(_per_atom(m.sizes.astype(float), starts[ws], ends[ws])).astype(np.int64),
              r_first[starts[ws]])]
    for u in starts[~ws]:
        cuts = (np.arange(r_first[u] + 1, r_last[u] + 1) * target - c0[u]) / unit_cost[u]
        q = np.concatenate([[0.0], np.clip(cuts, 0.0, 1.0), [1.0]])
        bounds = np.floor(q[None, :] * m.sizes[:, u:u + 1]).astype(np.int64)
        bounds[:, -1] = m.sizes[:, u]
        sz = np.diff(bounds, axis=1)
        keep = sz.sum(axis=0) > 0
        nb = int(keep.sum())
        parts.append((np.full(nb, u), np.full(nb, u + 1), np.arange(nb), np.full(nb, nb),
                      bounds[:, :-1][:, keep], sz[:, keep],
                      np.arange(r_first[u], r_last[u] + 1)[keep]))
    cols = [np.concatenate([p[i] for p in parts], axis=-1) for i in range(7)]
    order = np.argsort(cols[0], kind="stable")
    lo, hi, piece, pieces, first, sizes, part = (c[..., order] for c in cols)
    at = _atoms_from(m, lo, hi, piece, pieces, first, sizes, np.zeros(len(lo), bool),
                     costs, rate_hz)
    return at, part


def _metis(graph, cost: np.ndarray, ranks: int, seed: int, ufactor: int) -> np.ndarray:
    """METIS k-way partition of the atom graph (vertex weight = cost)."""

    n = len(cost)
    if ranks == 1:
        return np.zeros(n, np.int64)
    vw = np.maximum(1, np.rint(cost / cost.max() * METIS_SCALE)).astype(np.int64)
    if graph.nnz:
        ew = np.maximum(1, np.rint(graph.data / graph.data.max() * METIS_SCALE))
    else:
        ew = np.zeros(0)
    opt = pymetis.Options()
    opt.seed = int(seed)
    opt.ufactor = int(ufactor)
    adj = pymetis.CSRAdjacency(graph.indptr.astype(np.int64), graph.indices.astype(np.int64))
    res = pymetis.part_graph(ranks, adj, vweights=vw, eweights=ew.astype(np.int64),
                             options=opt, recursive=False)
    return np.asarray(res.vertex_part, np.int64)


def _rebalance(part: np.ndarray, cost: np.ndarray, graph, ranks: int, limit: float,
               coldest: int = 32) -> np.ndarray:
    """Bring every rank's cost to at most ``limit`` where moves and swaps can, the most
    loaded rank first: a move to a rank with room that loses the least traffic (to a
    neighbouring rank where possible); else a swap with a lighter atom of one of the
    ``coldest`` least loaded ranks that moves at least the excess; else the move or swap
    that most lowers the larger of the two ranks' loads.  Every step lowers the sum of
    squared loads, so the pass ends."""
    part = part.copy()
    load = np.bincount(part, weights=cost, minlength=ranks)
    members: list[list[int]] = [[] for _ in range(ranks)]
    for a, r in enumerate(part.tolist()):
        members[r].append(a)
    stuck: set[int] = set()
    for _ in range(8 * len(cost) + ranks):
        heavy = np.flatnonzero(load > limit)
        over = [int(r) for r in heavy[np.argsort(-load[heavy])] if int(r) not in stuck]
        if not over:
            break
        r = over[0]
        cold = [int(d) for d in np.argsort(load)[:coldest] if d != r]
        step = (_best_move(r, part, cost, load, limit, members, graph)
                or _best_swap(r, cost, load, limit, members, cold)
                or _improving_step(r, cost, load, members, cold))
        if step is None:
            stuck.add(r)
            continue
        for a, src, dst in step:
            members[src].remove(a)
            members[dst].append(a)
            part[a] = dst
            load[src] -= cost[a]
            load[dst] += cost[a]
    return part


def _best_move(r, part, cost, load, limit, members, graph):
    """[(atom, r, destination)]: the move within the limit losing the least traffic."""
    ip, ix, wd = graph.indptr, graph.indices, graph.data
    cold = int(np.argmin(load))
    best = None
    for a in members[r]:
        c = cost[a]
        nb, w = ix[ip[a]:ip[a + 1]], wd[ip[a]:ip[a + 1]]
        pn = part[nb]
        inside = w[pn == r].sum()
        gain, dest = -inside, cold
        if len(nb):
            conn = np.bincount(pn, weights=w, minlength=len(load))
            conn[r] = -np.inf
            conn[load + c > limit] = -np.inf
            d = int(np.argmax(conn))
            if np.isfinite(conn[d]) and conn[d] - inside >= gain:
                gain, dest = conn[d] - inside, d
        if dest != r and load[dest] + c <= limit and (best is None or gain > best[0]):
            best = (gain, a, dest)
    return None if best is None else [(best[1], r, best[2])]


def _best_swap(r, cost, load, limit, members, cold):
    """[(a, r, d), (b, d, r)]: the swap with the smallest transfer that removes r's excess
    and keeps d within the limit."""
    excess = load[r] - limit
    best = None
    for d in cold:
        if not members[d]:
            continue
        room = limit - load[d]
        cb = cost[members[d]]
        for a in members[r]:
            delta = cost[a] - cb  # moved from r to d by swapping a with each b
            ok = (delta >= excess) & (delta <= room)
            if ok.any():
                k = int(np.flatnonzero(ok)[np.argmin(delta[ok])])
                if best is None or delta[k] < best[0]:
                    best = (float(delta[k]), a, d, members[d][k])
    if best is None:
        return None
    _, a, d, b = best
    return [(a, r, d), (b, d, r)]


def _improving_step(r, cost, load, members, cold):
    """The move (to a cold rank) or swap that most lowers max(load[r], load[d]) below
    load[r], or None."""
    best = None  # (new pair max, steps)
    for d in cold:
        for a in members[r]:
            deltas = [cost[a]] + [cost[a] - cost[b] for b in members[d]]
            for k, delta in enumerate(deltas):
                new = max(load[r] - delta, load[d] + delta)
                if delta > 0 and new < load[r] and (best is None or new < best[0]):
                    step = [(a, r, d)] + ([(members[d][k - 1], d, r)] if k else [])
                    best = (new, step)
    return None if best is None else best[1]
