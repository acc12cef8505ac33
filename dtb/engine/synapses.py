"""The synapses a rank stores: the incoming synapses of its own neurons, CSR by
(projection, source neuron), and the routes from a spike's source to the projections it
feeds.  Built by counting every projection's synapses, allocating the shared arrays once,
then filling them projection by projection (peak: 8 bytes per synapse plus one
projection's temporaries).  Units: delays in steps of dt (ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtb.engine.connectivity import fill, synapse_counts
from dtb.errors import ArgumentError
from dtb.kernels.bundles import Pieces, Synapses
from dtb.kernels.connect import weight_shift
from dtb.model.network import LongRange, Network, as_dist

MAX_WINDOW = 1000  # steps per window when no delay bounds it (spike buffer size)


def receptor(x: Any) -> str:
    """The receptor of a projection or Poisson input of a parsed network (parse_network
    resolves every one; an unparsed network is refused here)."""
    if x.receptor is None:
        raise ArgumentError(f"{x}: no receptor -- expected a network from parse_network")
    return x.receptor


@dataclass(frozen=True)
class SynapseTables:
    """Routes and figures of a rank's synapses: spikes of population p (from any rank,
    by global id) feed projections pop_proj[pop_proj_ptr[p]:pop_proj_ptr[p + 1]]."""

    pop_proj_ptr: np.ndarray  # (populations + 1,) int64
    pop_proj: np.ndarray  # (projections,) int64
    n_synapses: int
    min_delay_steps: int  # from the rules, the same on every rank: the exchange window
    max_delay_steps: int  # of the synapses drawn here
    bytes_per_synapse: float  # target, weight, delay and the CSR's row pointers


def build_synapses(network: Network, layout: list, ports: list[str], dt: float, seed: int
                   ) -> tuple[SynapseTables, Synapses, Pieces]:
    """The synapses onto this rank's layout pieces (dtb.engine.build.PopulationLayout).

    A projection's synapses onto all of this rank's pieces of its target population share
    one CSR over the source population's neurons; within a row, targets increase (pieces
    are filled in engine-index order and merged row by row)."""
    names = [p.name for p in network.populations]
    pieces = {i: [lay for lay in layout if lay.index == i and lay.size]
              for i in range(len(names))}
    shift = np.array([weight_shift(max(abs(x) for x in as_dist(q.weight).bounds()))
                      for q in network.projections], np.int64)
    counts = [[synapse_counts(q, pid, seed, network.populations[names.index(q.source)],
                              network.populations[names.index(q.target)], lay.gid0,
                              lay.first, lay.size)
               for lay in pieces[names.index(q.target)]]
              for pid, q in enumerate(network.projections)]
    syn0 = np.zeros(len(counts) + 1, np.int64)
    np.cumsum([sum(int(c.sum()) for c in cs) for cs in counts], out=syn0[1:])
    row0 = np.zeros(len(counts), np.int64)
    np.cumsum([network.populations[names.index(q.source)].size
               for q in network.projections][:-1], out=row0[1:])
    n_rows = int(sum(network.populations[names.index(q.source)].size
                     for q in network.projections))
    n_syn = int(syn0[-1])
    csr = Synapses(row0, np.zeros(len(counts), np.int64), np.zeros(len(counts), np.int64),
                   np.array([ports.index(receptor(q)) for q in network.projections], np.int64),
                   shift, np.zeros(n_rows + 1, np.int64), np.empty(n_syn, np.uint32),
                   np.empty(n_syn, np.int16), np.empty(n_syn, np.uint16))
    for pid, q in enumerate(network.projections):
        lays = pieces[names.index(q.target)]
        if lays:
            csr.post_lo[pid], csr.post_hi[pid] = lays[0].lo, lays[-1].hi
        _fill_projection(csr, pid, q, network.populations[names.index(q.source)],
                         network.populations[names.index(q.target)], lays, counts[pid],
                         int(syn0[pid]), seed, dt)
    del counts
    pop_proj_ptr, pop_proj, piece_routes = _routes(network, layout)
    tables = SynapseTables(pop_proj_ptr, pop_proj, n_syn, _min_delay(network, dt),
                           int(csr.dly.max()) if n_syn else 1,
                           ((csr.tgt.nbytes + csr.wq.nbytes + csr.dly.nbytes
                             + csr.indptr.nbytes) / n_syn) if n_syn else 0.0)
    return tables, csr, piece_routes


def _fill_projection(csr: Synapses, pid: int, q: Any, pre: Any, post: Any, lays: list,
                     counts: list[np.ndarray], a: int, seed: int, dt: float) -> None:
    """Draw projection pid's synapses onto pieces ``lays`` (their per-target counts
    ``counts``) into the CSR from synapse ``a`` on."""
    r0 = int(csr.row0[pid])
    sh = int(csr.shift[pid])
    z = a + sum(int(c.sum()) for c in counts)
    if len(lays) == 1:
        lay = lays[0]
        rel = np.empty(pre.size + 1, np.int64)
        fill(q, pid, seed, dt, pre, post, lay.gid0, lay.first, counts[0], lay.lo, sh, rel,
             csr.tgt[a:z], csr.wq[a:z], csr.dly[a:z])
        csr.indptr[r0 + 1:r0 + 1 + pre.size] = rel[1:] + a
        return
    csr.indptr[r0 + 1:r0 + 1 + pre.size] = a
    if not lays:
        return
    # several pieces: fill each on its own, then merge the rows
    parts = []
    for lay, c in zip(lays, counts, strict=True):
        m = int(c.sum())
        rel = np.empty(pre.size + 1, np.int64)
        tgt, wq, dly = np.empty(m, np.uint32), np.empty(m, np.int16), np.empty(m, np.uint16)
        fill(q, pid, seed, dt, pre, post, lay.gid0, lay.first, c, lay.lo, sh, rel, tgt, wq,
             dly)
        parts.append((rel, tgt, wq, dly))
    length = sum(np.diff(rel) for rel, *_ in parts)
    ptr = a + np.concatenate([[0], np.cumsum(length)])
    csr.indptr[r0:r0 + pre.size + 1] = ptr
    before = np.zeros(pre.size, np.int64)  # row entries of earlier pieces
    for rel, tgt, wq, dly in parts:
        n_row = np.diff(rel)
        dest = np.repeat(ptr[:-1] + before - rel[:-1], n_row) + np.arange(len(tgt))
        csr.tgt[dest], csr.wq[dest], csr.dly[dest] = tgt, wq, dly
        before += n_row


def _routes(network: Network, layout: list) -> tuple[np.ndarray, np.ndarray, Pieces]:
    """Projections grouped by source: per population (spikes from other ranks, by gid)
    and per layout piece (this rank's spikes, by engine index)."""
    names = [p.name for p in network.populations]
    src_pop = np.array([names.index(q.source) for q in network.projections], np.int64)
    order = np.argsort(src_pop, kind="stable").astype(np.int64)
    pop_proj_ptr = np.zeros(len(names) + 1, np.int64)
    np.cumsum(np.bincount(src_pop, minlength=len(names)), out=pop_proj_ptr[1:])
    per_piece = [order[pop_proj_ptr[lay.index]:pop_proj_ptr[lay.index + 1]]
                 for lay in layout]
    piece_proj = (np.concatenate(per_piece).astype(np.int64) if per_piece
                  else np.zeros(0, np.int64))
    piece_proj_ptr = np.zeros(len(layout) + 1, np.int64)
    np.cumsum([len(x) for x in per_piece], out=piece_proj_ptr[1:])
    pieces = Pieces(np.array([lay.lo for lay in layout], np.int64),
                    np.array([lay.first for lay in layout], np.int64), piece_proj_ptr,
                    piece_proj)
    return pop_proj_ptr, order, pieces


def _min_conduction(rule: LongRange, pre: Any, post: Any) -> float:
    """The smallest conduction delay (ms) a synapse of this rule can have: over group
    pairs with weight whose source group has neurons and target group has units."""
    n_g = rule.probs.shape[0]
    g_pre = np.asarray(pre.groups if pre.groups is not None else range(len(pre.units)))
    g_post = np.asarray(post.groups if post.groups is not None else range(len(post.units)))
    has_src = np.bincount(g_pre, weights=np.asarray(pre.units), minlength=n_g) > 0
    has_tgt = np.bincount(g_post, weights=np.asarray(post.units), minlength=n_g) > 0
    ok = (rule.probs > 0) & has_src[None, :] & has_tgt[:, None]
    return float(rule.conduction_ms[ok].min()) if ok.any() else 0.0


def _min_delay(network: Network, dt: float) -> int:
    """The smallest delay any synapse may have, from the rules (not the draws), so that
    every rank agrees on it without communicating."""
    best = MAX_WINDOW
    pops = {p.name: p for p in network.populations}
    for q in network.projections:
        lo, _ = as_dist(q.delay).bounds()
        if isinstance(q.rule, LongRange):
            lo += _min_conduction(q.rule, pops[q.source], pops[q.target])
        best = min(best, max(1, math.floor(lo / dt + 0.5)))
    return best
