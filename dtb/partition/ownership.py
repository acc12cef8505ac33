"""The ownership of a partition plan, planned once on rank 0 and broadcast."""

from __future__ import annotations

import numpy as np

from dtb.engine.context import on_root
from dtb.engine.decomposition import Ownership
from dtb.partition.planner import plan


def planned_ownership(spec, comm, method: str = "metis", routing: str = "direct",
                      ranks_per_node: int | None = None, seed: int = 0) -> Ownership:
    """The ownership of a partition plan of brain ``spec`` over comm's ranks: rank 0 plans
    (``dtb.partition.plan``) and broadcasts the result, so every rank uses the same one
    even if METIS were not deterministic across machines."""
    ranks = comm.Get_size() if comm is not None else 1

    def make() -> list[np.ndarray]:
        pl = plan(spec, ranks, routing=routing, method=method,
                  ranks_per_node=ranks_per_node, seed=seed)
        return Ownership.from_plan(pl, spec).to_arrays()

    return Ownership.from_arrays(on_root(comm, make), ranks, method)
