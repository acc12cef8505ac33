"""The single-process time loop, fused into one compiled function (numba, CPU).

Between exchange windows there is nothing for Python to do on one process, so the loop
over windows (advance, gather, deliver, record) runs compiled; it returns early when the
spike record buffer might overflow, and the caller flushes and calls again.  With a
minimum delay of one step (as in the microcircuit) this removes a Python round trip
per step.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from dtb.kernels.delivery import deliver
from dtb.kernels.dynamics import advance, gather_spikes


@nb.njit(cache=True)
def run_windows(t0, n_steps, m_max, dt, seed, neurons, blocks, inputs, istate, scratch,
                pieces, synapses, n_parts, rec_step, rec_idx, n_rec0):
    """Advance up to n_steps from step t0 in windows of at most m_max steps, delivering
    each window's spikes to this partition's own synapses; returns (steps done, spikes
    recorded in total).  Bundles: kernels/bundles.py.

    Spikes are appended to rec_step/rec_idx from position n_rec0; the loop stops before a
    window whose spikes might not fit (at most n neurons per step).
    """
    n = neurons.V.shape[0]
    done = 0
    n_rec = n_rec0
    cap = rec_step.shape[0]
    win_step = scratch.win_step
    win_idx = scratch.win_idx
    while done < n_steps:
        m = min(m_max, n_steps - done)
        if n_rec + n * m > cap:
            break
        advance(t0 + done, m, dt, seed, neurons, blocks, inputs, istate, scratch)
        k = gather_spikes(m, blocks.lo, scratch)
        if k > 0:
            for j in range(k):
                i = win_idx[j]
                pop = np.searchsorted(pieces.lo, i, side="right") - 1
                scratch.win_pop[j] = pop
                scratch.win_src[j] = i - pieces.lo[pop] + pieces.first[pop]
                rec_step[n_rec + j] = win_step[j]
                rec_idx[n_rec + j] = i
            n_rec += k
            if synapses.indptr.shape[0] > 1:
                deliver(k, win_step, scratch.win_pop, scratch.win_src, pieces.proj_ptr,
                        pieces.proj, synapses, neurons.ring, n_parts)
        done += m
    return done, n_rec
