"""Run directories: what one simulation leaves behind.

A run directory holds

- ``manifest.json``: the configuration (a valid YAML/JSON config that reproduces the run),
  versions, seed, backend (with the GPU's figures), ranks, threads, host, counts, timings,
  per-population rates, checksums of the outputs, the command line and a ``status``;
- ``spikes.h5``: every spike in the SONATA layout that bmtk writes and reads,
  ``/spikes/<population>/timestamps`` (float64, ms) and ``/spikes/<population>/node_ids``
  (uint64, numbered from 0 within the population), sorted by (node id, time); in a recorded
  run (dtb.recording) its datasets are virtual, over the per-rank parts in ``spikes/``;
- ``series.zarr`` (and on request ``series.h5``): dense time series (dtb.series).

Every output is listed in the manifest's ``outputs`` with its SHA-256, part files included.

The manifest is written with status ``"running"`` when the run starts and replaced atomically
(temporary file in the same directory, fsync, ``os.replace``) as the last act of a run, with
status ``"complete"``; a run that raises is marked ``"failed"`` with the error.  An interrupted
or failed run therefore never looks complete, and every output a complete manifest lists is
already in place with the recorded checksum.

A run stopped on request after writing a checkpoint (``checkpoints/``, dtb.checkpoint) is
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

import datetime as _dt
import hashlib
import math
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

from dtb.errors import InputError, OutputError

if TYPE_CHECKING:
    from dtb.config import SimulationSettings
    from dtb.engine import Engine
    from dtb.network import Network

MANIFEST = "manifest.json"
SPIKES = "spikes.h5"
FORMAT = "dtb-run"
FORMAT_VERSION = 1
SONATA_MAGIC = 0x0A7A
SONATA_VERSION = (0, 1)
_TMP_PREFIX = ".dtb-tmp-"
OUTPUT_NAMES = ("spikes.h5", "spikes", "series.zarr", "series.h5", "series", "report",
                "bold.tsv", "bold.json")
CHECKPOINTS = "checkpoints"
RESUMABLE = ("interrupted", "running")  # "running": the job was killed without a warning


class NotResumable(InputError):
    """A run directory that ``dtb simulate --resume`` cannot continue (complete, failed,
    not a run directory): an input the user named, so the CLI's exit status is 2."""

    def __init__(self, message: str):
        self.path, self.field, self.value, self.expected = "", None, None, ""
        Exception.__init__(self, message)  # the message names the path and the expectation


