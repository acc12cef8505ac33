"""How a rank builds its partition of a network: the layout of the populations it owns,
parameter sets, initial state, blocks, background inputs and units (the synapses:
dtb.engine.synapses).  ``build_partition`` returns a ``Partition`` of typed bundles
(kernels/bundles.py), which the simulation keeps and the backends run.  Units: ms and mV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtb.engine.decomposition import Ownership
from dtb.engine.synapses import SynapseTables, build_synapses, receptor
from dtb.kernels import dynamics as kd
from dtb.kernels.bundles import Blocks, Inputs, InputState, Neurons, Pieces, Synapses
from dtb.kernels.connect import FIX_BITS
from dtb.kernels.philox import INIT, OU, PARAM, draw_per_neuron, make_key1
from dtb.model.network import Dist, Network, OUInput, PerUnit, PoissonInput, as_dist
from dtb.model.neurons import MODELS, N_CHANNELS, N_PARAM_ROWS, N_SYN, pack

CDF_LEN = 48


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
class ParamSets:
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


@dataclass
class Partition:
    """What a rank builds of a network: n local neurons in layout pieces (one per owned
    range of a population; engine indices and global ids both increase), their state and
    parameters, blocks, inputs and the synapses onto them.  Host numpy arrays throughout."""

    layout: list[PopulationLayout]
    n_neurons: int  # in the whole network
    gids: np.ndarray  # (n,) int64: global id of each local neuron
    pop_gid0: np.ndarray  # (populations,) int64: first global id of each population
    unit_of: np.ndarray  # (n,) int64: unit of each neuron in its population, -1: none
    n_units: int  # the largest unit count of a population (a brain's families share one)
    ports: list[str]  # receptor ports: every receptor a projection or Poisson input uses
    param_sets: list[ParamSets]  # per layout piece
    neurons: Neurons
    blocks: Blocks
    inputs: Inputs
    istate: InputState
    pieces: Pieces
    synapses: Synapses
    tables: SynapseTables

    @property
    def n_local(self) -> int:
        return len(self.gids)

    @property
    def piece_gid0(self) -> np.ndarray:
        return np.array([lay.gid0 for lay in self.layout], np.int64)


def build_partition(network: Network, dt: float, seed: int, ownership: Ownership, rank: int,
                    threads: int, noise_seed: int | None = None) -> Partition:
    """Rank ``rank``'s partition of ``network`` (parsed) under ``ownership``; ``threads``
    sizes the blocks (several per thread, for balance).  ``seed`` draws the synapses and
    per-neuron parameters, ``noise_seed`` (default ``seed``) the initial state (V, the OU
    inputs')."""
    noise_seed = seed if noise_seed is None else noise_seed
    layout, n_neurons = _layout(network, ownership.ranges(rank))
    n = sum(lay.size for lay in layout)
    gids = (np.concatenate([lay.gid0 + np.arange(lay.size) for lay in layout])
            if layout else np.zeros(0, np.int64)).astype(np.int64)
    pop_gid0 = np.concatenate([[0], np.cumsum([p.size for p in network.populations])]
                              )[:-1].astype(np.int64)
    param_sets, P, pid, V = _parameters(network, layout, n, dt, seed, noise_seed)
    ports, masks = _ports(network)
    unit_of, n_units = _units(network, layout, n)
    inputs, istate = _inputs(network, layout, ports, dt, noise_seed)
    tables, synapses, pieces = build_synapses(network, layout, ports, dt, seed)
    ring = np.zeros((tables.max_delay_steps + 1, max(1, len(ports)), n), np.int64)
    neurons = Neurons(V, np.zeros((N_SYN, n)), np.zeros(n, np.int32), P, pid, masks,
                      ring)
    return Partition(layout, n_neurons, gids, pop_gid0, unit_of, n_units, ports, param_sets,
                     neurons, _blocks(layout, n, threads), inputs, istate, pieces, synapses,
                     tables)


def _layout(network: Network, ranges: list) -> tuple[list[PopulationLayout], int]:
    """One piece per owned range of a population (an empty one where the rank owns none
    of it), in (population, first) order; and the network's neuron count."""
    layout: list[PopulationLayout] = []
    o_glob = o_loc = 0
    for i, (p, rngs) in enumerate(zip(network.populations, ranges, strict=True)):
        for a, b in rngs or [(0, 0)]:
            layout.append(PopulationLayout(p.name, i, o_glob + a, o_loc, o_loc + b - a,
                                           p.model, a, o_glob, p.size))
            o_loc += b - a
        o_glob += p.size
    return layout, o_glob


def _parameters(network: Network, layout: list[PopulationLayout], n: int, dt: float,
                seed: int, noise_seed: int
                ) -> tuple[list[ParamSets], np.ndarray, np.ndarray, np.ndarray]:
    """Parameter sets (drawn with ``seed``), each neuron's set and the initial V (drawn with
    ``noise_seed``).

    Parameters are stored once per distinct set (a population, a unit, or a neuron where
    they are drawn per neuron) and each neuron points to its set: the kernels then read a
    few cache-resident columns instead of streaming a per-neuron matrix."""
    sets: list[np.ndarray] = []
    param_sets: list[ParamSets] = []
    pid = np.empty(n, np.int64)
    V = np.empty(n)
    n_sets = 0
    for lay in layout:
        pop = network.populations[lay.index]
        model = MODELS[pop.model]
        raw = {k: pop.params.get(k, default) for k, default in model.defaults.items()}
        mode, m, member, vals = _piece_values(pop, lay, raw, seed)
        sets.append(pack(model, vals, dt).T)
        pid[lay.lo:lay.hi] = n_sets + member
        param_sets.append(ParamSets(mode, n_sets, m, vals))
        n_sets += m
        v0 = pop.initial.get("V")
        if v0 is None:
            rest = vals["E_L" if pop.model == "iaf_psc_exp" else "V_L"]
            V[lay.lo:lay.hi] = rest[member]
        else:
            V[lay.lo:lay.hi] = _per_neuron(as_dist(v0), noise_seed, INIT, lay.index, lay.gid0,
                                           lay.size)
    P = np.ascontiguousarray(np.concatenate(sets)) if sets else np.zeros((0, N_PARAM_ROWS))
    return param_sets, P, pid, V


def _piece_values(pop, lay: PopulationLayout, raw: dict, seed: int
                  ) -> tuple[str, int, np.ndarray, dict[str, np.ndarray]]:
    """One piece's parameter sets: what a set stands for, how many, each neuron's set
    (within the piece) and the values per set."""
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
    mode = "neuron" if per_neuron else "unit" if per_unit else "population"
    return mode, m, member, vals


def _ports(network: Network) -> tuple[list[str], np.ndarray]:
    """Receptor ports (every receptor name some projection or Poisson input uses) and the
    masks (models, ports, channels) of what a port's input adds to each channel."""
    ports: list[str] = []
    for q in network.projections:
        if receptor(q) not in ports:
            ports.append(receptor(q))
    for pop in network.populations:
        for inp in pop.inputs:
            if isinstance(inp, PoissonInput) and receptor(inp) not in ports:
                ports.append(receptor(inp))
    masks = np.zeros((len(MODELS), max(1, len(ports)), N_CHANNELS))
    for model in MODELS.values():
        for pi, name in enumerate(ports):
            for ch in model.receptors.get(name, ()):
                masks[model.code, pi, ch] = 1.0
    return ports, masks


def _units(network: Network, layout: list[PopulationLayout], n: int
           ) -> tuple[np.ndarray, int]:
    """unit_of: the unit (index into the population's ``units``) of every local neuron,
    -1 where the population has no units; n_units: the largest unit count (a brain's
    families all share one set of units)."""
    unit_of = np.full(n, -1, np.int64)
    n_units = 0
    for lay in layout:
        units = network.populations[lay.index].units
        if units is None:
            continue
        n_units = max(n_units, len(units))
        bounds = np.cumsum(units)
        unit_of[lay.lo:lay.hi] = np.searchsorted(bounds, lay.first + np.arange(lay.size),
                                                 side="right")
    return unit_of, n_units


def _blocks(layout: list[PopulationLayout], n: int, threads: int) -> Blocks:
    lo, hi, model, gid0 = [], [], [], []
    target = max(64, min(4096, math.ceil(n / (8 * threads))))
    for lay in layout:
        nb_ = max(1, math.ceil(lay.size / target))
        for b in range(nb_):
            a = lay.lo + b * lay.size // nb_
            z = lay.lo + (b + 1) * lay.size // nb_
            lo.append(a)
            hi.append(z)
            model.append(MODELS[lay.model].code)
            gid0.append(lay.gid0 + (a - lay.lo))
    return Blocks(np.array(lo, np.int64), np.array(hi, np.int64), np.array(model, np.int64),
                  np.array(gid0, np.int64))


def _inputs(network: Network, layout: list[PopulationLayout], ports: list[str], dt: float,
            seed: int) -> tuple[Inputs, InputState]:
    """The background inputs of every piece, and their initial state."""
    cols: dict[str, list] = {f: [] for f in Inputs._fields}
    ou_parts = []
    ou_n = 0
    pq_n = 0
    for lay in layout:
        pop = network.populations[lay.index]
        for j, inp in enumerate(pop.inputs):
            row = {"lo": lay.lo, "hi": lay.hi, "ident": lay.index * 256 + j, "port": 0,
                   "b": 0.0, "c": 0.0, "wfix": 0, "off": 0,
                   "cdf": poisson_cdf_table(math.inf)}
            if isinstance(inp, PoissonInput):
                lam = inp.in_degree * inp.rate * dt * 1e-3
                row.update(kind=kd.IN_POISSON, off=pq_n, port=ports.index(receptor(inp)),
                           a=lam, cdf=poisson_cdf_table(lam),
                           wfix=int(round(inp.weight * 2.0**FIX_BITS)))
                pq_n += lay.size
            elif isinstance(inp, OUInput):
                e = math.exp(-dt / inp.tau)
                row.update(kind=kd.IN_OU, off=ou_n, a=inp.mean,
                           b=math.sqrt(1.0 - e * e) * inp.sigma, c=e)
                ou_parts.append(kd.ou_initial(inp.mean, inp.sigma, seed,
                                              make_key1(OU, lay.index * 256 + j),
                                              lay.gid0, lay.size))
                ou_n += lay.size
            else:
                row.update(kind=kd.IN_DC, a=inp.amplitude)
            for f in Inputs._fields:
                cols[f].append(row[f])
    inputs = Inputs(*(np.array(cols[f], float) if f in ("a", "b", "c") else
                      np.array(cols[f], np.uint64).reshape(-1, CDF_LEN) if f == "cdf" else
                      np.array(cols[f], np.int64) for f in Inputs._fields))
    ou = np.full((6, ou_n), -1.0)  # value, 4 cached normals, their 4-step group
    if ou_parts:
        ou[0] = np.concatenate(ou_parts)
    return inputs, InputState(ou, np.zeros((4, pq_n), np.uint32), np.full(pq_n, -1, np.int64))
