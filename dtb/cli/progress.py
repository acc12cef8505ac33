"""Progress of a simulation, shown by rank 0.

On a terminal: one line redrawn in place, a bar with the model time reached, the real-time
factor (wall-clock seconds per model second) and the estimated time left.  Elsewhere (a
SLURM log, a pipe): one plain line per tenth of the run and at least every ``interval_s``
seconds, e.g.::

    dtb: simulate  40%  400.0/1000.0 ms model time, 12.3 s, real-time factor 30.8, ETA 18.5 s

Steps need not be time steps: ``dtb assimilate`` counts TRs (``dt`` = the TR in ms,
``unit="TR"``), and its lines name them (``TR 12/48``).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from dtb.engine.compiling import compile_seconds

BAR = 30


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 100:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d} min"


class Progress:
    """``update(done, total)`` after every chunk of steps; ``dt`` in ms.

    ``tty``: draw a bar (default: whether ``stream`` is a terminal); ``interval_s``: the
    longest gap between log lines when not on a terminal; ``redraw_s``: the shortest
    between redraws of the bar; ``unit``: a name for a step, shown with the count of steps
    done (``"TR"``: ``TR 12/48``), or None.
    """

    def __init__(self, dt: float, stream: TextIO | None = None, label: str = "simulate",
                 tty: bool | None = None, interval_s: float = 60.0, redraw_s: float = 0.2,
                 unit: str | None = None):
        self.dt = float(dt)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.interval_s = interval_s
        self.redraw_s = redraw_s
        self.t0 = time.perf_counter()
        self.c0 = compile_seconds()  # first-use compilation is left out of every figure
        self.done0 = 0  # steps already done when timing started (a resumed run)
        self._last_print = self.t0
        self._decile = 0
        self._drawn = False

    def begin(self, done: int) -> None:
        """Start timing now, at ``done`` steps (non-zero when a run resumes): the real-time
        factor and ETA count only the steps advanced since."""
        self.t0 = self._last_print = time.perf_counter()
        self.c0 = compile_seconds()
        self.done0 = int(done)

    def figures(self, done: int, total: int) -> tuple[float, float, float, float, float]:
        """(fraction done, model ms reached, wall s, real-time factor, ETA s); wall time
        without the kernels' first-use compilation."""
        wall = time.perf_counter() - self.t0 - (compile_seconds() - self.c0)
        frac = done / total if total else 1.0
        model_ms = done * self.dt
        advanced = done - self.done0
        rtf = wall / (advanced * self.dt * 1e-3) if advanced > 0 else float("nan")
        eta = wall * (total - done) / advanced if advanced > 0 else float("nan")
        return frac, model_ms, wall, rtf, eta

    def update(self, done: int, total: int) -> None:
        now = time.perf_counter()
        frac, model_ms, wall, rtf, eta = self.figures(done, total)
        total_ms = total * self.dt
        if self.tty:
            if done < total and now - self._last_print < self.redraw_s:
                return
            fill = int(round(BAR * frac))
            line = (f"\r{self.label} [{'#' * fill}{'.' * (BAR - fill)}] {100 * frac:5.1f}%  "
                    f"{self._count(done, total, '  ')}{model_ms:.1f}/{total_ms:.1f} ms  "
                    f"RTF {rtf:.3g}  "
                    f"ETA {_fmt_s(eta)}   ")
            self.stream.write(line)
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
            self._drawn = done < total
            self._last_print = now
            return
        decile = int(10 * frac + 1e-9)
        if decile > self._decile or now - self._last_print >= self.interval_s:
            self._decile = max(decile, self._decile)
            pct = int(100 * frac + 1e-9)
            print(f"dtb: {self.label} {pct:3d}%  {self._count(done, total, ', ')}"
                  f"{model_ms:.1f}/{total_ms:.1f} ms model time, "
                  f"{wall:.1f} s, real-time factor {rtf:.3g}, ETA {_fmt_s(eta)}",
                  file=self.stream, flush=True)
            self._last_print = now

    def _count(self, done: int, total: int, sep: str) -> str:
        return f"{self.unit} {done}/{total}{sep}" if self.unit else ""

    def close(self) -> None:
        """End a bar left half drawn (a run that stopped early)."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
