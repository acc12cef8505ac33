"""``dtb warmup``: compile (or load from numba's cache) every CPU kernel ahead of a run.

A fresh install compiles the numba kernels at their first use (30-60 s on a small
machine).  ``dtb warmup`` pays that once, e.g. in a container image's build or a job's
setup step, by building and running small networks that reach every kernel: both neuron
models, every input kind (Poisson with few and with many inputs, Ornstein-Uhlenbeck, DC),
every connection rule of configs (fixed in-degree, fixed total number, pairwise
Bernoulli) and of brains (unit-local, long-range).  Where the compiled code goes:
dtb.engine.compiling (``NUMBA_CACHE_DIR`` chooses).
"""

from __future__ import annotations

import argparse
import logging
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from dtb.brain.build import BuildOptions, build
from dtb.data import demo_inputs
from dtb.engine.compiling import cache_dir, compile_seconds, install
from dtb.engine.cpu import CpuBackend
from dtb.engine.simulation import Engine
from dtb.kernels.bundles import Route
from dtb.model.config import parse_network

log = logging.getLogger(__name__)

_UNIFORM_V = {"dist": "uniform", "low": -65.0, "high": -50.0}
NETWORK: dict[str, Any] = {  # every model, input kind and config rule, at a few neurons
    "name": "warmup",
    "populations": [
        {"name": "E", "size": 40, "type": "E", "model": "lif_cond",
         "initial": {"V": _UNIFORM_V},
         "inputs": [{"type": "ou", "mean": 0.66, "sigma": 0.12, "tau": 10.0},
                    {"type": "poisson", "rate": 10.0, "in_degree": 5, "weight": 1.0},
                    {"type": "dc", "amplitude": 0.05}]},
        {"name": "I", "size": 20, "type": "I", "model": "iaf_psc_exp",
         "params": {"V_th": {"dist": "normal", "mean": -50.0, "std": 1.0}},
         "initial": {"V": _UNIFORM_V},
         "inputs": [{"type": "poisson", "rate": 8.0, "in_degree": 2000, "weight": 87.8}]},
    ],
    "projections": [
        {"source": "E", "target": "E", "rule": {"kind": "fixed_indegree", "k": 5},
         "weight": {"dist": "normal", "mean": 1.0, "std": 0.1, "low": 0.0},
         "delay": {"dist": "uniform", "low": 1.0, "high": 3.0}, "autapses": False},
        {"source": "E", "target": "I", "rule": {"kind": "fixed_total_number", "n": 100},
         "weight": {"dist": "lognormal", "mu": 4.0, "sigma": 0.5}, "delay": 1.5},
        {"source": "I", "target": "E", "rule": {"kind": "pairwise_bernoulli", "p": 0.2},
         "weight": 1.0, "delay": 1.0},
    ],
}
T_MS = 5.0


def warm_up(threads: int | None = None) -> dict[str, float]:
    """Build and run the warm-up networks; returns {"seconds": wall time, "compile_s":
    of which compiling} (compile_s about 0 when every kernel was in the cache)."""

    install()
    t0, c0 = time.perf_counter(), compile_seconds()
    brain = build(**demo_inputs(), options=BuildOptions(neurons=2410))
    for net in (parse_network(NETWORK, 0.1), brain.to_network(name="warmup_brain")):
        Engine(net, dt=0.1, seed=1, threads=threads).run(T_MS)
    _warm_exchange(Engine(parse_network(NETWORK, 0.1), dt=0.1, seed=1, threads=threads))
    return {"seconds": time.perf_counter() - t0, "compile_s": compile_seconds() - c0}


def _warm_exchange(sim: Engine) -> None:
    """Compile the distributed time loop (kernels/loop.py ``run_windows_exchanged``)
    without MPI: one rank with no peers, whose swap moves nothing."""
    none = np.zeros(0, np.int64)
    tables = sim.part.tables
    route = Route(np.zeros(sim.n_local + 1, np.int64), none, none, none, none,
                  np.zeros(1, np.int64), sim.part.pop_gid0, tables.pop_proj_ptr,
                  tables.pop_proj)

    class Alone:
        blocks = SimpleNamespace(send=np.zeros((0, 17), np.int64),
                                 recv=np.zeros((0, 17), np.int64), cap=16)

        def swap(self, counts, data):
            return none, np.zeros(1, np.int64), 0

    assert isinstance(sim.backend, CpuBackend)
    sim.backend.advance_exchanged(10, sim.min_delay_steps, route, Alone(),
                                  lambda st, ix, n: None)


def add_warmup_parser(sub: Any) -> None:
    """Register ``dtb warmup``."""
    w = sub.add_parser(
        "warmup", help="compile (or load from the cache) every CPU kernel ahead of a run",
        description="Compile the numba kernels once, so that later runs start at once: in "
                    "a container image's build, a job's setup or after installing. The "
                    "compiled code is cached beside the kernels, or in NUMBA_CACHE_DIR.")
    w.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all)")


def run_warmup(a: argparse.Namespace) -> int:
    """``dtb warmup``: returns 0; prints what it did and where the cache is."""

    r = warm_up(a.threads)
    what = (f"compiled in {r['compile_s']:.1f} s" if r["compile_s"] >= 0.05
            else "all in the cache already")
    print(f"dtb warmup: kernels ready in {r['seconds']:.1f} s ({what}); cache: {cache_dir()}")
    return 0
