"""Replacing an earlier run (``--overwrite``): which entries of a run directory may be
replaced (``replaceable_entries``: only what dtb wrote, never a user's file or an input of
the new run), setting them aside while the new run starts (``set_aside``), putting them
back if it fails (``put_back``) and removing them (``remove``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from dtb.errors import OutputError
from dtb.io.fileio import TMP_PREFIX, why
from dtb.io.runfiles import (
    LOCK,
    OLD_PREFIX,
    RefusedOutput,
    foreign_entries,
    format_problem,
    read_manifest,
)
from dtb.io.runlock import RunDirectoryBusy, busy_message


def replaceable_entries(p: Path, overwrite: bool, inputs: Sequence[str | os.PathLike[str]],
                        lock_held: bool) -> list[str]:
    """The entries of the run directory ``p`` a new run replaces (none when it is empty),
    after checking that they may be replaced: not in use by another dtb (unless
    ``lock_held``), ``overwrite`` given, a dtb run directory holding only what dtb wrote,
    and none of them holding one of ``inputs``.  Raises ``OutputError``,
    ``RunDirectoryBusy`` or ``RefusedOutput`` naming ``p`` (see ``RunDirectory``)."""
    try:
        entries = sorted(e for e in os.listdir(p) if e != LOCK)
    except OSError as e:
        raise OutputError(f"{p}: cannot read the directory: {why(e)}") from e
    if not entries:
        return []
    busy = busy_message(p)
    if busy is not None and not lock_held:
        raise RunDirectoryBusy(busy + " -- wait for it to end or choose another "
                               "output directory")
    if not overwrite:
        head = (f"{p}: directory exists and is not empty -- choose another output "
                "directory, or pass ")
        raise OutputError(head + "overwrite=True to replace an earlier run").on_command_line(
            head + "--overwrite to replace an earlier run")
    only_tmp = all(e.startswith((TMP_PREFIX, OLD_PREFIX)) for e in entries)
    m = read_manifest(p)
    problem = None if only_tmp else format_problem(m)
    if problem is not None:
        raise RefusedOutput(f"{p}: directory is not empty and is not a dtb run directory "
                            f"({problem}); refusing to clear it even with --overwrite "
                            "-- choose another directory")
    foreign = foreign_entries(p, m or {})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        n = f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'}"
        raise RefusedOutput(f"{p}: holds {n} that dtb did not write ({shown}); "
                            "--overwrite replaces only what its manifest lists, and "
                            "removes nothing here -- move them away or choose another "
                            "directory")
    here = p.resolve()
    for inp in inputs:
        try:
            q = Path(inp).resolve()
        except OSError:
            continue
        rel = q.relative_to(here).parts if q.is_relative_to(here) else ()
        if rel and rel[0] in entries:
            raise RefusedOutput(f"{p}: --overwrite would remove {q}, an input of this "
                                "run -- copy it elsewhere first, or choose another "
                                "output directory")
    return entries


def set_aside(path: Path, names: Sequence[str]) -> Path:
    """Move the entries ``names`` of the run directory ``path`` into a hidden directory
    (returned), removing dtb's leftovers (temporary files, earlier hidden directories).
    Raises ``OutputError`` with everything moved back if one cannot be moved."""
    aside = path / f"{OLD_PREFIX}{os.getpid()}"
    moved: list[str] = []
    try:
        aside.mkdir(exist_ok=True)
        for name in names:
            if name.startswith((TMP_PREFIX, OLD_PREFIX)):
                remove(path / name)  # left by a killed run
                continue
            os.replace(path / name, aside / name)
            moved.append(name)
    except OSError as e:
        for name in moved:
            with contextlib.suppress(OSError):
                os.replace(aside / name, path / name)
        with contextlib.suppress(OSError):
            aside.rmdir()
        raise OutputError(f"{path}: cannot replace the earlier run "
                          f"({name}): {why(e)}") from e
    return aside


def put_back(path: Path, aside: Path) -> bool:
    """Remove what a new run wrote in ``path`` (its lock excepted), then move the earlier
    run's entries back from ``aside``; False when some could not be moved (they stay in
    ``aside``)."""
    for name in os.listdir(path):
        if name != LOCK and path / name != aside:
            remove(path / name)
    try:
        for name in os.listdir(aside):
            os.replace(aside / name, path / name)
        aside.rmdir()
    except OSError:
        return False  # what could not be moved back stays in the hidden directory
    return True


def remove(q: Path) -> None:
    """Remove a file, link or directory tree (best effort)."""
    try:
        if q.is_dir() and not q.is_symlink():
            shutil.rmtree(q, ignore_errors=True)
        else:
            q.unlink(missing_ok=True)
    except OSError:
        pass
