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
def run_windows(t0, n_steps, m_max, dt, seed, V, syn, refr, P, pid, cur,
                blk_lo, blk_hi, blk_model, blk_gid0, masks, ring,
                in_kind, in_lo, in_hi, in_id, in_port, in_a, in_b, in_c, in_wfix, in_off,
                in_cdf, ou_state, pq_cache, pq_tag, spk_step, spk_idx, spk_count, win_step, win_idx,
                win_pop, win_src,
                pop_lo, pop_first, pop_proj_ptr, pop_proj, proj_row0, proj_post_lo, proj_post_hi,
                proj_port, proj_shift, indptr, tgt, wq, dly, n_parts, rec_step, rec_idx,
                n_rec0):
    """Advance up to n_steps from step t0; returns (steps done, spikes recorded in total).

    Spikes are appended to rec_step/rec_idx from position n_rec0; the loop stops before a
    window whose spikes might not fit (at most n neurons per step).
    """
    n = V.shape[0]
    done = 0
    n_rec = n_rec0
    cap = rec_step.shape[0]
    while done < n_steps:
        m = min(m_max, n_steps - done)
        if n_rec + n * m > cap:
            break
        advance(t0 + done, m, dt, seed, V, syn, refr, P, pid, cur, blk_lo, blk_hi, blk_model,
                blk_gid0, masks, ring, in_kind, in_lo, in_hi, in_id, in_port, in_a, in_b,
                in_c, in_wfix, in_off, in_cdf, ou_state, pq_cache, pq_tag, spk_step, spk_idx,
                spk_count)
        k = gather_spikes(m, blk_lo, spk_step, spk_idx, spk_count, win_step, win_idx)
        if k > 0:
            for j in range(k):
                i = win_idx[j]
                pop = np.searchsorted(pop_lo, i, side="right") - 1
                win_pop[j] = pop
                win_src[j] = i - pop_lo[pop] + pop_first[pop]
                rec_step[n_rec + j] = win_step[j]
                rec_idx[n_rec + j] = i
            n_rec += k
            if indptr.shape[0] > 1:
                deliver(k, win_step, win_pop, win_src, pop_proj_ptr, pop_proj, proj_row0,
                        proj_post_lo, proj_post_hi, proj_port, proj_shift, indptr, tgt, wq,
                        dly, ring, n_parts)
        done += m
    return done, n_rec
