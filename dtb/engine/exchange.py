"""The spike exchange between ranks.

At start-up every rank lists the source neurons its synapses need and tells their owners
(an all-to-all of the request lists).  Then, once per minimum-delay window, each rank sends
every peer the spikes of the neurons that peer asked for, encoded as one int64:
``position in the peer's request list << 16 | step offset in the window``, through
neighbourhood collectives on a distributed-graph communicator whose edges are only the rank
pairs that share synapses.  Synaptic input is summed in integer fixed point, so the order of
arrival does not matter: results are bitwise identical on any number of ranks."""

from __future__ import annotations

import time

import numpy as np

from dtb.engine.transfer import BlockTransfer
from dtb.kernels.bundles import Route
from dtb.kernels.exchange import encode


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
        pop_gid0 = engine.part.pop_gid0
        sizes = [p.size for p in engine.network.populations]
        names = [p.name for p in engine.network.populations]
        # the source neurons my synapses need (global ids), remote ones by owner
        wanted = []
        indptr = engine.synapse_arrays.indptr
        for pid, q in enumerate(engine.network.projections):
            s = names.index(q.source)
            r0 = engine.synapse_arrays.row0[pid]
            rows = np.flatnonzero(np.diff(indptr[r0:r0 + sizes[s] + 1]) > 0)
            wanted.append(pop_gid0[s] + rows)
        need = np.unique(np.concatenate(wanted)) if wanted else np.zeros(0, np.int64)
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
        self.blocks = BlockTransfer(comm, self.graph, self.sources, self.dests)
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
            r0 = engine.synapse_arrays.row0[pid]
            ptr = engine.synapse_arrays.indptr[r0:r0 + size + 1]
            remote = np.ones(size, bool)
            for lay in engine.layout:
                if lay.index == s:
                    remote[lay.first:lay.first + lay.size] = False
            lengths = np.diff(ptr)
            if not np.any(remote & (lengths > 0)):
                continue
            mask = np.repeat(remote, lengths)
            best = min(best, int(engine.synapse_arrays.dly[ptr[0]:ptr[-1]][mask].min()))
        return int(self.comm.allreduce(best, op=MPI.MIN))

    def route(self, pop_gid0: np.ndarray, pop_proj_ptr: np.ndarray,
              pop_proj: np.ndarray) -> Route:
        """The tables a compiled loop needs to exchange through ``transfer`` (routing
        "direct"): this rank's send table, the requests it made, and where spikes of each
        population go (``pop_gid0`` first global ids, ``pop_proj_ptr``/``pop_proj``)."""
        req = [self.request[r] for r in self.sources]
        off = np.zeros(len(req) + 1, np.int64)
        np.cumsum([len(x) for x in req], out=off[1:])
        request = np.concatenate(req).astype(np.int64) if req else np.zeros(0, np.int64)
        return Route(self.send_ptr, self.send_peer, self.send_pos,
                     np.array(self.dests, np.int64), request, off,
                     np.ascontiguousarray(pop_gid0, np.int64), pop_proj_ptr, pop_proj)

    def transfer(self, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window's packed spikes (counts per destination peer, data peer-major) to the
        peers, theirs back: (packed spikes, source-peer-major; counts per source peer).
        Routing "direct": fixed blocks through a neighbourhood collective
        (dtb.engine.transfer.BlockTransfer)."""
        t = time.perf_counter()
        out = self.blocks(counts, data)
        self._count(counts, data, t)
        return out

    def swap(self, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """``BlockTransfer.swap`` of blocks a compiled loop packed (kernels/loop.py
        ``run_windows_exchanged``), counted as ``transfer`` is."""
        t = time.perf_counter()
        out = self.blocks.swap(counts, data)
        self._count(counts, data, t)
        return out

    def _count(self, counts: np.ndarray, data: np.ndarray, t: float) -> None:
        self.windows += 1
        self.messages += int(np.count_nonzero(counts))
        self.bytes += int(data.nbytes)
        self.seconds += time.perf_counter() - t

    def exchange(self, t0: int, steps: np.ndarray, idx: np.ndarray):
        """Send my window's spikes (steps, engine-local indices) to the peers that need them;
        returns the peers' spikes as (steps, global ids)."""
        counts, data = encode(len(steps), steps, idx, t0, self.send_ptr, self.send_peer,
                              self.send_pos, len(self.dests))
        if self.routing == "two-level":
            t = time.perf_counter()
            st, gid = self._two_level(t0, counts, data)
            self.windows += 1
            self.seconds += time.perf_counter() - t
            return st, gid
        recv, rcounts = self.transfer(counts, data)
        st = np.empty(len(recv), np.int64)
        gid = np.empty(len(recv), np.int64)
        o = 0
        for r, c in zip(self.sources, rcounts.tolist(), strict=True):
            block = recv[o:o + c]
            st[o:o + c] = t0 + (block & 0xFFFF)
            gid[o:o + c] = self.request[r][block >> 16]
            o += c
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
                "exchange_s": self.seconds, "block_cap": self.blocks.cap,
                "block_resizes": self.blocks.resizes}


def _displ(counts: np.ndarray) -> np.ndarray:
    d = np.zeros(len(counts), np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=d[1:])
    return d
