"""Plan how a brain is split over P ranks, before anything is simulated.

``plan(spec, ranks)`` cuts a ``BrainSpec`` into *atoms*, weighs each atom by its compute
cost, estimates the spike traffic between atoms, assigns atoms to ranks with a graph
partitioner, and reports per-rank load and traffic and the message counts of direct and
two-level routing.  ``dtb partition`` (``add_partition_parser``/``run_partition``) prints
the same figures, so a user can size a cluster job before submitting it.

Atoms
    The atoms are the spec's *units* (regions, or grey-matter voxels): a unit kept whole
    on one rank keeps its unit-local synapses local, so only long-range synapses cross
    ranks (and the exchange window is the shortest tract delay, not the local delay).
    Relative to the mean rank cost ``T = total / P``:

    * a unit of cost c > ``max_atom * T`` (default T / 2) is cut into *blocks*, each
      holding the same share of every family of the unit: cut at fractions q_j of the
      unit, block j holds neurons ``round(q_j n) .. round(q_{j+1} n) - 1`` of each
      family's n neurons in it (``Atoms.first``, ``Atoms.sizes``).  If c >= T, the first
      ``floor(c / T)`` blocks cost T each and are *dedicated*: each gets a rank of its
      own, so a large unit spans as few ranks as it can.  The rest of the unit (or all of
      a unit lighter than T) is cut into ``ceil(rest / (max_atom T))`` equal blocks.  A
      block's unit-local inputs then partly come from other ranks; that traffic is
      counted, and the window shrinks to the unit-local delay.
    * consecutive light units of the same region are merged into one atom while the
      merged cost stays under ``chunk * T`` (default T / 32), so that a 200,000-voxel
      brain on 16 ranks is partitioned as a few hundred atoms, not 200,000; merging never
      crosses a region boundary and never breaks a unit.
    * if the atoms are too coarse to balance (the largest rank still above ``balance``
      times the mean after partitioning), ``max_atom`` and ``chunk`` are halved and the
      partition redone, at most ``MAX_REFINE`` times.

Cost (arbitrary units, about "operations per second of model time"; ``Costs``)
    ``cost = neurons * update * 1000 / dt_ms + synapses * synapse
    + synapses * rate_hz * event``: one unit per neuron update (10,000 per neuron per
    second at dt = 0.1 ms), one per stored incoming synapse (a memory term) and one per
    synaptic event (each incoming synapse sees ``rate_hz`` spikes a second).  With the
    DTB's in-degree of 100 and 5 Hz a neuron costs 10,000 + 100 + 500, so the neuron
    update dominates; with cortical in-degrees (10^4) the synaptic terms would.

Traffic (spikes per second that must be *sent* from one rank to another)
    Expected synapse counts follow the rules exactly: a long-range rule gives a target
    unit u of region h ``k_u n_u`` synapses, their source region v drawn with probability
    ``p_h(v)`` (the connectome row of h, restricted to regions where the source family
    has neurons, normalised) and the source neuron uniformly among the source family's
    neurons of v; a unit-local rule draws its ``k_u n_u`` sources uniformly in the same
    unit.  A spike crosses to a rank once if *any* of the neuron's targets is there, not
    once per synapse: a pool of ``n`` equivalent source neurons with ``s`` expected
    synapses onto a rank is expected to need ``n (1 - exp(-s / n))`` of its neurons sent
    there (each neuron's synapse count onto the rank is Poisson with mean s/n).  The
    neurons of one family and region on one rank form such a pool exactly, because
    long-range sources are uniform within a region; a cut unit's blocks add their
    unit-local synapses to the same neurons' count.  Traffic = that number times the
    firing rate (``rate_hz``, default 5 Hz, the same for every neuron), 8 bytes a spike.
    ``cut`` = spikes sent to other ranks / spikes delivered to ranks (own rank included:
    every spike is needed by its own rank and by each other rank with a target);
    ``cut_synapses`` = the fraction of synapses whose source is on another rank.
    tests/test_partition.py checks both, and the per-rank figures, against every
    synapse of a generated network.

Assignment
    ``method="metis"``: dedicated blocks get a rank each; the other atoms are partitioned
    over the remaining ranks by METIS k-way (pymetis) with vertex weight = cost and
    edge weight = the traffic two atoms exchange (both ways) plus, between atoms of one
    region, the traffic they save by sharing a rank (their common sources are then sent
    once).  METIS gets a tolerance of ``balance - 1`` (3 %); a greedy pass then moves (or
    swaps) atoms off ranks still above ``balance`` times the mean, choosing the move that
    loses the least traffic, and ranks are numbered in unit order so that a node's
    ranks hold neighbouring units.  All atom pairs are edges up to ``max_edges``; beyond,
    each edge class (a region pair, a region, a cut unit) gets a share of ``max_edges``
    by its traffic and its pairs are sampled with probability proportional to the two
    atoms' traffic, each sample carrying total / samples, so every cut keeps its expected
    weight (see ``atom_graph``).  The report always uses the exact model.
    Why METIS rather than KaHIP: both are maintained and ship manylinux wheels (pymetis,
    kahip).  On these graphs METIS took 1.3 s for 256 parts of the 8,230-atom voxel
    graph where KaHIP's "fast" preset took 11 s and "eco" 224 s, for cuts within 0.1 %
    of METIS's (model cut 0.9369 METIS, 0.9376 fast, 0.9367 eco); on the 16-rank region
    graph KaHIP "strong" cut 0.5 % less in 200 times the time.  KaHIP also takes 32-bit
    weights only, too few for 10^5 atoms with fine cost resolution.  METIS partitions
    165,000 atoms into 14,012 parts in about half a minute (benchmarks/partition.py).
    ``method="contiguous"``: units in order, the cumulative cost cut at every multiple
    of T (a unit straddling a cut is cut there) — the baseline a graph partitioner must
    beat; it balances exactly but cuts a unit at almost every rank boundary.

Messages (per rank per exchange window)
    A rank sends one message per window to every rank it has a synapse onto (even an
    empty one: receivers must know when a window is complete) and receives one from every
    rank with a synapse onto it; the expected count of each message is the probability
    ``1 - exp(-s)`` that at least one of the ``s`` expected synapses it serves exists.
    ``direct``: messages = sends + receives.  ``two-level``: ranks are grouped into nodes
    of G consecutive ranks (default ``round(sqrt(P))``); the first rank of each group is
    its relay.  Inside a group ranks exchange directly; a spike needed in another group
    goes rank -> own relay -> the other group's relay -> ranks there, one message per
    window for each (relay, relay) pair of groups with any synapse between them, and the
    member <-> relay messages carry intra-group and relayed spikes together
    (``message_counts`` is the reference definition).  With dense long-range
    connectivity a member handles 2 (G - 1) messages and a relay 2 (G - 1) +
    2 (P / G - 1): O(sqrt P) either way, against 2 (P - 1) direct.  The window is the
    smallest delay of a synapse that crosses ranks (``window_ms``); direct peer counts
    are exact up to ``EXACT_PEERS_MAX`` ranks and estimated from ``PEER_SAMPLE`` sampled
    target ranks beyond (everything else stays exact).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import ConfigError

METHODS = ("metis", "contiguous")
ROUTINGS = ("direct", "two-level")
MAX_RANKS = 10**6
BYTES_PER_SPIKE = 8
DEFAULT_RATE_HZ = 5.0
EXACT_PEERS_MAX = 20_000  # above this many ranks, direct peer counts are sampled
MAX_REFINE = 3  # times atoms are halved when they are too coarse to balance
PEER_SAMPLE = 2048  # target ranks sampled for direct peer counts above EXACT_PEERS_MAX
METIS_SCALE = 2**20  # integer resolution of METIS vertex and edge weights


# --- cost --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Costs:
    """Cost constants: per neuron update (``update``, at time step ``dt_ms``), per stored
    synapse (``synapse``) and per synaptic event (``event``); see the module docstring.
    ``message``: the overhead of one message, in spikes of 8 bytes (1024: 8 KiB, about a
    microsecond of network latency at 8 GB/s), which the partitioner weighs against
    traffic when it decides how compactly to keep each region."""

    update: float = 1.0
    synapse: float = 1.0
    event: float = 1.0
    dt_ms: float = 0.1
    message: float = 1024.0

    def of(self, neurons: np.ndarray, synapses: np.ndarray, rate_hz: float) -> np.ndarray:
        """Cost per second of model time of atoms with these neurons and synapses."""
        n = np.asarray(neurons, float)
        s = np.asarray(synapses, float)
        return n * self.update * (1000.0 / self.dt_ms) + s * (self.synapse +
                                                              rate_hz * self.event)


# --- the spec, as arrays -----------------------------------------------------------------

@dataclass
class _Model:
    """The spec's numbers the planner needs (F families, U units, G regions).

    sizes (F, U) neurons; region (U,); region_neurons (F, G); lr: long-range rules as
    (source family, target family, k (U,), p (G, G) normalised source probabilities,
    delay_low ms); local: unit-local rules as (source, target, k (U,), delay_low);
    conduction_ms (G, G).
    """

    families: list[str]
    sizes: np.ndarray
    region: np.ndarray
    n_regions: int
    region_neurons: np.ndarray
    lr: list[tuple[int, int, np.ndarray, np.ndarray, float]]
    local: list[tuple[int, int, np.ndarray, float]]
    conduction_ms: np.ndarray

    @property
    def n_fam(self) -> int:
        return len(self.families)

    def unit_synapses(self) -> np.ndarray:
        """(U,) incoming synapses of each unit (all rules)."""
        out = np.zeros(self.sizes.shape[1])
        for _, t, k, *_ in self.lr:
            out += k * self.sizes[t]
        for _, t, k, _ in self.local:
            out += k * self.sizes[t]
        return out


def _delay_low(v: Any) -> float:
    """The smallest delay (ms) a rule's delay setting can give."""
    from dtb.brain.spec import _dist
    from dtb.network import as_dist

    return float(max(0.0, as_dist(_dist(v)).bounds()[0]))


