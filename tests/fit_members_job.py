"""Under mpiexec: a small fit with its forward runs on member communicators; rank 0 saves
the prior, the posterior and the last statistics (tests/test_fit_members.py).

    mpiexec -n N python tests/fit_members_job.py BRAIN.h5 RANKS_PER_MEMBER OUT.npz
"""

import sys

import numpy as np
from mpi4py import MPI

from dtb.assimilation.fit_members import MemberMap
from dtb.brain.spec import BrainSpec

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from test_fit_members import small_fit  # noqa: E402


class Recorded(MemberMap):
    """MemberMap that notes the size of the communicator each run was given."""

    sizes: list[int] = []

    def __call__(self, fn, jobs):
        def run(job, comm):
            self.sizes.append(comm.Get_size())
            return fn(job, comm=comm)
        return super().__call__(run, jobs)


spec = BrainSpec.load(sys.argv[1])
mm = Recorded(MPI.COMM_WORLD, int(sys.argv[2]))
res, stats = small_fit(spec, mm)
runs = MPI.COMM_WORLD.gather(len(mm.sizes), root=0)
if MPI.COMM_WORLD.Get_rank() == 0:
    np.savez(sys.argv[3], prior=res.prior, posterior=res.posterior, stats=stats,
             sizes=np.array(sorted(set(mm.sizes))), runs=np.array(runs))
