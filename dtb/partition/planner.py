"""The plan: ``plan()`` runs atoms, assignment and evaluation; ``Plan`` holds the result
and its summary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtb.errors import ConfigError
from dtb.partition.assign import _metis, _rebalance, contiguous_atoms
from dtb.partition.evaluate import _messages, _rank_model, _traffic, _window_ms
from dtb.partition.graph import atom_graph, compactness
from dtb.partition.model import (
    BYTES_PER_SPIKE,
    DEFAULT_RATE_HZ,
    MAX_RANKS,
    MAX_REFINE,
    METHODS,
    ROUTINGS,
    Atoms,
    Costs,
    _Model,
    _model,
    make_atoms,
)

# --- the plan ----------------------------------------------------------------------------

@dataclass
class Plan:
    """A partition plan: ``assignment`` (A,) rank of every atom (``atoms``), per-rank
    arrays (P,) and ``summary`` (the key figures; see ``to_dict``)."""

    ranks: int
    routing: str
    method: str
    ranks_per_node: int
    rate_hz: float
    seed: int
    atoms: Atoms
    assignment: np.ndarray
    neurons: np.ndarray
    synapses: np.ndarray
    cost: np.ndarray
    out_spikes_hz: np.ndarray
    in_spikes_hz: np.ndarray
    out_peers: np.ndarray
    in_peers: np.ndarray
    messages_direct: np.ndarray
    messages_two_level: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> np.ndarray:
        """Messages per rank per window of the plan's routing."""
        return self.messages_direct if self.routing == "direct" else self.messages_two_level

    def unit_ranks(self) -> list[np.ndarray]:
        """For each unit, the ranks holding (part of) it."""
        n_u = int(self.atoms.unit_hi.max()) if len(self.atoms) else 0
        out: list[list[int]] = [[] for _ in range(n_u)]
        for lo, hi, r in zip(self.atoms.unit_lo, self.atoms.unit_hi, self.assignment,
                             strict=True):
            for u in range(lo, hi):
                out[u].append(int(r))
        return [np.unique(np.array(x, np.int64)) for x in out]

    def local_ranges(self, rank: int, spec) -> dict[str, list[tuple[int, int]]]:
        """The neurons rank ``rank`` owns: per family, ranges ``(first, end)`` of indices
        within the family's population (``spec.to_network()`` numbering), merged."""
        at = self.atoms
        out: dict[str, list[tuple[int, int]]] = {}
        mine = np.flatnonzero(self.assignment == rank)
        for f, fam in enumerate(spec.families):
            off = np.concatenate([[0], np.cumsum(fam.sizes)])
            rngs = []
            for a in mine:
                lo, hi = int(at.unit_lo[a]), int(at.unit_hi[a])
                if at.pieces[a] == 1:
                    first, end = off[lo], off[hi]
                else:
                    first = off[lo] + at.first[f, a]
                    end = first + at.sizes[f, a]
                if end > first:
                    rngs.append((int(first), int(end)))
            out[fam.name] = _merge(sorted(rngs))
        return out

    def to_dict(self, per_rank: bool = True, atoms: bool = False) -> dict[str, Any]:
        """The summary, and (optionally) the per-rank arrays and the atom table, as plain
        JSON-able values."""
        d: dict[str, Any] = {"summary": self.summary}
        if per_rank:
            d["per_rank"] = {k: _jsonable(getattr(self, k)) for k in (
                "neurons", "synapses", "cost", "out_spikes_hz", "in_spikes_hz", "out_peers",
                "in_peers", "messages_direct", "messages_two_level")}
        if atoms:
            at = self.atoms
            d["atoms"] = {"unit_lo": at.unit_lo.tolist(), "unit_hi": at.unit_hi.tolist(),
                          "piece": at.piece.tolist(), "pieces": at.pieces.tolist(),
                          "first": at.first.tolist(), "sizes": at.sizes.tolist(),
                          "rank": self.assignment.tolist()}
        return d


