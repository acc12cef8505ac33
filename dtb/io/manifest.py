"""What a run's ``manifest.json`` records and how it is read back: the format, the entries a
run writes, versions and times, the configuration (``run_config``), what the simulation did
(``RunSummary``, which the engine makes, and ``summary_record``), JSON-safe values
(``jsonable``), and the checks that a run can be resumed (``resumable_manifest``, raising
``NotResumable``).  The manifest's lifecycle
(running, complete, interrupted, failed) is :class:`dtb.io.rundir.RunDirectory`'s.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numba
import numpy as np

from dtb.errors import InputError
from dtb.io.runfiles import config_digest, format_problem
from dtb.version import __version__

if TYPE_CHECKING:
    from dtb.model.config import SimulationSettings
    from dtb.model.network import Network

MANIFEST = "manifest.json"
SPIKES = "spikes.h5"
FORMAT = "dtb-run"
FORMAT_VERSION = 1
OUTPUT_NAMES = ("spikes.h5", "spikes", "series.zarr", "series.h5", "series", "report",
                "bold.tsv", "bold.json")
CHECKPOINTS = "checkpoints"
#: the top-level entries a run of dtb simulate may write (the manifest's ``written``)
WRITTEN = (MANIFEST, *OUTPUT_NAMES, CHECKPOINTS)
RESUMABLE = ("interrupted", "running")  # "running": the job was killed without a warning


class NotResumable(InputError):
    """A run directory that ``dtb simulate --resume`` cannot continue (complete, failed,
    not a run directory): an input the user named, so the CLI's exit status is 2."""

    def __init__(self, message: str):
        super().__init__("", None, None, "", message)  # the message names path and expectation


def utc_now() -> str:
    """The current time, ISO 8601 in UTC with a ``Z`` suffix (second precision)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> dict[str, str]:
    """Versions of dtb, Python and the libraries a run's results depend on."""

    return {"dtb": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version}


def jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to strings."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # "inf", "-inf", "nan" (strict JSON has none of them)
    return x


@dataclass(frozen=True)
class RunSummary:
    """What a finished simulation tells its run directory (``Simulation.summary()``; the
    run directory knows nothing else of the engine): this rank's CPU threads, neurons
    (all ranks), synapses and bytes per synapse (this rank's; a distributed run's totals
    come from its distribution report), ranks, backend, the GPU backend's figures (None
    on the CPU), seconds building, simulating and compiling (first use, kept out of the
    other two), the model time reached (ms) and every population's size (for the
    rates)."""

    threads: int
    neurons: int
    synapses: int
    bytes_per_synapse: float
    ranks: int
    backend: str
    gpu: Mapping[str, Any] | None
    build_s: float
    simulate_s: float
    compile_s: float
    model_time_ms: float
    population_sizes: Mapping[str, int]


def summary_record(summary: RunSummary, per_pop: Mapping[str, int], t_rec: float,
                   distribution: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a complete manifest says of the simulation that ran (``summary``): threads,
    counts, ranks, backend, GPU, distribution, timings and the rate (Hz) of every
    population, from ``per_pop`` spikes over ``t_rec`` ms of recorded model time."""
    s = summary
    t_ms = float(s.model_time_ms)
    sizes = s.population_sizes
    rates = {name: (n / (sizes[name] * t_rec * 1e-3) if t_rec > 0 else 0.0)
             for name, n in per_pop.items()}
    n_spikes = int(sum(per_pop.values()))
    return dict(
        threads=s.threads,
        counts={"neurons": int(s.neurons),
                "synapses": int(distribution["synapses_total"] if distribution
                                else s.synapses),
                "bytes_per_synapse": float(distribution["bytes_per_synapse"]
                                           if distribution else s.bytes_per_synapse),
                "spikes": n_spikes},
        ranks=int(s.ranks),
        backend=s.backend,
        gpu=None if s.gpu is None else dict(s.gpu),
        distribution=distribution,
        timings={"build_s": float(s.build_s), "simulate_s": float(s.simulate_s),
                 "compile_s": float(s.compile_s),
                 "model_time_ms": t_ms,
                 "rtf": (s.simulate_s / (t_ms * 1e-3)) if t_ms > 0 else None},
        rates_hz=rates,
    )


def run_config(network: Network, settings: SimulationSettings,
               source: Mapping[str, Any] | None) -> dict[str, Any]:
    """The configuration a manifest records (JSON values): the network (or, for a brain
    file, its path and SHA-256), the simulation settings and what is recorded."""
    if source and source.get("kind") == "brain":
        # a brain file is the configuration (and may hold 10^5 units): refer to it
        config = {"brain": source["path"], "sha256": source.get("sha256"),
                  "name": network.name}
    else:
        config = dict(network.to_dict())
    config["simulation"] = {"dt": settings.dt, "t": settings.t, "seed": settings.seed}
    record = getattr(settings, "record", None)
    if record is not None:
        config["record"] = record.to_dict()
    return jsonable(config)


def resumable_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the run directory ``path``, checked to be one a resumed run can
    continue: readable, of a format this dtb writes, interrupted (or killed while running),
    its configuration as recorded.  Raises ``NotResumable`` naming the path otherwise."""
    f = path / MANIFEST
    if not path.is_dir():
        raise NotResumable(f"{path}: no such run directory -- expected the run "
                           "directory of an interrupted dtb simulate")
    try:
        manifest: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
        status = manifest["status"]
    except FileNotFoundError as e:
        raise NotResumable(f"{f}: missing -- expected a dtb run directory") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NotResumable(f"{f}: unreadable manifest ({e}) -- expected a dtb run "
                           "directory's manifest.json") from e
    problem = format_problem(manifest)
    if problem is not None:
        raise NotResumable(f"{f}: {problem} -- expected the manifest of a run written "
                           "by this dtb")
    if status == "complete":
        raise NotResumable(f"{path}: the run is complete already (status "
                           "\"complete\") -- nothing to resume")
    if status not in RESUMABLE:
        raise NotResumable(f"{path}: status {status!r} ({manifest.get('error')})"
                           " -- only an interrupted run can be resumed; a failed run's "
                           "outputs were removed: start it again with --overwrite")
    stored = manifest.get("config_sha256")
    if stored is not None and config_digest(manifest.get("config")) != stored:
        raise NotResumable(f"{f}: its \"config\" was edited after the run started (its "
                           f"SHA-256 is no longer the recorded config_sha256 {stored}) "
                           "-- a resumed run continues the configuration it started "
                           "with; restore the manifest or start a new run")
    return manifest
