"""The planner's inputs: cost constants (``Costs``), the spec as arrays (``_model``) and
the atoms placed on ranks (``make_atoms``).  The model is described in the package
docstring (``dtb/partition/__init__.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtb.brain.spec import _dist
from dtb.model.network import as_dist

# Direct peer counts: set here and read when evaluate runs, so that
# ``dtb.partition.model.EXACT_PEERS_MAX = n`` takes effect.
EXACT_PEERS_MAX = 20_000  # above this many ranks, direct peer counts are sampled
PEER_SAMPLE = 2048  # target ranks sampled for direct peer counts above EXACT_PEERS_MAX

METHODS = ("metis", "contiguous")
ROUTINGS = ("direct", "two-level")
MAX_RANKS = 10**6
BYTES_PER_SPIKE = 8
DEFAULT_RATE_HZ = 5.0
MAX_REFINE = 3  # times atoms are halved when they are too coarse to balance
METIS_SCALE = 2**20  # integer resolution of METIS vertex and edge weights


# --- cost --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Costs:
    """Cost constants: per neuron update (``update``, at time step ``dt_ms``), per stored
    synapse (``synapse``) and per synaptic event (``event``); see the module docstring.
    ``message``: the overhead of one message, in spikes of 8 bytes (1024: 8 KiB, about a
    microsecond of network latency at 8 GB/s), which the partitioner weighs against
    traffic when it decides how compactly to keep each region."""

    update: float = 1.0
    synapse: float = 1.0
    event: float = 1.0
    dt_ms: float = 0.1
    message: float = 1024.0

    def of(self, neurons: np.ndarray, synapses: np.ndarray, rate_hz: float) -> np.ndarray:
        """Cost per second of model time of atoms with these neurons and synapses."""
        n = np.asarray(neurons, float)
        s = np.asarray(synapses, float)
        return n * self.update * (1000.0 / self.dt_ms) + s * (self.synapse +
                                                              rate_hz * self.event)


# --- the spec, as arrays -----------------------------------------------------------------

@dataclass
class _Model:
    """The spec's numbers the planner needs (F families, U units, G regions).

    sizes (F, U) neurons; region (U,); region_neurons (F, G); lr: long-range rules as
    (source family, target family, k (U,), p (G, G) normalised source probabilities,
    delay_low ms); local: unit-local rules as (source, target, k (U,), delay_low);
    conduction_ms (G, G).
    """

    families: list[str]
    sizes: np.ndarray
    region: np.ndarray
    n_regions: int
    region_neurons: np.ndarray
    lr: list[tuple[int, int, np.ndarray, np.ndarray, float]]
    local: list[tuple[int, int, np.ndarray, float]]
    conduction_ms: np.ndarray

    @property
    def n_fam(self) -> int:
        return len(self.families)

    def unit_synapses(self) -> np.ndarray:
        """(U,) incoming synapses of each unit (all rules)."""
        out = np.zeros(self.sizes.shape[1])
        for _, t, k, *_ in self.lr:
            out += k * self.sizes[t]
        for _, t, k, _ in self.local:
            out += k * self.sizes[t]
        return out


def _delay_low(v: Any) -> float:
    """The smallest delay (ms) a rule's delay setting can give."""

    return float(max(0.0, as_dist(_dist(v)).bounds()[0]))


def _model(spec) -> _Model:
    names = [f.name for f in spec.families]
    idx = {n: i for i, n in enumerate(names)}
    sizes = np.array([np.asarray(f.sizes, np.int64) for f in spec.families]).reshape(
        len(names), spec.n_units)
    region = np.asarray(spec.unit_region, np.int64)
    g = len(spec.region_labels)
    reg_n = np.array([np.bincount(region, weights=s, minlength=g) for s in sizes]).reshape(
        len(names), g)
    w = np.asarray(spec.weights, float)
    lr, local = [], []
    for r in spec.rules:
        s, t, k = idx[r.source], idx[r.target], np.asarray(r.k, float)
        if r.kind == "unit_local":
            local.append((s, t, k, _delay_low(r.delay)))
            continue
        p = np.where(reg_n[s][None, :] > 0, w, 0.0)
        tot = p.sum(axis=1, keepdims=True)
        p = np.divide(p, tot, out=np.zeros_like(p), where=tot > 0)
        lr.append((s, t, k, p, _delay_low(r.delay)))
    return _Model(names, sizes, region, g, reg_n, lr, local,
                  np.asarray(spec.conduction_ms, float))


# --- atoms -------------------------------------------------------------------------------

@dataclass
class Atoms:
    """What is placed on ranks: A atoms, each either a run of whole units
    ``unit_lo .. unit_hi - 1`` of one region (``pieces == 1``) or block ``piece`` of
    ``pieces`` of the single unit ``unit_lo`` (``unit_hi = unit_lo + 1``), holding
    neurons ``first[f] .. first[f] + sizes[f] - 1`` of each family f within that unit.

    sizes, first (F, A) neurons per family; region (A,); synapses (A,) incoming; cost (A,);
    dedicated (A,) bool: a block that fills one rank by itself.
    """

    unit_lo: np.ndarray
    unit_hi: np.ndarray
    piece: np.ndarray
    pieces: np.ndarray
    region: np.ndarray
    sizes: np.ndarray
    first: np.ndarray
    synapses: np.ndarray
    cost: np.ndarray
    dedicated: np.ndarray

    def __len__(self) -> int:
        return len(self.unit_lo)

    @property
    def neurons(self) -> np.ndarray:
        return self.sizes.sum(axis=0)

    def subset(self, idx: np.ndarray) -> Atoms:
        """The atoms idx (in that order; a cut unit's blocks must stay consecutive)."""
        return Atoms(*(x[..., idx] for x in (
            self.unit_lo, self.unit_hi, self.piece, self.pieces, self.region, self.sizes,
            self.first, self.synapses, self.cost, self.dedicated)))


