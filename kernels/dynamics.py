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
from dtb.kernels.rows import (
    L_C,
    L_DECAY0,
    L_DECAYA,
    L_E0,
    L_EA,
    L_G0,
    L_GA,
    L_GL,
    L_IE,
    L_MG,
    L_MG_ON,
    L_NREF,
    L_VL,
    L_VRESET,
    L_VTH,
    R_EL,
    R_IE,
    R_NREF,
    R_P11EX,
    R_P11IN,
    R_P20,
    R_P21EX,
    R_P21IN,
    R_P22,
    R_THETA,
    R_VRESET_REL,
)

INV_FIX = 2.0**-32

IN_POISSON = 0
IN_OU = 1
IN_DC = 2


@nb.njit(inline="always", cache=True)
def psc_exp_step(i, j, V, syn, refr, P, ex, inh, current):
    """iaf_psc_exp (NEST): exact propagation; ex/inh arrivals in pA; returns spiked."""
    el = P[j, R_EL]
    y = V[i] - el
    if refr[i] == 0:
        y = (y * P[j, R_P22] + syn[0, i] * P[j, R_P21EX] + syn[1, i] * P[j, R_P21IN]
             + (P[j, R_IE] + current) * P[j, R_P20])
    else:
        refr[i] -= 1
    syn[0, i] = syn[0, i] * P[j, R_P11EX] + ex
    syn[1, i] = syn[1, i] * P[j, R_P11IN] + inh
    spiked = False
    if y >= P[j, R_THETA]:
        refr[i] = np.int32(P[j, R_NREF])
        y = P[j, R_VRESET_REL]
        spiked = True
    V[i] = y + el
    return spiked


@nb.njit(inline="always", cache=True)
def lif_cond_step(i, j, V, syn, refr, P, a0, a1, a2, a3, current, dt):
    """DTB conductance LIF: exponential Euler with frozen conductances; returns spiked.

    syn rows 0-3 are the receptor traces, row 4 the adaptation trace (+1 per own spike)."""
    v = V[i]
    if refr[i] == 0:
        g = P[j, L_GL]
        num = P[j, L_GL] * P[j, L_VL] + P[j, L_IE] + current
        for c in range(4):
            gc = P[j, L_G0 + c] * syn[c, i]
            if c == 1 and P[j, L_MG_ON] != 0.0:
                gc = gc / (1.0 + P[j, L_MG] * math.exp(-0.062 * v) / 3.57)
            g += gc
            num += gc * P[j, L_E0 + c]
        if P[j, L_GA] != 0.0:
            gc = P[j, L_GA] * syn[4, i]
            g += gc
            num += gc * P[j, L_EA]
        vinf = num / g
        v = vinf + (v - vinf) * math.exp(-dt * g / P[j, L_C])
    else:
        refr[i] -= 1
    syn[0, i] = syn[0, i] * P[j, L_DECAY0] + a0
    syn[1, i] = syn[1, i] * P[j, L_DECAY0 + 1] + a1
    syn[2, i] = syn[2, i] * P[j, L_DECAY0 + 2] + a2
    syn[3, i] = syn[3, i] * P[j, L_DECAY0 + 3] + a3
    syn[4, i] = syn[4, i] * P[j, L_DECAYA]
    spiked = False
    if v >= P[j, L_VTH]:
        refr[i] = np.int32(P[j, L_NREF])
        v = P[j, L_VRESET]
        syn[4, i] += 1.0
        spiked = True
    V[i] = v
    return spiked


