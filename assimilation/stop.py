"""Stop requests inside a TR of ``dtb assimilate``.

A stop signal (SIGTERM, SIGUSR1: ``dtb.cli.runloop.StopRequest``) is normally honoured at the
next TR boundary, with a checkpoint there (``resume.checkpointer``).  A TR can take long (a
large brain, many members, or a forecast that has run into trouble), so the forecast and the
hemodynamic integration also ``poll`` the request: once ``STOP_GRACE_S`` seconds have passed
since a signal was first seen and no TR boundary has come, the poll raises ``Abandoned``.
The TR in progress is then given up (members are half-way through it, so no consistent state
can be saved): the run is marked ``"interrupted"`` at its newest checkpoint and exits 75, and
``--resume`` redoes the work done since that checkpoint, with the same result as an
uninterrupted run.  With no checkpoint yet there is nothing to resume: the run is marked
``"failed"`` and exits 128 + the signal number, as other commands do on SIGTERM.
The environment variable ``DTB_STOP_GRACE_S`` sets another grace period (seconds >= 0; for
batch systems that signal only shortly before they kill, or to test this path).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from dtb.errors import UsageError

__all__ = ["STOP_GRACE_S", "Abandoned", "StopSource", "grace_s", "make_poll"]

STOP_GRACE_S = 5.0  # s: a TR boundary (and its checkpoint) within this is waited for


class StopSource(Protocol):
    """A stop request as the run reads it (``dtb.cli.runloop.StopRequest``): ``signum``, the
    signal this process received (0: none), and ``agreed(comm)``, the one some rank received
    (a collective on the MPI communicator ``comm``; None: one process)."""

    signum: int

    def agreed(self, comm: Any) -> int: ...


class Abandoned(Exception):
    """A stop signal was not followed by a TR boundary within ``STOP_GRACE_S``: the TR in
    progress is given up."""

    def __init__(self, signum: int, waited_s: float):
        self.signum = signum
        self.reason = signal.Signals(signum).name
        self.waited_s = waited_s
        super().__init__(f"{self.reason} not followed by a TR boundary within "
                         f"{waited_s:.1f} s")


def grace_s() -> float:
    """The grace period: ``DTB_STOP_GRACE_S`` if set, else ``STOP_GRACE_S``."""

    text = os.environ.get("DTB_STOP_GRACE_S")
    if text is None:
        return STOP_GRACE_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"DTB_STOP_GRACE_S: {text[:40]!r} -- expected a number of seconds "
                         ">= 0")
    return value


def make_poll(stop: StopSource | None, grace: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> Callable[[], None] | None:
    """The ``poll`` for the forecast and the integration: raises ``Abandoned`` once
    ``grace`` seconds (default ``grace_s()``) have passed since ``stop.signum`` was first
    seen set (None: no ``stop`` to poll).  Only this process's flag is read (no collective:
    members on other ranks are at other points of the TR)."""
    if stop is None:
        return None
    grace = grace_s() if grace is None else float(grace)
    seen: list[float] = []

    def poll() -> None:
        if not stop.signum:
            return
        now = clock()
        if not seen:
            seen.append(now)
        if now - seen[0] >= grace:
            raise Abandoned(int(stop.signum), now - seen[0])

    return poll
