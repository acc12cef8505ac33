"""Spike delivery into the per-neuron input ring buffers (numba, CPU).

The ring holds, for each slot (step modulo D), port (receptor) and target neuron, an
int64 sum in units of 2**-32; a slot's inputs are contiguous, so the neuron update reads
them in one sweep (the (port, neuron, slot) order made delivery 3x slower, measured).
Integer addition is associative, so the result does not depend on the order in which
spikes are delivered, on threads, or on ranks.  Each thread owns a contiguous range of
target neurons and writes only there (no atomics, no races).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from dtb.kernels.prefetch import prefetch_write

# how many synapses ahead delivery asks for a ring line (kernels/prefetch.py), and from
# which ring size on: into a full-scale microcircuit's ring (74 MB) 32 and 64 ahead made
# the scatter 1.3-1.5x faster than none (8 and 16 less), into the 7 MB ring of scale 0.1
# (in cache) the extra work made it 1.5x slower
AHEAD = 32
PREFETCH_BYTES = 32 << 20


@nb.njit(parallel=True, cache=True)
def deliver(n_spk, spk_step, spk_src_pop, spk_src_idx, pop_proj_ptr, pop_proj, synapses,
            ring, n_parts):
    """Add the synaptic input of n_spk spikes.

    Spike j: emitted in step spk_step[j] by neuron spk_src_idx[j] of source group
    spk_src_pop[j] (a population, or a layout piece), which feeds projections
    pop_proj[pop_proj_ptr[g]:pop_proj_ptr[g + 1]]; it reaches target t of synapse k in ring
    slot (step + dly[k]) mod D.  ``synapses``: kernels/bundles.Synapses.
    """
    proj_row0 = synapses.row0
    proj_post_lo = synapses.post_lo
    proj_post_hi = synapses.post_hi
    proj_port = synapses.port
    proj_shift = synapses.shift
    indptr = synapses.indptr
    tgt = synapses.tgt
    wq = synapses.wq
    dly = synapses.dly
    D = ring.shape[0]
    n = ring.shape[2]
    far = ring.size * 8 > PREFETCH_BYTES
    for part in nb.prange(n_parts):
        t_lo = part * n // n_parts
        t_hi = (part + 1) * n // n_parts
        for j in range(n_spk):
            s0 = spk_step[j] % D
            pop = spk_src_pop[j]
            for q in range(pop_proj_ptr[pop], pop_proj_ptr[pop + 1]):
                p = pop_proj[q]
                if proj_post_hi[p] <= t_lo or proj_post_lo[p] >= t_hi:
                    continue
                row = proj_row0[p] + spk_src_idx[j]
                a = indptr[row]
                z = indptr[row + 1]
                if a == z:
                    continue
                if proj_post_lo[p] < t_lo:
                    a = a + np.searchsorted(tgt[a:z], np.uint32(t_lo))
                if proj_post_hi[p] > t_hi:
                    z = a + np.searchsorted(tgt[a:z], np.uint32(t_hi))
                port = proj_port[p]
                sh = proj_shift[p]
                # slices indexed from 0: numba's wraparound of an index that may be
                # negative (as k from a) costs extra work per synapse
                d_row = dly[a:z]
                t_row = tgt[a:z]
                w_row = wq[a:z]
                m = z - a
                k0 = 0
                if far:
                    for k in range(m - AHEAD):
                        ahead = s0 + d_row[k + AHEAD]
                        if ahead >= D:
                            ahead -= D
                        prefetch_write(ring, ahead, port, t_row[k + AHEAD])
                        slot = s0 + d_row[k]
                        if slot >= D:
                            slot -= D
                        ring[slot, port, t_row[k]] += np.int64(w_row[k]) << sh
                    k0 = max(0, m - AHEAD)
                d_row = d_row[k0:]
                t_row = t_row[k0:]
                w_row = w_row[k0:]
                for k in range(m - k0):
                    slot = s0 + d_row[k]
                    if slot >= D:
                        slot -= D
                    ring[slot, port, t_row[k]] += np.int64(w_row[k]) << sh
