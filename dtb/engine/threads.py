"""CPU threads that behave on shared machines (login nodes, laptops, CI runners).

numba runs the kernels' parallel loops on OpenMP threads (libgomp).  By default an idle
OpenMP thread spins for a while (300,000 iterations) before it sleeps, waiting for the next
parallel loop; the engine starts one or two loops per exchange window (every 0.1 ms of
model time in the microcircuit).  On a quiet machine that costs nothing.  With another busy
process on the cores it is ruinous: the spinning thread keeps its core while the thread it
waits for shares another, at every window (the microcircuit at real-time factor 90 with 2
threads against 1.4-1.8 with one, measured in issue 15).

So dtb makes idle threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose
a waiting policy (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or Intel's ``KMP_BLOCKTIME``
set): a sleeping thread gives its core to whoever needs it.  What this costs on a quiet
machine and saves on a busy one is measured by benchmarks/shared_machine.py
(benchmarks/README.md).  It must be decided before the OpenMP runtime starts, which
happens at numba's first parallel loop: ``configure()`` runs when dtb is imported.
"""

from __future__ import annotations

import logging
import os
import time

import numba

from dtb.launch import launched_under_mpi

USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def configure() -> str | None:
    """Set dtb's default waiting policy for OpenMP threads (passive) unless the user set
    one; returns what was set (None: the user's choice stands)."""
    if any(v in os.environ for v in USER_CHOICES):
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "OMP_WAIT_POLICY=PASSIVE"


def waiting_policy() -> dict[str, str]:
    """The OpenMP waiting settings in force (for manifests and dtb info)."""
    return {v: os.environ[v] for v in USER_CHOICES if v in os.environ}


def idle_cores(sample_s: float = 0.1) -> float | None:
    """How many of this process's CPUs were idle over the next ``sample_s`` seconds (from
    /proc/stat, the CPUs of the process's affinity); None where that cannot be read."""

    try:
        mine = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mine = None

    def read() -> dict[int, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if not (line.startswith("cpu") and line[3:4].isdigit()):
                    continue
                name, *fields = line.split()
                v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                out[int(name[3:])] = (v[3] + v[4], sum(v))
        return out

    try:
        a = read()
        time.sleep(sample_s)
        b = read()
    except (OSError, ValueError):
        return None
    cpus = [c for c in (mine if mine is not None else b) if c in a and c in b]
    total = sum(b[c][1] - a[c][1] for c in cpus)
    if not cpus or total <= 0:
        return None
    idle = sum(b[c][0] - a[c][0] for c in cpus)
    return len(cpus) * idle / total


def default_threads(sample_s: float = 0.1) -> int:
    """Threads for a run when the user gave none (one process on the node): the CPUs that
    are idle now (``idle_cores``, rounded; at least 1), at most numba's maximum
    (``NUMBA_NUM_THREADS``, by default every core).  A quiet node gets every core; a node
    whose cores other processes keep busy gets fewer, as many threads as would find a free
    core.  The spikes do not depend on it (results are identical for any thread count)."""

    top = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    idle = idle_cores(sample_s)
    if idle is None:
        return top
    return max(1, min(top, int(idle + 0.5)))


def choose_threads(requested: int | None) -> int | None:
    """The threads of a command: ``requested`` (``--threads``) if given; under MPI None
    (the engine shares each node's cores among its ranks); else ``default_threads()``,
    logged when other processes keep some cores busy."""
    if requested is not None:
        return requested
    if launched_under_mpi():
        return None


    n = default_threads()
    top = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if n < top:
        logging.getLogger(__name__).info(
            "threads: %d of %d (other processes keep the other cores busy; --threads N to "
            "choose)", n, top)
    return n