def _per_atom(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of per-unit values (U,) or (F, U) over the units lo..hi-1 of each atom."""
    cs = np.zeros(values.shape[:-1] + (values.shape[-1] + 1,))
    np.cumsum(values, axis=-1, out=cs[..., 1:])
    return cs[..., hi] - cs[..., lo]


def _cut_points(cost: float, target: float, max_atom: float) -> tuple[np.ndarray, int]:
    """Where a heavy unit is cut, as fractions 0 = q_0 < ... < q_b = 1, and how many of
    its leading blocks are dedicated: floor(cost / T) blocks of cost T each fill a rank,
    and the remainder is cut into equal blocks of at most max_atom T."""
    k = int(math.floor(cost / target * (1 + 1e-12))) if cost >= target else 0
    rem = cost - k * target
    if rem < 1e-6 * target:
        rem, q_full = 0.0, np.linspace(0.0, 1.0, k + 1)
    else:
        q_full = (np.arange(k + 1) * (target / cost)).astype(np.float64)
    n_rem = int(math.ceil(rem / (max_atom * target))) if rem > 0 else 0
    q_rem = q_full[-1] + np.arange(1, n_rem + 1) * (rem / cost / max(n_rem, 1))
    q = np.concatenate([q_full, q_rem])
    q[-1] = 1.0
    return q, k


def make_atoms(m: _Model, unit_cost: np.ndarray, ranks: int, max_atom: float = 0.5,
               chunk: float = 1 / 32, costs: Costs | None = None,
               rate_hz: float = DEFAULT_RATE_HZ) -> Atoms:
    """Cut heavy units into blocks and merge light ones into chunks (module docstring).

    unit_cost (U,) in cost units; max_atom and chunk are fractions of the mean rank cost
    T.  A unit heavier than max_atom T is cut; one of cost c >= T first gives
    floor(c / T) blocks of cost T, each *dedicated* to a rank of its own, and its
    remainder is cut like a lighter unit.  Blocks without neurons are dropped.
    """
    costs = costs or Costs()
    n_u = unit_cost.shape[0]
    target = unit_cost.sum() / ranks
    heavy = unit_cost > max_atom * target
    # chunk keys: runs of light units of one region, cut every `chunk * target` of cost
    brk = np.ones(n_u, bool)
    brk[1:] = (m.region[1:] != m.region[:-1]) | heavy[1:] | heavy[:-1]
    cap = chunk * target
    if cap > 0:
        run = np.cumsum(brk) - 1
        cum = np.concatenate([[0.0], np.cumsum(np.where(heavy, 0.0, unit_cost))])
        start = cum[np.flatnonzero(brk)][run]
        key = np.floor((cum[:-1] - start) / cap).astype(np.int64)
        brk[1:] |= key[1:] != key[:-1]
    else:
        brk[:] = True
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], n_u)
    lo, hi, piece, pieces, first, sizes, ded = [], [], [], [], [], [], []
    light = ~heavy[starts]
    ls, le = starts[light], ends[light]
    lo.append(ls)
    hi.append(le)
    piece.append(np.zeros(len(ls), np.int64))
    pieces.append(np.ones(len(ls), np.int64))
    first.append(np.zeros((m.n_fam, len(ls)), np.int64))
    sizes.append(np.rint(_per_atom(m.sizes.astype(float), ls, le)).astype(np.int64))
    ded.append(np.zeros(len(ls), bool))
    for u in starts[~light]:
        q, k = _cut_points(float(unit_cost[u]), target, max_atom)
        bounds = np.rint(q[None, :] * m.sizes[:, u:u + 1]).astype(np.int64)
        bounds[:, -1] = m.sizes[:, u]
        sz = np.diff(bounds, axis=1)
        keep = sz.sum(axis=0) > 0
        nb = int(keep.sum())
        lo.append(np.full(nb, u))
        hi.append(np.full(nb, u + 1))
        piece.append(np.arange(nb))
        pieces.append(np.full(nb, nb))
        first.append(bounds[:, :-1][:, keep])
        sizes.append(sz[:, keep])
        ded.append((np.arange(len(keep)) < k)[keep] if nb > 1 else np.zeros(nb, bool))
    lo_a, hi_a = np.concatenate(lo), np.concatenate(hi)
    order = np.argsort(lo_a, kind="stable")  # unit order; a unit's blocks stay in order
    lo_a, hi_a = lo_a[order], hi_a[order]
    piece_a, pieces_a = np.concatenate(piece)[order], np.concatenate(pieces)[order]
    first_a = np.concatenate(first, axis=1)[:, order]
    sizes_a = np.concatenate(sizes, axis=1)[:, order]
    ded_a = np.concatenate(ded)[order]
    return _atoms_from(m, lo_a, hi_a, piece_a, pieces_a, first_a, sizes_a, ded_a, costs,
                       rate_hz)


def _atoms_from(m: _Model, lo, hi, piece, pieces, first, sizes, dedicated, costs: Costs,
                rate_hz: float) -> Atoms:
    """Atoms with their synapses and cost."""
    whole = pieces == 1
    syn = np.zeros(len(lo))
    for _, t, k, *_ in m.lr + [(s, t, k, None) for s, t, k, _ in m.local]:
        syn[whole] += _per_atom(k * m.sizes[t], lo[whole], hi[whole])
        syn[~whole] += k[lo[~whole]] * sizes[t, ~whole]
    return Atoms(lo, hi, piece, pieces, m.region[lo], sizes, first, syn,
                 costs.of(sizes.sum(axis=0), syn, rate_hz), dedicated)
