"""Spike-count series: spikes per bin of ``bin_steps`` steps and per column (a population or
a unit), summed over the ranks by the series store and written as rates in Hz
(``population_rate``, ``unit_rate``); the unit counts also drive BOLD (dtb.engine.recorders.bold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dtb.engine.recorders.base import BaseRecorder, Span
from dtb.engine.recorders.counts import population_of
from dtb.io.series import ArraySpec, SeriesStore
from dtb.model.record_spec import RecordSpec


class RateSeries(BaseRecorder):
    """One count series of the store: a spike of step s by local neuron i adds one to row
    ``(s - step0) // bin_steps``, local column ``lcol_of[i]`` (-1: not counted); ``cols``:
    the global column of each local column (increasing); ``col_sizes``: (n_cols,) neurons
    per column, all ranks.  The store holds the counts (and checkpoints them); the spec's
    row and column scales make them rates."""

    def __init__(self, spec: ArraySpec, span: Span, bin_steps: int, lcol_of: np.ndarray,
                 cols: np.ndarray, col_sizes: np.ndarray):
        self.spec, self.span, self.bin_steps = spec, span, bin_steps
        self.name = spec.name
        self.lcol_of = lcol_of  # (n_local,) local column of each neuron, -1: not counted
        self.cols = cols
        self.col_sizes = col_sizes
        self.store: SeriesStore | None = None

    def arrays(self) -> list[tuple[ArraySpec, np.ndarray]]:
        return [(self.spec, self.cols)]

    def bind(self, store: SeriesStore) -> None:
        self.store = store

    def on_spikes(self, steps: np.ndarray, idx: np.ndarray) -> None:
        assert self.store is not None  # bound when the recording made the store
        lc = self.lcol_of[idx]
        ok = lc >= 0
        self.store.add_counts(self.name, (steps - self.span.step0)[ok] // self.bin_steps,
                              lc[ok])

    def rows_done(self, step: int) -> dict[str, int]:
        return {self.name: (step - self.span.step0) // self.bin_steps}


def population_rates(engine: Any, span: Span, bin_ms: float) -> RateSeries:
    """``population_rate``: spikes per neuron per second of each population, in bins of
    ``bin_ms`` ms (a multiple of dt)."""
    net, dt = engine.network, span.dt
    bs = int(round(bin_ms / dt))
    t, per_s = span.time_axis(bs)
    pop_of = population_of(engine)
    mine = np.unique(pop_of)
    sizes = np.array([p.size for p in net.populations], float)
    spec = ArraySpec(
        "population_rate", "time", "population", t, [p.name for p in net.populations],
        attrs={"units": "Hz", "bin_ms": bs * dt,
               "description": "spikes per neuron per second in bins (t, t + bin_ms]"},
        row_scale=per_s, col_scale=1.0 / sizes, chunk_cols=span.chunk_cols(len(sizes)))
    return RateSeries(spec, span, bs, np.searchsorted(mine, pop_of), mine, sizes)


def unit_sizes(engine: Any) -> np.ndarray:
    """Neurons per unit, all families together ((n_units,) float)."""
    per_unit = np.zeros(int(engine.n_units))
    for p in engine.network.populations:
        if p.units is not None:
            per_unit[:len(p.units)] += np.asarray(p.units, float)
    return per_unit


def unit_bin_steps(spec: RecordSpec, dt: float) -> int:
    """Steps per unit-rate bin: ``units_ms`` (10 ms if only BOLD asks), cut down to divide
    the TR when BOLD is recorded (the hemodynamic drive bins must fill each TR)."""
    bs = int(round((spec.units_ms if spec.units_ms is not None else 10.0) / dt))
    if spec.bold_tr_ms is not None:
        tr = int(round(spec.bold_tr_ms / dt))
        if tr % bs:
            bs = math.gcd(tr, bs)
    return bs


def unit_rates(engine: Any, span: Span, spec: RecordSpec, labels: Sequence[str],
               region_labels: Sequence[int] | np.ndarray | None = None) -> RateSeries:
    """``unit_rate``: spikes per neuron per second of each unit (``labels``: (n_units,)
    names; ``region_labels``: their integer region labels, the ``label`` coordinate), all
    families; written if ``spec.units_ms`` asks for it, else kept only to drive BOLD."""
    sizes = unit_sizes(engine)
    with np.errstate(divide="ignore"):
        inv = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1), np.nan)
    unit_of = engine.unit_of
    mine = np.unique(unit_of[unit_of >= 0])
    lcol = np.where(unit_of >= 0, np.searchsorted(mine, unit_of), -1)
    bs = unit_bin_steps(spec, span.dt)
    t, per_s = span.time_axis(bs)
    by_label = ({"label": np.asarray(region_labels, np.int64)}
                if region_labels is not None else {})
    extra = {"unit_neurons": sizes.astype(np.int64), **by_label}
    arr = ArraySpec(
        "unit_rate", "time_unit", "unit", t, list(labels),
        attrs={"units": "Hz", "bin_ms": bs * span.dt,
               "description": "spikes per neuron per second of each unit, all "
                              "families, in bins (t, t + bin_ms]"},
        row_scale=per_s, col_scale=inv, extra_coords=extra,
        write=spec.units_ms is not None, chunk_cols=span.chunk_cols(len(sizes)))
    return RateSeries(arr, span, bs, lcol, mine, sizes)
