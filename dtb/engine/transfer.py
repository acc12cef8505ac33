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

import os
from typing import Any

import numpy as np

from dtb.kernels.exchange import pack_blocks, unpack_blocks

RESIZE_EVERY = int(os.environ.get("DTB_BLOCK_RESIZE_EVERY", "2048"))  # windows between
# agreements on the block size (the variable: tests exercise resizing on short runs)
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
        self.resizes = 0  # times the ranks agreed on another block size
        self._no_extra = np.zeros(0, np.int64)
        self._no_offsets = np.zeros(len(sources) + 1, np.int64)
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
        cap = self.cap
        recv = self.recv
        pack_blocks(counts, data, self.send, cap)
        extra, extra_off, _ = self.swap(counts, data)
        return unpack_blocks(recv, cap, extra, extra_off)

    def swap(self, counts: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Exchange the blocks already packed into ``send`` (``pack_blocks`` at ``cap``);
        ``counts``/``data`` as for ``__call__``, for what overflows the blocks.  Returns
        (overflow codes received, their offsets per source, 1 if ``send``/``recv``/``cap``
        were replaced after this window, else 0): ``unpack_blocks(recv, cap, ...)`` with
        the arrays and cap of before the call gives what arrived."""
        cap = self.cap
        if self._request is not None:
            self._request.Start()
            self._request.Wait()
        else:
            self.graph.Neighbor_alltoall(self.send, self.recv)
        top = int(counts.max()) if len(counts) else 0
        extra, extra_off = self._no_extra, self._no_offsets
        if top > cap or (len(self.sources) and int(self.recv[:, 0].max()) > cap):
            extra, extra_off = self._overflow(counts, data, cap)
        self.peak = max(self.peak, top)
        self.windows += 1
        if self.windows % RESIZE_EVERY == 0:
            return extra, extra_off, int(self._agree())
        return extra, extra_off, 0

    def _overflow(self, counts: np.ndarray, data: np.ndarray, cap: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The codes beyond ``cap``, point to point both ways; returns what arrived and
        its offsets per source."""
        from mpi4py import MPI

        rc = self.recv[:, 0]
        extra_off = np.zeros(len(self.sources) + 1, np.int64)
        extra_off[1:] = np.cumsum(np.maximum(rc - cap, 0))
        extra = np.empty(int(extra_off[-1]), np.int64)
        reqs = [self.graph.Irecv([extra[extra_off[r]:extra_off[r + 1]], MPI.INT64_T],
                                 source=self.sources[r], tag=_TAG)
                for r in np.flatnonzero(rc > cap)]
        ends = np.cumsum(counts)
        reqs += [self.graph.Isend([data[ends[p] - counts[p] + cap:ends[p]], MPI.INT64_T],
                                  dest=self.dests[p], tag=_TAG)
                 for p in np.flatnonzero(counts > cap)]
        MPI.Request.Waitall(reqs)
        return extra, extra_off

    def _agree(self) -> bool:
        """Every rank's block size from the largest count any rank sent lately (a
        collective at the same window on every rank); True if it changed."""
        from mpi4py import MPI

        peak = int(self.comm.allreduce(self.peak, op=MPI.MAX))
        self.peak = 0
        cap = 16
        while cap < peak and cap < 4096:
            cap *= 2
        if cap == self.cap:
            return False
        self._resize(cap)
        self.resizes += 1
        return True

    def close(self) -> None:
        if self._request is not None:
            self._request.Free()
            self._request = None
