"""The BOLD recorder: a Balloon-Windkessel model (dtb.model.hemodynamics) per chunk column
of units, driven by the units' spike counts as the series store completes them (a consumer
of the ``unit_rate`` series, dtb.engine.recorders.rates), so that the result does not depend
on the rank count.  Rows are written in whole time chunks.

Units: steps of dt (ms) for bins and TRs; rates in Hz; BOLD a fractional signal change.
"""

from __future__ import annotations

import numpy as np

from dtb.engine.recorders.base import BaseRecorder, Span
from dtb.engine.recorders.rates import RateSeries
from dtb.io.series import ArraySpec, SeriesStore
from dtb.model.hemodynamics import Hemodynamics


class BoldRecorder(BaseRecorder):
    """BOLD of the unit columns this rank owns, one TR every ``tr_steps`` steps.

    bin_steps: the unit-rate bins that drive it (they divide the TR); baseline_hz: the
    rate that means no drive (and stands in for empty units); rows: TRs in the run;
    unit_sizes: (n_units,) neurons per unit; chunk_cols: unit columns per chunk (one model
    per chunk column); n_steps: the run's steps (the last bin may be short); dt: ms;
    ``spec``: its ``bold`` array (written directly, never exchanged; None: kept in memory
    only).  Its checkpoint state goes under ``bold/``.
    """

    key = "bold"

    def __init__(self, tr_steps: int, bin_steps: int, baseline_hz: float, rows: int,
                 unit_sizes: np.ndarray, chunk_cols: int, n_steps: int, dt: float,
                 spec: ArraySpec | None = None):
        self.tr_steps, self.bin_steps, self.baseline_hz = tr_steps, bin_steps, baseline_hz
        self.rows, self.unit_sizes, self.chunk_cols = rows, unit_sizes, chunk_cols
        self.n_steps, self.dt = n_steps, dt
        self.spec = spec
        self.store: SeriesStore | None = None
        self.models: dict[int, Hemodynamics] = {}  # chunk column -> its model
        self.pending: dict[int, list] = {}  # chunk column -> BOLD rows not yet written
        self.written: dict[int, int] = {}  # chunk column -> rows written

    def arrays(self) -> list[tuple[ArraySpec, np.ndarray]]:
        return [] if self.spec is None else [(self.spec, np.zeros(0, np.int64))]

    def bind(self, store: SeriesStore) -> None:
        """Write into ``store``, driven by its ``unit_rate`` counts as they are flushed."""
        self.store = store
        store.consumers["unit_rate"] = [self.consume]

    def consume(self, r0: int, r1: int, cols: np.ndarray, counts: np.ndarray) -> None:
        """Unit spike counts (r1 - r0, len(cols)) of bins r0..r1-1 for the owned columns
        ``cols`` (one chunk column): step that column's model through them."""
        c = int(cols[0]) // self.chunk_cols
        h = self.models.get(c)
        if h is None:
            h = self.models[c] = Hemodynamics(len(cols), params="friston2000", xp=np)
        sizes = self.unit_sizes[cols]
        bin_s = self.bin_steps * self.dt * 1e-3
        per_tr = self.tr_steps // self.bin_steps
        rows = self.pending.setdefault(c, [])
        for r in range(r0, r1):
            width = min(self.bin_steps, self.n_steps - r * self.bin_steps)
            rate = np.where(sizes > 0, counts[r - r0] / np.maximum(sizes, 1)
                            / (width * self.dt * 1e-3), self.baseline_hz)
            h.step(h.drive_from_rate(rate, self.baseline_hz), bin_s
                   if width == self.bin_steps else width * self.dt * 1e-3)
            if (r + 1) % per_tr == 0 and (r + 1) // per_tr <= self.rows:
                rows.append(np.where(sizes > 0, h.bold(), np.nan))

    def flush(self, final: bool) -> None:
        """Write the owned rows to the store's "bold" array in whole time chunks (all of
        them when ``final``)."""
        store = self.store
        if store is None:
            return
        spec = store.specs["bold"]
        for c, rows in self.pending.items():
            r0 = self.written.get(c, 0)
            done = r0 + len(rows)
            upto = done if final else (done // spec.chunk_rows) * spec.chunk_rows
            if upto <= r0:
                continue
            block = np.array(rows[:upto - r0])
            del rows[:upto - r0]
            c0 = c * spec.chunk_cols
            store.write_block("bold", r0, upto, c0, c0 + block.shape[1], block)
            self.written[c] = upto

    def get_state(self) -> dict[str, np.ndarray]:
        """The models' state and the unwritten rows (arrays, for a checkpoint)."""
        d = {"chunks": np.array(sorted(self.models), np.int64)}
        for c in sorted(self.models):
            h = self.models[c]
            d[f"{c}/x"] = h.state
            d[f"{c}/substeps"] = np.array(h.substeps, np.int64)
            rows = self.pending.get(c, [])
            d[f"{c}/pending"] = np.asarray(rows, float).reshape(len(rows), h.shape[0])
            d[f"{c}/written"] = np.array(self.written.get(c, 0), np.int64)
        return d

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        self.models, self.pending, self.written = {}, {}, {}
        for c in np.asarray(d["chunks"], np.int64).tolist():
            x = np.asarray(d[f"{c}/x"], float)
            h = Hemodynamics(x.shape[1], params="friston2000", xp=np)
            h.set_state(x)
            h.substeps = int(d[f"{c}/substeps"])
            self.models[c] = h
            self.pending[c] = list(np.asarray(d[f"{c}/pending"], float))
            self.written[c] = int(d[f"{c}/written"])


def bold_recorder(span: Span, units: RateSeries, tr_ms: float, baseline_hz: float
                  ) -> BoldRecorder:
    """BOLD every ``tr_ms`` ms (a multiple of the unit bins) of the units of ``units`` (the
    ``unit_rate`` series), with the same columns, labels and chunk columns."""
    dt = span.dt
    tr = int(round(tr_ms / dt))
    n_tr = span.n_steps // tr
    u = units.spec
    by_label = {k: v for k, v in u.extra_coords.items() if k == "label"}
    spec = ArraySpec(
        "bold", "time_bold", "unit", (span.step0 + tr * (1 + np.arange(n_tr))) * dt,
        u.labels, dtype="float64",
        attrs={"units": "1", "tr_ms": tr * dt, "model": "friston2000",
               "baseline_hz": baseline_hz,
               "description": "BOLD fractional signal change per unit "
                              "(Balloon-Windkessel driven by the unit rate)"},
        extra_coords=by_label, chunk_cols=u.chunk_cols, direct=True)
    return BoldRecorder(tr, units.bin_steps, baseline_hz, n_tr, units.col_sizes,
                        u.chunk_cols, span.n_steps, dt, spec)
