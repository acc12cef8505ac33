"""``RunSummary`` (issue 17, item 4: run directories that know nothing of the engine): the
simulation hands ``RunDirectory.finish`` a frozen summary instead of itself, and the
complete manifest is the one the code before wrote, key for key and value for value.

The expectation is that manifest: the key order and the engine's fields below were written
by ``write_run`` before the summary existed (``engine_record`` reading the engine with
getattr/hasattr), for the same run with the same timings; and, independently, the counts
and rates recomputed from the engine's own arrays and spikes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import TINY

import dtb
from dtb.engine.simulation import Engine
from dtb.errors import ArgumentError
from dtb.io.manifest import RunSummary, summary_record
from dtb.io.rundir import RunDirectory, write_run
from dtb.model.config import SimulationSettings

#: the top-level keys of a complete write_run manifest, in order (the code before RunSummary)
KEYS = ["format", "format_version", "status", "error", "dtb_version", "versions", "source",
        "config", "config_sha256", "written", "seed", "backend", "ranks", "threads",
        "hostname", "platform", "command", "cwd", "start_time", "end_time", "counts",
        "timings", "rates_hz", "outputs", "gpu", "distribution"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The tiny network of tests/test_cli.py, 20 ms, its timings fixed (they vary)."""
    cfg = tmp_path_factory.mktemp("summary") / "tiny.yaml"
    cfg.write_text(TINY)
    net, sim = dtb.load_config(cfg)
    eng = Engine(net, dt=sim.dt, seed=sim.seed, threads=1)
    eng.run(20.0)
    eng.build_s, eng.simulate_s, eng.compile_s = 1.25, 2.5, 0.75
    return eng


def test_the_complete_manifest_is_the_one_written_before(engine: Engine,
                                                         tmp_path: Path) -> None:
    m = write_run(tmp_path / "run", engine, command=["x"])
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert list(on_disk) == KEYS and on_disk == json.loads(json.dumps(m))
    # as the code before wrote them for this run (seed 3, 20 ms)
    assert {k: on_disk[k] for k in ("threads", "counts", "ranks", "backend", "gpu",
                                    "distribution", "timings", "rates_hz")} == {
        "threads": 1,
        "counts": {"neurons": 50, "synapses": 300, "bytes_per_synapse": 9.36,
                   "spikes": 74},
        "ranks": 1, "backend": "cpu", "gpu": None, "distribution": None,
        "timings": {"build_s": 1.25, "simulate_s": 2.5, "compile_s": 0.75,
                    "model_time_ms": 20.0, "rtf": 125.0},
        "rates_hz": {"E": 67.5, "I": 100.0}}
    assert list(on_disk["counts"]) == ["neurons", "synapses", "bytes_per_synapse", "spikes"]
    assert list(on_disk["timings"]) == ["build_s", "simulate_s", "compile_s",
                                        "model_time_ms", "rtf"]


def test_counts_and_rates_follow_the_engine(engine: Engine) -> None:
    """Independently: the counts are the engine's arrays, the rates its spikes per neuron
    per second of model time."""
    s = engine.summary()
    spikes = engine.population_spikes()
    rec = summary_record(s, {k: len(t) for k, (t, _) in spikes.items()}, 20.0, None)
    assert rec["counts"]["neurons"] == engine.V.size == 50
    assert rec["counts"]["synapses"] == int(engine.tables.n_synapses)
    assert rec["counts"]["spikes"] == len(engine.spikes()[0])
    for p in engine.network.populations:
        t, ids = spikes[p.name]
        assert rec["rates_hz"][p.name] == pytest.approx(len(t) / (p.size * 0.020))
        assert np.all(ids < p.size)
    # a distributed run's totals come from its distribution report
    dist = {"synapses_total": 1234, "bytes_per_synapse": 7.5}
    rec = summary_record(s, {"E": 0, "I": 0}, 20.0, dist)
    assert (rec["counts"]["synapses"], rec["counts"]["bytes_per_synapse"]) == (1234, 7.5)
    assert rec["distribution"] is dist
    assert summary_record(dataclasses.replace(s, model_time_ms=0.0), {"E": 0, "I": 0}, 0.0,
                          None)["timings"]["rtf"] is None


def test_the_summary_is_frozen_and_the_run_directory_needs_no_engine(engine: Engine,
                                                                      tmp_path: Path) -> None:
    s = engine.summary()
    assert isinstance(s, RunSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threads = 2  # type: ignore[misc]
    # finish from the summary and the spikes alone: the same manifest as write_run's
    with RunDirectory(tmp_path / "run", False) as rd:
        rd.start(engine.network, SimulationSettings(engine.dt, engine.t_ms, engine.seed),
                 ["x"], None, engine.threads)
        m = rd.finish(s, spikes=engine.population_spikes())
    assert list(m) == KEYS and m["counts"]["spikes"] == 74
    with RunDirectory(tmp_path / "run2", False) as rd:
        rd.start(engine.network, SimulationSettings(engine.dt, engine.t_ms, engine.seed))
        with pytest.raises(ArgumentError, match="neither spikes nor recorded"):
            rd.finish(s)
        rd.finish(s, spikes=engine.population_spikes())
    io = Path(dtb.__file__).parent / "io"
    for f in io.glob("*.py"):
        text = f.read_text()
        assert "import Engine" not in text and "from dtb.engine" not in text, f.name