def _merge(rngs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in rngs:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _jsonable(a: np.ndarray) -> list:
    return [None if not np.isfinite(x) else (int(x) if float(x).is_integer() else float(x))
            for x in np.asarray(a, float)]


def _stats(a: np.ndarray) -> dict[str, float]:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    if not len(a):
        return {"mean": math.nan, "max": math.nan}
    return {"min": float(a.min()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max()), "mean": float(a.mean())}


def _check(ranks: Any, routing: str, method: str, rate_hz: float, ranks_per_node: Any,
           balance: float, n_neurons: int) -> None:
    bad = []
    if isinstance(ranks, bool) or not isinstance(ranks, (int, np.integer)) or \
            not 1 <= ranks <= MAX_RANKS:
        bad.append(f"--ranks: {ranks!r} -- expected an integer from 1 to {MAX_RANKS:,}")
    elif ranks > n_neurons:
        bad.append(f"--ranks: {ranks} -- expected at most the brain's {n_neurons:,} neurons "
                   "(build it with more --neurons)")
    if routing not in ROUTINGS:
        bad.append(f"--routing: {routing!r} -- expected one of {', '.join(ROUTINGS)}")
    if method not in METHODS:
        bad.append(f"--method: {method!r} -- expected one of {', '.join(METHODS)}")
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
        bad.append(f"--rate: {rate_hz!r} -- expected a firing rate in Hz > 0")
    if ranks_per_node is not None and (isinstance(ranks_per_node, bool) or not isinstance(
            ranks_per_node, (int, np.integer)) or ranks_per_node < 1 or (
            isinstance(ranks, int) and ranks_per_node > ranks)):
        bad.append(f"--ranks-per-node: {ranks_per_node!r} -- expected an integer from 1 to "
                   f"the number of ranks ({ranks})")
    if not (math.isfinite(balance) and balance >= 1.0):
        bad.append(f"balance: {balance!r} -- expected a factor >= 1")
    if bad:
        raise ConfigError(bad, "dtb partition")


def plan(spec, ranks: int, routing: str = "direct", method: str = "metis",
         rate_hz: float = DEFAULT_RATE_HZ, ranks_per_node: int | None = None, seed: int = 0,
         costs: Costs | None = None, max_atom: float = 0.5, chunk: float = 1 / 32,
         balance: float = 1.03, max_edges: int = 4_000_000) -> Plan:
    """Partition ``spec`` (a BrainSpec) over ``ranks`` ranks and estimate the load and
    traffic of every rank (see the module docstring for the model).

    routing: "direct" or "two-level" (the plan's ``messages``; both are always reported);
    method: "metis" or "contiguous"; rate_hz: mean firing rate assumed for traffic and
    events; ranks_per_node: group size G of two-level routing (default round(sqrt P));
    seed: METIS's random seed (the plan is deterministic for a given seed);
    costs: the cost constants; max_atom, chunk: atom sizes as fractions of the mean rank
    cost; balance: the largest rank cost allowed, as a multiple of the mean (atoms are
    refined until it is met, see the module docstring); max_edges: the atom graph's edge
    budget (above it, edges are sampled).
    Raises ConfigError for invalid arguments (naming the flag).
    """
    _check(ranks, routing, method, rate_hz, ranks_per_node, balance, spec.n_neurons)
    ranks = int(ranks)
    costs = costs or Costs()
    per_node = int(ranks_per_node) if ranks_per_node is not None else \
        max(1, min(ranks, round(math.sqrt(ranks))))
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    m = _model(spec)
    unit_cost = costs.of(m.sizes.sum(axis=0), m.unit_synapses(), rate_hz)
    size = max_atom
    for attempt in range(MAX_REFINE + 1):
        if method == "contiguous":
            t = time.perf_counter()
            at, part = contiguous_atoms(m, unit_cost, ranks, costs, rate_hz)
            graph = dense = None
            _tick(wall, "contiguous_s", t)
            break
        at = make_atoms(m, unit_cost, ranks, size, min(chunk, size / 4), costs, rate_hz)
        part, graph, dense = _assign(m, at, ranks, rate_hz, seed, balance, max_edges, wall,
                                     compactness(m, unit_cost, ranks, costs.message, rate_hz))
        load = np.bincount(part, weights=at.cost, minlength=ranks)
        if load.max() <= balance * load.mean() * (1 + 1e-9) or attempt == MAX_REFINE:
            break
        size /= 2  # atoms too coarse to balance: halve them and start again
    wall["total_s"] = time.perf_counter() - t0
    wall["attempts"] = attempt + 1
    t = time.perf_counter()
    p = _evaluate(m, at, part, ranks, per_node, rate_hz, seed)
    wall["evaluate_s"] = time.perf_counter() - t
    wall["total_s"] += wall["evaluate_s"]
    summary = _summary(spec, m, at, part, p, ranks, routing, method, per_node, rate_hz, seed,
                       graph, dense, wall)
    return Plan(ranks, routing, method, per_node, float(rate_hz), seed, at, part,
                p["neurons"], p["synapses"], p["cost"], p["out"], p["in"], p["out_peers"],
                p["in_peers"], p["direct"], p["two_level"], summary)


def _assign(m: _Model, at: Atoms, ranks: int, rate_hz: float, seed: int, balance: float,
            max_edges: int, wall: dict[str, float], compact: np.ndarray | None = None):
    """METIS: the rank of every atom (dedicated blocks get a rank each, the rest are
    partitioned over the remaining ranks), the atom graph and whether it is exact; adds
    the stages' wall times to ``wall``."""
    if ranks == 1:
        return np.zeros(len(at), np.int64), None, None
    ded = np.flatnonzero(at.dedicated)
    rest = np.flatnonzero(~at.dedicated)
    part = np.empty(len(at), np.int64)
    part[ded] = np.arange(len(ded))  # a rank each
    free = ranks - len(ded)
    graph, dense = None, None
    if len(rest) and free < 1:  # only rounding crumbs left: share them out
        part[rest] = np.arange(len(rest)) % ranks
    elif len(rest):
        sub = at.subset(rest)
        t = time.perf_counter()
        graph, dense = atom_graph(m, sub, rate_hz, max_edges, seed, compact)
        _tick(wall, "graph_s", t)
        t = time.perf_counter()
        sp = _metis(graph, sub.cost, free, seed, ufactor=round(1000 * (balance - 1)))
        _tick(wall, "metis_s", t)
        t = time.perf_counter()
        sp = _rebalance(sp, sub.cost, graph, free, balance * at.cost.sum() / ranks)
        _tick(wall, "rebalance_s", t)
        part[rest] = len(ded) + sp
    return _renumber(part, at, ranks), graph, dense


def _tick(wall: dict[str, float], key: str, t: float) -> None:
    wall[key] = wall.get(key, 0.0) + time.perf_counter() - t


def _renumber(part: np.ndarray, at: Atoms, ranks: int) -> np.ndarray:
    """Number METIS's parts in order of their atoms' mean position in unit order, so that
    consecutive ranks (one node in two-level routing) hold neighbouring units."""
    pos = at.unit_lo + (at.piece + 0.5) / at.pieces
    w = np.maximum(at.cost, 1e-300)
    mean = np.bincount(part, weights=w * pos, minlength=ranks) / np.maximum(
        np.bincount(part, weights=w, minlength=ranks), 1e-300)
    new = np.empty(ranks, np.int64)
    new[np.lexsort((np.arange(ranks), mean))] = np.arange(ranks)
    return new[part]


def _evaluate(m: _Model, at: Atoms, part: np.ndarray, ranks: int, per_node: int,
              rate_hz: float, seed: int) -> dict[str, Any]:
    rm = _rank_model(m, at, part, ranks, rate_hz)
    tr = _traffic(rm, ranks, rate_hz)
    msg = _messages(rm, ranks, per_node, seed)
    lr_total = float(np.asarray(rm.npool.sum(axis=0)).ravel() @ rm.z.sum(axis=1))
    lr_local = float(np.asarray(rm.npool.multiply(rm.z.T).sum()))
    return {"neurons": np.bincount(part, weights=at.neurons, minlength=ranks),
            "synapses": np.bincount(part, weights=at.synapses, minlength=ranks),
            "cost": np.bincount(part, weights=at.cost, minlength=ranks),
            "out": tr["out"], "in": tr["in"], "local": tr["local"],
            "cross_synapses": lr_total - lr_local + float(rm.cross_s.sum()),
            "window_ms": _window_ms(m, at, part), **msg}


def _summary(spec, m: _Model, at: Atoms, part, p, ranks, routing, method, per_node, rate_hz,
             seed, graph, dense, wall) -> dict[str, Any]:
    def imb(x):
        mean = x.sum() / ranks
        return float(x.max() / mean) if mean > 0 else 1.0

    sent = float(p["out"].sum())
    delivered = sent + float(p["local"].sum())
    n_syn = float(at.synapses.sum())
    win = p["window_ms"]
    cut_units = at.pieces > 1
    s = {
        "ranks": ranks, "method": method, "routing": routing, "ranks_per_node": per_node,
        "groups": p["groups"], "rate_hz": rate_hz, "seed": seed, "level": spec.level,
        "units": int(spec.n_units), "regions": int(m.n_regions),
        "neurons": int(at.neurons.sum()), "synapses": n_syn,
        "atoms": len(at), "units_cut": int(len(np.unique(at.unit_lo[cut_units]))),
        "max_blocks_per_unit": int(at.pieces.max()) if len(at) else 0,
        "imbalance": imb(p["cost"]), "imbalance_neurons": imb(p["neurons"]),
        "imbalance_synapses": imb(p["synapses"]),
        "cut": sent / delivered if delivered > 0 else 0.0,
        "cut_synapses": p["cross_synapses"] / n_syn if n_syn > 0 else 0.0,
        "traffic_spikes_per_s": sent, "traffic_bytes_per_s": sent * BYTES_PER_SPIKE,
        "window_ms": win,
        "out_spikes_per_s": _stats(p["out"]), "in_spikes_per_s": _stats(p["in"]),
        "out_peers": _stats(p["out_peers"]), "in_peers": _stats(p["in_peers"]),
        "messages_direct": _stats(p["direct"]), "messages_two_level": _stats(p["two_level"]),
        "messages": _stats(p["direct"] if routing == "direct" else p["two_level"]),
        "peers_sampled_ranks": p["peers_sampled"],
        "neurons_per_rank": _stats(p["neurons"]), "synapses_per_rank": _stats(p["synapses"]),
        "cost_per_rank": _stats(p["cost"]),
        "wall_s": wall,
    }
    if graph is not None:
        s["graph"] = {"vertices": len(at), "edges": int(graph.nnz // 2),
                      "edges_exact": bool(dense)}
    if win:
        s["windows_per_s"] = 1000.0 / win
        s["messages_per_s"] = {"direct": s["messages_direct"]["mean"] * 1000.0 / win,
                               "two_level": s["messages_two_level"]["mean"] * 1000.0 / win}
    return s
