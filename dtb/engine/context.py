"""Where a run executes: the ``Context`` (communicator, CPU threads, backend, routing of
spikes between ranks), the world communicator, threads per rank, and collectives every
rank takes part in (the same configuration everywhere, a value computed on rank 0)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

import numba

from dtb.engine.gpu.device import CudaAwareMPI, cuda_aware_mpi, select_device
from dtb.errors import ArgumentError, ConfigError
from dtb.launch import launched_under_mpi
from dtb.model.network import Network


def world():
    """MPI.COMM_WORLD when launched under MPI with several ranks, else None.

    Also makes an uncaught exception on any rank abort the whole job (otherwise the other
    ranks would wait in their next collective for ever).
    """
    if not launched_under_mpi():
        return None

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
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    n_local = local.Get_size()
    local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    top = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    return max(1, min(top, (os.cpu_count() or 1) // n_local, cores or 1))


def config_digest(network: Network, dt: float, seed: int, noise_seed: int | None = None
                  ) -> str:
    """A fingerprint of what every rank must agree on."""
    text = json.dumps({"net": network.to_dict(), "dt": dt, "seed": seed,
                       "noise_seed": seed if noise_seed is None else noise_seed},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(comm, network: Network, dt: float, seed: int,
                      noise_seed: int | None = None) -> None:
    """Every rank must run the same network, dt and seeds (a collective)."""
    mine = config_digest(network, dt, seed, noise_seed)
    every = comm.allgather(mine)
    odd = [r for r, d in enumerate(every) if d != every[0]]
    if odd:
        raise ConfigError([f"ranks {odd}: a configuration different from rank 0's "
                           "(network, dt or seed) -- expected every rank to start with the "
                           "same configuration"], "mpiexec")


def on_root(comm, fn, catch: type[BaseException] | tuple = Exception):
    """``fn()`` computed on rank 0 of ``comm`` (or by the only process) and its result
    returned on every rank (a collective).  An exception of a ``catch`` type raised there
    is raised on every rank, instead of leaving the others waiting in the broadcast, and
    marked ``on_every_rank`` (dtb.cli.main then exits in order instead of aborting the job,
    which can lose the message)."""
    value, error = None, None
    if comm is None or comm.Get_rank() == 0:
        try:
            value = fn()
        except catch as e:
            error = e
    if comm is not None:
        value, error = comm.bcast((value, error), root=0)
        if error is not None:
            # every rank raises it: the job can end in order, no MPI_Abort needed
            error.on_every_rank = True  # type: ignore[attr-defined]
    if error is not None:
        raise error
    return value


BACKENDS = ("cpu", "gpu", "gpu-emulated")  # gpu-emulated: the CUDA kernels built for the host
ROUTINGS = ("direct", "two-level")


class Context:
    """Where a simulation runs, decided once per process before anything is built.

    comm: an MPI communicator of the ranks that share the network (None: this process
    alone).  threads: CPU threads of the kernels (None: the node's cores shared among its
    ranks, or numba's default alone); set here, for the whole process, because numba's
    thread count is process-wide.  backend: "cpu", "gpu" (this rank is bound to its GPU
    here, before anything touches CUDA) or "gpu-emulated" (the CUDA kernels' host build,
    for tests without a GPU).  routing: how spikes travel between ranks ("direct", or
    "two-level" through one relay per group of ``ranks_per_node`` ranks).
    """

    def __init__(self, comm: Any = None, threads: int | None = None, backend: str = "cpu",
                 routing: str = "direct", ranks_per_node: int | None = None):
        if backend not in BACKENDS:
            raise ArgumentError(f"backend: {backend!r} -- expected one of "
                                f"{', '.join(BACKENDS)}")
        if routing not in ROUTINGS:
            raise ArgumentError(f"routing: {routing!r} -- expected direct or two-level")
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.ranks = comm.Get_size() if comm is not None else 1
        self.backend, self.routing, self.ranks_per_node = backend, routing, ranks_per_node
        if threads is None and self.ranks > 1:
            # ranks on one node share its cores: oversubscribed OpenMP threads spin-wait
            threads = threads_per_rank(comm)
        if threads is not None:
            numba.set_num_threads(threads)
        self.threads = numba.get_num_threads()
        self.cuda_aware_mpi: CudaAwareMPI | None = None
        if backend == "gpu":
            select_device(comm)
            if self.ranks > 1:  # detected at start, reported in the manifest
                self.cuda_aware_mpi = cuda_aware_mpi()

    def __repr__(self) -> str:
        return (f"Context(ranks={self.ranks}, rank={self.rank}, threads={self.threads}, "
                f"backend={self.backend!r}, routing={self.routing!r})")