def _model(spec) -> _Model:
    names = [f.name for f in spec.families]
    idx = {n: i for i, n in enumerate(names)}
    sizes = np.array([np.asarray(f.sizes, np.int64) for f in spec.families]).reshape(
        len(names), spec.n_units)
    region = np.asarray(spec.unit_region, np.int64)
    g = len(spec.region_labels)
    reg_n = np.array([np.bincount(region, weights=s, minlength=g) for s in sizes]).reshape(
        len(names), g)
    w = np.asarray(spec.weights, float)
    lr, local = [], []
    for r in spec.rules:
        s, t, k = idx[r.source], idx[r.target], np.asarray(r.k, float)
        if r.kind == "unit_local":
            local.append((s, t, k, _delay_low(r.delay)))
            continue
        p = np.where(reg_n[s][None, :] > 0, w, 0.0)
        tot = p.sum(axis=1, keepdims=True)
        p = np.divide(p, tot, out=np.zeros_like(p), where=tot > 0)
        lr.append((s, t, k, p, _delay_low(r.delay)))
    return _Model(names, sizes, region, g, reg_n, lr, local,
                  np.asarray(spec.conduction_ms, float))


# --- atoms -------------------------------------------------------------------------------

@dataclass
class Atoms:
    """What is placed on ranks: A atoms, each either a run of whole units
    ``unit_lo .. unit_hi - 1`` of one region (``pieces == 1``) or block ``piece`` of
    ``pieces`` of the single unit ``unit_lo`` (``unit_hi = unit_lo + 1``), holding
    neurons ``first[f] .. first[f] + sizes[f] - 1`` of each family f within that unit.

    sizes, first (F, A) neurons per family; region (A,); synapses (A,) incoming; cost (A,);
    dedicated (A,) bool: a block that fills one rank by itself.
    """

    unit_lo: np.ndarray
    unit_hi: np.ndarray
    piece: np.ndarray
    pieces: np.ndarray
    region: np.ndarray
    sizes: np.ndarray
    first: np.ndarray
    synapses: np.ndarray
    cost: np.ndarray
    dedicated: np.ndarray

    def __len__(self) -> int:
        return len(self.unit_lo)

    @property
    def neurons(self) -> np.ndarray:
        return self.sizes.sum(axis=0)

    def subset(self, idx: np.ndarray) -> Atoms:
        """The atoms idx (in that order; a cut unit's blocks must stay consecutive)."""
        return Atoms(*(x[..., idx] for x in (
            self.unit_lo, self.unit_hi, self.piece, self.pieces, self.region, self.sizes,
            self.first, self.synapses, self.cost, self.dedicated)))