def utc_now() -> str:
    """The current time, ISO 8601 in UTC with a ``Z`` suffix (second precision)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> dict[str, str]:
    """Versions of dtb, Python and the libraries a run's results depend on."""
    import h5py
    import numba

    from dtb import __version__

    return {"dtb": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to strings."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # "inf", "-inf", "nan" (strict JSON has none of them)
    return x


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def write_atomic(final: Path, image: Any, what: str = "output") -> tuple[str, int]:
    """Write bytes (``image``, a buffer) to ``final`` through a temporary name in the same
    directory, fsynced and renamed; returns (SHA-256 hex digest, size in bytes).

    Plain file I/O reports a full disk as an error where HDF5 itself may crash, so HDF5
    files are made in memory and written with this.  Raises ``OutputError`` naming ``final``.
    """
    final = Path(final)
    tmp = final.with_name(f"{_TMP_PREFIX}{os.getpid()}-{final.name}")
    try:
        digest = hashlib.sha256(image).hexdigest()
        size = len(memoryview(image))
        with open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{final}: cannot write the {what}: {_why(e)}") from e
    return digest, size


class RunDirectory:
    """A run directory at ``path``, checked and made ready for writing on construction.

    Raises ``OutputError`` (naming the path) when ``path`` is a file, lies under a file, is
    a non-empty directory and ``overwrite`` is false, is a non-empty directory that is not a
    dtb run directory (no ``manifest.json``; never cleared, even with ``overwrite``), or
    cannot be written.  The check creates the directory and writes and removes a probe file,
    so it is true even for root and read-only file systems, and it is cheap: make the
    ``RunDirectory`` before building the network.  With ``overwrite`` the contents of an
    earlier run directory are removed here.

    Used as a context manager, an exception raised inside the ``with`` block marks the run
    ``"failed"`` (if ``start`` was called) and propagates.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False):
        self.path = Path(path)
        self.manifest: dict[str, Any] = {}
        self._started = False
        self._finished = False
        self._prepare(overwrite)

    # --- checks -----------------------------------------------------------------------
    def _prepare(self, overwrite: bool) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a directory -- expected a directory "
                              "for the run (or a path that does not exist yet)")
        if p.is_dir():
            try:
                entries = sorted(os.listdir(p))
            except OSError as e:
                raise OutputError(f"{p}: cannot read the directory: {_why(e)}") from e
            if entries:
                if not overwrite:
                    raise OutputError(f"{p}: directory exists and is not empty -- choose "
                                      "another output directory, or pass --overwrite "
                                      "(overwrite=True) to replace an earlier run")
                if MANIFEST not in entries:
                    raise OutputError(f"{p}: directory is not empty and holds no {MANIFEST}, "
                                      "so it is not a dtb run directory; refusing to clear "
                                      "it even with overwrite -- choose another directory")
                self._clear(entries)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
            why = f"{blocker} is a file, not a directory" if blocker else _why(e)
            raise OutputError(f"{p}: cannot create the run directory: {why}") from e
        probe = p / f"{_TMP_PREFIX}probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"dtb")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"{p}: run directory is not writable: {_why(e)}") from e

    def _clear(self, entries: Sequence[str]) -> None:
        for name in entries:
            q = self.path / name
            try:
                if q.is_dir() and not q.is_symlink():
                    shutil.rmtree(q)
                else:
                    q.unlink()
            except OSError as e:
                raise OutputError(f"{q}: cannot remove (overwriting {self.path}): "
                                  f"{_why(e)}") from e

    # --- writing ----------------------------------------------------------------------
    def _tmp(self, name: str) -> Path:
        return self.path / f"{_TMP_PREFIX}{os.getpid()}-{name}"

    def _write_manifest(self) -> None:
        import json

        final = self.path / MANIFEST
        tmp = self._tmp(MANIFEST)
        try:
            text = json.dumps(_jsonable(self.manifest), indent=2, allow_nan=False) + "\n"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{final}: cannot write the manifest: {_why(e)}") from e

    def start(self, network: Network, settings: SimulationSettings,
              command: Sequence[str] | None = None, source: Mapping[str, Any] | None = None,
              threads: int | None = None) -> None:
        """Write the manifest with status ``"running"``.

        ``settings`` holds dt (ms), t (model time, ms) and seed; ``command`` the command line
        (default ``sys.argv``); ``source`` where the network came from (a built-in model and
        its arguments, or a config file); ``threads`` the CPU threads the engine will use.
        """
        if source and source.get("kind") == "brain":
            # a brain file is the configuration (and may hold 10^5 units): refer to it
            config = {"brain": source["path"], "sha256": source.get("sha256"),
                      "name": network.name}
        else:
            config = dict(network.to_dict())
        config["simulation"] = {"dt": settings.dt, "t": settings.t, "seed": settings.seed}
        if getattr(settings, "record", None) is not None:
            config["record"] = settings.record.to_dict()
        v = versions()
        self.manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "status": "running",
            "error": None,
            "dtb_version": v["dtb"],
            "versions": v,
            "source": dict(source) if source else None,
            "config": config,
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
        import io

        import h5py

        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f.attrs["magic"] = np.uint32(SONATA_MAGIC)
            f.attrs["version"] = np.array(SONATA_VERSION, dtype=np.uint32)
            root = f.create_group("spikes")
            for name, (times, ids) in spikes.items():
                g = root.create_group(name)
                g.attrs["sorting"] = "by_id"
                times = np.asarray(times, dtype=np.float64)
                ids = np.asarray(ids).astype(np.uint64)
                order = np.lexsort((times, ids))
                ts = g.create_dataset("timestamps", data=times[order])
                ts.attrs["units"] = "ms"
                g.create_dataset("node_ids", data=ids[order])
        image = buf.getbuffer()
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
        sizes = {p.name: p.size for p in engine.network.populations}
        rates = {name: (n / (sizes[name] * t_rec * 1e-3) if t_rec > 0 else 0.0)
                 for name, n in per_pop.items()}
        n_spikes = int(sum(per_pop.values()))
        self.manifest.update(
            threads=engine.threads,
            counts={"neurons": int(engine.n_neurons),
                    "synapses": int(distribution["synapses_total"] if distribution
                                    else engine.n_synapses),
                    "bytes_per_synapse": float(distribution["bytes_per_synapse"]
                                               if distribution else engine.bytes_per_synapse),
                    "spikes": n_spikes},
            ranks=int(engine.ranks),
            backend=getattr(engine, "backend", "cpu"),
            gpu=engine.gpu_report() if hasattr(engine, "gpu_report") else None,
            distribution=distribution,
            timings={"build_s": float(engine.build_s), "simulate_s": float(engine.simulate_s),
                     "model_time_ms": t_ms,
                     "rtf": (engine.simulate_s / (t_ms * 1e-3)) if t_ms > 0 else None},
            rates_hz=rates,
            outputs=outputs,
        )
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
        # and the spike spill files (dtb.spikes_io) are in the parts now
        shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
        for q in (self.path / "spikes").glob(".rank-*.spill"):
            q.unlink(missing_ok=True)
        return self.manifest

    # --- interruption and resumption ---------------------------------------------------
    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> RunDirectory:
        """An existing run directory to continue (``dtb simulate --resume``): its manifest
        read back, nothing removed.  Raises ``NotResumable`` naming the path when there is
        no run directory there, or its status is ``"complete"`` or ``"failed"`` (a failed
        run's outputs are removed), ``OutputError`` when it cannot be written."""
        import json

        self = cls.__new__(cls)
        self.path = Path(path)
        self._finished = False
        self._started = False
        f = self.path / MANIFEST
        if not self.path.is_dir():
            raise NotResumable(f"{self.path}: no such run directory -- expected the run "
                               "directory of an interrupted dtb simulate")
        try:
            self.manifest = json.loads(f.read_text(encoding="utf-8"))
            status = self.manifest["status"]
        except FileNotFoundError as e:
            raise NotResumable(f"{f}: missing -- expected a dtb run directory") from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise NotResumable(f"{f}: unreadable manifest ({e}) -- expected a dtb run "
                               "directory's manifest.json") from e
        if status == "complete":
            raise NotResumable(f"{self.path}: the run is complete already (status "
                               "\"complete\") -- nothing to resume")
        if status not in RESUMABLE:
            raise NotResumable(f"{self.path}: status {status!r} ({self.manifest.get('error')})"
                               " -- only an interrupted run can be resumed; a failed run's "
                               "outputs were removed: start it again with --overwrite")
        probe = self.path / f"{_TMP_PREFIX}probe-{os.getpid()}"
        try:
            probe.write_bytes(b"dtb")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"{self.path}: run directory is not writable: {_why(e)}") from e
        self._started = True
        return self

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
            q.unlink(missing_ok=True)
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
        if exc is not None and not self._finished:
            self.fail(exc)


def write_run(path: str | os.PathLike[str], engine: Engine, overwrite: bool = False,
              command: Sequence[str] | None = None,
              source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the run directory of an engine that has already run; returns the manifest.

    The recorded simulation settings are the engine's dt (ms), model time reached (ms) and seed.
    """
    from dtb.config import SimulationSettings

    settings = SimulationSettings(engine.dt, engine.t_ms, engine.seed)
    with RunDirectory(path, overwrite) as rd:
        rd.start(engine.network, settings, command, source, engine.threads)
        return rd.finish(engine)
