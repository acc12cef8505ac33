"""First-use compilation of the numba kernels: said, timed, and kept out of the figures.

numba compiles a kernel the first time it is called with given argument types and caches
the machine code on disk (``cache=True``), so only a fresh install (or a changed kernel,
see dtb/kernels/__init__.py) pays for it: 30-60 s on a small machine, once.  This module
listens to numba's compile events (``numba.core.event``, kind ``"numba:compile"``):

- the first compilation in a process logs ``compiling kernels (first run only; ...)``
  (rank 0 says it for the job);
- ``compile_seconds()`` is the wall time spent compiling in this process so far (nested
  compilations counted once).  ``Engine`` subtracts it from ``build_s`` and
  ``simulate_s`` and keeps it as ``compile_s``; progress bars and real-time factors leave
  it out; the manifest records ``timings.compile_s``.

Where the cache lives: beside the kernels (``dtb/kernels/__pycache__``) when that is
writable, else numba's user-wide cache (``~/.cache/numba``); ``NUMBA_CACHE_DIR`` chooses
another place (a container's writable volume, a shared project directory).  ``dtb warmup``
compiles (or loads) every kernel ahead of a run.
"""

from __future__ import annotations

import logging
import threading
import time

from numba.core import event

from dtb.kernels.loop import run_windows
from dtb.log import ONCE

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state = {"depth": 0, "start": 0.0, "total": 0.0, "said": False}


def compile_seconds() -> float:
    """Seconds this process has spent compiling numba code so far (a running total)."""
    with _lock:
        total = _state["total"]
        if _state["depth"]:  # a compilation under way counts up to now
            total += time.perf_counter() - _state["start"]
        return total


def cache_dir() -> str | None:
    """Where numba caches the kernels (None when it cannot tell)."""
    try:
        return str(run_windows._cache._cache_path)  # numba's own choice of locator
    except Exception:  # noqa: BLE001 - only for a message
        return None


def _say_once() -> None:
    where = cache_dir()
    log.info("compiling kernels (first run only%s; not counted in build or simulation "
             "time)", f": cached in {where}" if where else "", extra=ONCE)


def _listener_class() -> type:
    class _CompileTimer(event.Listener):
        """Adds the wall time of outermost compilations to the running total."""

        def on_start(self, ev: object) -> None:
            with _lock:
                _state["depth"] += 1
                if _state["depth"] > 1:
                    return
                _state["start"] = time.perf_counter()
                first = not _state["said"]
                _state["said"] = True
            if first:
                _say_once()

        def on_end(self, ev: object) -> None:
            with _lock:
                _state["depth"] -= 1
                if _state["depth"] == 0:
                    _state["total"] += time.perf_counter() - _state["start"]

    return _CompileTimer


_installed: list[object] = []


def install() -> None:
    """Listen to numba's compile events (once per process; dtb.engine.simulation calls it)."""

    with _lock:
        if _installed:
            return
        listener = _listener_class()()
        event.register("numba:compile", listener)
        _installed.append(listener)


class Stopwatch:
    """Wall time of a stretch of work without the compilation inside it:
    ``sw = Stopwatch()`` ... ``sw.seconds()`` (work) and ``sw.compile_s`` (compiling)."""

    def __init__(self) -> None:
        install()
        self.t0 = time.perf_counter()
        self.c0 = compile_seconds()
        self.compile_s = 0.0

    def seconds(self) -> float:
        self.compile_s = compile_seconds() - self.c0
        return max(0.0, time.perf_counter() - self.t0 - self.compile_s)
