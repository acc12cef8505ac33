"""Run a network on however many ranks this was started with; rank 0 saves the spikes.

    mpiexec -n P python tests/mpi_job.py MODEL T_MS OUT.npz [SEED [ROUTING [PARTITION]]]

PARTITION: slices (the default ownership) | metis | contiguous (a plan; brain only) |
uneven (silent, bursting and empty ranks; model uneven).

MODEL: microcircuit | mixed | uneven | brain.  Used by test_mpi.py to compare rank counts.
"""

from __future__ import annotations

import sys

import numpy as np

import dtb
from dtb.engine.context import world


def brain_spec():
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    return build(**demo_inputs(), options=BuildOptions(neurons=6000))


def network(name: str):
    if name == "microcircuit":
        from dtb.models import microcircuit

        return microcircuit(0.02)
    if name == "brain":
        return brain_spec().to_network()
    pops = (
        dtb.Population("E", 400, model="iaf_psc_exp", type="E",
                       params={"tau_m": dtb.Dist.normal(10.0, 1.0, low=5.0)},
                       initial={"V": dtb.Dist.normal(-58.0, 5.0)},
                       inputs=(dtb.PoissonInput(8.0, 87.8, 1000),)),
        dtb.Population("I", 100, model="iaf_psc_exp", type="I",
                       inputs=(dtb.PoissonInput(8.0, 87.8, 950), dtb.DCInput(5.0))),
        dtb.Population("C", 150, model="lif_cond", type="E",
                       initial={"V": dtb.Dist.uniform(-70.0, -55.0)},
                       inputs=(dtb.OUInput(0.8, 0.2, 10.0),)),
    )
    w_e = dtb.Dist.normal(87.8, 8.78, low=0.0)
    w_i = dtb.Dist.normal(-351.2, 35.12, high=0.0)
    projs = (
        dtb.Projection("E", "E", dtb.FixedInDegree(80), w_e, dtb.Dist.uniform(0.5, 2.0)),
        dtb.Projection("E", "I", dtb.PairwiseBernoulli(0.1), w_e, 0.7),
        dtb.Projection("I", "E", dtb.FixedTotalNumber(8000), w_i, dtb.Dist.uniform(0.5, 1.0)),
        dtb.Projection("I", "I", dtb.FixedInDegree(20), w_i, 0.8, multapses=False),
        dtb.Projection("C", "E", dtb.FixedInDegree(10), w_e, 2.0),
        dtb.Projection("E", "C", dtb.FixedInDegree(30), dtb.Dist.uniform(0.01, 0.05), 0.6),
    )
    if name == "uneven":  # plus a silent and a bursting population
        pops += (dtb.Population("S", 200, model="iaf_psc_exp", type="E"),
                 dtb.Population("B", 40, model="iaf_psc_exp", type="E",
                                inputs=(dtb.DCInput(2000.0),)))
        projs += (dtb.Projection("S", "E", dtb.FixedInDegree(5), w_e, 1.0),
                  dtb.Projection("B", "E", dtb.FixedInDegree(3), w_e, 1.5),
                  dtb.Projection("B", "I", dtb.FixedInDegree(2), w_e, 0.9))
    return dtb.Network(pops, projs)


def uneven_ownership(net, ranks: int):
    """Rank 0 owns the silent population, rank 1 the bursting one, rank 2 (or 0) the
    rest; ranks above 2 own nothing at all."""
    from dtb.engine.decomposition import Ownership
    where = {"S": 0, "B": min(1, ranks - 1)}
    rest = min(2, ranks - 1) if ranks > 2 else 0
    return Ownership([np.array([0, p.size]) for p in net.populations],
                     [np.array([where.get(p.name, rest)]) for p in net.populations], ranks)


def main() -> None:
    name, t_ms, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    routing = sys.argv[5] if len(sys.argv) > 5 else "direct"
    partition = sys.argv[6] if len(sys.argv) > 6 else "slices"
    comm = world()
    own = None
    net = network(name)
    if partition == "uneven":
        own = uneven_ownership(net, comm.Get_size() if comm is not None else 1)
    elif partition != "slices":  # a plan of the brain: metis or contiguous
        from dtb.partition.ownership import planned_ownership
        own = planned_ownership(brain_spec(), comm, method=partition, routing=routing)
    eng = dtb.Engine(net, dt=0.1, seed=seed, comm=comm, routing=routing,
                     ranks_per_node=2, ownership=own)
    eng.run(t_ms)
    t, g = eng.spikes()
    if eng.rank == 0:
        st = eng.exchange.stats() if eng.exchange is not None else {}
        np.savez(out, t=t, g=g, ranks=eng.ranks, V=np.zeros(0),
                 resizes=st.get("block_resizes", 0), cap=st.get("block_cap", 0))


if __name__ == "__main__":
    main()
