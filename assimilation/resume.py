"""Checkpoint and restart of ``dtb assimilate`` (as ``dtb simulate``).

``--checkpoint-every MS`` writes a checkpoint (``RUN/checkpoints/step-<TR>/``, one file per
world rank: every local member's engine state, the loop's ``LoopState``, the observations and
baselines) at the first TR boundary at or after each multiple of MS ms of model time (every
``ceil(MS / TR)`` TRs, TR in seconds: ``checkpoint_trs``); on SIGTERM or SIGUSR1 the ranks
agree (an allreduce at every TR boundary), write one at the next boundary and raise
``Stopped`` (the run is marked ``"interrupted"``, exit 75).  The posterior-mean free run
after the last TR is checkpointed the same way (``free_checkpointer``), at steps ``T + f``
(T the series' TRs, f the free TRs done; the same cadence in TRs, a stop honoured after the
next free TR): each such checkpoint holds, besides the above with the assimilation's final
``LoopState``, this rank's free-run BOLD rows so far and hemodynamic state.
``dtb assimilate --resume RUN`` rebuilds the run's options from the resolved options its
manifest recorded (``resume_options``, ``Options.from_record``; never from the stored
command line), loads the newest usable checkpoint (``load_resume``) and continues
bitwise identically (``assimilation.zarr``, ``metrics.json`` but its timings), in the
assimilation or in the free run.  Not checkpointed: the twin truth, baselines and spin-up
before the first boundary (a stop requested there is honoured at TR 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation.options import Options, assimilate_parser, check_run_flags
from dtb.assimilation.outputs import MANIFEST_FORMAT
from dtb.assimilation.problem import Layout, Problem
from dtb.assimilation.stop import StopSource
from dtb.engine.context import on_root
from dtb.errors import ConfigError, DtbError, UsageError
from dtb.io import checkpoint
from dtb.io.manifest import NotResumable
from dtb.io.runspec import check_checkpoints, check_input_file, latest_checkpoint
from dtb.log import ONCE

log = logging.getLogger(__name__)

__all__ = ["Stopped", "Resume", "checkpoint_trs", "resume_options", "refuse_options",
           "load_resume", "checkpointer",
           "free_checkpointer"]


class Stopped(Exception):
    """Raised at a TR boundary after the checkpoint a stop signal asked for (all ranks)."""

    def __init__(self, tr: int, path: Path, signum: int):
        self.tr, self.path, self.signum = tr, path, signum
        self.reason = signal.Signals(signum).name
        super().__init__(f"stopped by {self.reason} at TR {tr}")


@dataclass
class Resume:
    """What ``--resume`` continues from: the checkpoint's TR, directory, this rank's
    arrays and the metadata."""

    tr: int
    path: Path
    state: dict[str, np.ndarray]
    meta: dict[str, Any]


def checkpoint_trs(ms: float | None, tr_s: float) -> int | None:
    """``--checkpoint-every`` MS ms in whole TRs: the first TR boundary at or after MS ms of
    model time, i.e. every ``ceil(MS / TR)`` TRs (None: no periodic checkpoints)."""
    if ms is None:
        return None
    return max(1, math.ceil(ms / (tr_s * 1e3) - 1e-9))


#: what ``--resume`` may give anew (the rest of the run comes from its manifest)
RESUME_KEEPS = ("resume", "checkpoint_every", "threads", "quiet", "command", "command_line",
                "run_dir")


def refuse_options(a: argparse.Namespace) -> None:
    """Raise UsageError (exit 2) naming the first option ``a`` (``dtb assimilate --resume
    RUN ...``) gives other than --checkpoint-every, --threads and --quiet (the parser's
    defaults tell which were given): a resumed run continues the run it names."""
    plain = assimilate_parser().parse_args(["assimilate", "--resume", a.resume])
    for k, v in vars(plain).items():
        if k not in RESUME_KEEPS and getattr(a, k, v) != v:
            raise UsageError(f"--resume {a.resume}: --{k.replace('_', '-')} cannot be given "
                             "-- a resumed run continues with the data, options and outputs "
                             "it was started with (only --checkpoint-every, --threads and "
                             "--quiet may be given)")


def resume_options(a: argparse.Namespace, comm: Any) -> Options:
    """The options of the run ``--resume RUN`` continues, rebuilt from the resolved options
    its manifest recorded (``Options.from_record``; the stored command line is not read):
    its input files as recorded (checked by their SHA-256), other relative paths against
    the directory it started in, ``--out`` RUN; ``--threads``, ``--checkpoint-every`` (when
    given) and ``--quiet`` from ``a``.  Raises UsageError, or NotResumable naming the
    manifest and what it lacks (exit 2)."""
    refuse_options(a)
    check_run_flags(a)
    run = Path(a.resume)
    size = 1 if comm is None else comm.Get_size()
    manifest = on_root(comm, lambda: _read_resume_manifest(run, size), DtbError)
    rec = dict(manifest["options"])
    src = manifest.get("source") or {}
    if src.get("kind") == "brain":     # as checked by _read_resume_manifest
        rec["brain"], rec["bold"] = src["brain"], src["bold"]
    rec.update(out=str(run), overwrite=False, quiet=a.quiet)
    if a.threads is not None:
        rec["threads"] = a.threads
    if a.checkpoint_every is not None:
        rec["checkpoint_every"] = a.checkpoint_every
    try:
        o = Options.from_record(rec, cwd=manifest.get("cwd") or ".")
    except ConfigError as e:
        raise NotResumable(f"{run / 'manifest.json'}: its \"options\" cannot be read back "
                           f"({'; '.join(e.problems)}) -- resume it with the dtb that "
                           "started it, or start a new run") from None
    o.out = run                            # as given, not against the run's directory
    return o


def _read_resume_manifest(run: Path, ranks: int) -> dict[str, Any]:
    """The manifest of the run at ``run`` after checking that it can be resumed by
    ``ranks`` ranks: a dtb assimilate run, not complete, its options recorded, its input
    files unchanged, a checkpoint written by as many ranks (rank 0; raises UsageError, or
    ``NotResumable`` from the checks it shares with ``dtb simulate --resume``,
    dtb.io.runspec)."""

    try:
        m = json.loads((run / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume {run}: no readable manifest.json ({e}) -- expected the "
                         "run directory of an interrupted dtb assimilate") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise UsageError(f"--resume {run}: not a dtb assimilate run -- resume it with the "
                         "command that made it")
    if m.get("format_version") not in (1,):
        raise UsageError(f"--resume {run}: its manifest has format_version "
                         f"{m.get('format_version')!r} -- this dtb resumes version 1 (written "
                         "by a newer or altered dtb?)")
    if m.get("status") == "complete":
        raise UsageError(f"--resume {run}: the run is complete -- nothing to resume")
    if not isinstance(m.get("options"), dict):
        raise NotResumable(f"{run / 'manifest.json'}: no \"options\" (the run's resolved "
                           "options, which --resume rebuilds it from) -- start a new run")
    src = m.get("source") or {}
    if src.get("kind") == "brain":
        for key in ("brain", "bold"):
            check_input_file(run, key, src.get(key, ""), src.get(key + "_sha256"))
    check_checkpoints(run, ranks)
    return m


def load_resume(run: Path, comm: Any) -> Resume:
    """The newest usable checkpoint of ``run`` (a collective; raises ``NotResumable``)."""
    tr, state, meta, path = latest_checkpoint(run, comm)
    return Resume(tr, path, state, meta)


def _saver(prob: Problem, o: Options, lay: Layout, members: list[Any], base: np.ndarray,
           times: dict[str, float]) -> Any:
    """``save(step, loop_state, extra, extra_meta, signum)``: write the checkpoint of
    ``step`` (every local member's engine state, the loop state, the observations and
    baselines, and ``extra`` arrays of this rank) and raise ``Stopped`` if ``signum``."""
    T = prob.obs.shape[0]

    def save(step: int, st: Any, extra: dict[str, np.ndarray], extra_meta: dict[str, Any],
             signum: int, t0: float) -> None:
        state: dict[str, np.ndarray] = {f"loop/{k}": v for k, v in st.arrays().items()}
        for i, mem in zip(lay.local, members, strict=True):
            for k, v in mem.engine.get_state().items():
                state[f"member{i:05d}/engine/{k}"] = v
        state["problem/obs"] = prob.obs
        state["problem/base"] = base
        if prob.obs_clean is not None:
            state["problem/obs_clean"] = prob.obs_clean
        state.update(extra)

        meta = {"tr": step, "trs": T, "tr_s": o.tr_s, "members": o.members,
                "ranks_per_member": lay.ranks_per_member, "loop": st.meta(),
                "truth_s": o.extra.get("truth_s", 0.0), "times": times,
                "signal": signal.Signals(signum).name if signum else None, **extra_meta}
        path = checkpoint.save(o.out, step, state, meta, comm=lay.comm)
        if lay.comm is None or lay.comm.Get_rank() == 0:
            nbytes = sum(f.stat().st_size for f in path.glob("rank-*.h5"))
            what = (f"TR {step}" if step <= T
                    else f"free-run TR {step - T} (step {step})")
            log.info("checkpoint at %s: %s (%.1f MB, %.2f s)", what, path, nbytes / 1e6,
                     time.perf_counter() - t0, extra=ONCE)
        if signum:
            raise Stopped(step, path, signum)

    return save


def checkpointer(prob: Problem, o: Options, lay: Layout, members: list[Any],
                  base: np.ndarray, times: dict[str, float], stop: StopSource | None
                  ) -> Any:
    """The loop's ``boundary`` hook: a checkpoint every ``--checkpoint-every`` (in TRs) and,
    when some rank got a stop signal (``stop.agreed``, a collective at every boundary), one
    more and ``Stopped``.  Every rank writes its members' engine states and the (identical)
    loop state; ``dtb.io.checkpoint.save`` is a collective on the world communicator."""
    every = checkpoint_trs(o.checkpoint_every, o.tr_s)
    T = prob.obs.shape[0]
    save = _saver(prob, o, lay, members, base, times)

    def boundary(t: int, snapshot: Any) -> None:
        signum = stop.agreed(lay.comm) if stop is not None else 0
        if not signum and not (every is not None and 0 < t < T and t % every == 0):
            return
        save(t, snapshot(), {}, {}, signum, time.perf_counter())

    return boundary


def free_checkpointer(prob: Problem, o: Options, lay: Layout, members: list[Any],
                      base: np.ndarray, times: dict[str, float], stop: StopSource | None,
                      final: Any, n_free: int) -> Any:
    """``free_run``'s ``boundary`` hook, as ``checkpointer`` for the assimilation: after
    ``f`` free TRs (checkpoint step ``T + f``), a checkpoint when ``T + f`` is a multiple of
    ``--checkpoint-every`` (in TRs, ``f < n_free``) and, on an agreed stop signal, one more
    and ``Stopped``.  Each holds, besides what ``checkpointer`` writes (``final``: the
    assimilation's ``LoopState`` after its last TR), this rank's free-run BOLD rows so far
    (``free/bold``) and hemodynamic state (``free/hemo_state``)."""
    every = checkpoint_trs(o.checkpoint_every, o.tr_s)
    T = prob.obs.shape[0]
    save = _saver(prob, o, lay, members, base, times)

    def boundary(f: int, snapshot: Any) -> None:
        signum = stop.agreed(lay.comm) if stop is not None else 0
        if not signum and not (every is not None and 0 < f < n_free
                               and (T + f) % every == 0):
            return
        t0 = time.perf_counter()
        fs = snapshot()
        save(T + f, final, {"free/bold": fs.bold, "free/hemo_state": fs.hemo_state},
             {"free": {"f": f, "trs": n_free}}, signum, t0)

    return boundary
