"""How an Engine builds its partition: the layout of the populations it owns, parameter
sets, initial state, background inputs, units and synapses (CSR by projection and source).

``EngineBuild`` holds the construction methods that ``dtb.engine.simulation.Engine`` inherits (the
engine calls ``_build`` once in its constructor); the running half is in
dtb.engine.simulation.  Units:
ms and mV, as the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtb.engine.connectivity import fill, synapse_counts
from dtb.kernels import dynamics as kd
from dtb.kernels.connect import FIX_BITS, weight_shift
from dtb.kernels.philox import INIT, OU, PARAM, draw_per_neuron, make_key1
from dtb.model.network import Dist, LongRange, OUInput, PerUnit, PoissonInput, as_dist
from dtb.model.neurons import MODELS, N_CHANNELS, N_PARAM_ROWS, pack

CDF_LEN = 48
MAX_WINDOW = 1000  # steps per window when no delay bounds it (spike buffer size)


@dataclass(frozen=True)
class PopulationLayout:
    """The part of a population this engine owns: neurons first .. first+size-1 of the
    population, global ids gid0.., engine indices lo..hi-1 (all of it on one process)."""

    name: str
    index: int
    gid0: int
    lo: int
    hi: int
    model: str
    first: int = 0
    pop_gid0: int = 0
    pop_size: int = 0

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass
class _ParamSets:
    """The parameter sets of one layout piece: rows set0 .. set0+m-1 of the engine's packed
    sets; ``mode`` says what a set stands for (the whole population, a unit, a neuron);
    ``vals`` the unpacked values per set (name -> (m,)), kept to repack after a change."""

    mode: str
    set0: int
    m: int
    vals: dict[str, np.ndarray]


def _per_neuron(v: Dist, seed: int, purpose: int, stream: int, gid0: int, n: int) -> np.ndarray:
    if v.kind == "constant":
        return np.full(n, v.a)
    return draw_per_neuron(v.code, v.a, v.b, v.low, v.high, seed,
                           make_key1(purpose, stream), gid0, n)


def poisson_cdf_table(lam: float) -> np.ndarray:
    """floor(2**32 P(N <= n)) for N ~ Poisson(lam), n < CDF_LEN, the last entry 2**32.

    A 32-bit random word w gives the count min{n : w < table[n]}; the truncation at
    CDF_LEN - 1 events per step costs less than 1e-15 probability for lam < 10.
    """
    table = np.full(CDF_LEN, 2**32, np.uint64)
    if lam >= 10.0:
        return table
    pk = math.exp(-lam)
    cum = 0.0
    for n in range(CDF_LEN - 1):
        cum += pk
        table[n] = min(2**32, math.floor(cum * 2**32))
        pk *= lam / (n + 1)
    return table


def _min_conduction(rule: LongRange, pre, post) -> float:
    """The smallest conduction delay (ms) a synapse of this rule can have: over group
    pairs with weight whose source group has neurons and target group has units."""
    n_g = rule.probs.shape[0]
    g_pre = np.asarray(pre.groups if pre.groups is not None else range(len(pre.units)))
    g_post = np.asarray(post.groups if post.groups is not None else range(len(post.units)))
    has_src = np.bincount(g_pre, weights=np.asarray(pre.units), minlength=n_g) > 0
    has_tgt = np.bincount(g_post, weights=np.asarray(post.units), minlength=n_g) > 0
    ok = (rule.probs > 0) & has_src[None, :] & has_tgt[:, None]
    return float(rule.conduction_ms[ok].min()) if ok.any() else 0.0


class EngineBuild:
    """The construction half of Engine (see dtb.engine.simulation.Engine for the attributes
    it sets)."""

    def _build(self) -> None:
        net, dt, seed = self.network, self.dt, self.seed
        # one piece per owned range of a population (an empty one where the rank owns none
        # of it), in (population, first) order: engine indices and gids both increase
        self.layout: list[PopulationLayout] = []
        o_glob = o_loc = 0
        for i, (p, rngs) in enumerate(zip(net.populations, self.ownership.ranges(self.rank),
                                          strict=True)):
            for a, b in rngs or [(0, 0)]:
                self.layout.append(PopulationLayout(p.name, i, o_glob + a, o_loc,
                                                    o_loc + b - a, p.model, a, o_glob, p.size))
                o_loc += b - a
            o_glob += p.size
        n = self.n_local = o_loc
        self.n_neurons = o_glob
        self._piece_lo = np.array([lay.lo for lay in self.layout], np.int64)
        self._piece_first = np.array([lay.first for lay in self.layout], np.int64)
        self._piece_gid0 = np.array([lay.gid0 for lay in self.layout], np.int64)
        self._pop_gid0 = np.concatenate([[0], np.cumsum([p.size for p in net.populations])]
                                        )[:-1].astype(np.int64)
        self.gids = (np.concatenate([lay.gid0 + np.arange(lay.size) for lay in self.layout])
                     if self.layout else np.zeros(0, np.int64)).astype(np.int64)

        self.V = np.empty(n)
        self.syn = np.zeros((N_CHANNELS, n))
        self.refr = np.zeros(n, np.int32)

        # Parameters are stored once per distinct set (a population, a unit, or a neuron
        # where they are drawn per neuron) and each neuron points to its set: the kernels
        # then read a few cache-resident columns instead of streaming a per-neuron matrix.
        sets: list[np.ndarray] = []
        self._piece_sets: list[_ParamSets] = []
        self._pid = np.empty(n, np.int64)
        n_sets = 0
        for lay in self.layout:
            pop = net.populations[lay.index]
            model = MODELS[pop.model]
            raw = {k: pop.params.get(k, default) for k, default in model.defaults.items()}
            per_neuron = any(not isinstance(v, (int, float, PerUnit))
                             and as_dist(v).kind != "constant" for v in raw.values())
            per_unit = any(isinstance(v, PerUnit) for v in raw.values())
            if per_neuron:
                m = lay.size
                member = np.arange(lay.size)
            elif per_unit:
                m = len(pop.units)
                member = np.repeat(np.arange(m), pop.units)[lay.first:lay.first + lay.size]
            else:
                m = 1
                member = np.zeros(lay.size, np.int64)
            vals = {}
            for k_i, (k, v) in enumerate(raw.items()):
                if isinstance(v, PerUnit):
                    vals[k] = np.asarray(v.values, float)
                    if per_neuron:
                        vals[k] = np.repeat(vals[k], pop.units)[lay.first:lay.first + lay.size]
                elif per_neuron:
                    vals[k] = _per_neuron(as_dist(v), seed, PARAM, lay.index * 256 + k_i,
                                          lay.gid0, lay.size)
                else:
                    vals[k] = np.full(m, as_dist(v).a)
            sets.append(pack(model, vals, dt).T)
            self._pid[lay.lo:lay.hi] = n_sets + member
            self._piece_sets.append(_ParamSets(
                "neuron" if per_neuron else "unit" if per_unit else "population",
                n_sets, m, vals))
            n_sets += m
            v0 = pop.initial.get("V")
            if v0 is None:
                rest = vals["E_L" if pop.model == "iaf_psc_exp" else "V_L"]
                self.V[lay.lo:lay.hi] = rest[member]
            else:
                self.V[lay.lo:lay.hi] = _per_neuron(as_dist(v0), seed, INIT, lay.index,
                                                    lay.gid0, lay.size)
        self._psets = np.ascontiguousarray(np.concatenate(sets)) if sets else \
            np.zeros((0, N_PARAM_ROWS))

        # receptor ports: every receptor name some projection or Poisson input uses
        ports: list[str] = []
        for q in net.projections:
            if q.receptor not in ports:
                ports.append(q.receptor)
        for pop in net.populations:
            for inp in pop.inputs:
                if isinstance(inp, PoissonInput) and inp.receptor not in ports:
                    ports.append(inp.receptor)
        self.ports = ports
        self._masks = np.zeros((len(MODELS), max(1, len(ports)), N_CHANNELS))
        for model in MODELS.values():
            for pi, name in enumerate(ports):
                for ch in model.receptors.get(name, ()):
                    self._masks[model.code, pi, ch] = 1.0

        self._build_units()
        self._build_blocks()
        self._build_inputs()
        self._build_synapses()
        D = self.max_delay_steps + 1
        self.ring = np.zeros((D, max(1, len(ports)), n), np.int64)

    def _build_units(self) -> None:
        """unit_of: the unit (index into the population's ``units``) of every local neuron,
        -1 where the population has no units; n_units: the largest unit count (a brain's
        families all share one set of units)."""
        self.unit_of = np.full(self.n_local, -1, np.int64)
        self.n_units = 0
        for lay in self.layout:
            units = self.network.populations[lay.index].units
            if units is None:
                continue
            self.n_units = max(self.n_units, len(units))
            bounds = np.cumsum(units)
            self.unit_of[lay.lo:lay.hi] = np.searchsorted(
                bounds, lay.first + np.arange(lay.size), side="right")

    def _build_blocks(self) -> None:
        lo, hi, model, gid0 = [], [], [], []
        target = max(64, min(4096, math.ceil(self.n_local / (8 * self.threads))))
        for lay in self.layout:
            nb_ = max(1, math.ceil(lay.size / target))
            for b in range(nb_):
                a = lay.lo + b * lay.size // nb_
                z = lay.lo + (b + 1) * lay.size // nb_
                lo.append(a)
                hi.append(z)
                model.append(MODELS[lay.model].code)
                gid0.append(lay.gid0 + (a - lay.lo))
        self._blk_lo = np.array(lo, np.int64)
        self._blk_hi = np.array(hi, np.int64)
        self._blk_model = np.array(model, np.int64)
        self._blk_gid0 = np.array(gid0, np.int64)

    def _build_inputs(self) -> None:
        kind, lo, hi, ident, port, a, b, c, wfix, off, cdf = ([] for _ in range(11))
        ou_parts = []
        ou_n = 0
        pq_n = 0
        dt, seed = self.dt, self.seed
        for lay in self.layout:
            pop = self.network.populations[lay.index]
            for j, inp in enumerate(pop.inputs):
                lo.append(lay.lo)
                hi.append(lay.hi)
                ident.append(lay.index * 256 + j)
                if isinstance(inp, PoissonInput):
                    off.append(pq_n)
                    pq_n += lay.size
                    kind.append(kd.IN_POISSON)
                    port.append(self.ports.index(inp.receptor))
                    lam = inp.in_degree * inp.rate * dt * 1e-3
                    a.append(lam)
                    b.append(0.0)
                    cdf.append(poisson_cdf_table(lam))
                    c.append(0.0)
                    wfix.append(int(round(inp.weight * 2.0**FIX_BITS)))
                elif isinstance(inp, OUInput):
                    off.append(ou_n)
                    cdf.append(poisson_cdf_table(math.inf))
                    kind.append(kd.IN_OU)
                    port.append(0)
                    e = math.exp(-dt / inp.tau)
                    a.append(inp.mean)
                    b.append(math.sqrt(1.0 - e * e) * inp.sigma)
                    c.append(e)
                    wfix.append(0)
                    ou_parts.append(kd.ou_initial(inp.mean, inp.sigma, seed,
                                                  make_key1(OU, lay.index * 256 + j),
                                                  lay.gid0, lay.size))
                    ou_n += lay.size
                else:
                    off.append(0)
                    cdf.append(poisson_cdf_table(math.inf))
                    kind.append(kd.IN_DC)
                    port.append(0)
                    a.append(inp.amplitude)
                    b.append(0.0)
                    c.append(0.0)
                    wfix.append(0)
        self._in = (np.array(kind, np.int64), np.array(lo, np.int64), np.array(hi, np.int64),
                    np.array(ident, np.int64), np.array(port, np.int64), np.array(a, float),
                    np.array(b, float), np.array(c, float), np.array(wfix, np.int64),
                    np.array(off, np.int64),
                    np.array(cdf, np.uint64).reshape(-1, CDF_LEN))
        self._ou = np.full((6, ou_n), -1.0)  # value, 4 cached normals, their 4-step group
        if ou_parts:
            self._ou[0] = np.concatenate(ou_parts)
        self._pq_cache = np.zeros((4, pq_n), np.uint32)
        self._pq_tag = np.full(pq_n, -1, np.int64)

    def _build_synapses(self) -> None:
        """Count every projection's synapses, allocate the shared arrays once, then fill
        them projection by projection (peak: 8 bytes/synapse plus one projection's temp).

        A projection's synapses onto all of this rank's pieces of its target population
        share one CSR over the source population's neurons; within a row, targets
        increase (pieces are filled in engine-index order and merged row by row)."""
        net = self.network
        names = [p.name for p in net.populations]
        pieces = {i: [k for k, lay in enumerate(self.layout) if lay.index == i and lay.size]
                  for i in range(len(names))}

        self._proj_shift = np.array([weight_shift(max(abs(x) for x in as_dist(q.weight).bounds()))
                                     for q in net.projections], np.int64)
        counts = []
        for pid, q in enumerate(net.projections):
            pre, post = net.populations[names.index(q.source)], \
                net.populations[names.index(q.target)]
            counts.append([synapse_counts(q, pid, self.seed, pre, post, lay.gid0, lay.first,
                                          lay.size)
                           for lay in (self.layout[k] for k in pieces[names.index(q.target)])])
        n_proj = len(counts)
        syn0 = np.zeros(n_proj + 1, np.int64)
        np.cumsum([sum(int(c.sum()) for c in cs) for cs in counts], out=syn0[1:])
        self.n_synapses = int(syn0[-1])
        self._proj_row0 = np.zeros(n_proj, np.int64)
        rows = 0
        for pid, q in enumerate(net.projections):
            self._proj_row0[pid] = rows
            rows += net.populations[names.index(q.source)].size
        self._indptr = np.zeros(rows + 1, np.int64)
        self._tgt = np.empty(self.n_synapses, np.uint32)
        self._wq = np.empty(self.n_synapses, np.int16)
        self._dly = np.empty(self.n_synapses, np.uint16)
        post_lo = np.zeros(n_proj, np.int64)
        post_hi = np.zeros(n_proj, np.int64)
        for pid, q in enumerate(net.projections):
            s_i, t_i = names.index(q.source), names.index(q.target)
            pre, post = net.populations[s_i], net.populations[t_i]
            a, z = syn0[pid], syn0[pid + 1]
            r0 = self._proj_row0[pid]
            lays = [self.layout[k] for k in pieces[t_i]]
            if lays:
                post_lo[pid], post_hi[pid] = lays[0].lo, lays[-1].hi
            if len(lays) == 1:
                lay = lays[0]
                rel = np.empty(pre.size + 1, np.int64)
                fill(q, pid, self.seed, self.dt, pre, post, lay.gid0, lay.first, counts[pid][0],
                     lay.lo, int(self._proj_shift[pid]), rel, self._tgt[a:z], self._wq[a:z],
                     self._dly[a:z])
                self._indptr[r0 + 1:r0 + 1 + pre.size] = rel[1:] + a
                continue
            self._indptr[r0 + 1:r0 + 1 + pre.size] = a
            if not lays:
                continue
            # several pieces: fill each on its own, then merge the rows
            parts = []
            for lay, c in zip(lays, counts[pid], strict=True):
                m = int(c.sum())
                rel = np.empty(pre.size + 1, np.int64)
                tgt, wq, dly = np.empty(m, np.uint32), np.empty(m, np.int16), \
                    np.empty(m, np.uint16)
                fill(q, pid, self.seed, self.dt, pre, post, lay.gid0, lay.first, c, lay.lo,
                     int(self._proj_shift[pid]), rel, tgt, wq, dly)
                parts.append((rel, tgt, wq, dly))
            length = sum(np.diff(rel) for rel, *_ in parts)
            ptr = a + np.concatenate([[0], np.cumsum(length)])
            self._indptr[r0:r0 + pre.size + 1] = ptr
            before = np.zeros(pre.size, np.int64)  # row entries of earlier pieces
            for rel, tgt, wq, dly in parts:
                n_row = np.diff(rel)
                dest = (np.repeat(ptr[:-1] + before - rel[:-1], n_row)
                        + np.arange(len(tgt)))
                self._tgt[dest], self._wq[dest], self._dly[dest] = tgt, wq, dly
                before += n_row
            del parts
        del counts
        self._proj_post_lo, self._proj_post_hi = post_lo, post_hi
        self._proj_port = np.array([self.ports.index(q.receptor) for q in net.projections],
                                   np.int64)
        # projections grouped by source: per population (spikes from other ranks, by gid)
        # and per piece (this rank's spikes, by engine index)
        src_pop = np.array([names.index(q.source) for q in net.projections], np.int64)
        order = np.argsort(src_pop, kind="stable").astype(np.int64)
        self._pop_proj = order
        self._pop_proj_ptr = np.zeros(len(names) + 1, np.int64)
        np.cumsum(np.bincount(src_pop, minlength=len(names)), out=self._pop_proj_ptr[1:])
        per_piece = [order[self._pop_proj_ptr[lay.index]:self._pop_proj_ptr[lay.index + 1]]
                     for lay in self.layout]
        self._piece_proj = (np.concatenate(per_piece).astype(np.int64) if per_piece
                            else np.zeros(0, np.int64))
        self._piece_proj_ptr = np.zeros(len(self.layout) + 1, np.int64)
        np.cumsum([len(x) for x in per_piece], out=self._piece_proj_ptr[1:])
        self.min_delay_steps = self._min_delay_from_rules()
        self.max_delay_steps = int(self._dly.max()) if self.n_synapses else 1
        index_bytes = self._indptr.nbytes
        syn_bytes = self._tgt.nbytes + self._wq.nbytes + self._dly.nbytes
        self.bytes_per_synapse = ((syn_bytes + index_bytes) / self.n_synapses
                                  if self.n_synapses else 0.0)

    def _min_delay_from_rules(self) -> int:
        """The smallest delay any synapse may have, from the rules (not the draws), so that
        every rank agrees on it without communicating."""
        best = MAX_WINDOW
        pops = {p.name: p for p in self.network.populations}
        for q in self.network.projections:
            lo, _ = as_dist(q.delay).bounds()
            if isinstance(q.rule, LongRange):
                lo += _min_conduction(q.rule, pops[q.source], pops[q.target])
            best = min(best, max(1, math.floor(lo / self.dt + 0.5)))
        return best
