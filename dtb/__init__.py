"""dtb: a distributed whole-brain digital-twin simulator.

Public API: the network description (``Network``, ``Population``, ``Projection``, rules,
inputs, ``Dist``), ``Engine`` to build and run it, ``load_config`` for YAML files,
``models`` with built-in networks, and ``write_run`` for run directories.
"""

from dtb.config import SimulationSettings, load_config, parse_network
from dtb.engine import Engine
from dtb.errors import ConfigError, DtbError, InputError, OutputError
from dtb.network import (
    DCInput,
    Dist,
    FixedInDegree,
    FixedTotalNumber,
    Network,
    OUInput,
    PairwiseBernoulli,
    PoissonInput,
    Population,
    Projection,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DCInput", "Dist", "DtbError", "Engine", "FixedInDegree", "FixedTotalNumber",
    "InputError",
    "Network", "OUInput", "OutputError", "PairwiseBernoulli", "PoissonInput", "Population",
    "Projection", "SimulationSettings", "load_config", "parse_network", "__version__",
]
