"""Under mpiexec: rank 1 fails inside a dtb command while rank 0 waits in a collective
(tests/test_mpi.py).  Without dtb.cli.main's MPI_Abort, rank 0 would wait for ever."""

import sys

from mpi4py import MPI

import dtb.cli.main as cli
from dtb.errors import OutputError


def _warmup(a):
    if MPI.COMM_WORLD.Get_rank() == 1:
        raise OutputError("rank-one failure")
    MPI.COMM_WORLD.Barrier()
    return 0


cli.run_warmup = _warmup
sys.exit(cli.main(["warmup"]))
