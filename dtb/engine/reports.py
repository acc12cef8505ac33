"""What a simulation reports of itself for its run directory, the methods
``Simulation.summary``, ``gpu_report`` and ``distribution_report``: the ``RunSummary`` that
``dtb.io.rundir.RunDirectory.finish`` records (the run directory knows nothing else of the
engine), the GPU backend's figures and a distributed run's per-rank figures.  Counts are
neurons and synapses, times seconds (``model_time_ms`` ms).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from dtb.io.manifest import RunSummary

__all__ = ["run_summary", "gpu_report", "distribution_report"]


class Simulation(Protocol):
    """What these reports read of a dtb.engine.simulation.Simulation (which binds them as
    its methods; named here by what it offers, so that this module need not import it)."""

    threads: int
    n_neurons: int
    n_local: int
    n_synapses: int
    bytes_per_synapse: float
    ranks: int
    build_s: float
    simulate_s: float
    compile_s: float
    context: Any
    network: Any
    backend: Any
    exchange: Any
    comm: Any
    routing: str

    @property
    def t_ms(self) -> float: ...

    @property
    def partition(self) -> str: ...


def run_summary(sim: Simulation) -> RunSummary:
    """What the run directory records of ``sim`` (dtb.io.manifest.RunSummary): its threads,
    counts (synapses and bytes this rank's), ranks, backend, GPU figures, seconds building,
    simulating and compiling, the model time reached and the populations' sizes."""
    return RunSummary(
        threads=sim.threads, neurons=sim.n_neurons, synapses=sim.n_synapses,
        bytes_per_synapse=sim.bytes_per_synapse, ranks=sim.ranks,
        backend=sim.context.backend, gpu=gpu_report(sim), build_s=sim.build_s,
        simulate_s=sim.simulate_s, compile_s=sim.compile_s, model_time_ms=sim.t_ms,
        population_sizes={p.name: p.size for p in sim.network.populations})


def gpu_report(sim: Simulation) -> dict[str, Any] | None:
    """The GPU backend's figures for the manifest (None on the CPU backend): device,
    memory, record size, launches, graphs, and the MPI's CUDA-awareness (several ranks).
    Spike packets travel through host memory either way: every window's spikes are
    needed on the host for the recorders, so a device-to-device send would save only
    the small upload of the packets received."""
    figures = sim.backend.report()
    if figures is None:
        return None
    aware = sim.context.cuda_aware_mpi
    return {**figures, "spike_exchange": "host",
            "cuda_aware_mpi": None if aware is None else
            {"supported": aware.supported, "how": aware.how}}


def distribution_report(sim: Simulation) -> dict[str, Any]:
    """Per-rank and global figures of a distributed run (a collective on several ranks):
    neurons, synapses, build and simulation seconds, exchange messages, bytes and
    seconds; imbalance = max / mean."""
    ex = sim.exchange
    mine = {"neurons": sim.n_local, "synapses": sim.n_synapses,
            "synapse_bytes": sim.bytes_per_synapse * sim.n_synapses,
            "build_s": sim.build_s, "simulate_s": sim.simulate_s,
            **(ex.stats() if ex is not None else {"window_steps": 0,
                                                  "peers_send": 0, "peers_recv": 0,
                                                  "windows": 0, "messages": 0,
                                                  "bytes": 0, "exchange_s": 0.0,
                                                  "block_cap": 0, "block_resizes": 0})}
    rows = sim.comm.allgather(mine) if sim.ranks > 1 else [mine]
    per = {k: [r[k] for r in rows] for k in mine}
    syn = int(sum(per["synapses"]))
    windows = max(1, max(per["windows"]))

    def imb(xs):
        m = float(np.mean(xs))
        return float(max(xs) / m) if m > 0 else 1.0

    return {
        "ranks": sim.ranks,
        "routing": sim.routing,
        "partition": sim.partition,
        "synapses_total": syn,
        "bytes_per_synapse": float(sum(per["synapse_bytes"]) / syn) if syn else 0.0,
        # compute: simulation time outside the exchange (activity, not only size, costs)
        "imbalance": {"neurons": imb(per["neurons"]), "synapses": imb(per["synapses"]),
                      "compute": imb([s - e for s, e in zip(per["simulate_s"],
                                                            per["exchange_s"], strict=True)])},
        "exchange": {
            "window_steps": int(max(per["window_steps"])),
            "windows": windows,
            "messages_per_rank_per_window": float(np.mean(per["messages"])) / windows,
            "bytes_total": int(sum(per["bytes"])),
            "exchange_s_mean": float(np.mean(per["exchange_s"])),
            "exchange_fraction": float(np.mean(per["exchange_s"])
                                       / max(1e-12, np.mean(per["simulate_s"]))),
            "block_cap": int(max(per["block_cap"])),
            "block_resizes": int(max(per["block_resizes"])),
        },
        "per_rank": per,
    }
