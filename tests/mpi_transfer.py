"""Under mpiexec: dtb.engine.transfer.BlockTransfer on a ring-and-chord graph, with counts
that overflow the block (point-to-point remainder) and a block size that the ranks agree
to change; every rank checks that it received exactly what its sources sent, window after
window (each window's content is a function of (window, source, destination), so the
receiver knows what to expect).  Exits non-zero on any mismatch."""

from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

from dtb.engine import transfer as tr


def content(w: int, src: int, dst: int) -> np.ndarray:
    rng = np.random.default_rng([w, src, dst])
    n = int(rng.choice([0, 1, 3, 15, 16, 17, 40, 300]))
    return rng.integers(0, 2**40, n)


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    dests = sorted({(rank + 1) % size, (rank + 2) % size} - {rank})
    sources = sorted({(rank - 1) % size, (rank - 2) % size} - {rank})
    graph = comm.Create_dist_graph_adjacent(sources, dests, reorder=False)
    tr.RESIZE_EVERY = 25
    bt = tr.BlockTransfer(comm, graph, sources, dests,
                          persistent="--plain" not in sys.argv)
    caps = set()
    for w in range(120):
        parts = [content(w, rank, d) for d in dests]
        counts = np.array([len(p) for p in parts], np.int64)
        data = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        recv, rcounts = bt(counts, data)
        want = [content(w, s, rank) for s in sources]
        if rcounts.tolist() != [len(x) for x in want]:
            print(f"rank {rank} window {w}: counts {rcounts} != {[len(x) for x in want]}")
            return 1
        if not np.array_equal(recv, np.concatenate(want) if want else recv[:0]):
            print(f"rank {rank} window {w}: content differs")
            return 1
        caps.add(bt.cap)
    bt.close()
    every = comm.allgather(sorted(caps))
    if any(c != every[0] for c in every) or len(every[0]) < 2:
        print(f"rank {rank}: block sizes {every} -- expected the same >= 2 sizes everywhere")
        return 1
    if rank == 0:
        print("ok", sorted(caps), "persistent" if bt.persistent else "not persistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