def _per_atom(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of per-unit values (U,) or (F, U) over the units lo..hi-1 of each atom."""
    cs = np.zeros(values.shape[:-1] + (values.shape[-1] + 1,))
    np.cumsum(values, axis=-1, out=cs[..., 1:])
    return cs[..., hi] - cs[..., lo]


def _cut_points(cost: float, target: float, max_atom: float) -> tuple[np.ndarray, int]:
    """Where a heavy unit is cut, as fractions 0 = q_0 < ... < q_b = 1, and how many of
    its leading blocks are dedicated: floor(cost / T) blocks of cost T each fill a rank,
    and the remainder is cut into equal blocks of at most max_atom T."""
    k = int(math.floor(cost / target * (1 + 1e-12))) if cost >= target else 0
    rem = cost - k * target
    if rem < 1e-6 * target:
        rem, q_full = 0.0, np.linspace(0.0, 1.0, k + 1)
    else:
        q_full = np.arange(k + 1) * (target / cost)
    n_rem = int(math.ceil(rem / (max_atom * target))) if rem > 0 else 0
    q_rem = q_full[-1] + np.arange(1, n_rem + 1) * (rem / cost / max(n_rem, 1))
    q = np.concatenate([q_full, q_rem])
    q[-1] = 1.0
    return q, k


def make_atoms(m: _Model, unit_cost: np.ndarray, ranks: int, max_atom: float = 0.5,
               chunk: float = 1 / 32, costs: Costs | None = None,
               rate_hz: float = DEFAULT_RATE_HZ) -> Atoms:
    """Cut heavy units into blocks and merge light ones into chunks (module docstring).

    unit_cost (U,) in cost units; max_atom and chunk are fractions of the mean rank cost
    T.  A unit heavier than max_atom T is cut; one of cost c >= T first gives
    floor(c / T) blocks of cost T, each *dedicated* to a rank of its own, and its
    remainder is cut like a lighter unit.  Blocks without neurons are dropped.
    """
    costs = costs or Costs()
    n_u = unit_cost.shape[0]
    target = unit_cost.sum() / ranks
    heavy = unit_cost > max_atom * target
    # chunk keys: runs of light units of one region, cut every `chunk * target` of cost
    brk = np.ones(n_u, bool)
    brk[1:] = (m.region[1:] != m.region[:-1]) | heavy[1:] | heavy[:-1]
    cap = chunk * target
    if cap > 0:
        run = np.cumsum(brk) - 1
        cum = np.concatenate([[0.0], np.cumsum(np.where(heavy, 0.0, unit_cost))])
        start = cum[np.flatnonzero(brk)][run]
        key = np.floor((cum[:-1] - start) / cap).astype(np.int64)
        brk[1:] |= key[1:] != key[:-1]
    else:
        brk[:] = True
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], n_u)
    lo, hi, piece, pieces, first, sizes, ded = [], [], [], [], [], [], []
    light = ~heavy[starts]
    ls, le = starts[light], ends[light]
    lo.append(ls)
    hi.append(le)
    piece.append(np.zeros(len(ls), np.int64))
    pieces.append(np.ones(len(ls), np.int64))
    first.append(np.zeros((m.n_fam, len(ls)), np.int64))
    sizes.append(np.rint(_per_atom(m.sizes.astype(float), ls, le)).astype(np.int64))
    ded.append(np.zeros(len(ls), bool))
    for u in starts[~light]:
        q, k = _cut_points(float(unit_cost[u]), target, max_atom)
        bounds = np.rint(q[None, :] * m.sizes[:, u:u + 1]).astype(np.int64)
        bounds[:, -1] = m.sizes[:, u]
        sz = np.diff(bounds, axis=1)
        keep = sz.sum(axis=0) > 0
        nb = int(keep.sum())
        lo.append(np.full(nb, u))
        hi.append(np.full(nb, u + 1))
        piece.append(np.arange(nb))
        pieces.append(np.full(nb, nb))
        first.append(bounds[:, :-1][:, keep])
        sizes.append(sz[:, keep])
        ded.append((np.arange(len(keep)) < k)[keep] if nb > 1 else np.zeros(nb, bool))
    lo_a, hi_a = np.concatenate(lo), np.concatenate(hi)
    order = np.argsort(lo_a, kind="stable")  # unit order; a unit's blocks stay in order
    lo_a, hi_a = lo_a[order], hi_a[order]
    piece_a, pieces_a = np.concatenate(piece)[order], np.concatenate(pieces)[order]
    first_a = np.concatenate(first, axis=1)[:, order]
    sizes_a = np.concatenate(sizes, axis=1)[:, order]
    ded_a = np.concatenate(ded)[order]
    return _atoms_from(m, lo_a, hi_a, piece_a, pieces_a, first_a, sizes_a, ded_a, costs,
                       rate_hz)


def _atoms_from(m: _Model, lo, hi, piece, pieces, first, sizes, dedicated, costs: Costs,
                rate_hz: float) -> Atoms:
    """Atoms with their synapses and cost."""
    whole = pieces == 1
    syn = np.zeros(len(lo))
    for _, t, k, *_ in m.lr + [(s, t, k, None) for s, t, k, _ in m.local]:
        syn[whole] += _per_atom(k * m.sizes[t], lo[whole], hi[whole])
        syn[~whole] += k[lo[~whole]] * sizes[t, ~whole]
    return Atoms(lo, hi, piece, pieces, m.region[lo], sizes, first, syn,
                 costs.of(sizes.sum(axis=0), syn, rate_hz), dedicated)


# --- the atom graph ----------------------------------------------------------------------

def _lr_weights(m: _Model, at: Atoms) -> list[np.ndarray]:
    """Per long-range rule, K (A,): the rule's incoming synapses of every atom."""
    whole = at.pieces == 1
    out = []
    for _, t, k, _, _ in m.lr:
        kk = np.empty(len(at))
        kk[whole] = _per_atom(k * m.sizes[t], at.unit_lo[whole], at.unit_hi[whole])
        kk[~whole] = k[at.unit_lo[~whole]] * at.sizes[t, ~whole]
        out.append(kk)
    return out


def _source_z(m: _Model, at: Atoms, kw: list[np.ndarray], v: int, f: int) -> np.ndarray:
    """(A,) expected long-range synapses from one neuron of family f in region v onto
    each atom."""
    z = np.zeros(len(at))
    if m.region_neurons[f, v] <= 0:
        return z
    for (s, _, _, p, _), kk in zip(m.lr, kw, strict=True):
        if s == f:
            z += p[at.region, v] * kk
    return z / m.region_neurons[f, v]


def _region_members(at: Atoms, n_regions: int) -> list[np.ndarray]:
    order = np.argsort(at.region, kind="stable")
    bounds = np.searchsorted(at.region[order], np.arange(n_regions + 1))
    return [order[bounds[g]:bounds[g + 1]] for g in range(n_regions)]


@dataclass
class _EdgeClass:
    """Atom pairs whose traffic the graph must carry: pairs (a, b) of ``a`` x ``b``
    (``b`` None: unordered pairs within ``a``) with weight ``total * fa fb / sum(fa fb)``
    (spikes/s), or the exact matrix ``exact`` (|a|, |b|) where it is known."""

    a: np.ndarray
    b: np.ndarray | None
    fa: np.ndarray
    fb: np.ndarray
    total: float
    exact: np.ndarray | None = None

    @property
    def candidates(self) -> int:
        n = len(self.a)
        return n * (n - 1) // 2 if self.b is None else n * len(self.b)


def _lr_classes(m: _Model, at: Atoms, rate_hz: float, members: list[np.ndarray],
                keep_exact: bool, compact: np.ndarray | None = None) -> list[_EdgeClass]:
    """Long-range traffic per ordered region pair (v -> h), and per region h the traffic
    its atoms save by sharing a rank (their sources are then sent once, not once per
    atom: sum_i e_i - (1 - exp(-sum_i z_i)) per source neuron, capped at the pairwise
    sum of e_i e_j that the graph's pairs can represent), plus ``compact`` (G,): the
    messages it saves (see ``compactness``)."""
    kw = _lr_weights(m, at)
    k_lr = np.sum(kw, axis=0) if kw else np.zeros(len(at))
    out: list[_EdgeClass] = []
    saving = np.zeros(m.n_regions)
    pairwise = np.zeros(m.n_regions)
    for v in range(m.n_regions):
        src = members[v]
        e = np.zeros((m.n_fam, len(at)))  # probability a neuron of (v, f) reaches an atom
        for f in range(m.n_fam):
            z = _source_z(m, at, kw, v, f)
            e[f] = -np.expm1(-z)
            zs = np.bincount(at.region, weights=z, minlength=m.n_regions)
            es = np.bincount(at.region, weights=e[f], minlength=m.n_regions)
            e2 = np.bincount(at.region, weights=e[f] ** 2, minlength=m.n_regions)
            n_vf = rate_hz * m.region_neurons[f, v]
            saving += n_vf * (es + np.expm1(-zs))
            pairwise += n_vf * 0.5 * (es ** 2 - e2)
        if not len(src):
            continue
        n_src = at.sizes[:, src].astype(float)  # (F, |src|)
        for h in range(m.n_regions):
            dst = members[h]
            ed = e[:, dst]
            if not len(dst) or not ed.any():
                continue
            fa = n_src.T @ ed.sum(axis=1)  # exact marginals of the (src, dst) matrix
            fb = n_src.sum(axis=1) @ ed
            tot = rate_hz * float(fa.sum())
            if tot <= 0:
                continue
            mat = rate_hz * (n_src.T @ ed) if keep_exact else None
            out.append(_EdgeClass(src, dst, fa, fb, tot, mat))
    share = np.minimum(np.maximum(saving, 0.0), pairwise)
    if compact is not None:
        share = share + compact
    for h, ids in enumerate(members):
        if len(ids) > 1 and share[h] > 0 and k_lr[ids].sum() > 0:
            out.append(_EdgeClass(ids, None, k_lr[ids], k_lr[ids], float(share[h])))
    return out


def _cut_groups(at: Atoms) -> list[np.ndarray]:
    """Indices of the blocks of each cut unit (blocks of a unit are consecutive)."""
    cut = np.flatnonzero(at.pieces > 1)
    if not len(cut):
        return []
    brk = np.flatnonzero(np.diff(at.unit_lo[cut]) != 0) + 1
    return np.split(cut, brk)


def _block_classes(m: _Model, at: Atoms, rate_hz: float) -> list[_EdgeClass]:
    """Unit-local traffic among the blocks of each cut unit (spikes/s, both ways)."""
    out = []
    for ids in _cut_groups(at):
        u = int(at.unit_lo[ids[0]])
        tot = 0.0
        for s, t, k, _ in m.local:
            if m.sizes[s, u] <= 0 or k[u] <= 0:
                continue
            e = -np.expm1(-k[u] * at.sizes[t, ids] / m.sizes[s, u])
            n = at.sizes[s, ids].astype(float)
            tot += rate_hz * float(n.sum() * e.sum() - n @ e)  # ordered pairs a != b
        f = at.sizes[:, ids].sum(axis=0).astype(float)
        if tot > 0 and f.sum() > 0:
            out.append(_EdgeClass(ids, None, f, f, tot))
    return out


def _class_edges(c: _EdgeClass, n: int | None, rng) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """The class's edges: all pairs (n None) or n pairs drawn with probability
    proportional to fa fb, each carrying total / n (an unbiased estimate of every cut)."""
    if n is None:
        if c.exact is not None:
            i, j = np.nonzero(c.exact)
            return c.a[i], c.b[j], c.exact[i, j]
        if c.b is None:
            i, j = np.triu_indices(len(c.a), 1)
            w = c.fa[i] * c.fa[j]
            return c.a[i], c.a[j], c.total * w / w.sum()
        w = np.outer(c.fa, c.fb)
        i, j = np.nonzero(w)
        return c.a[i], c.b[j], c.total * w[i, j] / w.sum()
    pa = c.fa / c.fa.sum()
    pb = c.fb / c.fb.sum()
    i = rng.choice(len(c.a), n, p=pa)
    j = rng.choice(len(c.a) if c.b is None else len(c.b), n, p=pb)
    if c.b is None:
        keep = i != j
        i, j = i[keep], j[keep]
        return c.a[i], c.a[j], np.full(len(i), c.total / max(1, len(i)))
    return c.a[i], c.b[j], np.full(n, c.total / n)


def compactness(m: _Model, unit_cost: np.ndarray, ranks: int, message: float,
                rate_hz: float) -> np.ndarray:
    """(G,) spikes/s: the weight of keeping each region's atoms together, in spike
    equivalents of the messages it saves.

    Every extra rank a region h is spread over exchanges about ``2 P phi_h`` more
    messages per window, phi_h the cost share of the regions h sends to or receives from
    (their ranks are its peers); at ``1000 / window`` windows a second (the shortest
    tract delay) and ``message`` spikes a message that is ``term_h`` spikes/s.  The
    graph spreads a region's weight W over all pairs of its atoms, so cutting it into k
    parts costs ``W (1 - 1 / k)``; W = term_h max(2, m_h^2), m_h the ranks the region
    needs at least, makes the last cut cost term_h, as the messages say."""
    g = m.n_regions
    if message <= 0 or ranks <= 1:
        return np.zeros(g)
    conn = np.zeros((g, g), bool)
    window = math.inf
    for *_, p, d in m.lr:
        conn |= p > 0
        if np.any(p > 0):
            window = min(window, d + float(m.conduction_ms[p > 0].min()))
    if not math.isfinite(window):  # no long-range rules: nothing to keep together
        return np.zeros(g)
    conn = conn | conn.T
    np.fill_diagonal(conn, False)
    c_reg = np.bincount(m.region, weights=unit_cost, minlength=g)
    phi = (conn.astype(float) @ c_reg) / c_reg.sum()
    term = message * (1000.0 / max(window, 1e-3)) * 2.0 * ranks * phi
    need = c_reg / (c_reg.sum() / ranks)
    return term * np.maximum(2.0, need ** 2)


def atom_graph(m: _Model, at: Atoms, rate_hz: float, max_edges: int = 4_000_000,
               seed: int = 0, compact: np.ndarray | None = None):
    """The symmetric atom graph (scipy CSR, spikes/s both ways) and whether its edges are
    exact (all atom pairs) or sampled.

    Edge classes: long-range traffic per region pair, the shared-source saving within
    each region, and the unit-local traffic among a cut unit's blocks.  When all their
    atom pairs number at most ``max_edges`` every pair is an edge with its own weight.
    Otherwise each class gets a share of ``max_edges`` in proportion to its traffic (at
    least one edge per atom of a region's own class, which keeps regions connected) and
    its pairs are *sampled* with probability proportional to the product of the two
    atoms' marginal traffic, each edge carrying total / samples: then the expected
    weight of every cut equals the model's, as in spectral sparsification.  (Replacing a
    region pair by a few "representative" edges with the pair's whole traffic would not
    do: it tells the partitioner that putting those two atoms together saves all of it.)
    """
    import scipy.sparse as sp

    members = _region_members(at, m.n_regions)
    count = np.array([len(x) for x in members], float)
    lr_pairs = sum(float(count @ (p > 0).T @ count) for *_, p, _ in m.lr)
    exact = lr_pairs + float(count @ count) / 2 <= 2 * max_edges
    classes = _lr_classes(m, at, rate_hz, members, keep_exact=exact, compact=compact)
    classes += _block_classes(m, at, rate_hz)
    cand = np.array([c.candidates for c in classes], float)
    exact = exact and cand.sum() <= max_edges
    rng = np.random.default_rng(seed)
    tot = np.array([c.total for c in classes])
    parts = []
    for c, n_c, t_c in zip(classes, cand, tot, strict=True):
        n = None
        if not exact:
            want = max_edges * t_c / tot.sum()
            if c.b is None:
                want = max(want, len(c.a))
            want = max(1, int(math.ceil(want)))
            n = None if want >= n_c else want
        parts.append(_class_edges(c, n, rng))
    n_at = len(at)
    if parts:
        i = np.concatenate([p[0] for p in parts])
        j = np.concatenate([p[1] for p in parts])
        w = np.concatenate([p[2] for p in parts])
    else:
        i = j = np.zeros(0, np.int64)
        w = np.zeros(0)
    g = sp.coo_matrix((w, (i, j)), shape=(n_at, n_at)).tocsr()
    g = (g + g.T).tocsr()
    g.setdiag(0.0)
    g.eliminate_zeros()
    return g, exact


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
    import pymetis

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
        over = np.flatnonzero(load > limit)
        over = [int(r) for r in over[np.argsort(-load[over])] if int(r) not in stuck]
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
    import scipy.sparse as sp

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
    sampled = ranks > EXACT_PEERS_MAX
    if sampled:
        rng = np.random.default_rng(seed)
        cols = np.sort(rng.choice(ranks, PEER_SAMPLE, replace=False))
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
    import scipy.sparse as sp

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
    import scipy.sparse as sp

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


# --- the plan ----------------------------------------------------------------------------

@dataclass
class Plan:
    """A partition plan: ``assignment`` (A,) rank of every atom (``atoms``), per-rank
    arrays (P,) and ``summary`` (the key figures; see ``to_dict``)."""

    ranks: int
    routing: str
    method: str
    ranks_per_node: int
    rate_hz: float
    seed: int
    atoms: Atoms
    assignment: np.ndarray
    neurons: np.ndarray
    synapses: np.ndarray
    cost: np.ndarray
    out_spikes_hz: np.ndarray
    in_spikes_hz: np.ndarray
    out_peers: np.ndarray
    in_peers: np.ndarray
    messages_direct: np.ndarray
    messages_two_level: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> np.ndarray:
        """Messages per rank per window of the plan's routing."""
        return self.messages_direct if self.routing == "direct" else self.messages_two_level

    def unit_ranks(self) -> list[np.ndarray]:
        """For each unit, the ranks holding (part of) it."""
        n_u = int(self.atoms.unit_hi.max()) if len(self.atoms) else 0
        out: list[list[int]] = [[] for _ in range(n_u)]
        for lo, hi, r in zip(self.atoms.unit_lo, self.atoms.unit_hi, self.assignment,
                             strict=True):
            for u in range(lo, hi):
                out[u].append(int(r))
        return [np.unique(np.array(x, np.int64)) for x in out]

    def local_ranges(self, rank: int, spec) -> dict[str, list[tuple[int, int]]]:
        """The neurons rank ``rank`` owns: per family, ranges ``(first, end)`` of indices
        within the family's population (``spec.to_network()`` numbering), merged."""
        at = self.atoms
        out: dict[str, list[tuple[int, int]]] = {}
        mine = np.flatnonzero(self.assignment == rank)
        for f, fam in enumerate(spec.families):
            off = np.concatenate([[0], np.cumsum(fam.sizes)])
            rngs = []
            for a in mine:
                lo, hi = int(at.unit_lo[a]), int(at.unit_hi[a])
                if at.pieces[a] == 1:
                    first, end = off[lo], off[hi]
                else:
                    first = off[lo] + at.first[f, a]
                    end = first + at.sizes[f, a]
                if end > first:
                    rngs.append((int(first), int(end)))
            out[fam.name] = _merge(sorted(rngs))
        return out

    def to_dict(self, per_rank: bool = True, atoms: bool = False) -> dict[str, Any]:
        """The summary, and (optionally) the per-rank arrays and the atom table, as plain
        JSON-able values."""
        d: dict[str, Any] = {"summary": self.summary}
        if per_rank:
            d["per_rank"] = {k: _jsonable(getattr(self, k)) for k in (
                "neurons", "synapses", "cost", "out_spikes_hz", "in_spikes_hz", "out_peers",
                "in_peers", "messages_direct", "messages_two_level")}
        if atoms:
            at = self.atoms
            d["atoms"] = {"unit_lo": at.unit_lo.tolist(), "unit_hi": at.unit_hi.tolist(),
                          "piece": at.piece.tolist(), "pieces": at.pieces.tolist(),
                          "first": at.first.tolist(), "sizes": at.sizes.tolist(),
                          "rank": self.assignment.tolist()}
        return d


def _merge(rngs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in rngs:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _jsonable(a: np.ndarray) -> list:
    return [None if not np.isfinite(x) else (int(x) if float(x).is_integer() else float(x))
            for x in np.asarray(a, float)]


def _stats(a: np.ndarray) -> dict[str, float]:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    if not len(a):
        return {"mean": math.nan, "max": math.nan}
    return {"min": float(a.min()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max()), "mean": float(a.mean())}


def _check(ranks: Any, routing: str, method: str, rate_hz: float, ranks_per_node: Any,
           balance: float, n_neurons: int) -> None:
    bad = []
    if isinstance(ranks, bool) or not isinstance(ranks, (int, np.integer)) or \
            not 1 <= ranks <= MAX_RANKS:
        bad.append(f"--ranks: {ranks!r} -- expected an integer from 1 to {MAX_RANKS:,}")
    elif ranks > n_neurons:
        bad.append(f"--ranks: {ranks} -- expected at most the brain's {n_neurons:,} neurons "
                   "(build it with more --neurons)")
    if routing not in ROUTINGS:
        bad.append(f"--routing: {routing!r} -- expected one of {', '.join(ROUTINGS)}")
    if method not in METHODS:
        bad.append(f"--method: {method!r} -- expected one of {', '.join(METHODS)}")
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
        bad.append(f"--rate: {rate_hz!r} -- expected a firing rate in Hz > 0")
    if ranks_per_node is not None and (isinstance(ranks_per_node, bool) or not isinstance(
            ranks_per_node, (int, np.integer)) or ranks_per_node < 1 or (
            isinstance(ranks, int) and ranks_per_node > ranks)):
        bad.append(f"--ranks-per-node: {ranks_per_node!r} -- expected an integer from 1 to "
                   f"the number of ranks ({ranks})")
    if not (math.isfinite(balance) and balance >= 1.0):
        bad.append(f"balance: {balance!r} -- expected a factor >= 1")
    if bad:
        raise ConfigError(bad, "dtb partition")


def plan(spec, ranks: int, routing: str = "direct", method: str = "metis",
         rate_hz: float = DEFAULT_RATE_HZ, ranks_per_node: int | None = None, seed: int = 0,
         costs: Costs | None = None, max_atom: float = 0.5, chunk: float = 1 / 32,
         balance: float = 1.03, max_edges: int = 4_000_000) -> Plan:
    """Partition ``spec`` (a BrainSpec) over ``ranks`` ranks and estimate the load and
    traffic of every rank (see the module docstring for the model).

    routing: "direct" or "two-level" (the plan's ``messages``; both are always reported);
    method: "metis" or "contiguous"; rate_hz: mean firing rate assumed for traffic and
    events; ranks_per_node: group size G of two-level routing (default round(sqrt P));
    seed: METIS's random seed (the plan is deterministic for a given seed);
    costs: the cost constants; max_atom, chunk: atom sizes as fractions of the mean rank
    cost; balance: the largest rank cost allowed, as a multiple of the mean (atoms are
    refined until it is met, see the module docstring); max_edges: the atom graph's edge
    budget (above it, edges are sampled).
    Raises ConfigError for invalid arguments (naming the flag).
    """
    _check(ranks, routing, method, rate_hz, ranks_per_node, balance, spec.n_neurons)
    ranks = int(ranks)
    costs = costs or Costs()
    per_node = int(ranks_per_node) if ranks_per_node is not None else \
        max(1, min(ranks, round(math.sqrt(ranks))))
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    m = _model(spec)
    unit_cost = costs.of(m.sizes.sum(axis=0), m.unit_synapses(), rate_hz)
    size = max_atom
    for attempt in range(MAX_REFINE + 1):
        if method == "contiguous":
            t = time.perf_counter()
            at, part = contiguous_atoms(m, unit_cost, ranks, costs, rate_hz)
            graph = dense = None
            _tick(wall, "contiguous_s", t)
            break
        at = make_atoms(m, unit_cost, ranks, size, min(chunk, size / 4), costs, rate_hz)
        part, graph, dense = _assign(m, at, ranks, rate_hz, seed, balance, max_edges, wall,
                                     compactness(m, unit_cost, ranks, costs.message, rate_hz))
        load = np.bincount(part, weights=at.cost, minlength=ranks)
        if load.max() <= balance * load.mean() * (1 + 1e-9) or attempt == MAX_REFINE:
            break
        size /= 2  # atoms too coarse to balance: halve them and start again
    wall["total_s"] = time.perf_counter() - t0
    wall["attempts"] = attempt + 1
    t = time.perf_counter()
    p = _evaluate(m, at, part, ranks, per_node, rate_hz, seed)
    wall["evaluate_s"] = time.perf_counter() - t
    wall["total_s"] += wall["evaluate_s"]
    summary = _summary(spec, m, at, part, p, ranks, routing, method, per_node, rate_hz, seed,
                       graph, dense, wall)
    return Plan(ranks, routing, method, per_node, float(rate_hz), seed, at, part,
                p["neurons"], p["synapses"], p["cost"], p["out"], p["in"], p["out_peers"],
                p["in_peers"], p["direct"], p["two_level"], summary)


def _assign(m: _Model, at: Atoms, ranks: int, rate_hz: float, seed: int, balance: float,
            max_edges: int, wall: dict[str, float], compact: np.ndarray | None = None):
    """METIS: the rank of every atom (dedicated blocks get a rank each, the rest are
    partitioned over the remaining ranks), the atom graph and whether it is exact; adds
    the stages' wall times to ``wall``."""
    if ranks == 1:
        return np.zeros(len(at), np.int64), None, None
    ded = np.flatnonzero(at.dedicated)
    rest = np.flatnonzero(~at.dedicated)
    part = np.empty(len(at), np.int64)
    part[ded] = np.arange(len(ded))  # a rank each
    free = ranks - len(ded)
    graph, dense = None, None
    if len(rest) and free < 1:  # only rounding crumbs left: share them out
        part[rest] = np.arange(len(rest)) % ranks
    elif len(rest):
        sub = at.subset(rest)
        t = time.perf_counter()
        graph, dense = atom_graph(m, sub, rate_hz, max_edges, seed, compact)
        _tick(wall, "graph_s", t)
        t = time.perf_counter()
        sp = _metis(graph, sub.cost, free, seed, ufactor=round(1000 * (balance - 1)))
        _tick(wall, "metis_s", t)
        t = time.perf_counter()
        sp = _rebalance(sp, sub.cost, graph, free, balance * at.cost.sum() / ranks)
        _tick(wall, "rebalance_s", t)
        part[rest] = len(ded) + sp
    return _renumber(part, at, ranks), graph, dense


def _tick(wall: dict[str, float], key: str, t: float) -> None:
    wall[key] = wall.get(key, 0.0) + time.perf_counter() - t


def _renumber(part: np.ndarray, at: Atoms, ranks: int) -> np.ndarray:
    """Number METIS's parts in order of their atoms' mean position in unit order, so that
    consecutive ranks (one node in two-level routing) hold neighbouring units."""
    pos = at.unit_lo + (at.piece + 0.5) / at.pieces
    w = np.maximum(at.cost, 1e-300)
    mean = np.bincount(part, weights=w * pos, minlength=ranks) / np.maximum(
        np.bincount(part, weights=w, minlength=ranks), 1e-300)
    new = np.empty(ranks, np.int64)
    new[np.lexsort((np.arange(ranks), mean))] = np.arange(ranks)
    return new[part]


def _evaluate(m: _Model, at: Atoms, part: np.ndarray, ranks: int, per_node: int,
              rate_hz: float, seed: int) -> dict[str, Any]:
    rm = _rank_model(m, at, part, ranks, rate_hz)
    tr = _traffic(rm, ranks, rate_hz)
    msg = _messages(rm, ranks, per_node, seed)
    lr_total = float(np.asarray(rm.npool.sum(axis=0)).ravel() @ rm.z.sum(axis=1))
    lr_local = float(np.asarray(rm.npool.multiply(rm.z.T).sum()))
    return {"neurons": np.bincount(part, weights=at.neurons, minlength=ranks),
            "synapses": np.bincount(part, weights=at.synapses, minlength=ranks),
            "cost": np.bincount(part, weights=at.cost, minlength=ranks),
            "out": tr["out"], "in": tr["in"], "local": tr["local"],
            "cross_synapses": lr_total - lr_local + float(rm.cross_s.sum()),
            "window_ms": _window_ms(m, at, part), **msg}


def _summary(spec, m: _Model, at: Atoms, part, p, ranks, routing, method, per_node, rate_hz,
             seed, graph, dense, wall) -> dict[str, Any]:
    def imb(x):
        mean = x.sum() / ranks
        return float(x.max() / mean) if mean > 0 else 1.0

    sent = float(p["out"].sum())
    delivered = sent + float(p["local"].sum())
    n_syn = float(at.synapses.sum())
    win = p["window_ms"]
    cut_units = at.pieces > 1
    s = {
        "ranks": ranks, "method": method, "routing": routing, "ranks_per_node": per_node,
        "groups": p["groups"], "rate_hz": rate_hz, "seed": seed, "level": spec.level,
        "units": int(spec.n_units), "regions": int(m.n_regions),
        "neurons": int(at.neurons.sum()), "synapses": n_syn,
        "atoms": len(at), "units_cut": int(len(np.unique(at.unit_lo[cut_units]))),
        "max_blocks_per_unit": int(at.pieces.max()) if len(at) else 0,
        "imbalance": imb(p["cost"]), "imbalance_neurons": imb(p["neurons"]),
        "imbalance_synapses": imb(p["synapses"]),
        "cut": sent / delivered if delivered > 0 else 0.0,
        "cut_synapses": p["cross_synapses"] / n_syn if n_syn > 0 else 0.0,
        "traffic_spikes_per_s": sent, "traffic_bytes_per_s": sent * BYTES_PER_SPIKE,
        "window_ms": win,
        "out_spikes_per_s": _stats(p["out"]), "in_spikes_per_s": _stats(p["in"]),
        "out_peers": _stats(p["out_peers"]), "in_peers": _stats(p["in_peers"]),
        "messages_direct": _stats(p["direct"]), "messages_two_level": _stats(p["two_level"]),
        "messages": _stats(p["direct"] if routing == "direct" else p["two_level"]),
        "peers_sampled_ranks": p["peers_sampled"],
        "neurons_per_rank": _stats(p["neurons"]), "synapses_per_rank": _stats(p["synapses"]),
        "cost_per_rank": _stats(p["cost"]),
        "wall_s": wall,
    }
    if graph is not None:
        s["graph"] = {"vertices": len(at), "edges": int(graph.nnz // 2),
                      "edges_exact": bool(dense)}
    if win:
        s["windows_per_s"] = 1000.0 / win
        s["messages_per_s"] = {"direct": s["messages_direct"]["mean"] * 1000.0 / win,
                               "two_level": s["messages_two_level"]["mean"] * 1000.0 / win}
    return s


# --- command line ------------------------------------------------------------------------

def add_partition_parser(sub: Any) -> None:
    """Add ``dtb partition`` to an argparse subparsers object."""
    p = sub.add_parser(
        "partition", help="plan how a brain is split over P ranks (no simulation)",
        description="Split a brain over P ranks without simulating it: per-rank neurons, "
                    "synapses, cost and estimated spike traffic, the load imbalance, the "
                    "traffic cut and messages per rank per exchange window (direct and "
                    "two-level routing). Use it to size a cluster job.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    src.add_argument("--demo", action="store_true",
                     help="the embedded default subject (region level, default options)")
    p.add_argument("--ranks", type=int, required=True, metavar="P",
                   help=f"number of ranks, 1 to {MAX_RANKS:,}")
    p.add_argument("--routing", default="direct", metavar="|".join(ROUTINGS),
                   help="spike routing whose messages are reported first (direct)")
    p.add_argument("--method", default="metis", metavar="|".join(METHODS),
                   help="metis (graph partitioner, default) or contiguous (baseline)")
    p.add_argument("--ranks-per-node", type=int, metavar="G",
                   help="ranks per group for two-level routing (default round(sqrt(P)))")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, metavar="HZ",
                   help=f"mean firing rate assumed for traffic (default {DEFAULT_RATE_HZ:g})")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="METIS seed (0)")
    p.add_argument("--json", metavar="OUT.json",
                   help="also write the summary and per-rank figures as JSON")


def run_partition(a: argparse.Namespace) -> int:
    """``dtb partition``: plan, print the figures, optionally write JSON."""
    if a.json is not None:
        parent = Path(a.json).parent
        if not (parent if str(parent) else Path(".")).is_dir():
            raise ConfigError([f"--json: {a.json!r} -- expected a file in an existing "
                               "folder"], "dtb partition")
    if a.demo:
        from dtb.brain.build import build
        from dtb.brain.commands import demo_inputs

        spec = build(**demo_inputs())
        name = "default subject (embedded)"
    else:
        from dtb.brain.spec import BrainSpec

        spec = BrainSpec.load(a.brain)
        name = str(a.brain)
    pl = plan(spec, a.ranks, routing=a.routing, method=a.method, rate_hz=a.rate,
              ranks_per_node=a.ranks_per_node, seed=a.seed)
    print(render(pl, name))
    if a.json is not None:
        Path(a.json).write_text(json.dumps(pl.to_dict(), indent=1))
        print(f"  wrote {a.json}")
    return 0


def render(pl: Plan, name: str = "brain") -> str:
    """A concise text report: key figures and per-rank percentiles."""
    s = pl.summary
    win = s["window_ms"]
    lines = [
        f"dtb partition: {name}: {s['level']} level, {s['units']:,} units, "
        f"{s['neurons']:,} neurons, {s['synapses']:.3g} synapses",
        f"  {s['ranks']:,} ranks, method {s['method']}, {s['atoms']:,} atoms "
        f"({s['units_cut']:,} units cut into blocks), rate {s['rate_hz']:g} Hz, "
        f"planned in {s['wall_s']['total_s']:.1f} s",
        f"  imbalance (max/mean cost) {s['imbalance']:.3f}  (neurons "
        f"{s['imbalance_neurons']:.3f}, synapses {s['imbalance_synapses']:.3f})",
        f"  cut: {100 * s['cut']:.1f} % of spike deliveries cross ranks "
        f"({100 * s['cut_synapses']:.1f} % of synapses); "
        f"{s['traffic_spikes_per_s']:.3g} spikes/s = "
        f"{_bytes(s['traffic_bytes_per_s'])}/s between ranks",
        "  exchange window " + (f"{win:.2f} ms ({1000 / win:.0f} windows/s): messages per rank "
                                f"per second {s['messages_per_s']['direct']:.3g} direct, "
                                f"{s['messages_per_s']['two_level']:.3g} two-level" if win
                                else "none (nothing crosses ranks)"),
        "",
        f"  {'per rank':<26}{'min':>11}{'median':>11}{'p95':>11}{'max':>11}{'mean':>11}",
    ]
    rows = [("neurons", pl.neurons), ("synapses", pl.synapses), ("cost", pl.cost),
            ("spikes/s sent", pl.out_spikes_hz), ("spikes/s received", pl.in_spikes_hz),
            ("bytes/s sent", pl.out_spikes_hz * BYTES_PER_SPIKE),
            ("peers sent to", pl.out_peers), ("peers received from", pl.in_peers),
            ("messages/window direct", pl.messages_direct),
            (f"messages/window 2-level G={pl.ranks_per_node}", pl.messages_two_level)]
    for label, arr in rows:
        st = _stats(arr)
        lines.append(f"  {label:<26}" + "".join(f"{_num(st[k]):>11}" for k in (
            "min", "p50", "p95", "max", "mean")))
    md, mt = s["messages_direct"], s["messages_two_level"]
    lines += ["", f"  messages per rank per window ({pl.routing} routing): mean "
              f"{s['messages']['mean']:.1f}, max {s['messages']['max']:.1f}; "
              f"direct {md['mean']:.1f}/{md['max']:.1f}, two-level {mt['mean']:.1f}/"
              f"{mt['max']:.1f} (mean/max; sqrt(P) = {math.sqrt(pl.ranks):.1f})"]
    if s["neurons"] < 100 * s["ranks"]:
        lines.append(f"  note: {s['neurons'] / s['ranks']:.3g} neurons a rank on average: "
                     "balance is limited by whole neurons; plan with the neuron count you "
                     "will run (dtb build --neurons)")
    if s["peers_sampled_ranks"]:
        lines.append(f"  (direct peer counts estimated from {s['peers_sampled_ranks']} "
                     "sampled ranks)")
    return "\n".join(lines)


def _bytes(x: float) -> str:
    for unit, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= k:
            return f"{x / k:.3g} {unit}"
    return f"{x:.3g} B"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    if abs(x) >= 1e5:
        return f"{x:.3g}"
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.2f}"
