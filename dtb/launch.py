"""How this process was launched: by an MPI launcher with several ranks, or alone.  Decided
from the environment, so that nothing here initialises MPI (importing mpi4py would)."""

from __future__ import annotations

import os

MPI_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK", "PMI_RANK")


def launched_under_mpi() -> bool:
    """True when an MPI launcher (mpiexec, srun with PMI) started this process with
    more than one rank; decided from the environment, so MPI is not initialised."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        v = os.environ.get(var)
        if v is not None and v.isdigit() and int(v) > 1:
            return True
    return False