@nb.njit(inline="always", cache=True)
def _poisson_input(k, a, z, step, slot, gshift, seed, inputs, pq_cache, pq_tag, ring):
    """Poisson input k's spikes of this step into ring slot ``slot``, neurons a..z-1."""
    key1 = make_key1(POISSON, inputs.ident[k])
    port = inputs.port[k]
    lam = inputs.a[k]
    if lam >= 10.0:
        for i in range(a, z):
            n = poisson(lam, seed, key1, i + gshift, 0, step)
            if n > 0:
                ring[slot, port, i] += n * inputs.wfix[k]
        return
    # one Philox block serves 4 steps; each 32-bit word is inverted through the input's
    # integer CDF table
    off = inputs.off[k] - inputs.lo[k]
    quad = step >> 2
    word = step & 3
    tab = inputs.cdf[k]
    # a block's neurons are always advanced together, so one tag speaks for the range;
    # refilling it in one tight loop over slices vectorises (3x faster than indexing
    # the columns as off + i: see below)
    if pq_tag[off + a] != quad:
        c0 = pq_cache[0, off + a:off + z]
        c1 = pq_cache[1, off + a:off + z]
        c2 = pq_cache[2, off + a:off + z]
        c3 = pq_cache[3, off + a:off + z]
        tags = pq_tag[off + a:off + z]
        g0 = a + gshift
        for i in range(z - a):
            w0, w1, w2, w3 = block(seed, key1, g0 + i, 1, quad, 0)
            c0[i] = w0
            c1[i] = w1
            c2[i] = w2
            c3[i] = w3
            tags[i] = quad
    # the count is the number of table entries <= u, added in passes over the block:
    # pass j adds one weight to the neurons whose word reaches entry j (n passes of wk
    # give the same integer as n * wk).  Straight loops over slices indexed from 0 run in
    # SIMD registers (an index like off + i may be negative as far as LLVM knows, and
    # numba's wraparound turns it into a gather: 4.5x slower, measured); the passes stop
    # at the block's largest word, so only counts some neuron reached cost a pass
    n_tab = 0
    while tab[n_tab] < np.uint64(4294967296):
        n_tab += 1
    wk = inputs.wfix[k]
    words = pq_cache[word, off + a:off + z]
    acc = ring[slot, port, a:z]
    umax = np.uint32(0)
    for i in range(z - a):
        umax = max(umax, words[i])
    j = 0
    while j < n_tab and tab[j] <= umax:
        t = np.uint32(tab[j])
        for i in range(z - a):
            acc[i] += wk * np.int64(words[i] >= t)
        j += 1


@nb.njit(inline="always", cache=True)
def _ou_input(k, a, z, step, gshift, seed, inputs, ou_state, cur):
    """Ornstein-Uhlenbeck input k's value of this step added to cur, neurons a..z-1.

    One Philox block gives four normals (Box-Muller, both outputs, of 32-bit uniforms):
    the noise of 4 steps, kept in rows 1-4 of the OU state with the 4-step group in row 5
    (as Poisson's cache: a pure speed-up)."""
    key1 = make_key1(OU, inputs.ident[k])
    off = inputs.off[k] - inputs.lo[k]
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
    mu = inputs.a[k]
    decay = inputs.c[k]
    noise = inputs.b[k]
    xs = ou_state[0, off + a:off + z]
    draws = ou_state[1 + (step & 3), off + a:off + z]
    out = cur[a:z]
    for i in range(z - a):
        x = mu + (xs[i] - mu) * decay + noise * draws[i]
        xs[i] = x
        out[i] += x


@nb.njit(inline="always", cache=True)
def _inputs_of_step(lo, hi, step, slot, gshift, seed, inputs, ou, pq_cache, pq_tag, ring,
                    cur):
    """Every input's contribution to step ``step`` of neurons lo..hi-1: currents into cur
    (zeroed first), Poisson spikes into ring slot ``slot``."""
    for i in range(lo, hi):
        cur[i] = 0.0
    for k in range(inputs.kind.shape[0]):
        a = max(lo, inputs.lo[k])
        z = min(hi, inputs.hi[k])
        if a >= z:
            continue
        kind = inputs.kind[k]
        if kind == IN_POISSON:
            _poisson_input(k, a, z, step, slot, gshift, seed, inputs, pq_cache, pq_tag, ring)
        elif kind == IN_OU:
            _ou_input(k, a, z, step, gshift, seed, inputs, ou, cur)
        else:
            for i in range(a, z):
                cur[i] += inputs.a[k]


