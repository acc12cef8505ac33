"""State samples: the membrane potential and synaptic traces of chosen neurons every
``every`` steps (a SampleSpec), rows of the series ``V``, ``syn0`` ... ``syn3``."""

from __future__ import annotations

from typing import Any

import numpy as np

from dtb.engine.recorders.base import BaseRecorder, Span
from dtb.io.series import ArraySpec, SeriesStore
from dtb.io.sonata import sample_ids
from dtb.model.neurons import N_SYN
from dtb.model.record_spec import SampleSpec


class StateSamples(BaseRecorder):
    """The state of the sampled neurons this rank owns, read from the engine at every
    ``every``-th step of the run (row k at step step0 + every * (k + 1)); epochs end on
    sampling steps (Recording.chunk_steps), so it reads the state at ``on_epoch``."""

    def __init__(self, engine: Any, s: SampleSpec, span: Span):
        self.eng, self.span, self.every = engine, span, s.every
        self.rows = span.n_steps // s.every
        gids, labels, pops = _chosen(engine.network, s)
        t = (span.step0 + s.every * (1 + np.arange(self.rows))) * span.dt
        local = ([(p, i) for i, p in enumerate(_positions(gids, engine.gids))]
                 if len(gids) < 10_000 else _match(gids, engine.gids))
        local = sorted((p, i) for p, i in local if p >= 0)
        self.cols = np.array([c for c, _ in local], np.int64)  # global columns, increasing
        self.idx = np.array([i for _, i in local], np.int64)   # their engine-local indices
        self.names = ["V"] * ("V" in s.variables) + [f"syn{ch}" for ch in range(N_SYN)
                                                      if "syn" in s.variables]
        extra = {"neuron_population": np.asarray(pops, object),
                 "neuron_gid": gids.astype(np.int64)}
        self.specs = []
        for name in self.names:
            attrs = ({"units": "mV", "every_steps": s.every} if name == "V" else
                     {"units": "model-dependent", "every_steps": s.every,
                      "description": f"synaptic state channel {name[3:]} (iaf_psc_exp: 0 "
                                     "ex, 1 in current, pA; lif_cond: 0 AMPA, 1 NMDA, 2 "
                                     "GABA_A, 3 GABA_B traces, 4 adaptation trace)"})
            self.specs.append(ArraySpec(name, "time_sample", "neuron", t, labels, attrs=attrs,
                                        extra_coords=extra,
                                        chunk_cols=span.chunk_cols(len(labels))))
            extra = {}  # the coordinates once, on the first array
        self.store: SeriesStore | None = None

    def arrays(self) -> list[tuple[ArraySpec, np.ndarray]]:
        return [(spec, self.cols) for spec in self.specs]

    def bind(self, store: SeriesStore) -> None:
        self.store = store

    def on_epoch(self, step: int) -> None:
        """Record the state now if ``step`` is a sampling step of the run."""
        k = step - self.span.step0
        if self.store is None or k == 0 or k % self.every or k // self.every > self.rows:
            return
        row = k // self.every - 1
        self.eng.sync_host(("V", "syn"))  # on a GPU the state lives on the device
        for name in self.names:
            v = (self.eng.V[self.idx] if name == "V"
                 else self.eng.syn[int(name[3:]), self.idx])
            self.store.set_row(name, row, v)

    def rows_done(self, step: int) -> dict[str, int]:
        k = step - self.span.step0
        return {n: k // self.every for n in self.names}


def _chosen(net: Any, s: SampleSpec) -> tuple[np.ndarray, list[str], list[str]]:
    """The sampled neurons' global ids (int64), labels (``<population>:<node id>``) and
    populations, in the spec's population order."""
    sel_gid, labels, pops = [], [], []
    for p_i, p in enumerate(net.populations):
        want = dict(s.neurons).get(p.name)
        if want is None:
            continue
        ids = (sample_ids(p.size, want) if isinstance(want, int)
               else np.asarray(want, np.int64))
        gid0 = sum(q.size for q in net.populations[:p_i])
        sel_gid.append(gid0 + ids)
        labels += [f"{p.name}:{i}" for i in ids]
        pops += [p.name] * len(ids)
    gids = np.concatenate(sel_gid) if sel_gid else np.zeros(0, np.int64)
    return gids, labels, pops


def _positions(gids: np.ndarray, local: np.ndarray) -> list[int]:
    """The position in ``gids`` of each local neuron's global id (-1: not sampled)."""
    pos = {int(g): i for i, g in enumerate(gids)}
    return [pos.get(int(g), -1) for g in local]


def _match(gids: np.ndarray, local: np.ndarray) -> list[tuple[int, int]]:
    """(position in ``gids``, local index) of the sampled local neurons (many samples)."""
    order = np.argsort(gids)
    pos = np.searchsorted(gids[order], local)
    pos = np.minimum(pos, len(gids) - 1)
    hit = gids[order][pos] == local
    return [(int(order[p]), int(i)) for i, p in zip(np.flatnonzero(hit), pos[hit], strict=True)]
