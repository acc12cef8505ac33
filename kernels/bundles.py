"""Typed bundles of the arrays the kernels read and write.

numba accepts NamedTuples of arrays as arguments: a kernel takes a few bundles instead of
dozens of positional arrays, and reads fields by name.  Shapes use n (neurons of this
partition), D (delay slots), ports (receptor ports), B (blocks of neurons), K (inputs),
Q (projections), R (CSR rows) and S (synapses).

Inside a ``prange`` a kernel writes only to arrays it took out of a bundle before the
loop, one plain assignment each (``x = bundle.x``): numba drops writes made there through
a tuple's field, and through names bound by unpacking several fields in one statement
(``a, b = t.a, t.b``), without any error (measured with numba 0.68: the spike counts
stayed zero).  Reading fields there is fine.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Neurons(NamedTuple):
    """State and parameters of the partition's neurons."""

    V: np.ndarray  # (n,) float64: membrane potential, mV
    syn: np.ndarray  # (5, n) float64: synaptic currents (pA) or traces, lif_cond's adaptation trace
    refr: np.ndarray  # (n,) int32: refractory steps left
    P: np.ndarray  # (sets, N_PARAM_ROWS) float64: packed parameter sets (kernels/rows.py)
    pid: np.ndarray  # (n,) int64: the parameter set of each neuron
    masks: np.ndarray  # (models, ports, 4) float64: what a port's input adds to each channel
    ring: np.ndarray  # (D, ports, n) int64: input slots, fixed point in units of 2**-32


class Blocks(NamedTuple):
    """Blocks of neurons one thread advances together (one model per block)."""

    lo: np.ndarray  # (B,) int64: first engine index
    hi: np.ndarray  # (B,) int64: one past the last
    model: np.ndarray  # (B,) int64: neuron model code (dtb.model.neurons.MODEL_CODES)
    gid0: np.ndarray  # (B,) int64: global id of neuron lo


class Inputs(NamedTuple):
    """Background inputs, input k covering engine indices [lo[k], hi[k]).

    ``a``, ``b``, ``c`` by kind: Poisson (IN_POISSON): a = mean count per step, wfix the
    fixed-point weight, cdf[k] = floor(2**32 P(count <= n)) (last entry 2**32) when a < 10;
    Ornstein-Uhlenbeck (IN_OU): a = mean, b = noise factor sqrt(1 - c**2) sigma, c = decay
    exp(-dt / tau); DC (IN_DC): a = amplitude.  off[k] + index - lo[k] is a neuron's column
    in the input's state (InputState).
    """

    kind: np.ndarray  # (K,) int64
    lo: np.ndarray  # (K,) int64
    hi: np.ndarray  # (K,) int64
    ident: np.ndarray  # (K,) int64: the input's random stream
    port: np.ndarray  # (K,) int64: receptor port (Poisson)
    a: np.ndarray  # (K,) float64
    b: np.ndarray  # (K,) float64
    c: np.ndarray  # (K,) float64
    wfix: np.ndarray  # (K,) int64
    off: np.ndarray  # (K,) int64
    cdf: np.ndarray  # (K, CDF_LEN) uint64


class InputState(NamedTuple):
    """What the inputs carry from step to step (the OU values) and caches of random words
    (a pure speed-up: any content reproduces the same draws)."""

    ou: np.ndarray  # (6, columns) float64: value, 4 cached normals, their 4-step group
    pq_cache: np.ndarray  # (4, columns) uint32: Poisson words of one 4-step group
    pq_tag: np.ndarray  # (columns,) int64: that group


class Scratch(NamedTuple):
    """Work arrays of one window of at most m steps."""

    cur: np.ndarray  # (n,) float64: external current of the step
    spk_step: np.ndarray  # (n m,) int64: spikes of block b from position lo[b] m
    spk_idx: np.ndarray  # (n m,) int64
    counts: np.ndarray  # (B,) int64: spikes per block
    win_step: np.ndarray  # (n m,) int64: the window's spikes, gathered
    win_idx: np.ndarray  # (n m,) int64
    win_pop: np.ndarray  # (n m,) int64: their layout piece
    win_src: np.ndarray  # (n m,) int64: their index within their population


class Pieces(NamedTuple):
    """The layout pieces of this partition (owned ranges of populations) and the
    projections their spikes feed: piece g starts at engine index lo[g], which is neuron
    first[g] of its population, and feeds projections proj[proj_ptr[g]:proj_ptr[g + 1]]."""

    lo: np.ndarray  # (pieces,) int64
    first: np.ndarray  # (pieces,) int64
    proj_ptr: np.ndarray  # (pieces + 1,) int64
    proj: np.ndarray  # int64


class Synapses(NamedTuple):
    """The synapses stored here, CSR by (projection, source): projection p's row for
    source index r is row0[p] + r; synapse k targets engine index tgt[k] with weight
    wq[k] << shift[p] (fixed point) after dly[k] steps."""

    row0: np.ndarray  # (Q,) int64
    post_lo: np.ndarray  # (Q,) int64: smallest target index of the projection here
    post_hi: np.ndarray  # (Q,) int64: one past the largest
    port: np.ndarray  # (Q,) int64: receptor port
    shift: np.ndarray  # (Q,) int64
    indptr: np.ndarray  # (R + 1,) int64
    tgt: np.ndarray  # (S,) uint32
    wq: np.ndarray  # (S,) int16
    dly: np.ndarray  # (S,) uint16: delay in steps


class Route(NamedTuple):
    """A rank's spike exchange tables (dtb.engine.exchange.Exchange, routing "direct"):
    local neuron i is wanted by peers send_peer[send_ptr[i]:send_ptr[i + 1]] (indices into
    the destination list) at positions send_pos[...] of their requests; source peer r sent
    the global ids request[request_off[r]:request_off[r + 1]] as its request; remote spikes
    of population p feed projections pop_proj[pop_proj_ptr[p]:pop_proj_ptr[p + 1]]."""

    send_ptr: np.ndarray  # (n + 1,) int64
    send_peer: np.ndarray  # int64
    send_pos: np.ndarray  # int64
    dests: np.ndarray  # (destination peers,) int64: their ranks
    request: np.ndarray  # int64: global ids, source-peer-major
    request_off: np.ndarray  # (source peers + 1,) int64
    pop_gid0: np.ndarray  # (populations,) int64: first global id of each population
    pop_proj_ptr: np.ndarray  # (populations + 1,) int64
    pop_proj: np.ndarray  # int64
