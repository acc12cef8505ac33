"""Driving an engine with its recorders for ``dtb simulate`` and ``dtb demo``: the time loop
with progress, periodic checkpoints and stop requests (SIGTERM, SIGUSR1) honoured at chunk
boundaries.

Public API: :class:`StopRequest` (the signal handler), :func:`record_run`,
:class:`Checkpoint`.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dtb.cli.progress import Progress
from dtb.engine.recording import Recording
from dtb.io import checkpoint
from dtb.io.export import UnitRegions, write_run_bold_tsv
from dtb.io.rundir import write_atomic
from dtb.log import ONCE

log = logging.getLogger(__name__)


class StopRequest:
    """The handler of STOP_SIGNALS during ``dtb simulate``: remembers the signal; the run
    checks ``agreed`` after every chunk and, if any rank got one, checkpoints and stops."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or int(signum)

    def agreed(self, comm: Any) -> int:
        """The signal some rank received (0: none): a collective on ``comm`` (an allreduce
        of one integer), so that every rank stops at the same step."""
        if comm is None:
            return self.signum
        from mpi4py import MPI

        return int(comm.allreduce(self.signum, op=MPI.MAX))


def record_run(eng: Any, out: Path, sim: Any, err: TextIO | None,
               labels: Any = None, checkpoint_steps: int | None = None,
               stop: StopRequest | None = None,
               resume: dict[str, Any] | None = None,
               ready: Callable[[], None] | None = None, regions: UnitRegions | None = None
               ) -> tuple[dict[str, Any] | None, Checkpoint | None]:
    """Run the engine to sim.t with the recorders of sim.record (progress on ``err``).

    ``checkpoint_steps``: write a checkpoint every this many steps; ``stop``: the signal
    handler's request, checked after every chunk (a checkpoint, then a stop); ``resume``:
    this rank's state from a checkpoint (``recording/...`` and ``engine/...``) to continue
    from; ``ready()``: called once the recorders are set up (RunDirectory.commit: the
    earlier run an --overwrite replaces is removed only then); ``regions``: a brain's
    ``dtb.io.export.UnitRegions`` (the series' ``label`` coordinate, and the regions of
    ``bold.tsv``, written when BOLD is recorded).  Returns (what rank 0's
    RunDirectory.finish needs, None on other ranks; None) when the run reached its end, or
    (None, the last checkpoint as a Checkpoint) when it stopped on request."""

    eng.keep_spikes = False  # the recorders hold what the run writes
    rec = Recording(eng, out, sim.record, sim.t, labels, resume=resume is not None,
                    unit_region_labels=None if regions is None else regions.unit_label)
    if resume is not None:  # the recording first: it takes its start step from the engine
        rec.set_state(_sub(resume, "recording/"))
        _set_engine_state(eng, _sub(resume, "engine/"))
    if ready is not None:
        ready()
    last: list[Checkpoint] = []
    agreed = [0]

    def on_checkpoint() -> None:
        last.append(_save_checkpoint(eng, rec, out, agreed[0]))

    def stop_requested() -> bool:
        agreed[0] = stop.agreed(rec.comm) if stop is not None else 0
        return agreed[0] != 0

    progress = Progress(eng.dt, err) if err is not None else None
    try:
        finished = rec.run(progress, checkpoint_steps, on_checkpoint, stop_requested)
    except BaseException:
        rec.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
    if not finished:
        rec.abort()  # closes the HDF5 part; everything else is in the checkpoint
        return None, last[-1]
    recorded = rec.finish(write_atomic)
    if recorded is not None and rec.bold is not None and rec.store is not None:
        recorded["outputs"].update(write_run_bold_tsv(out, regions, labels))
    return recorded, None


@dataclass
class Checkpoint:
    """A checkpoint just written: its directory, step, model time, bytes (this rank),
    seconds taken and the signal that asked for it (0: periodic)."""

    path: Path
    step: int
    t_ms: float
    nbytes: int
    seconds: float
    signum: int


def _sub(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


def _engine_state(eng: Any) -> dict[str, Any]:
    """The engine's state (get_state) plus the spikes it keeps, if it keeps them."""

    d = eng.get_state()
    if eng.keep_spikes:
        d["kept_spikes/steps"], d["kept_spikes/idx"] = eng.kept_spikes()
    return d


def _set_engine_state(eng: Any, d: dict[str, Any]) -> None:
    eng.set_state({k: v for k, v in d.items() if not k.startswith("kept_spikes/")})
    if "kept_spikes/steps" in d:
        eng.keep(d["kept_spikes/steps"], d["kept_spikes/idx"])


def _save_checkpoint(eng: Any, rec: Any, out: Path, signum: int) -> Checkpoint:
    """Write this rank's engine and recorder state as the checkpoint of the engine's
    step (a collective); logs it (rank 0)."""

    t0 = time.perf_counter()
    state = {f"engine/{k}": v for k, v in _engine_state(eng).items()}
    state.update({f"recording/{k}": v for k, v in rec.get_state().items()})
    meta = {"t_ms": eng.t_ms, "end_step": rec.step0 + rec.n_steps, "dt": eng.dt,
            "seed": eng.seed, "signal": signal.Signals(signum).name if signum else None}
    path = checkpoint.save(out, eng.step, state, meta, comm=rec.comm)
    nbytes = sum(f.stat().st_size for f in path.glob("rank-*.h5"))
    c = Checkpoint(path, eng.step, eng.t_ms, nbytes, time.perf_counter() - t0, signum)
    log.info("checkpoint at %g ms: %s (%.1f MB, %.2f s)", c.t_ms, path, nbytes / 1e6,
             c.seconds, extra=ONCE)
    return c
