"""Which neurons each rank owns (the domain decomposition).

By default every rank owns one contiguous slice of every population, cut so that the
ranks' costs (neuron updates plus incoming synapses, from the rules) are equal.
Populations with the same units (a brain's families) are cut at the same units, so a
unit's neurons stay together and its local synapses never cross ranks; only long-range
(tract) synapses do.  A METIS plan of a brain (``dtb.partition.plan``) gives each rank any
set of unit ranges instead (``Ownership.from_plan``): fewer cut tracts."""

from __future__ import annotations

import numpy as np

from dtb.errors import ArgumentError
from dtb.model.network import FixedInDegree, FixedTotalNumber, Network, PairwiseBernoulli

UPDATE_COST = 10.0  # one neuron update, in units of one incoming synapse
SNAP_IMBALANCE = 1.05  # cuts move to unit boundaries if no rank then exceeds this x mean


def in_degree_per_neuron(network: Network) -> list[np.ndarray]:
    """Expected incoming synapses of every neuron, per population, from the rules."""
    pops = {p.name: p for p in network.populations}
    out = {p.name: np.zeros(p.size) for p in network.populations}
    for q in network.projections:
        post, pre = pops[q.target], pops[q.source]
        r = q.rule
        if isinstance(r, FixedInDegree):
            out[q.target] += r.k
        elif isinstance(r, FixedTotalNumber):
            out[q.target] += r.n / post.size
        elif isinstance(r, PairwiseBernoulli):
            out[q.target] += r.p * pre.size
        else:  # unit rules: k per target unit
            units = post.unit_sizes
            k = np.full(len(units), r.k) if isinstance(r.k, int) else np.asarray(r.k)
            out[q.target] += np.repeat(k, units)
    return [out[p.name] for p in network.populations]


def ownership(network: Network, ranks: int) -> np.ndarray:
    """Which part of every population each rank owns: starts (ranks + 1, populations);
    rank r owns neurons starts[r, i] .. starts[r+1, i] - 1 of population i.

    Populations that share a unit structure (a brain's families) are cut at the same
    places in unit space, so a unit's families stay together and its unit-local synapses
    stay on one rank; a unit is split only where the balance needs it (at most ranks - 1
    units, and none when cuts at the nearest unit boundaries keep every rank's cost within
    SNAP_IMBALANCE of the mean).  Each cut balances cost = incoming synapses + UPDATE_COST per
    neuron.  Other populations are cut in proportion to their cost, so every rank gets its
    share of each.
    """
    n_pop = len(network.populations)
    starts = np.zeros((ranks + 1, n_pop), np.int64)
    cost = [c + UPDATE_COST for c in in_degree_per_neuron(network)]
    groups: dict[tuple[int, bool], list[int]] = {}  # (units, True) or (index, False)
    for i, p in enumerate(network.populations):
        key = (len(p.units), True) if p.units is not None else (i, False)
        groups.setdefault(key, []).append(i)
    cuts_frac = np.arange(ranks + 1) / ranks
    for key, members in groups.items():
        if not key[1]:
            i = members[0]
            cum = np.concatenate([[0.0], np.cumsum(cost[i])])
            starts[:, i] = np.searchsorted(cum, cum[-1] * cuts_frac, side="left")
            starts[-1, i] = network.populations[i].size
            continue
        n_units = key[0]
        bounds = []
        unit_cost = np.zeros(n_units)
        for i in members:
            b = np.concatenate([[0], np.cumsum(network.populations[i].unit_sizes)])
            bounds.append(b)
            cum_i = np.concatenate([[0.0], np.cumsum(cost[i])])
            unit_cost += cum_i[b[1:]] - cum_i[b[:-1]]
        cum = np.concatenate([[0.0], np.cumsum(unit_cost)])
        cuts = cum[-1] * cuts_frac
        u = np.clip(np.searchsorted(cum, cuts, side="right") - 1, 0, n_units - 1)
        frac = np.divide(cuts - cum[u], unit_cost[u], out=np.zeros(ranks + 1),
                         where=unit_cost[u] > 0)
        frac = np.clip(frac, 0.0, 1.0)
        # keep units whole where moving the cut to the nearer unit boundary costs little:
        # then no unit-local synapse crosses ranks and the exchange window is the shortest
        # tract delay instead of the local delay
        near = np.where(frac < 0.5, 0.0, 1.0)
        snapped = cum[u] + near * unit_cost[u]
        snapped[0], snapped[-1] = 0.0, cum[-1]
        loads = np.diff(np.maximum.accumulate(snapped))
        if loads.max() <= SNAP_IMBALANCE * cum[-1] / ranks:
            frac = near
        for i, b in zip(members, bounds, strict=True):
            size_u = b[u + 1] - b[u]
            starts[:, i] = b[u] + np.floor(frac * size_u + 0.5).astype(np.int64)
            starts[0, i], starts[-1, i] = 0, b[-1]
    return np.maximum.accumulate(starts, axis=0)


