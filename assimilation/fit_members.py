"""A fit's forward runs on MPI member communicators: ``Forward(run_map=MemberMap(comm, P))``.

The ranks of ``comm`` (size M * P) form M member communicators of P consecutive ranks
(``members.split_members``, as ``dtb assimilate`` does); forward run j goes to member
j mod M, which builds its brain as one engine distributed over its P ranks (P = 1: a whole
run per rank).  The results of every run reach every rank, in run order, so each rank can
make the same ensemble update: the inversion itself is cheap and deterministic, only the
forward runs are spread.  Every run has its own seed and the engine gives the same spikes
on any number of ranks, so the fit does not depend on M or P (tests/test_fit_members.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dtb.assimilation.members import split_members

__all__ = ["MemberMap"]


class MemberMap:
    """``run_map(fn, jobs)`` for ``Forward``: ``fn(job, comm=member_comm)`` on the member
    that owns each job, results gathered on every rank of ``comm`` in job order.

    ``comm``: an MPI communicator (all of its ranks call every ``run_map`` together, with
    the same jobs); ``ranks_per_member``: P, a divisor of its size."""

    def __init__(self, comm: Any, ranks_per_member: int = 1):
        self.comm = comm
        self.member_comm, self.member, self.groups = split_members(comm, ranks_per_member)
        self.ranks_per_member = int(ranks_per_member)

    def __call__(self, fn: Callable[..., Any], jobs: Iterable[Any]) -> list[Any]:
        jobs = list(jobs)
        mine = [(j, fn(jobs[j], comm=self.member_comm))
                for j in range(self.member, len(jobs), self.groups)]
        lead = self.member_comm.Get_rank() == 0       # one copy of each member's results
        parts = self.comm.allgather(mine if lead else [])
        out: list[Any] = [None] * len(jobs)
        for part in parts:
            for j, r in part:
                out[j] = r
        missing = [j for j, r in enumerate(out) if r is None]
        if missing:  # a broken split would otherwise surface as a shape error much later
            raise RuntimeError(f"member map: no result for runs {missing}")
        return out

    def describe(self) -> dict[str, Any]:
        """The layout, for a manifest."""
        return {"ranks": int(self.comm.Get_size()), "member_communicators": self.groups,
                "ranks_per_member": self.ranks_per_member}
