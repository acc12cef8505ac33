"""The life of a run directory, the same for every command that writes one (``dtb
simulate`` and ``dtb demo`` through ``dtb.io.rundir.RunDirectory``, ``dtb assimilate``
through ``dtb.assimilation.outputs.AssimilationRun``, ``dtb fit`` through
``dtb.assimilation.fit_run.FitRun``): ``RunLifecycle``.

A run directory is checked, locked and made ready for writing on construction (an earlier
run there, with ``overwrite``, is set aside when the new one starts and removed at
``commit``); its ``manifest.json`` says

- ``"running"`` from ``record_start`` (or ``record_restart`` of a reopened run),
- ``"complete"`` as the last act of a run (``record_complete``), its checkpoints removed,
- ``"interrupted"`` after a checkpoint a resumed run can continue from
  (``record_interrupt``),
- ``"failed"`` with the error when an exception leaves the ``with`` block (``fail``): the
  outputs it had written (``OUTPUTS``) are removed, or the earlier run it was replacing is
  put back if it failed while starting.

The manifest is always replaced atomically (dtb.io.fileio.write_atomic).  What each
command writes in the manifest (its ``format``, its options or configuration, the fields
of ``restarts`` and ``interrupted``) is the subclass's; the transitions are here, once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from dtb.errors import OutputError
from dtb.io.fileio import TMP_PREFIX, write_atomic
from dtb.io.fileio import why as _why
from dtb.io.manifest import CHECKPOINTS, MANIFEST, OUTPUT_NAMES, jsonable, utc_now
from dtb.io.overwrite import put_back, remove, replaceable_entries, set_aside
from dtb.io.runlock import RunLock

__all__ = ["RunLifecycle"]

_R = TypeVar("_R", bound="RunLifecycle")


class RunLifecycle:
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
    read-only file systems, and it is cheap: make it before building anything.  Nothing is
    removed here: with ``overwrite`` the earlier run's entries are set aside (renamed into
    a hidden ``.dtb-old-<pid>/``) when the new run starts, put back if it fails before
    ``commit()`` (the end of its set-up: every check passed), and removed at ``commit``.

    Used as a context manager, an exception raised inside the ``with`` block marks the run
    ``"failed"`` (if it started; ``failed_status`` may say ``"interrupted"`` instead) and
    propagates; leaving the block releases the lock (also ``close()``).
    """

    #: the top-level entries a failed run's outputs may be (removed by ``fail``)
    OUTPUTS: tuple[str, ...] = OUTPUT_NAMES

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

    @classmethod
    def reopened(cls: type[_R], path: str | os.PathLike[str], manifest: dict[str, Any],
                 lock: bool = True) -> _R:
        """The existing run directory ``path`` of a run to continue, its ``manifest``
        already read back and checked by the caller: nothing removed, the directory
        probed for writing (``OutputError``) and, with ``lock``, locked."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.manifest = manifest
        self._finished = False
        self._started = False
        self._replace, self._aside, self.restored = [], None, False
        self.lock = RunLock(self.path)
        self._probe()
        if lock:
            self.lock.acquire()
        self._started = True
        return self

    # --- checks -----------------------------------------------------------------------
    def _probe(self) -> None:
        probe = self.path / f"{TMP_PREFIX}probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"dtb")
            probe.unlink()
        except OSError as e:
            raise OutputError(f"{self.path}: run directory is not writable: {_why(e)}") from e

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
            self._probe()
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

    # --- the manifest's transitions ---------------------------------------------------
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

    def record_start(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest`` (its ``status`` ``"running"``) as the run's first act, after
        setting an earlier run being replaced aside."""
        self.set_aside()
        self.manifest = manifest
        self.manifest["status"] = "running"
        self._write_manifest()
        self._started = True

    def record_restart(self, entry: Mapping[str, Any], threads: int | None = None) -> None:
        """Mark a reopened run ``"running"`` again, appending ``entry`` (where it continues
        from: the command's own fields) with the time to the manifest's ``restarts``."""
        m = self.manifest
        m.update(status="running", error=None, end_time=None)
        if threads is not None:
            m["threads"] = threads
        m.pop("interrupted", None)
        m.setdefault("restarts", []).append({"time": utc_now(), **entry})
        self._write_manifest()

    def record_interrupt(self, entry: Mapping[str, Any]) -> None:
        """Mark the run ``"interrupted"`` (``entry``: the checkpoint a resumed run continues
        from, and the reason, in the command's own fields), keeping its partial outputs;
        the earlier run it replaced is gone (the checkpoint proves the set-up passed)."""
        self.commit()
        self._remove_temporaries()
        self.manifest["status"] = "interrupted"
        self.manifest["end_time"] = utc_now()
        self.manifest["interrupted"] = {"time": utc_now(), **entry}
        self._write_manifest()
        self._finished = True  # nothing more to mark on the way out

    def record_complete(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Write the manifest with ``fields`` (outputs, timings, ...) and status
        ``"complete"``, the last act of a run (its outputs are all in place); then remove
        its checkpoints, which could only mislead a job script.  Returns the manifest."""
        self.commit()
        self.manifest.update(fields)
        self.manifest["status"] = "complete"
        self.manifest["end_time"] = utc_now()
        self.manifest.pop("interrupted", None)
        try:
            self._write_manifest()
        except OutputError:
            self.manifest["status"] = "running"  # so that the way out marks it failed
            raise
        self._finished = True
        shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
        return self.manifest

    def failed_status(self) -> str:
        """The status a run that raised gets: ``"failed"`` (a subclass whose failures
        leave a usable checkpoint may say ``"interrupted"``)."""
        return "failed"

    def fail(self, error: BaseException | str) -> None:
        """Mark the run ``"failed"`` with the error message (best effort: a manifest that
        cannot be written stays ``"running"``, never ``"complete"``)."""
        if isinstance(error, BaseException):
            msg = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            msg = str(error)
        self._remove_temporaries()
        if self._restore():
            return  # the new run failed while starting: the earlier one is back as it was
        if not self._started:
            return
        self.remove_outputs()
        self.manifest["status"] = self.failed_status()
        self.manifest["error"] = msg
        self.manifest["end_time"] = utc_now()
        with contextlib.suppress(OutputError):
            self._write_manifest()

    def _remove_temporaries(self) -> None:
        """This process's temporary files and directories (``TMP_PREFIX<pid>-*``)."""
        for q in self.path.glob(f"{TMP_PREFIX}{os.getpid()}-*"):
            remove(q)

    def remove_outputs(self) -> None:
        """Remove what a failed run had written (``OUTPUTS``): nothing half-written is
        left behind, only the manifest (and inputs such as brain.h5)."""
        for name in self.OUTPUTS:
            remove(self.path / name)

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is not None and not self._finished:
                self.fail(exc)
        finally:
            self.close()