@nb.njit(inline="always", cache=True)
def _update_neuron(i, model, n_ports, dt, V, syn, refr, slot, P, pid, masks, current):
    """Step neuron i of a block: take its input from ``slot`` (ports, neurons of the block)
    and clear it, advance; returns spiked.

    Every port is read and cleared without testing for an arrival: whether one came is
    random, and the branch mispredicted.  Adding a zero arrival leaves the sums as they
    were, bit for bit (they start at +0.0, and x + 0.0 == x, +0.0 + -0.0 == +0.0)."""
    if model == 0:
        ex = 0.0
        inh = 0.0
        for p in range(n_ports):
            x = slot[p, i] * INV_FIX
            ex += masks[0, p, 0] * x
            inh += masks[0, p, 1] * x
            slot[p, i] = 0
        return psc_exp_step(i, pid[i], V, syn, refr, P, ex, inh, current)
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for p in range(n_ports):
        x = slot[p, i] * INV_FIX
        a0 += masks[1, p, 0] * x
        a1 += masks[1, p, 1] * x
        a2 += masks[1, p, 2] * x
        a3 += masks[1, p, 3] * x
        slot[p, i] = 0
    return lif_cond_step(i, pid[i], V, syn, refr, P, a0, a1, a2, a3, current, dt)


@nb.njit(parallel=True, cache=True)
def advance(t0, m, dt, seed, neurons, blocks, inputs, istate, scratch):
    """Advance every block through steps t0 .. t0+m-1 (bundles: kernels/bundles.py).

    Block b covers engine indices [blocks.lo[b], blocks.hi[b]) with global ids from
    blocks.gid0[b]; its spikes go to scratch.spk_step/spk_idx[blocks.lo[b] * m ...], their
    count to scratch.counts[b].
    """
    # inside the prange, write only to arrays taken out of the bundles here, one plain
    # assignment each (kernels/bundles.py: numba drops such writes otherwise)
    V = neurons.V
    syn = neurons.syn
    refr = neurons.refr
    ring = neurons.ring
    P = neurons.P
    pid = neurons.pid
    masks = neurons.masks
    ou = istate.ou
    pq_cache = istate.pq_cache
    pq_tag = istate.pq_tag
    cur = scratch.cur
    spk_step = scratch.spk_step
    spk_idx = scratch.spk_idx
    counts = scratch.counts
    n_ports = ring.shape[1]
    D = ring.shape[0]
    for b in nb.prange(blocks.lo.shape[0]):
        lo = blocks.lo[b]
        hi = blocks.hi[b]
        gshift = blocks.gid0[b] - lo
        model = blocks.model[b]
        base = lo * m
        n_spk = 0
        # the block's neurons through slices indexed from 0 (kernels/dynamics.py,
        # _poisson_input: an index known to be non-negative spares numba's wraparound)
        Vb = V[lo:hi]
        synb = syn[:, lo:hi]
        refrb = refr[lo:hi]
        pidb = pid[lo:hi]
        curb = cur[lo:hi]
        for s in range(m):
            step = t0 + s
            slot = step % D
            _inputs_of_step(lo, hi, step, slot, gshift, seed, inputs, ou, pq_cache, pq_tag,
                            ring, cur)
            slotb = ring[slot, :, lo:hi]
            for i in range(hi - lo):
                if _update_neuron(i, model, n_ports, dt, Vb, synb, refrb, slotb, P, pidb,
                                  masks, curb[i]):
                    spk_step[base + n_spk] = step
                    spk_idx[base + n_spk] = lo + i
                    n_spk += 1
        counts[b] = n_spk


@nb.njit(cache=True)
def ou_initial(mean, sigma, seed, key1, gid0, n):
    """Stationary initial OU values: mean + sigma * N(0, 1), drawn at step -1 (index 2**32-1)."""
    out = np.empty(n)
    for i in range(n):
        w0, w1, w2, w3 = block(seed, key1, gid0 + i, 0, 0xFFFFFFFF, 0)
        out[i] = mean + sigma * normal_pair(w0, w1, w2, w3)
    return out


@nb.njit(cache=True)
def gather_spikes(m, blk_lo, scratch):
    """Concatenate the blocks' spikes (advance's) in block order into scratch.win_step and
    win_idx; returns the number of spikes."""
    n = 0
    for b in range(blk_lo.shape[0]):
        base = blk_lo[b] * m
        for j in range(scratch.counts[b]):
            scratch.win_step[n] = scratch.spk_step[base + j]
            scratch.win_idx[n] = scratch.spk_idx[base + j]
            n += 1
    return n
