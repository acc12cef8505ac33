"""A fit's forward runs on MPI member communicators: ``Forward(run_map=MemberMap(comm, P))``.

The ranks of ``comm`` (size M * P) form M member communicators of P consecutive ranks
(``members.split_members``, as ``dtb assimilate`` does); forward run j goes to member j mod
M, which builds its brain as one engine distributed over its P ranks (P = 1: a whole run per
rank). The results of every run reach every rank, in run order, so each rank can make the
same ensemble update: the inversion itself is cheap and deterministic, only the forward runs
are spread (the jobs are rank 0's, broadcast, so a rank whose arithmetic differed in the
last bit still runs rank 0's parameters). ``SharedRun`` lets every rank drive the same fit
loop while rank 0 alone writes the run directory. Every run has its own seed and the engine
gives the same spikes on any number of ranks, so the fit does not depend on M or P
(tests/test_fit_members.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dtb.assimilation.members import split_members

__all__ = ["MemberMap", "SharedRun"]


class MemberMap:
    """``run_map(fn, jobs)`` for ``Forward``: ``fn(job, comm=member_comm)`` on the member
    that owns each job, results gathered on every rank of ``comm`` in job order.

    ``comm``: an MPI communicator (all of its ranks call every ``run_map`` together, with
    the same jobs); ``ranks_per_member``: P, a divisor of its size."""

    def __init__(self, comm: Any, ranks_per_member: int = 1):
        self.comm = comm
        self.member_comm, self.member, self.groups = split_members(comm, ranks_per_member)
        self.ranks_per_member = int(ranks_per_member)

    def __call__(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        jobs: list[Any] = self.comm.bcast(list(items), root=0)
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


class SharedRun:
    """A fit's run directory (``fit_run.FitRun``) as every rank of ``comm`` sees it: rank 0
    holds ``run`` and writes; the other ranks hold None and skip the writes; a checkpoint
    read at ``--resume`` is read by rank 0 and broadcast.  Used as a context manager like
    the run itself (only rank 0's marks the run failed on an exception)."""

    def __init__(self, run: Any, comm: Any):
        self.run, self.comm = run, comm

    def __enter__(self) -> SharedRun:
        if self.run is not None:
            self.run.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.run is not None:
            self.run.__exit__(*exc)

    def _root(self, name: str, *args: Any) -> Any:
        return getattr(self.run, name)(*args) if self.run is not None else None

    def begin(self, *args: Any) -> None:
        self._root("begin", *args)

    def commit(self) -> None:
        self._root("commit")

    def restart(self, iteration: int) -> None:
        self._root("restart", iteration)

    def checkpoint(self, state: Any, extra: dict[str, Any]) -> None:
        self._root("checkpoint", state, extra)

    def interrupt(self, iteration: int, reason: str) -> None:
        self._root("interrupt", iteration, reason)

    def complete(self, files: dict[str, Any], metrics: dict[str, Any]) -> Any:
        return self._root("complete", files, metrics)

    def load_checkpoint(self) -> Any:
        got = self.run.load_checkpoint() if self.run is not None else None
        return self.comm.bcast(got, root=0)
