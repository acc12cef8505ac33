"""``dtb simulate --resume RUN``: the arguments and checkpoint of the run it continues, and
``--checkpoint-every`` in steps.

Public API: :func:`resume_plan`, :func:`read_resume_plan`, :func:`checkpoint_steps`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dtb.engine.context import on_root
from dtb.errors import DtbError, UsageError
from dtb.io import checkpoint
from dtb.io.rundir import RunDirectory, sha256_file


def checkpoint_steps(ms: float | None, dt: float) -> int | None:
    """--checkpoint-every in whole steps of ``dt`` (None: off)."""
    if ms is None:
        return None
    every = int(round(ms / dt))
    if every < 1 or abs(ms / dt - every) > 1e-9 * max(1.0, every):
        raise UsageError(f"--checkpoint-every: {ms!r} ms -- expected a multiple of the "
                          f"time step dt = {dt} ms")
    return every


RESUME_KEEPS = ("resume", "checkpoint_every", "threads", "quiet", "command", "verbose",
                 "log_level")


def resume_plan(a: argparse.Namespace, comm: Any, parser: argparse.ArgumentParser
                 ) -> tuple[argparse.Namespace, dict]:
    """The arguments of the run ``--resume RUN`` continues, and its checkpoint.

    Rebuilt from RUN's manifest: the command line it was started with, its source file
    (checked: present, same SHA-256) and its newest usable checkpoint (same rank count).
    Options other than --checkpoint-every, --threads and --quiet are refused: a resumed run
    is the run it continues.  Raises UsageError / NotResumable (exit status 2)."""
    plain = parser.parse_args(["simulate", "--resume", a.resume])
    for k, v in vars(a).items():
        if k not in RESUME_KEEPS and getattr(plain, k, None) != v:
            flag = "CONFIG.yaml" if k == "config" else "--" + k.replace("_", "-")
            raise UsageError(f"--resume {a.resume}: {flag} cannot be given -- a resumed run "
                              "continues with the network, settings and outputs it was "
                              "started with (only --checkpoint-every, --threads and --quiet "
                              "may be given)")
    run = Path(a.resume)
    size = comm.Get_size() if comm is not None else 1
    command, source = on_root(comm, lambda: read_resume_plan(run, size),
                              (UsageError, DtbError))
    b = parser.parse_args(command[1:])
    if source["kind"] == "config":
        b.config = source["path"]
    elif source["kind"] == "brain":
        b.brain = source["path"]
    b.out, b.overwrite, b.resume = str(run), False, str(run)
    b.quiet = a.quiet
    if a.threads is not None:
        b.threads = a.threads
    if a.checkpoint_every is not None:
        b.checkpoint_every = a.checkpoint_every
    got = checkpoint.load_latest(run, comm)
    if got is None:
        raise UsageError(f"--resume {run}: no usable checkpoint in {run / 'checkpoints'} "
                          "(each one is missing a rank's file or damaged) -- start the run "
                          "again with --overwrite")
    step, state, meta = got
    return b, {"step": step, "state": state, "meta": meta,
               "path": checkpoint.step_dir(run, step)}


def read_resume_plan(run: Path, ranks: int) -> tuple[list[str], dict[str, Any]]:
    """(the command line, the source) of the run at ``run``, after checking that it can
    be resumed by ``ranks`` ranks (rank 0)."""

    m = RunDirectory.reopen(run, lock=False).manifest  # status, format, readable
    command = m.get("command")
    if (not isinstance(command, list) or len(command) < 2
            or command[1] != "simulate"):
        raise UsageError(f"--resume {run}: made by {' '.join(map(str, command or []))!r} "
                          "-- only runs of dtb simulate can be resumed")
    source = m.get("source") or {}
    if source.get("kind") in ("config", "brain"):
        path = Path(source["path"])
        if not path.is_file():
            raise UsageError(f"--resume {run}: the run's {source['kind']} file {path} is "
                              "missing -- expected it where the run was started from "
                              f"(sha256 {source.get('sha256')})")
        digest = sha256_file(path)
        if digest != source.get("sha256"):
            raise UsageError(f"--resume {run}: the run's {source['kind']} file {path} has "
                              f"changed since the run started (sha256 {digest}, the run "
                              f"recorded {source.get('sha256')}) -- a resumed run must be "
                              "built from the same file")
    cands = checkpoint.candidates(run)
    if not cands:
        raise UsageError(f"--resume {run}: no checkpoint in {run / checkpoint.CHECKPOINTS} "
                          "-- the run stopped before writing one; start it again with "
                          "--overwrite")
    counts = set()
    for d in cands:
        try:
            counts.add(json.loads((d / checkpoint.COMPLETE).read_text())["ranks"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if counts and ranks not in counts:
        n = sorted(counts)[-1]
        raise UsageError(f"--resume {run}: its checkpoints were written by "
                          f"{' or '.join(map(str, sorted(counts)))} rank(s), this job has "
                          f"{ranks} -- resume with the same number of ranks (mpiexec -n {n})")
    return command, source
