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
        rd.finish(eng)

or, for an engine that has already run, ``write_run(path, engine)``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from dtb.errors import OutputError
from dtb.io.fileio import TMP_PREFIX as _TMP_PREFIX
from dtb.io.fileio import sha256_file as sha256_file  # re-exported: dtb.io.rundir's API
from dtb.io.fileio import why as _why
from dtb.io.fileio import write_atomic as write_atomic
from dtb.io.manifest import (
    CHECKPOINTS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OUTPUT_NAMES,
    SPIKES,
    WRITTEN,
    NotResumable,
    engine_record,
    jsonable,
    resumable_manifest,
    run_config,
    utc_now,
    versions,
)
from dtb.io.overwrite import put_back, remove, replaceable_entries, set_aside
from dtb.io.runfiles import (
    config_differences,
    config_digest,
)
from dtb.io.runlock import RunLock
from dtb.io.sonata_layout import spikes_image
from dtb.model.config import SimulationSettings

if TYPE_CHECKING:
    from dtb.engine.simulation import Engine
    from dtb.model.config import SimulationSettings
    from dtb.model.network import Network

class RunDirectory:
    """A run directory at ``path``, checked, locked and made ready for writing on
    construction.

    Raises ``OutputError`` (naming the path) when ``path`` is a file, lies under a file, is
    a non-empty directory and ``overwrite`` is false, or cannot be written;
    ``RunDirectoryBusy`` when another dtb process holds its lock (dtb.io.runlock);
    ``RefusedOutput`` (exit status 2) when ``overwrite`` is given but the directory is not
    one dtb wrote (no manifest of a known format and version), holds entries dtb did not
    write (dtb.io.runfiles: user files are never removed), or would lose one of ``inputs``
    (files this run reads, such as ``--brain RUN/brain.h5``).  The check creates the
    directory and writes and removes a probe file, so it is true even for root and
    read-only file systems, and it is cheap: make the ``RunDirectory`` before building the
    network.  Nothing is removed here: with ``overwrite`` the earlier run's entries are
    set aside (renamed into a hidden ``.dtb-old-<pid>/``) when the new run starts, put
    back if it fails before ``commit()`` (the end of its set-up: every check passed), and
    removed at ``commit``.

    Used as a context manager, an exception raised inside the ``with`` block marks the run
    ``"failed"`` (if ``start`` was called) and propagates; leaving the block releases the
    lock (also ``close()``).
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False,
                 inputs: Sequence[str | os.PathLike[str]] = ()):
        self.path = Path(path)
        self.manifest: dict[str, Any] = {}
        self._started = False
        self._finished = False
        self._replace: list[str] = []       # entries of an earlier run, to set aside
        self._aside: Path | None = None     # where they are while the new run starts
        self.restored = False               # a failed start put the earlier run back
        self.lock = RunLock(self.path)
        self._prepare(overwrite, inputs)

    # --- checks -----------------------------------------------------------------------
    def _prepare(self, overwrite: bool, inputs: Sequence[str | os.PathLike[str]]) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a directory -- expected a directory "
                              "for the run (or a path that does not exist yet)")
        created = not p.exists()
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
            why = f"{blocker} is a file, not a directory" if blocker else _why(e)
            raise OutputError(f"{p}: cannot create the run directory: {why}") from e
        try:
            self._check_entries(overwrite, inputs)
            self.lock.acquire()
            self._check_entries(overwrite, inputs)  # again, now that no dtb can change it
            probe = p / f"{_TMP_PREFIX}probe-{os.getpid()}"
            try:
                with open(probe, "wb") as f:
                    f.write(b"dtb")
                probe.unlink()
            except OSError as e:
                raise OutputError(f"{p}: run directory is not writable: {_why(e)}") from e
        except BaseException:
            self.lock.release()
            if created:
                with contextlib.suppress(OSError):
                    p.rmdir()
            raise

    def _check_entries(self, overwrite: bool,
                       inputs: Sequence[str | os.PathLike[str]]) -> None:
        """What an earlier run left here may be replaced (see the class docstring)."""
        self._replace = replaceable_entries(self.path, overwrite, inputs, self.lock.held)

    # --- replacing an earlier run -----------------------------------------------------
    def set_aside(self) -> None:
        """Move the earlier run's entries (``overwrite``) into a hidden directory, out of
        the new run's way; ``commit`` removes them, a failure before it puts them back."""
        if not self._replace or self._aside is not None:
            return
        self._aside, self._replace = set_aside(self.path, self._replace), []

    def commit(self) -> None:
        """The new run is set up (every check passed): remove the earlier run it replaces."""
        self.set_aside()
        if self._aside is not None:
            remove(self._aside)
            self._aside = None

    def _restore(self) -> bool:
        """Put an earlier run set aside back (the new run failed before ``commit``):
        remove what the new run wrote, then move the earlier entries back."""
        if self._aside is None:
            return False
        aside, self._aside = self._aside, None
        if not put_back(self.path, aside):
            return False  # what could not be moved back stays in the hidden directory
        self.restored = True
        return True

    def close(self) -> None:
        """Release the run directory's lock (idempotent)."""
        self.lock.release()

    def __del__(self) -> None:
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.release()

    # --- writing ----------------------------------------------------------------------
    def _write_manifest(self) -> None:
        """Replace the manifest atomically (dtb.io.fileio.write_atomic).  A ``"failed"``
        manifest that a full disk keeps from being written beside the old one is written
        over it in place (it needs no more room than the old one): a failed run must not
        stay ``"running"``."""

        final = self.path / MANIFEST
        text = json.dumps(jsonable(self.manifest), indent=2, allow_nan=False) + "\n"
        try:
            write_atomic(final, text.encode(), "manifest")
        except OutputError as e:
            full = isinstance(e.__cause__, OSError) and e.__cause__.errno in (
                errno.ENOSPC, errno.EDQUOT)
            if not (full and self.manifest.get("status") == "failed" and final.is_file()):
                raise
            try:
                with open(final, "r+b") as f:
                    f.write(text.encode())
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                raise e from None

    def start(self, network: Network, settings: SimulationSettings,
              command: Sequence[str] | None = None, source: Mapping[str, Any] | None = None,
              threads: int | None = None, written: Sequence[str] = ()) -> None:
        """Write the manifest with status ``"running"`` (an earlier run being replaced is
        set aside first).

        ``settings`` holds dt (ms), t (model time, ms) and seed; ``command`` the command line
        (default ``sys.argv``); ``source`` where the network came from (a built-in model and
        its arguments, or a config file); ``threads`` the CPU threads the engine will use;
        ``written``: top-level entries this run writes besides ``WRITTEN`` (``brain.h5``).
        The manifest lists them all in ``written`` (what ``--overwrite`` may replace) and
        the SHA-256 of the configuration in ``config_sha256`` (checked on ``--resume``).
        """
        self.set_aside()
        config = run_config(network, settings, source)
        v = versions()
        self.manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "status": "running",
            "error": None,
            "dtb_version": v["dtb"],
            "versions": v,
            "source": dict(source) if source else None,
            "config": config,
            "config_sha256": config_digest(config),
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
        }
        self._write_manifest()
        self._started = True

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

    def finish(self, engine: Engine, spikes: dict | None = None,
               distribution: dict | None = None,
               recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the engine's spikes (unless recorded) and the manifest with status
        ``"complete"`` (last).

        On several ranks, rank 0 calls this with ``distribution``
        (engine.distribution_report()) and either the gathered ``spikes``
        (engine.population_spikes()) or ``recorded``, what ``Recording.finish`` returned
        (outputs already written in parallel and the spike count per population), all
        collectives the other ranks took part in.  Returns the final manifest.
        """
        if not self._started:
            raise RuntimeError("RunDirectory.finish() before start()")
        self.commit()
        t_ms = float(engine.t_ms)
        if recorded is not None:
            outputs = dict(recorded["outputs"])
            per_pop = dict(recorded["pop_counts"])
            t_rec = float(recorded.get("model_time_ms", t_ms))
        else:
            if spikes is None:
                spikes = engine.population_spikes()
            outputs = {"spikes": self.write_spikes(spikes)}
            per_pop = {name: int(len(t)) for name, (t, _) in spikes.items()}
            t_rec = t_ms
        self.manifest.update(engine_record(engine, per_pop, t_rec, distribution),
                             outputs=outputs)
        self.manifest["status"] = "complete"
        self.manifest["end_time"] = utc_now()
        self.manifest.pop("interrupted", None)
        try:
            self._write_manifest()
        except OutputError:
            self.manifest["status"] = "running"
            raise
        self._finished = True
        # the run is complete: its checkpoints can only mislead a job script (and take room),
        # and the spike spill files (dtb.io.sonata) are in the parts now
        shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
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

        self = cls.__new__(cls)
        self.path = Path(path)
        self._finished = False
        self._started = False
        self.manifest = resumable_manifest(self.path)
        self._replace, self._aside, self.restored = [], None, False
        self.lock = RunLock(self.path)
        probe = self.path / f"{_TMP_PREFIX}probe-{os.getpid()}"
        try:
            probe.write_bytes(b"dtb")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"{self.path}: run directory is not writable: {_why(e)}") from e
        if lock:
            self.lock.acquire()
        self._started = True
        return self

    def check_config(self, network: Network, settings: SimulationSettings,
                     source: Mapping[str, Any] | None) -> None:
        """Raise ``NotResumable`` naming every field where the configuration rebuilt for
        ``--resume`` (``network``, ``settings``, ``source``) differs from the one the
        manifest recorded (an edited manifest, or inputs read differently)."""

        now = json.loads(json.dumps(run_config(network, settings, source)))
        diff = config_differences(self.manifest.get("config"), now)
        if diff:
            shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5
                                            else "")
            raise NotResumable(f"{self.path / MANIFEST}: the recorded configuration differs "
                               f"from the one the run's command and files give now ({shown})"
                               " -- a resumed run must continue the run it names; was the "
                               "manifest edited?")

    def restart(self, step: int, t_ms: float, checkpoint: str,
                threads: int | None = None) -> None:
        """Mark a reopened run ``"running"`` again, appending the restart (time, the
        checkpoint's step and model time, its directory name) to ``restarts``."""
        m = self.manifest
        m["status"] = "running"
        m["error"] = None
        m["end_time"] = None
        if threads is not None:
            m["threads"] = threads
        m.pop("interrupted", None)
        m.setdefault("restarts", []).append(
            {"time": utc_now(), "step": int(step), "t_ms": float(t_ms),
             "checkpoint": checkpoint})
        self._write_manifest()

    def interrupt(self, step: int, t_ms: float, checkpoint: str, reason: str) -> None:
        """Mark the run ``"interrupted"`` (resumable from ``checkpoint``, a directory name
        under ``checkpoints/``), keeping its partial outputs."""
        self.commit()
        for q in self.path.glob(f"{_TMP_PREFIX}{os.getpid()}-*"):
            q.unlink(missing_ok=True)
        self.manifest["status"] = "interrupted"
        self.manifest["end_time"] = utc_now()
        self.manifest["interrupted"] = {"time": utc_now(), "step": int(step),
                                        "t_ms": float(t_ms), "checkpoint": checkpoint,
                                        "reason": reason}
        self._write_manifest()
        self._finished = True  # nothing more to mark on the way out

    def fail(self, error: BaseException | str) -> None:
        """Mark the run ``"failed"`` with the error message (best effort: a manifest that
        cannot be written stays ``"running"``, never ``"complete"``)."""
        if isinstance(error, BaseException):
            msg = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            msg = str(error)
        for q in self.path.glob(f"{_TMP_PREFIX}{os.getpid()}-*"):
            remove(q)
        if self._restore():
            return  # the new run failed while starting: the earlier one is back as it was
        if not self._started:
            return
        self.remove_outputs()
        self.manifest["status"] = "failed"
        self.manifest["error"] = msg
        self.manifest["end_time"] = utc_now()
        try:
            self._write_manifest()
        except OutputError:
            pass

    def remove_outputs(self) -> None:
        """Remove what a failed run had written (spikes, parts, series, report): nothing
        half-written is left behind, only the manifest (and inputs such as brain.h5)."""
        for name in OUTPUT_NAMES:
            q = self.path / name
            try:
                if q.is_dir() and not q.is_symlink():
                    shutil.rmtree(q, ignore_errors=True)
                elif q.exists() or q.is_symlink():
                    q.unlink()
            except OSError:
                pass  # best effort: the manifest says "failed" whatever remains

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is not None and not self._finished:
                self.fail(exc)
        finally:
            self.close()


def write_run(path: str | os.PathLike[str], engine: Engine, overwrite: bool = False,
              command: Sequence[str] | None = None,
              source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the run directory of an engine that has already run; returns the manifest.

    The recorded simulation settings are the engine's dt (ms), model time reached (ms) and seed.
    """

    settings = SimulationSettings(engine.dt, engine.t_ms, engine.seed)
    with RunDirectory(path, overwrite) as rd:
        rd.start(engine.network, settings, command, source, engine.threads)
        return rd.finish(engine)
