"""``dtb simulate --resume RUN``: the options it refuses, the checkpoint it continues from,
and ``--checkpoint-every`` in steps.  The run itself is rebuilt from the run specification
its manifest recorded (dtb.io.runspec), by ``dtb.cli.simulate.resume``.

Public API: :func:`refuse_options`, :func:`latest_checkpoint`, :func:`checkpoint_steps`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dtb.errors import UsageError
from dtb.io import runspec


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


def refuse_options(a: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Raise ``UsageError`` when ``a`` (``dtb simulate --resume RUN ...``) gives an option
    other than --checkpoint-every, --threads and --quiet (``parser``'s defaults tell which
    were given): a resumed run is the run it continues."""
    plain = parser.parse_args(["simulate", "--resume", a.resume])
    for k, v in vars(a).items():
        if k not in RESUME_KEEPS and getattr(plain, k, None) != v:
            flag = "CONFIG.yaml" if k == "config" else "--" + k.replace("_", "-")
            raise UsageError(f"--resume {a.resume}: {flag} cannot be given -- a resumed run "
                              "continues with the network, settings and outputs it was "
                              "started with (only --checkpoint-every, --threads and --quiet "
                              "may be given)")


def latest_checkpoint(run: Path, comm: Any) -> dict[str, Any]:
    """The newest usable checkpoint of ``run`` (dtb.io.runspec.latest_checkpoint, a
    collective) as ``dtb.cli.simulate.run`` takes it: ``step``, this rank's ``state``,
    ``meta``, ``path``."""
    step, state, meta, path = runspec.latest_checkpoint(run, comm)
    return {"step": step, "state": state, "meta": meta, "path": path}
