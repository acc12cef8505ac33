"""One window's spike transfer between neighbouring ranks, in fixed-size blocks.

Every window each rank sends each destination peer a block of ``cap + 1`` int64: the count
of its packed spikes and the first ``cap`` of them, through one neighbourhood alltoall on
the exchange's distributed-graph communicator (persistent where the MPI library has MPI-4's
``MPI_Neighbor_alltoall_init``: started and waited on each window, nothing to set up).
Spikes beyond ``cap`` follow point to point; both sides know from the count.  Every
``RESIZE_EVERY`` windows the ranks agree (an allreduce) on a new ``cap`` from the largest
count seen, so bursts stay rare.  None of this changes what arrives, only its cost: one
collective of a few hundred bytes per window against a counts exchange and an alltoallv
(measured in benchmarks/parallel.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dtb.kernels.exchange import pack_blocks, unpack_blocks

RESIZE_EVERY = 2048  # windows between agreements on the block size
_TAG = 0x5D7B  # overflow messages


class BlockTransfer:
    """The fixed-block transfer of one rank over ``graph`` (a distributed-graph
    communicator with ``n_sources`` in-neighbours and ``n_dests`` out-neighbours), part of
    ``comm`` (where the ranks agree on the block size)."""

    def __init__(self, comm: Any, graph: Any, sources: list[int], dests: list[int],
                 cap: int = 16, persistent: bool = True):
        self.comm = comm
        self.graph = graph
        self.sources = sources
        self.dests = dests
        self.windows = 0
        self.peak = 0
        self.persistent = persistent  # False: a plain neighbourhood alltoall each window
        self._request: Any = None
        self._resize(cap)

    def _resize(self, cap: int) -> None:
        if self._request is not None:
            self._request.Free()
            self._request = None
        self.cap = cap
        self.send = np.zeros((len(self.dests), cap + 1), np.int64)
        self.recv = np.zeros((len(self.sources), cap + 1), np.int64)
        if self.persistent:
            from mpi4py import MPI

            try:
                self._request = self.graph.Neighbor_alltoall_init(self.send, self.recv)
            except (NotImplementedError, MPI.Exception):
                self.persistent = False  # an MPI-3 library: the same call, not persistent

    def __call__(self, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send ``data`` (packed spikes, peer-major, ``counts`` per destination) and
        return what the sources sent: (codes, source-peer-major; counts per source)."""
        from mpi4py import MPI

        cap = self.cap
        pack_blocks(counts, data, self.send, cap)
        if self._request is not None:
            self._request.Start()
            self._request.Wait()
        else:
            self.graph.Neighbor_alltoall(self.send, self.recv)
        rc = self.recv[:, 0]
        over_in = np.flatnonzero(rc > cap)
        over_out = np.flatnonzero(counts > cap)
        extra_off = np.zeros(len(self.sources) + 1, np.int64)
        extra = np.zeros(0, np.int64)
        if len(over_in) or len(over_out):
            extra_off[1:] = np.cumsum(np.maximum(rc - cap, 0))
            extra = np.empty(int(extra_off[-1]), np.int64)
            reqs = [self.graph.Irecv([extra[extra_off[r]:extra_off[r + 1]], MPI.INT64_T],
                                     source=self.sources[r], tag=_TAG) for r in over_in]
            ends = np.cumsum(counts)
            reqs += [self.graph.Isend([data[ends[p] - counts[p] + cap:ends[p]], MPI.INT64_T],
                                      dest=self.dests[p], tag=_TAG) for p in over_out]
            MPI.Request.Waitall(reqs)
        out, rcounts = unpack_blocks(self.recv, cap, extra, extra_off)
        if len(counts):
            self.peak = max(self.peak, int(counts.max()))
        self.windows += 1
        if self.windows % RESIZE_EVERY == 0:
            self._agree()
        return out, rcounts

    def _agree(self) -> None:
        """Every rank's block size from the largest count any rank sent lately (a
        collective at the same window on every rank)."""
        from mpi4py import MPI

        peak = int(self.comm.allreduce(self.peak, op=MPI.MAX))
        self.peak = 0
        cap = 16
        while cap < peak and cap < 4096:
            cap *= 2
        if cap != self.cap:
            self._resize(cap)

    def close(self) -> None:
        if self._request is not None:
            self._request.Free()
            self._request = None
