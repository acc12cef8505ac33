"""Checkpoints: the full dynamic state of a run, written so that a resumed run continues
bitwise identically to an uninterrupted one.

Layout: ``RUN_DIR/checkpoints/step-<step, 12 digits>/`` holds one HDF5 file per rank
(``rank-<rank, 5 digits>.h5``: a flat set of arrays, names with ``/`` become groups) and
``COMPLETE.json`` (step, ranks, the SHA-256 of every rank file and the caller's
metadata).  The ranks write into a hidden ``.step-<step>.partial/`` which rank 0 renames
once COMPLETE.json is in it, and every file is written under a temporary name, fsynced and
renamed: a visible checkpoint is complete (job scripts test for one with a plain glob).
One whose file checksum differs (damaged later), or that lacks COMPLETE.json, is skipped
by ``load_latest`` in favour of the one before.  After
a new checkpoint is complete, older ones beyond ``keep`` are removed.

All functions taking ``comm`` are collectives on it (None: one process).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dtb.errors import InputError, OutputError
from dtb.io.fileio import sha256_file, write_atomic, write_h5_atomic

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE.json"
FORMAT = "dtb-checkpoint"
FORMAT_VERSION = 1
FORMAT_VERSIONS = (1,)  # the versions this dtb reads
KEEP = 2  # complete checkpoints kept (the newest may be damaged on a later read)
COMPRESS_BYTES = 1 << 16  # arrays at least this large are written compressed


def _rank_size(comm) -> tuple[int, int]:
    return (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)


class UnknownCheckpoint(InputError):
    """A checkpoint of a format version this dtb does not read (exit status 2)."""

    def __init__(self, message: str):
        super().__init__("", None, None, "", message)  # the message names path and expectation


def _fill_h5(f: Any, state: dict[str, np.ndarray]) -> None:
    """Arrays of COMPRESS_BYTES or more are compressed (gzip level 1 after byte shuffling):
    the engine's delay ring is mostly zeros (the 4,000-neuron demo brain's 35 MB ring
    compresses to under 1 MB in about 0.06 s, less than writing it plain)."""
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    for name, x in state.items():
        x = np.asarray(x)
        big = x.nbytes >= COMPRESS_BYTES and x.ndim > 0
        f.create_dataset(name, data=x, **({"compression": "gzip", "compression_opts": 1,
                                           "shuffle": True} if big else {}))


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        version = f.attrs.get("format_version")
        if version is not None and int(version) not in FORMAT_VERSIONS:
            raise UnknownCheckpoint(f"{path}: format_version {int(version)} -- this dtb reads "
                                    f"checkpoints of version {FORMAT_VERSION}")
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def step_dir(run_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:012d}"


def save(run_dir: str | os.PathLike[str], step: int, state: dict[str, np.ndarray],
         meta: dict[str, Any] | None = None, comm=None, keep: int = KEEP) -> Path:
    """Write this rank's ``state`` (name -> array) as the checkpoint of ``step``; rank 0
    completes it (``COMPLETE.json`` with ``meta``) once every rank's file is in place, and
    prunes older checkpoints.  Returns the checkpoint directory."""
    rank, size = _rank_size(comm)
    final = step_dir(run_dir, step)
    d = final.with_name(f".{final.name}.partial")  # hidden until complete
    err = None
    try:
        if rank == 0:
            d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = f"{d}: cannot write the checkpoint: {e.strerror or e}"
    if comm is not None:
        err = comm.bcast(err, root=0)
    if err:
        raise OutputError(err)
    try:
        f = d / f"rank-{rank:05d}.h5"
        digest, _, _ = write_h5_atomic(f, lambda h5: _fill_h5(h5, state), "checkpoint")
    except OutputError as e:  # a full disk: reported, never a crash in HDF5
        err, digest = str(e), ""
    except OSError as e:
        err, digest = f"{d}: cannot write the checkpoint: {e.strerror or e}", ""
    digests = comm.gather((digest, err), root=0) if comm is not None else [(digest, err)]
    if rank == 0:
        errors = [e for _, e in digests if e]
        if not errors:
            record = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": int(step),
                      "ranks": size,
                      "files": {f"rank-{r:05d}.h5": h for r, (h, _) in enumerate(digests)},
                      "meta": meta or {}}
            try:
                write_atomic(d / COMPLETE, json.dumps(record, indent=1).encode(), "checkpoint")
                if final.exists():  # the same step saved again
                    shutil.rmtree(final)
                os.replace(d, final)
                _prune(Path(run_dir), step, keep)
            except OutputError as e:
                errors.append(str(e))
            except OSError as e:
                errors.append(f"{final}: cannot complete the checkpoint: {e.strerror or e}")
        if errors:  # every rank has finished writing (the gather): drop the partial one
            shutil.rmtree(d, ignore_errors=True)
        err = "; ".join(errors) if errors else None
    if comm is not None:
        err = comm.bcast(err, root=0)
    if err:
        raise OutputError(err)
    return final


def _prune(run_dir: Path, newest: int, keep: int) -> None:
    """Remove checkpoints older than the ``keep`` newest complete ones, and incomplete
    ones older than ``newest``."""
    complete = []
    for d in (run_dir / CHECKPOINTS).glob(".step-*.partial"):
        shutil.rmtree(d, ignore_errors=True)  # left by a job that died while writing
    for d in sorted((run_dir / CHECKPOINTS).glob("step-*")):
        step = _step_of(d)
        if step is None or step > newest:
            continue
        if (d / COMPLETE).exists():
            complete.append(d)
        elif step < newest:
            shutil.rmtree(d, ignore_errors=True)
    for d in complete[:-keep]:
        shutil.rmtree(d, ignore_errors=True)


def _step_of(d: Path) -> int | None:
    try:
        return int(d.name.removeprefix("step-"))
    except ValueError:
        return None


def candidates(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint directories that claim to be complete, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = [(step, d) for d in root.glob("step-*")
             if (step := _step_of(d)) is not None and (d / COMPLETE).exists()]
    return [d for _, d in sorted(found, key=lambda x: x[0], reverse=True)]


def load_latest(run_dir: str | os.PathLike[str], comm=None
                ) -> tuple[int, dict[str, np.ndarray], dict[str, Any]] | None:
    """The newest checkpoint whose every rank file is present and matches its checksum:
    (step, this rank's state, meta), or None if there is none.  Damaged checkpoints are
    reported on stderr (rank 0) and skipped."""
    rank, size = _rank_size(comm)
    cands = [str(d) for d in candidates(run_dir)] if rank == 0 else None
    if comm is not None:
        cands = comm.bcast(cands, root=0)
    for c in cands or []:
        d = Path(c)
        why = None
        try:
            record = json.loads((d / COMPLETE).read_text())
            if (record.get("format") == FORMAT
                    and record.get("format_version") not in FORMAT_VERSIONS):
                raise UnknownCheckpoint(
                    f"{d / COMPLETE}: format_version {record.get('format_version')!r} -- this "
                    f"dtb reads checkpoints of version {FORMAT_VERSION} (written by a newer "
                    "or altered dtb?); resume it with the dtb that wrote it")
            if record.get("format") != FORMAT or record.get("ranks") != size:
                why = (f"written by {record.get('ranks')} ranks, this run has {size}"
                       if record.get("format") == FORMAT else "not a dtb checkpoint")
            else:
                f = d / f"rank-{rank:05d}.h5"
                if sha256_file(f) != record["files"][f.name]:
                    why = f"{f.name}: checksum differs (damaged)"
        except UnknownCheckpoint:
            raise  # every rank reads the same record: all of them stop here
        except (OSError, ValueError, KeyError) as e:
            why = f"unreadable: {e}"
        whys = comm.allgather(why) if comm is not None else [why]
        bad = [w for w in whys if w]
        if bad:
            if rank == 0:
                log.warning("checkpoint %s skipped: %s", d, bad[0])
            continue
        state = _read_h5(d / f"rank-{rank:05d}.h5")
        return int(record["step"]), state, record.get("meta", {})
    return None
