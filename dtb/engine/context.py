"""Where a run executes: MPI launch detection, the world communicator, threads per rank,
and collectives every rank takes part in (the same configuration everywhere, a value
computed on rank 0)."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numba

from dtb.errors import ConfigError
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