class Ownership:
    """Which rank owns each neuron: for population p, ``bounds[p]`` (k+1,) increasing from
    0 to the population's size and ``owners[p]`` (k,), rank owning neurons
    bounds[p][j] .. bounds[p][j+1] - 1 (numbered within the population).

    ``ownership()`` gives one slice of every population per rank (``from_starts``); a
    partition plan of a brain (``dtb.partition.plan``, METIS) gives each rank any set of
    unit ranges (``from_plan``).
    """

    def __init__(self, bounds: list[np.ndarray], owners: list[np.ndarray], ranks: int,
                 method: str = "slices"):
        self.method = method  # how it was made: "slices", "metis", "contiguous" (a plan's)
        self.bounds = [np.asarray(b, np.int64) for b in bounds]
        self.owners = [np.asarray(o, np.int64) for o in owners]
        self.ranks = int(ranks)
        for p, (b, o) in enumerate(zip(self.bounds, self.owners, strict=True)):
            if len(b) != len(o) + 1 or b[0] != 0 or np.any(np.diff(b) <= 0) and len(o) > 0:
                raise ArgumentError(f"ownership of population {p}: bounds {b[:8]}... -- "
                                    "expected increasing bounds from 0, one more than owners")
            if len(o) and (o.min() < 0 or o.max() >= self.ranks):
                raise ArgumentError(f"ownership of population {p}: owner ranks {o.min()}.."
                                    f"{o.max()} -- expected ranks in 0..{self.ranks - 1}")

    @classmethod
    def from_starts(cls, starts: np.ndarray) -> Ownership:
        """From ``ownership()``'s starts (ranks + 1, populations): one slice per rank."""
        ranks = starts.shape[0] - 1
        bounds, owners = [], []
        for p in range(starts.shape[1]):
            col = starts[:, p]
            keep = np.flatnonzero(np.diff(col) > 0)
            bounds.append(np.append(col[keep], col[-1]) if len(keep) else np.zeros(1))
            owners.append(keep)
        return cls(bounds, owners, ranks)

    @classmethod
    def from_plan(cls, plan, spec) -> Ownership:
        """From a partition plan of the brain ``spec``: every family's neurons of each
        atom go to the atom's rank (the network of ``spec.to_network()``)."""
        at = plan.atoms
        bounds, owners = [], []
        for f, fam in enumerate(spec.families):
            off = np.concatenate([[0], np.cumsum(fam.sizes)])
            whole = at.pieces == 1
            first = np.where(whole, off[at.unit_lo], off[at.unit_lo] + at.first[f])
            end = np.where(whole, off[at.unit_hi], off[at.unit_lo] + at.first[f] + at.sizes[f])
            keep = end > first
            first, end, rank = first[keep], end[keep], plan.assignment[keep]
            order = np.argsort(first, kind="stable")
            first, end, rank = first[order], end[order], rank[order]
            if len(first) and (first[0] != 0 or np.any(first[1:] != end[:-1])
                               or end[-1] != off[-1]):
                raise ArgumentError(f"plan: the atoms of family {fam.name!r} do not tile its "
                                    f"{off[-1]} neurons -- expected a plan of this brain")
            # merge neighbouring ranges of one rank
            brk = np.ones(len(rank), bool)
            brk[1:] = rank[1:] != rank[:-1]
            bounds.append(np.append(first[brk], off[-1]) if len(first) else np.zeros(1))
            owners.append(rank[brk])
        return cls(bounds, owners, plan.ranks, plan.method)

    def owner(self, p: int, idx: np.ndarray) -> np.ndarray:
        """The rank owning neurons idx (within population p)."""
        return self.owners[p][np.searchsorted(self.bounds[p], idx, side="right") - 1]

    def ranges(self, rank: int) -> list[list[tuple[int, int]]]:
        """Per population, the ranges (first, end) rank ``rank`` owns, in order."""
        out = []
        for b, o in zip(self.bounds, self.owners, strict=True):
            j = np.flatnonzero(o == rank)
            out.append([(int(b[k]), int(b[k + 1])) for k in j])
        return out

    def neurons(self) -> np.ndarray:
        """Neurons per rank (ranks,)."""
        n = np.zeros(self.ranks, np.int64)
        for b, o in zip(self.bounds, self.owners, strict=True):
            np.add.at(n, o, np.diff(b))
        return n

    def to_arrays(self) -> list[np.ndarray]:
        """Flat arrays (for a broadcast): bounds and owners of each population."""
        return [x for b, o in zip(self.bounds, self.owners, strict=True) for x in (b, o)]

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], ranks: int,
                    method: str = "slices") -> Ownership:
        return cls(arrays[0::2], arrays[1::2], ranks, method)
