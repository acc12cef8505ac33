"""Neuron updates and background inputs over one exchange window (numba, CPU).

Within a window of m <= min-delay steps no spike can reach any neuron, so each thread
advances its own block of neurons through all m steps without synchronising; spikes are
delivered once, at the end of the window (delivery.py).

Step s of a neuron (covering model time [s dt, (s+1) dt)) follows NEST's order:

  1. external current for the step: I_e + DC + Ornstein-Uhlenbeck inputs;
     Poisson background adds its spikes to this step's input slot;
  2. V advances over the step with the synaptic state at its start (exact propagators);
  3. synaptic traces decay and take the input that arrives at (s+1) dt (ring slot s);
  4. V >= V_th: spike stamped (s+1) dt, V := V_reset, refractory for n_ref steps.

Input slots hold integer fixed point (units 2**-32), so their sums are exact.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from dtb.kernels.philox import OU, POISSON, block, make_key1, normal_pair, poisson

INV_FIX = 2.0**-32

IN_POISSON = 0
IN_OU = 1
IN_DC = 2


@nb.njit(inline="always", cache=True)
def psc_exp_step(i, j, V, syn, refr, P, ex, inh, current):
    """iaf_psc_exp (NEST): exact propagation; ex/inh arrivals in pA; returns spiked."""
    el = P[j, 10]
    y = V[i] - el
    if refr[i] == 0:
        y = y * P[j, 0] + syn[0, i] * P[j, 2] + syn[1, i] * P[j, 3] + (P[j, 9] + current) * P[j, 1]
    else:
        refr[i] -= 1
    syn[0, i] = syn[0, i] * P[j, 4] + ex
    syn[1, i] = syn[1, i] * P[j, 5] + inh
    spiked = False
    if y >= P[j, 6]:
        refr[i] = np.int32(P[j, 8])
        y = P[j, 7]
        spiked = True
    V[i] = y + el
    return spiked


@nb.njit(inline="always", cache=True)
def lif_cond_step(i, j, V, syn, refr, P, a0, a1, a2, a3, current, dt):
    """DTB conductance LIF: exponential Euler with frozen conductances; returns spiked."""
    v = V[i]
    if refr[i] == 0:
        g = P[j, 1]
        num = P[j, 1] * P[j, 2] + P[j, 6] + current
        for c in range(4):
            gc = P[j, 9 + c] * syn[c, i]
            if c == 1 and P[j, 7] != 0.0:
                gc = gc / (1.0 + P[j, 8] * math.exp(-0.062 * v) / 3.57)
            g += gc
            num += gc * P[j, 13 + c]
        vinf = num / g
        v = vinf + (v - vinf) * math.exp(-dt * g / P[j, 0])
    else:
        refr[i] -= 1
    syn[0, i] = syn[0, i] * P[j, 17] + a0
    syn[1, i] = syn[1, i] * P[j, 18] + a1
    syn[2, i] = syn[2, i] * P[j, 19] + a2
    syn[3, i] = syn[3, i] * P[j, 20] + a3
    spiked = False
    if v >= P[j, 3]:
        refr[i] = np.int32(P[j, 5])
        v = P[j, 4]
        spiked = True
    V[i] = v
    return spiked


@nb.njit(parallel=True, cache=True)
def advance(t0, m, dt, seed, V, syn, refr, P, pid, cur,
            blk_lo, blk_hi, blk_model, blk_gid0, masks, ring,
            in_kind, in_lo, in_hi, in_id, in_port, in_a, in_b, in_c, in_wfix, in_off, in_cdf,
            ou_state, pq_cache, pq_tag, spk_step, spk_idx, spk_count):
    """Advance every block through steps t0 .. t0+m-1.

    Shapes: V (n,), syn (4, n), refr (n,) int32, P (parameter sets, rows) with neuron i
    using set pid[i], cur (n,) scratch,
    ring (D, ports, n) int64, masks (models, ports, 4).  Block b covers engine indices
    [blk_lo[b], blk_hi[b]) with global ids from blk_gid0[b].  Inputs k cover indices
    [in_lo[k], in_hi[k]); Poisson: in_a = mean count per step, in_wfix = fixed-point weight,
    in_cdf[k, n] = floor(2**32 P(count <= n)) (last entry 2**32) for in_a < 10, a cache of
    random words at pq_cache[:, in_off[k] + index - in_lo[k]]
    valid for the 4-step group pq_tag (a pure speed-up: any tag reproduces the same draws);
    OU: in_a mean, in_b noise factor sqrt(1-e^2) sigma, in_c decay e = exp(-dt/tau), value
    at ou_state[0, in_off[k] + index - in_lo[k]] (rows 1-5: cached noise); DC: in_a
    amplitude.  Spikes of block b go to
    spk_step/spk_idx[blk_lo[b]*m ...], their count to spk_count[b].
    """
    n_ports = ring.shape[1]
    D = ring.shape[0]
    for b in nb.prange(blk_lo.shape[0]):
        lo = blk_lo[b]
        hi = blk_hi[b]
        gshift = blk_gid0[b] - lo
        model = blk_model[b]
        base = lo * m
        n_spk = 0
        for s in range(m):
            step = t0 + s
            slot = step % D
            for i in range(lo, hi):
                cur[i] = 0.0
            for k in range(in_kind.shape[0]):
                a = max(lo, in_lo[k])
                z = min(hi, in_hi[k])
                if a >= z:
                    continue
                kind = in_kind[k]
                if kind == IN_POISSON:
                    key1 = make_key1(POISSON, in_id[k])
                    port = in_port[k]
                    lam = in_a[k]
                    if lam < 10.0:
                        # one Philox block serves 4 steps; each 32-bit word is inverted
                        # through the input's integer CDF table
                        off = in_off[k] - in_lo[k]
                        quad = step >> 2
                        word = step & 3
                        tab = in_cdf[k]
                        # a block's neurons are always advanced together, so one tag
                        # speaks for the range; refilling it in one tight loop vectorises
                        if pq_tag[off + a] != quad:
                            for i in range(a, z):
                                c = off + i
                                w0, w1, w2, w3 = block(seed, key1, i + gshift, 1, quad, 0)
                                pq_cache[0, c] = w0
                                pq_cache[1, c] = w1
                                pq_cache[2, c] = w2
                                pq_cache[3, c] = w3
                                pq_tag[c] = quad
                        # branch-free count of the table entries <= u (a data-dependent
                        # loop mispredicts about once per draw)
                        n_tab = 0
                        while tab[n_tab] < np.uint64(4294967296):
                            n_tab += 1
                        wk = in_wfix[k]
                        for i in range(a, z):
                            u = np.uint64(pq_cache[word, off + i])
                            n = 0
                            for j in range(n_tab):
                                n += u >= tab[j]
                            ring[slot, port, i] += n * wk
                    else:
                        for i in range(a, z):
                            n = poisson(lam, seed, key1, i + gshift, 0, step)
                            if n > 0:
                                ring[slot, port, i] += n * in_wfix[k]
                elif kind == IN_OU:
                    # one Philox block gives four normals (Box-Muller, both outputs, of
                    # 32-bit uniforms): the noise of 4 steps, kept in ou_state rows 1-4
                    # with the 4-step group in row 5 (as Poisson's cache: a pure speed-up)
                    key1 = make_key1(OU, in_id[k])
                    off = in_off[k] - in_lo[k]
                    quad = step >> 2
                    if ou_state[5, off + a] != quad:
                        for i in range(a, z):
                            c = off + i
                            w0, w1, w2, w3 = block(seed, key1, i + gshift, 2, quad, 0)
                            r = math.sqrt(-2.0 * math.log((w0 + 0.5) * 2.3283064365386963e-10))
                            th = 6.283185307179586 * (w1 + 0.5) * 2.3283064365386963e-10
                            ou_state[1, c] = r * math.cos(th)
                            ou_state[2, c] = r * math.sin(th)
                            r = math.sqrt(-2.0 * math.log((w2 + 0.5) * 2.3283064365386963e-10))
                            th = 6.283185307179586 * (w3 + 0.5) * 2.3283064365386963e-10
                            ou_state[3, c] = r * math.cos(th)
                            ou_state[4, c] = r * math.sin(th)
                            ou_state[5, c] = quad
                    row = 1 + (step & 3)
                    mu = in_a[k]
                    for i in range(a, z):
                        c = off + i
                        x = mu + (ou_state[0, c] - mu) * in_c[k] + in_b[k] * ou_state[row, c]
                        ou_state[0, c] = x
                        cur[i] += x
                else:
                    for i in range(a, z):
                        cur[i] += in_a[k]
            for i in range(lo, hi):
                if model == 0:
                    ex = 0.0
                    inh = 0.0
                    for p in range(n_ports):
                        r = ring[slot, p, i]
                        if r != 0:
                            x = r * INV_FIX
                            ex += masks[0, p, 0] * x
                            inh += masks[0, p, 1] * x
                            ring[slot, p, i] = 0
                    spiked = psc_exp_step(i, pid[i], V, syn, refr, P, ex, inh, cur[i])
                else:
                    a0 = 0.0
                    a1 = 0.0
                    a2 = 0.0
                    a3 = 0.0
                    for p in range(n_ports):
                        r = ring[slot, p, i]
                        if r != 0:
                            x = r * INV_FIX
                            a0 += masks[1, p, 0] * x
                            a1 += masks[1, p, 1] * x
                            a2 += masks[1, p, 2] * x
                            a3 += masks[1, p, 3] * x
                            ring[slot, p, i] = 0
                    spiked = lif_cond_step(i, pid[i], V, syn, refr, P, a0, a1, a2, a3, cur[i],
                                           dt)
                if spiked:
                    spk_step[base + n_spk] = step
                    spk_idx[base + n_spk] = i
                    n_spk += 1
        spk_count[b] = n_spk


@nb.njit(cache=True)
def ou_initial(mean, sigma, seed, key1, gid0, n):
    """Stationary initial OU values: mean + sigma * N(0, 1), drawn at step -1 (index 2**32-1)."""
    out = np.empty(n)
    for i in range(n):
        w0, w1, w2, w3 = block(seed, key1, gid0 + i, 0, 0xFFFFFFFF, 0)
        out[i] = mean + sigma * normal_pair(w0, w1, w2, w3)
    return out


@nb.njit(cache=True)
def gather_spikes(m, blk_lo, spk_step, spk_idx, spk_count, out_step, out_idx):
    """Concatenate the blocks' spikes in block order; returns the number of spikes."""
    n = 0
    for b in range(blk_lo.shape[0]):
        base = blk_lo[b] * m
        for j in range(spk_count[b]):
            out_step[n] = spk_step[base + j]
            out_idx[n] = spk_idx[base + j]
            n += 1
    return n
