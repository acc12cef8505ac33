"""One dtb process at a time in a run directory: ``RunLock``.

A process that writes a run directory (``dtb simulate``, ``demo``, ``assimilate``,
``report``) first creates ``DIR/.dtb-lock`` with ``O_CREAT | O_EXCL`` (atomic on local
file systems, NFS v3+ and Lustre, where ``flock`` may be missing) and writes into it who
holds it: pid, host, the process's start time (Linux, against reused pids), the Slurm job
and restart count, the command line and the time.  A second process finds the file and
stops at once, naming the holder (``RunDirectoryBusy``).  The lock is removed when the
holder releases it (also on errors and signals: the run directory's ``with`` block).

A lock left by a process that died without releasing it (SIGKILL, a crash, a lost node) is
*stale* and taken over when its holder

- ran on this host and is no longer alive (no process with that pid, or one that started
  at another time), or
- was an earlier start of this same Slurm job (same ``SLURM_JOB_ID``, a lower
  ``SLURM_RESTART_COUNT``: the job was requeued, possibly on another node).

A lock held on another host is otherwise assumed alive: the message says which file to
remove if that run is known to be gone.  Under MPI only rank 0 takes the lock (the caller
broadcasts the outcome).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dtb.errors import OutputError

LOCK = ".dtb-lock"


class RunDirectoryBusy(OutputError):
    """Another live dtb process holds the run directory's lock (exit status 1)."""


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or
    None where unknown (no /proc, no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` of this host is alive and is the one that started at
    ``started`` (when both are known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    if started is not None:
        now = _start_ticks(pid)
        if now is not None and now != started:
            return False  # the pid was reused by a later process
    return True


def _holder_text(h: dict[str, Any]) -> str:
    cmd = h.get("command")
    cmd = " ".join(map(str, cmd)) if isinstance(cmd, list) else "?"
    job = f", Slurm job {h['slurm_job_id']}" if h.get("slurm_job_id") else ""
    return (f"pid {h.get('pid', '?')} on host {h.get('host', '?')}{job}, since "
            f"{h.get('time', '?')}: {cmd}")


class RunLock:
    """The lock of run directory ``path`` (which must exist); ``acquire`` takes it or
    raises ``RunDirectoryBusy``; ``release`` (or leaving a ``with`` block) removes it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.dir = Path(path)
        self.file = self.dir / LOCK
        self.held = False
        self._token = ""

    def _record(self) -> dict[str, Any]:
        env = os.environ
        return {"format": "dtb-lock", "pid": os.getpid(), "host": socket.gethostname(),
                "started": _start_ticks(os.getpid()),
                "slurm_job_id": env.get("SLURM_JOB_ID"),
                "slurm_restart_count": int(env.get("SLURM_RESTART_COUNT", "0") or 0),
                "command": list(sys.argv), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime())}

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock (its record), None if nobody does; {} for a lock whose record
        cannot be read (being written, or damaged)."""
        for _ in range(20):  # the holder writes its record right after creating the file
            try:
                text = self.file.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except OSError:
                return {}
            try:
                h = json.loads(text)
                if isinstance(h, dict):
                    return h
            except ValueError:
                pass
            time.sleep(0.01)
        return {}

    def _stale(self, h: dict[str, Any]) -> bool:
        me = self._record()
        job = h.get("slurm_job_id")
        if job and job == me["slurm_job_id"]:
            try:
                if int(h.get("slurm_restart_count") or 0) < me["slurm_restart_count"]:
                    return True  # an earlier start of this requeued job
            except (TypeError, ValueError):
                pass
        if h.get("host") == me["host"] and isinstance(h.get("pid"), int):
            started = h.get("started") if isinstance(h.get("started"), int) else None
            return h["pid"] != me["pid"] and not _alive(h["pid"], started)
        return False

    def acquire(self) -> None:
        """Take the lock; raises ``RunDirectoryBusy`` naming the holder, ``OutputError``
        when the lock file cannot be written."""
        if self.held:
            return
        for _ in range(3):
            record = self._record()
            self._token = json.dumps(record)
            try:
                fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                h = self.holder()
                if h is None:
                    continue  # released meanwhile
                if h and self._stale(h):
                    self._break(h)
                    continue
                who = _holder_text(h) if h else "a process whose lock record is unreadable"
                raise RunDirectoryBusy(
                    f"{self.dir}: in use by another dtb run ({who}) -- wait for it to end or "
                    f"choose another output directory; if that run is gone (its node "
                    f"crashed), remove {self.file}") from None
            except OSError as e:
                raise OutputError(f"{self.dir}: cannot lock the run directory "
                                  f"({self.file}): {e.strerror or e}") from e
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(self._token)
            except OSError as e:
                self.file.unlink(missing_ok=True)
                raise OutputError(f"{self.dir}: cannot lock the run directory "
                                  f"({self.file}): {e.strerror or e}") from e
            self.held = True
            return
        raise RunDirectoryBusy(f"{self.dir}: its lock {self.file} keeps changing hands -- "
                               "another dtb process is starting there")

    def _break(self, h: dict[str, Any]) -> None:
        """Remove a stale lock: moved aside first, and put back if it turns out to be
        another process's fresh lock (two processes breaking the same stale lock)."""
        aside = self.dir / f"{LOCK}.stale-{os.getpid()}"
        try:
            os.replace(self.file, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = None
        if moved is not None and moved != h:  # not the stale one: restore it
            with contextlib.suppress(OSError):
                os.link(aside, self.file)
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it (and the file is still its own)."""
        if not self.held:
            return
        self.held = False
        try:
            if self.file.read_text(encoding="utf-8") == self._token:
                self.file.unlink()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def busy_message(path: str | os.PathLike[str]) -> str | None:
    """If a live dtb process holds the lock of directory ``path``: a sentence naming it
    (for readers that write elsewhere, such as ``dtb report --out``); else None."""
    lock = RunLock(path)
    h = lock.holder()
    if h is None or (h and lock._stale(h)):
        return None
    if h and h.get("pid") == os.getpid() and h.get("host") == socket.gethostname():
        return None
    return (f"{Path(path)}: in use by a dtb run that is still writing it "
            f"({_holder_text(h) if h else 'lock record unreadable'})")
