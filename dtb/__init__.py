"""dtb: a distributed whole-brain digital-twin simulator.

Public API: the network description (``Network``, ``Population``, ``Projection``, rules,
inputs, ``Dist``), ``Engine`` to build and run it, ``load_config`` for YAML files,
``BrainSpec`` for personalised brains (``dtb.brain.build`` makes them from images),
``models`` with built-in networks, and ``dtb.io.rundir.write_run`` for run directories.
"""

from dtb.brain.spec import BrainSpec
from dtb.engine.simulation import Engine
from dtb.engine.threads import configure as _configure_threads
from dtb.errors import ConfigError, DtbError, InputError, OutputError
from dtb.model.config import SimulationSettings, load_config, parse_network
from dtb.model.network import (
    DCInput,
    Dist,
    FixedInDegree,
    FixedTotalNumber,
    LongRange,
    Network,
    OUInput,
    PairwiseBernoulli,
    PerUnit,
    PoissonInput,
    Population,
    Projection,
    UnitLocal,
)
from dtb.version import __version__

# OpenMP's waiting policy, before its runtime starts (at numba's first parallel loop, not
# at an import): idle threads sleep unless the user chose otherwise (dtb.engine.threads)
_configure_threads()


__all__ = [
    "BrainSpec", "ConfigError", "DCInput", "Dist", "DtbError", "Engine", "FixedInDegree",
    "FixedTotalNumber", "InputError", "LongRange", "Network", "OUInput", "OutputError",
    "PairwiseBernoulli", "PerUnit", "PoissonInput", "Population", "Projection",
    "SimulationSettings", "UnitLocal", "load_config", "parse_network", "__version__",
]
