"""MPI distribution: which neurons each rank owns, and the spike exchange between ranks.

Ownership (``ownership``): by default every rank owns one contiguous slice of every
population, cut so that the ranks' costs (neuron updates plus incoming synapses, from the
rules) are equal.  Populations with the same units (a brain's families) are cut at the same
units, so a unit's neurons stay together and its local synapses never cross ranks; only
long-range (tract) synapses do.  A METIS plan of a brain (``dtb.partition.plan``) gives
each rank any set of unit ranges instead (``Ownership.from_plan``): fewer cut tracts.

Exchange: at start-up every rank lists the source neurons its synapses need and tells
their owners (an all-to-all of the request lists).  Then, once per minimum-delay window,
each rank sends every peer the spikes of the neurons that peer asked for, encoded as one
int64: ``position in the peer's request list << 16 | step offset in the window``, through
neighbourhood collectives on a distributed-graph communicator whose edges are only the
rank pairs that share synapses.  Synaptic input is summed in integer fixed point, so the
order of arrival does not matter: results are bitwise identical on any number of ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numba as nb
import numpy as np

from dtb.errors import ConfigError
from dtb.network import FixedInDegree, FixedTotalNumber, Network, PairwiseBernoulli

UPDATE_COST = 10.0  # one neuron update, in units of one incoming synapse
SNAP_IMBALANCE = 1.05  # cuts move to unit boundaries if no rank then exceeds this x mean
MPI_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK", "PMI_RANK")


def launched_under_mpi() -> bool:
    """True when an MPI launcher (mpiexec, srun with PMI) started this process with
    more than one rank; decided from the environment, so MPI is not initialised."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        v = os.environ.get(var)
        if v is not None and v.isdigit() and int(v) > 1:
            return True
    return False


def world():
    """MPI.COMM_WORLD when launched under MPI with several ranks, else None.

    Also makes an uncaught exception on any rank abort the whole job (otherwise the other
    ranks would wait in their next collective for ever).
    """
    if not launched_under_mpi():
        return None
    import sys

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None
    previous = sys.excepthook

    def abort_all(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = abort_all
    return comm


def threads_per_rank(comm) -> int:
    """CPU threads for each rank: the node's cores shared among the ranks on that node
    (at most numba's configured maximum)."""
    import numba
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    n_local = local.Get_size()
    local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // n_local,
                      cores or 1))


