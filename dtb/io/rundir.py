"""Run directories: what one simulation leaves behind.

A run directory holds

- ``manifest.json``: the configuration (a valid YAML/JSON config that reproduces the run),
  versions, seed, backend (with the GPU's figures), ranks, threads, host, counts, timings,
  per-population rates, checksums of the outputs, the command line and a ``status``;
- ``spikes.h5``: every spike in the SONATA layout that bmtk writes and reads,
  ``/spikes/<population>/timestamps`` (float64, ms) and ``/spikes/<population>/node_ids``
  (uint64, numbered from 0 within the population), sorted by (node id, time); in a recorded
  run (dtb.engine.recording) its datasets are virtual, over the per-rank parts in ``spikes/``;
- ``series.zarr`` (and on request ``series.h5``): dense time series (dtb.io.series).

Every output is listed in the manifest's ``outputs`` with its SHA-256, part files included.

The manifest is written with status ``"running"`` when the run starts and replaced atomically
(temporary file in the same directory, fsync, ``os.replace``) as the last act of a run, with
status ``"complete"``; a run that raises is marked ``"failed"`` with the error.  An interrupted
or failed run therefore never looks complete, and every output a complete manifest lists is
already in place with the recorded checksum.

A run stopped on request after writing a checkpoint (``checkpoints/``, dtb.io.checkpoint) is
marked ``"interrupted"`` and keeps its partial outputs; ``RunDirectory.reopen`` continues it
(``dtb simulate --resume``), recording each restart in the manifest's ``restarts``.  A complete
run directory holds no checkpoints.

Typical use::

    with RunDirectory("runs/mc", overwrite=False) as rd:   # checked before anything is built
        rd.start(network, settings)
        eng = Engine(network, settings.dt, settings.seed)
        eng.run(settings.t)
        rd.finish(eng.summary(), spikes=eng.population_spikes())

or, for an engine that has already run, ``write_run(path, engine)``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dtb.errors import ArgumentError
from dtb.io.fileio import sha256_file as sha256_file  # re-exported: dtb.io.rundir's API
from dtb.io.fileio import write_atomic as write_atomic
from dtb.io.lifecycle import RunLifecycle
from dtb.io.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SPIKES,
    WRITTEN,
    NotResumable,
    RunSummary,
    resumable_manifest,
    run_config,
    summary_record,
    utc_now,
    versions,
)
from dtb.io.runfiles import (
    config_differences,
    config_digest,
)
from dtb.io.runspec import RunSpec
from dtb.io.sonata_layout import spikes_image
from dtb.model.config import SimulationSettings

if TYPE_CHECKING:
    from dtb.model.network import Network

class RunDirectory(RunLifecycle):
    """The run directory of ``dtb simulate`` and ``dtb demo`` (and ``write_run``): the
    lifecycle of ``dtb.io.lifecycle.RunLifecycle`` (checks, lock, overwrite, status
    transitions, failure on an exception) with a manifest of format ``dtb-run``: the
    configuration the network and settings give, the simulation's counts, timings and
    rates (its ``RunSummary``), the spikes' checksums."""

    def start(self, network: Network, settings: SimulationSettings,
              command: Sequence[str] | None = None, source: Mapping[str, Any] | None = None,
              threads: int | None = None, written: Sequence[str] = (),
              run_spec: RunSpec | None = None) -> None:
        """Write the manifest with status ``"running"`` (an earlier run being replaced is
        set aside first).

        ``settings`` holds dt (ms), t (model time, ms) and seed; ``command`` the command line
        (default ``sys.argv``); ``source`` where the network came from (a built-in model and
        its arguments, or a config file); ``threads`` the CPU threads the engine will use;
        ``written``: top-level entries this run writes besides ``WRITTEN`` (``brain.h5``).
        The manifest lists them all in ``written`` (what ``--overwrite`` may replace) and
        the SHA-256 of the configuration in ``config_sha256`` (checked on ``--resume``);
        ``run_spec`` (dtb simulate's: what ``--resume`` rebuilds the run from,
        dtb.io.runspec) goes into ``run_spec`` with its SHA-256 in ``run_spec_sha256``.
        """
        config = run_config(network, settings, source)
        v = versions()
        self.record_start({
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "status": "running",
            "error": None,
            "dtb_version": v["dtb"],
            "versions": v,
            "source": dict(source) if source else None,
            "config": config,
            "config_sha256": config_digest(config),
            **(run_spec.manifest_fields() if run_spec is not None else {}),
            "written": sorted({*WRITTEN, *written}),
            "seed": settings.seed,
            "backend": "cpu",
            "ranks": 1,
            "threads": threads,
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "command": list(sys.argv if command is None else command),
            "cwd": os.getcwd(),
            "start_time": utc_now(),
            "end_time": None,
            "counts": None,
            "timings": None,
            "rates_hz": None,
            "outputs": {},
        })

    def write_spikes(self, spikes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        """Write ``spikes.h5`` (SONATA) from {population: (times in ms, node ids from 0)}.

        Every population gets a group, empty ones included, sorted by (node id, time)
        (``sorting = "by_id"``, as a recorded run's).  The HDF5 file is made in memory
        (about 16 bytes per spike) and written with plain file I/O to a temporary name, fsynced
        and renamed: HDF5 itself handles a full disk badly (errors on close, then a crash), a
        plain write reports it as an ``OutputError``.  Returns the manifest's ``outputs``
        entry (path, sha256, bytes, spikes per population).
        """
        image = spikes_image(spikes)
        try:
            digest, size = write_atomic(self.path / SPIKES, image, "spikes")
        finally:
            image.release()
        return {"path": SPIKES, "format": "sonata", "sha256": digest, "bytes": size,
                "populations": {k: int(len(v[0])) for k, v in spikes.items()}}

    def finish(self, summary: RunSummary,
               spikes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
               distribution: dict | None = None,
               recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the spikes (unless recorded) and the manifest with status ``"complete"``
        (last), with what ``summary`` (the simulation's ``summary()``) says of the run.

        ``spikes`` ({population: (times in ms, node ids from 0)}, what
        ``population_spikes()`` gathers) or, instead, ``recorded``: what ``Recording.finish``
        returned (outputs already written in parallel and the spike count per population).
        On several ranks, rank 0 calls this with ``distribution``
        (``distribution_report()``), collectives the other ranks took part in.  Returns the
        final manifest.
        """
        if not self._started:
            raise RuntimeError("RunDirectory.finish() before start()")
        if spikes is None and recorded is None:
            raise ArgumentError("RunDirectory.finish: neither spikes nor recorded -- "
                                "expected the spikes to write or what a Recording wrote")
        self.commit()
        if recorded is not None:
            outputs = dict(recorded["outputs"])
            per_pop = dict(recorded["pop_counts"])
            t_rec = float(recorded.get("model_time_ms", summary.model_time_ms))
        elif spikes is not None:
            outputs = {"spikes": self.write_spikes(spikes)}
            per_pop = {name: int(len(t)) for name, (t, _) in spikes.items()}
            t_rec = float(summary.model_time_ms)
        self.record_complete({**summary_record(summary, per_pop, t_rec, distribution),
                              "outputs": outputs})
        # the spike spill files (dtb.io.sonata) are in the parts now
        for q in (self.path / "spikes").glob(".rank-*.spill"):
            q.unlink(missing_ok=True)
        return self.manifest

    # --- interruption and resumption ---------------------------------------------------
    @classmethod
    def reopen(cls, path: str | os.PathLike[str], lock: bool = True) -> RunDirectory:
        """An existing run directory to continue (``dtb simulate --resume``): its manifest
        read back, nothing removed.  Raises ``NotResumable`` naming the path when there is
        no run directory there, or its status is ``"complete"`` or ``"failed"`` (a failed
        run's outputs are removed), ``OutputError`` when it cannot be written."""
        return cls.reopened(path, resumable_manifest(Path(path)), lock)

    def check_config(self, network: Network, settings: SimulationSettings,
                     source: Mapping[str, Any] | None) -> None:
        """Raise ``NotResumable`` naming every field where the configuration rebuilt for
        ``--resume`` (``network``, ``settings``, ``source``) differs from the one the
        manifest recorded (an edited manifest, or inputs read differently)."""

        now = json.loads(json.dumps(run_config(network, settings, source)))
        diff = config_differences(self.manifest.get("config"), now)
        # the settings first: a changed dt changes a network's delays too, dozens of fields
        diff.sort(key=lambda d: not d.startswith("simulation."))
        if diff:
            shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5
                                            else "")
            raise NotResumable(f"{self.path / MANIFEST}: the recorded configuration differs "
                               f"from the one its run_spec and files give now ({shown})"
                               " -- a resumed run must continue the run it names; was the "
                               "manifest edited?")

    def restart(self, step: int, t_ms: float, checkpoint: str,
                threads: int | None = None) -> None:
        """Mark a reopened run ``"running"`` again, appending the restart (time, the
        checkpoint's step and model time, its directory name) to ``restarts``."""
        self.record_restart({"step": int(step), "t_ms": float(t_ms),
                             "checkpoint": checkpoint}, threads)

    def interrupt(self, step: int, t_ms: float, checkpoint: str, reason: str) -> None:
        """Mark the run ``"interrupted"`` (resumable from ``checkpoint``, a directory name
        under ``checkpoints/``), keeping its partial outputs."""
        self.record_interrupt({"step": int(step), "t_ms": float(t_ms),
                               "checkpoint": checkpoint, "reason": reason})


class FinishedSimulation(Protocol):
    """What ``write_run`` needs of a simulation that has run (dtb.engine.simulation's)."""

    network: Network
    dt: float
    seed: int
    threads: int

    @property
    def t_ms(self) -> float: ...

    def population_spikes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...

    def summary(self) -> RunSummary: ...


def write_run(path: str | os.PathLike[str], engine: FinishedSimulation,
              overwrite: bool = False, command: Sequence[str] | None = None,
              source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the run directory of an engine that has already run; returns the manifest.

    The recorded simulation settings are the engine's dt (ms), model time reached (ms) and seed.
    """

    settings = SimulationSettings(engine.dt, engine.t_ms, engine.seed)
    with RunDirectory(path, overwrite) as rd:
        rd.start(engine.network, settings, command, source, engine.threads)
        return rd.finish(engine.summary(), spikes=engine.population_spikes())
