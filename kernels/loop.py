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
from dtb.kernels.exchange import call_hook, decode, encode, pack_blocks, unpack_blocks


@nb.njit(cache=True)
def _local_window(t_w, m, dt, seed, neurons, blocks, inputs, istate, scratch, pieces,
                  synapses, n_parts, rec_step, rec_idx, n_rec):
    """One window of m steps from step t_w on this partition: advance, gather its spikes
    into scratch.win_*, append them to rec_step/rec_idx from position n_rec and deliver
    them to this partition's own synapses; returns the number of spikes."""
    advance(t_w, m, dt, seed, neurons, blocks, inputs, istate, scratch)
    k = gather_spikes(m, blocks.lo, scratch)
    win_step = scratch.win_step
    win_idx = scratch.win_idx
    for j in range(k):
        i = win_idx[j]
        pop = np.searchsorted(pieces.lo, i, side="right") - 1
        scratch.win_pop[j] = pop
        scratch.win_src[j] = i - pieces.lo[pop] + pieces.first[pop]
        rec_step[n_rec + j] = win_step[j]
        rec_idx[n_rec + j] = i
    if k > 0 and synapses.indptr.shape[0] > 1:
        deliver(k, win_step, scratch.win_pop, scratch.win_src, pieces.proj_ptr,
                pieces.proj, synapses, neurons.ring, n_parts)
    return k


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
    while done < n_steps:
        m = min(m_max, n_steps - done)
        if n_rec + n * m > cap:
            break
        n_rec += _local_window(t0 + done, m, dt, seed, neurons, blocks, inputs, istate,
                               scratch, pieces, synapses, n_parts, rec_step, rec_idx, n_rec)
        done += m
    return done, n_rec


@nb.njit(cache=True)
def run_windows_exchanged(t0, n_steps, m, dt, seed, neurons, blocks, inputs, istate, scratch,
                          pieces, synapses, n_parts, rec_step, rec_idx, n_rec0, route,
                          send, recv, cap, hook):
    """``run_windows`` for one rank of several, the exchange window equal to the minimum
    delay ``m``: after each window its spikes are packed for the peers that need them
    (``encode``) into the fixed blocks ``send`` (destinations, cap + 1), the registered
    Python hook ``hook`` swaps them for ``recv`` (sources, cap + 1) in object mode, and
    the peers' spikes are delivered here before the next window.  Returns (steps done,
    spikes recorded in total) as run_windows does, early also after a window at which the
    hook replaced the blocks (the caller passes the new ones); every rank makes the same
    sequence of exchanges whatever its record buffer, since a return only pauses it."""
    n = neurons.V.shape[0]
    done = 0
    n_rec = n_rec0
    cap_rec = rec_step.shape[0]
    win_step = scratch.win_step
    win_idx = scratch.win_idx
    n_dests = route.dests.shape[0]
    r_step = np.empty(0, np.int64)
    r_pop = np.empty(0, np.int64)
    r_idx = np.empty(0, np.int64)
    has_synapses = synapses.indptr.shape[0] > 1
    while done < n_steps:
        w = min(m, n_steps - done)
        if n_rec + n * w > cap_rec:
            break
        t_w = t0 + done
        k = _local_window(t_w, w, dt, seed, neurons, blocks, inputs, istate, scratch, pieces,
                          synapses, n_parts, rec_step, rec_idx, n_rec)
        n_rec += k
        counts, data = encode(k, win_step, win_idx, t_w, route.send_ptr, route.send_peer,
                              route.send_pos, n_dests)
        pack_blocks(counts, data, send, cap)
        with nb.objmode(extra="int64[:]", extra_off="int64[:]", resized="int64"):
            extra, extra_off, resized = call_hook(hook, counts, data)
        codes, rcounts = unpack_blocks(recv, cap, extra, extra_off)
        n_in = codes.shape[0]
        if n_in > 0 and has_synapses:
            if r_step.shape[0] < n_in:
                r_step = np.empty(2 * n_in, np.int64)
                r_pop = np.empty(2 * n_in, np.int64)
                r_idx = np.empty(2 * n_in, np.int64)
            decode(codes, rcounts, t_w, route.request, route.request_off, route.pop_gid0,
                   r_step, r_pop, r_idx)
            deliver(n_in, r_step, r_pop, r_idx, route.pop_proj_ptr, route.pop_proj, synapses,
                    neurons.ring, n_parts)
        done += w
        if resized:
            break
    return done, n_rec