def config_digest(network: Network, dt: float, seed: int) -> str:
    """A fingerprint of what every rank must agree on."""
    text = json.dumps({"net": network.to_dict(), "dt": dt, "seed": seed}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(comm, network: Network, dt: float, seed: int) -> None:
    """Every rank must run the same network, dt and seed (a collective)."""
    mine = config_digest(network, dt, seed)
    every = comm.allgather(mine)
    odd = [r for r, d in enumerate(every) if d != every[0]]
    if odd:
        raise ConfigError([f"ranks {odd}: a configuration different from rank 0's "
                           "(network, dt or seed) -- expected every rank to start with the "
                           "same configuration"], "mpiexec")


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
            k = np.full(len(post.units), r.k) if isinstance(r.k, int) else np.asarray(r.k)
            out[q.target] += np.repeat(k, post.units)
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
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(network.populations):
        key = (len(p.units),) if p.units is not None else ("plain", i)
        groups.setdefault(key, []).append(i)
    cuts_frac = np.arange(ranks + 1) / ranks
    for key, members in groups.items():
        if key[0] == "plain":
            i = members[0]
            cum = np.concatenate([[0.0], np.cumsum(cost[i])])
            starts[:, i] = np.searchsorted(cum, cum[-1] * cuts_frac, side="left")
            starts[-1, i] = network.populations[i].size
            continue
        n_units = key[0]
        bounds = []
        unit_cost = np.zeros(n_units)
        for i in members:
            b = np.concatenate([[0], np.cumsum(network.populations[i].units)])
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

    def __init__(self, bounds: list[np.ndarray], owners: list[np.ndarray], ranks: int):
        self.bounds = [np.asarray(b, np.int64) for b in bounds]
        self.owners = [np.asarray(o, np.int64) for o in owners]
        self.ranks = int(ranks)
        for p, (b, o) in enumerate(zip(self.bounds, self.owners, strict=True)):
            if len(b) != len(o) + 1 or b[0] != 0 or np.any(np.diff(b) <= 0) and len(o) > 0:
                raise ValueError(f"ownership of population {p}: bounds {b[:8]}... -- "
                                 "expected increasing bounds from 0, one more than owners")
            if len(o) and (o.min() < 0 or o.max() >= self.ranks):
                raise ValueError(f"ownership of population {p}: owner ranks {o.min()}.."
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
                raise ValueError(f"plan: the atoms of family {fam.name!r} do not tile its "
                                 f"{off[-1]} neurons -- expected a plan of this brain")
            # merge neighbouring ranges of one rank
            brk = np.ones(len(rank), bool)
            brk[1:] = rank[1:] != rank[:-1]
            bounds.append(np.append(first[brk], off[-1]) if len(first) else np.zeros(1))
            owners.append(rank[brk])
        return cls(bounds, owners, plan.ranks)

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
    def from_arrays(cls, arrays: list[np.ndarray], ranks: int) -> Ownership:
        return cls(arrays[0::2], arrays[1::2], ranks)


def on_root(comm, fn, catch: type[BaseException] | tuple = Exception):
    """``fn()`` computed on rank 0 of ``comm`` (or by the only process) and its result
    returned on every rank (a collective).  An exception of a ``catch`` type raised there
    is raised on every rank, instead of leaving the others waiting in the broadcast."""
    value, error = None, None
    if comm is None or comm.Get_rank() == 0:
        try:
            value = fn()
        except catch as e:
            error = e
    if comm is not None:
        value, error = comm.bcast((value, error), root=0)
    if error is not None:
        raise error
    return value


def planned_ownership(spec, comm, method: str = "metis", routing: str = "direct",
                      ranks_per_node: int | None = None, seed: int = 0) -> Ownership:
    """The ownership of a partition plan of brain ``spec`` over comm's ranks: rank 0 plans
    (``dtb.partition.plan``) and broadcasts the result, so every rank uses the same one
    even if METIS were not deterministic across machines."""
    from dtb.partition import plan

    ranks = comm.Get_size() if comm is not None else 1

    def make() -> list[np.ndarray]:
        pl = plan(spec, ranks, routing=routing, method=method,
                  ranks_per_node=ranks_per_node, seed=seed)
        return Ownership.from_plan(pl, spec).to_arrays()

    return Ownership.from_arrays(on_root(comm, make), ranks)


@nb.njit(cache=True)
def _encode(n_spk, steps, idx, t0, send_ptr, send_peer, send_pos, n_peers):
    """Per-peer counts and the packed spikes (peer-major) of one window."""
    counts = np.zeros(n_peers, np.int64)
    for j in range(n_spk):
        for e in range(send_ptr[idx[j]], send_ptr[idx[j] + 1]):
            counts[send_peer[e]] += 1
    offs = np.zeros(n_peers + 1, np.int64)
    for p in range(n_peers):
        offs[p + 1] = offs[p] + counts[p]
    out = np.empty(offs[n_peers], np.int64)
    fill = offs[:-1].copy()
    for j in range(n_spk):
        code = steps[j] - t0
        for e in range(send_ptr[idx[j]], send_ptr[idx[j] + 1]):
            p = send_peer[e]
            out[fill[p]] = (send_pos[e] << 16) | code
            fill[p] += 1
    return counts, out


class Exchange:
    """The send schedule and receive tables of one rank, and the per-window exchange.

    routing "direct": every rank sends to each rank that needs its spikes (neighbourhood
    collectives).  "two-level": ranks form groups of ``group_size`` consecutive ranks (a
    node's ranks); a spike for a rank of the same group goes straight there, one for
    another group goes to the sender's group relay (its first rank), relays exchange
    among themselves, and each relay hands its group what arrived.  A rank then talks to
    at most group_size - 1 group peers plus, for a relay, the other relays: about
    2 sqrt(P) messages per window with groups of sqrt(P), against up to P - 1 directly.
    """

    def __init__(self, engine, routing: str = "direct", group_size: int | None = None):
        from mpi4py import MPI

        comm = engine.comm
        self.comm = comm
        rank, size = comm.Get_rank(), comm.Get_size()
        own = engine.ownership
        pop_gid0 = engine._pop_gid0
        sizes = [p.size for p in engine.network.populations]
        names = [p.name for p in engine.network.populations]
        # the source neurons my synapses need (global ids), remote ones by owner
        need = []
        for pid, q in enumerate(engine.network.projections):
            s = names.index(q.source)
            r0 = engine._proj_row0[pid]
            rows = np.flatnonzero(np.diff(engine._indptr[r0:r0 + sizes[s] + 1]) > 0)
            need.append(pop_gid0[s] + rows)
        need = np.unique(np.concatenate(need)) if need else np.zeros(0, np.int64)
        pop = np.searchsorted(pop_gid0, need, side="right") - 1
        idx = need - pop_gid0[pop]
        owner = np.empty(len(need), np.int64)
        for p in np.unique(pop):
            sel = pop == p
            owner[sel] = own.owner(int(p), idx[sel])
        remote = owner != rank
        need, owner = need[remote], owner[remote]
        by_owner = np.argsort(owner, kind="stable")  # alltoallv sends per-owner segments
        need, owner = need[by_owner], owner[by_owner]
        send_counts = np.bincount(owner, minlength=size).astype(np.int64)
        recv_counts = np.empty(size, np.int64)
        comm.Alltoall(send_counts, recv_counts)
        asked = np.empty(int(recv_counts.sum()), np.int64)
        comm.Alltoallv([need, (send_counts, _displ(send_counts)), MPI.INT64_T],
                       [asked, (recv_counts, _displ(recv_counts)), MPI.INT64_T])
        # neighbours: ranks I receive from (I asked them) and ranks I send to (they asked me)
        self.sources = [int(r) for r in np.flatnonzero(send_counts)]
        self.dests = [int(r) for r in np.flatnonzero(recv_counts)]
        self.request = {r: need[owner == r] for r in self.sources}  # what I receive from r
        # send table: for each local neuron, the (peer, position in that peer's request)
        peer_of = np.repeat(np.arange(size), recv_counts)
        pos = np.concatenate([np.arange(c) for c in recv_counts]) if size else np.zeros(0)
        local = engine.local_index(asked)
        dest_index = {r: i for i, r in enumerate(self.dests)}
        order = np.lexsort((peer_of, local))
        self.send_ptr = np.zeros(engine.n_local + 1, np.int64)
        np.add.at(self.send_ptr, local[order] + 1, 1)
        np.cumsum(self.send_ptr, out=self.send_ptr)
        self.send_peer = np.array([dest_index[int(r)] for r in peer_of[order]], np.int64)
        self.send_pos = pos[order].astype(np.int64)
        self.graph = comm.Create_dist_graph_adjacent(self.sources, self.dests, reorder=False)
        self.window = self._cross_rank_window(engine)
        self.routing = routing
        if routing == "two-level":
            g = group_size or max(1, int(round(size ** 0.5)))
            self.group_size = g
            self.group = comm.Split(rank // g, rank)
            self.is_relay = self.group.Get_rank() == 0
            self.relays = comm.Split(0 if self.is_relay else MPI.UNDEFINED, rank)
            self.dest_ranks = np.array(self.dests, np.int64)
        self.messages = 0
        self.bytes = 0
        self.seconds = 0.0
        self.windows = 0

    def _cross_rank_window(self, engine) -> int:
        """The smallest delay (steps) of any synapse, on any rank, whose source neuron
        lives on another rank: the exchange window every rank agrees on (a collective)."""
        from mpi4py import MPI

        best = 65535  # step offsets travel in 16 bits
        names = [p.name for p in engine.network.populations]
        for pid, q in enumerate(engine.network.projections):
            s = names.index(q.source)
            size = engine.network.populations[s].size
            r0 = engine._proj_row0[pid]
            ptr = engine._indptr[r0:r0 + size + 1]
            remote = np.ones(size, bool)
            for lay in engine.layout:
                if lay.index == s:
                    remote[lay.first:lay.first + lay.size] = False
            lengths = np.diff(ptr)
            if not np.any(remote & (lengths > 0)):
                continue
            mask = np.repeat(remote, lengths)
            best = min(best, int(engine._dly[ptr[0]:ptr[-1]][mask].min()))
        return int(self.comm.allreduce(best, op=MPI.MIN))

    def exchange(self, t0: int, steps: np.ndarray, idx: np.ndarray):
        """Send my window's spikes (steps, engine-local indices) to the peers that need them;
        returns the peers' spikes as (steps, global ids)."""
        from mpi4py import MPI

        t = time.perf_counter()
        counts, data = _encode(len(steps), steps, idx, t0, self.send_ptr, self.send_peer,
                               self.send_pos, len(self.dests))
        if self.routing == "two-level":
            st, gid = self._two_level(t0, counts, data)
            self.windows += 1
            self.seconds += time.perf_counter() - t
            return st, gid
        rcounts = np.empty(len(self.sources), np.int64)
        self.graph.Neighbor_alltoall(counts, rcounts)
        recv = np.empty(int(rcounts.sum()), np.int64)
        self.graph.Neighbor_alltoallv([data, (counts, _displ(counts)), MPI.INT64_T],
                                      [recv, (rcounts, _displ(rcounts)), MPI.INT64_T])
        st = np.empty(len(recv), np.int64)
        gid = np.empty(len(recv), np.int64)
        o = 0
        for r, c in zip(self.sources, rcounts, strict=True):
            block = recv[o:o + c]
            st[o:o + c] = t0 + (block & 0xFFFF)
            gid[o:o + c] = self.request[r][block >> 16]
            o += c
        self.windows += 1
        self.messages += int(np.count_nonzero(counts))
        self.bytes += int(data.nbytes)
        self.seconds += time.perf_counter() - t
        return st, gid

    def _two_level(self, t0: int, counts: np.ndarray, data: np.ndarray):
        """Route this window's packets through the group relays (see the class docstring).
        Records in transit: (source rank, destination rank, packed spike)."""
        rank = self.comm.Get_rank()
        g = self.group_size
        dest = np.repeat(self.dest_ranks, counts)
        src = np.full(len(data), rank, np.int64)
        same = dest // g == rank // g
        # 1. within the group: straight to the destination (a group alltoall)
        n_g = self.group.Get_size()
        base = (rank // g) * g
        outgoing = [np.stack([src[same & (dest == base + j)], data[same & (dest == base + j)]])
                    for j in range(n_g)]
        arrived = self.group.alltoall(outgoing)
        # 2. to other groups: through my relay, across the relays, back down to the group
        far = ~same
        up = self.group.gather(np.stack([src[far], dest[far], data[far]]), root=0)
        down = None
        if self.is_relay:
            pile = np.concatenate(up, axis=1)
            n_groups = self.relays.Get_size()
            across = self.relays.alltoall([pile[:, pile[1] // g == k] for k in range(n_groups)])
            got = np.concatenate(across, axis=1)
            down = [got[:, got[1] == base + j][[0, 2]] for j in range(n_g)]
            self.messages += sum(int(a.shape[1] > 0) for a in across)
        arrived.append(self.group.scatter(down, root=0))
        self.messages += sum(int(a.shape[1] > 0) for a in outgoing) + int(far.any())
        self.bytes += int(data.nbytes)
        rec = np.concatenate(arrived, axis=1)
        st = t0 + (rec[1] & 0xFFFF)
        gid = np.empty(rec.shape[1], np.int64)
        for r in np.unique(rec[0]):
            sel = rec[0] == r
            gid[sel] = self.request[int(r)][rec[1][sel] >> 16]
        return st, gid

    def stats(self) -> dict:
        """This rank's exchange figures so far."""
        return {"window_steps": self.window,
                "peers_send": len(self.dests), "peers_recv": len(self.sources),
                "windows": self.windows, "messages": self.messages, "bytes": self.bytes,
                "exchange_s": self.seconds}


def _displ(counts: np.ndarray) -> np.ndarray:
    d = np.zeros(len(counts), np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=d[1:])
    return d
