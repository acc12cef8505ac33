"""Counter-based random numbers: Philox4x32-10 and the draws built on it (numba, CPU).

Every random number in dtb is a pure function of
``(seed, purpose, stream, global neuron id, index, attempt)``:

* key     = (seed, purpose << 24 | stream)            -- 2 x uint32
* counter = (gid & 0xffffffff, gid >> 32 | sub << 16, index, attempt)  -- 4 x uint32

``purpose`` says what the number is for (connectivity, weights, Poisson input, ...),
``stream`` which projection/input/parameter, ``index`` the synapse number or time step,
``attempt`` the redraw count for rejection sampling.  Nothing depends on how many
threads, ranks or GPUs run the model.  The CUDA twin in ``philox.cu`` (GPU issue) must
reproduce these bits; the known-answer vectors of Random123 (Salmon et al. 2011, SC'11)
pin the core.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Purposes (8 bits).  Changing a value changes every network and run: never renumber.
CONNECT = 1
WEIGHT = 2
DELAY = 3
PARAM = 4
INIT = 5
POISSON = 6
OU = 7
TOTAL_NUMBER = 8

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_TWO_PI = 2.0 * math.pi


@nb.njit(inline="always", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds.  All arguments uint32; returns four uint32."""
    c0 = np.uint32(c0)
    c1 = np.uint32(c1)
    c2 = np.uint32(c2)
    c3 = np.uint32(c3)
    k0 = np.uint32(k0)
    k1 = np.uint32(k1)
    for _ in range(10):
        p0 = _M0 * np.uint64(c0)
        p1 = _M1 * np.uint64(c2)
        hi0 = np.uint32(p0 >> np.uint64(32))
        lo0 = np.uint32(p0 & _MASK32)
        hi1 = np.uint32(p1 >> np.uint64(32))
        lo1 = np.uint32(p1 & _MASK32)
        n0 = hi1 ^ c1 ^ k0
        n2 = hi0 ^ c3 ^ k1
        c0 = n0
        c1 = lo1
        c2 = n2
        c3 = lo0
        k0 = np.uint32(k0 + _W0)
        k1 = np.uint32(k1 + _W1)
    return c0, c1, c2, c3


@nb.njit(inline="always", cache=True)
def make_key1(purpose, stream):
    hi = np.uint32(purpose) << np.uint32(24)
    return np.uint32(hi | (np.uint32(stream) & np.uint32(0xFFFFFF)))


@nb.njit(inline="always", cache=True)
def block(seed, key1, gid, sub, index, attempt):
    """Four uint32 for (seed, key1, gid, sub, index, attempt); gid < 2**48, sub < 2**16."""
    g = np.uint64(gid)
    c0 = np.uint32(g & _MASK32)
    c1 = np.uint32((g >> np.uint64(32)) | (np.uint64(sub) << np.uint64(16)))
    return philox4x32(c0, c1, np.uint32(index), np.uint32(attempt), np.uint32(seed), key1)


@nb.njit(inline="always", cache=True)
def blocks(seed, key1, gid, sub, index0, attempt, n, o0, o1, o2, o3):
    """block(seed, key1, gid, sub, index0 + l, attempt) for l < n, into o0..o3[l] (uint32).

    The same bits as n calls of block(); written as a straight loop over independent
    counters so that LLVM runs the lanes in SIMD registers (the 32x32->64-bit products
    map to vector multiplies).  Integer arithmetic only, so vectorised or not the bits
    are the same.
    """
    g = np.uint64(gid)
    g0 = np.uint32(g & _MASK32)
    g1 = np.uint32((g >> np.uint64(32)) | (np.uint64(sub) << np.uint64(16)))
    c3_0 = np.uint32(attempt)
    s0 = np.uint32(seed)
    s1 = np.uint32(key1)
    for lane in range(n):
        c0 = g0
        c1 = g1
        c2 = np.uint32(index0 + lane)
        c3 = c3_0
        k0 = s0
        k1 = s1
        for _ in range(10):
            p0 = _M0 * np.uint64(c0)
            p1 = _M1 * np.uint64(c2)
            n0 = np.uint32(p1 >> np.uint64(32)) ^ c1 ^ k0
            n2 = np.uint32(p0 >> np.uint64(32)) ^ c3 ^ k1
            c1 = np.uint32(p1 & _MASK32)
            c3 = np.uint32(p0 & _MASK32)
            c0 = n0
            c2 = n2
            k0 = np.uint32(k0 + _W0)
            k1 = np.uint32(k1 + _W1)
        o0[lane] = c0
        o1[lane] = c1
        o2[lane] = c2
        o3[lane] = c3


@nb.njit(inline="always", cache=True)
def u01(a, b):
    """A float64 uniform in the open interval (0, 1) from two uint32: (k + 1/2) / 2**52 for
    a 52-bit k, so the extremes 2**-53 and 1 - 2**-53 are exact (53 bits would round to 1)."""
    hi = np.uint64(a) >> np.uint64(6)  # 26 bits
    lo = np.uint64(b) >> np.uint64(6)  # 26 bits
    return (float(hi) * 67108864.0 + float(lo) + 0.5) * (1.0 / 4503599627370496.0)


@nb.njit(inline="always", cache=True)
def below(a, n):
    """An integer in [0, n) from one uint32 (Lemire's multiply-shift; n < 2**32)."""
    return np.int64((np.uint64(a) * np.uint64(n)) >> np.uint64(32))


@nb.njit(inline="always", cache=True)
def normal_pair(w0, w1, w2, w3):
    """One standard normal from a Philox block (Box-Muller)."""
    u1 = u01(w0, w1)
    u2 = u01(w2, w3)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


# normals_approx: |z - normal_pair(...)| <= NORMAL_APPROX_ERR for every block.  The
# measured maximum over 4 million random blocks and the extreme ones is 3.3e-15 (about
# 15 ulp at |z| = 8.6, the largest |z| a block can give); the bound leaves 300x room.
NORMAL_APPROX_ERR = 1e-12
_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_HP = math.pi / 2.0
# Taylor coefficients of cos(pi/2 r) and sin(pi/2 r)/r in r**2, r in [0, 1/2]: the first
# term left out is below 1e-19.
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = (
    (-1) ** k * _HP ** (2 * k) / math.factorial(2 * k) for k in range(9))
_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = (
    (-1) ** k * _HP ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(9))
_U0 = np.uint64(0)
_U1 = np.uint64(1)


@nb.njit(inline="always", cache=True)
def _ilog2(k):
    """floor(log2 k) and 2**-floor(log2 k) for 1 <= k < 2**53 (uint64), without branches."""
    e = _U0
    sc = 1.0
    b = (k >> np.uint64(32)) != _U0
    e += np.uint64(32) if b else _U0
    sc *= 2.0 ** -32 if b else 1.0
    k = k >> np.uint64(32) if b else k
    b = (k >> np.uint64(16)) != _U0
    e += np.uint64(16) if b else _U0
    sc *= 2.0 ** -16 if b else 1.0
    k = k >> np.uint64(16) if b else k
    b = (k >> np.uint64(8)) != _U0
    e += np.uint64(8) if b else _U0
    sc *= 2.0 ** -8 if b else 1.0
    k = k >> np.uint64(8) if b else k
    b = (k >> np.uint64(4)) != _U0
    e += np.uint64(4) if b else _U0
    sc *= 2.0 ** -4 if b else 1.0
    k = k >> np.uint64(4) if b else k
    b = (k >> np.uint64(2)) != _U0
    e += np.uint64(2) if b else _U0
    sc *= 2.0 ** -2 if b else 1.0
    k = k >> np.uint64(2) if b else k
    b = (k >> _U1) != _U0
    e += _U1 if b else _U0
    sc *= 0.5 if b else 1.0
    return e, sc


@nb.njit(error_model="numpy", cache=True)
def normals_approx(b0, b1, b2, b3, n, out):
    """normal_pair(b0[q], b1[q], b2[q], b3[q]) to within NORMAL_APPROX_ERR, for q < n.

    Box-Muller with log and cos by polynomials (SIMD lanes; no libm calls): the uniforms
    are u = k / 2**53 for odd 53-bit integers k (exactly u01's values), so the exponent of
    u1 and the quadrant of 2 pi u2 come exactly from integer bits; log of the mantissa in
    [1/sqrt 2, sqrt 2) is 2 atanh((m-1)/(m+1)) (ten odd terms), cos and sin on a quarter
    turn are Taylor polynomials.  Callers use it only where a value within
    NORMAL_APPROX_ERR of the libm one provably gives the same result, and recompute with
    draw() elsewhere (kernels/connect.py), so the networks keep their bits.
    """
    for q in range(n):
        k = (((np.uint64(b0[q]) >> np.uint64(6)) << np.uint64(27))
             | ((np.uint64(b1[q]) >> np.uint64(6)) << _U1) | _U1)  # u1 = k / 2**53
        e, sc = _ilog2(k)
        m = float(k) * sc  # [1, 2), exact
        big = m > _SQRT2
        m = m * 0.5 if big else m
        ef = float(e) + (1.0 if big else 0.0) - 53.0
        s = (m - 1.0) / (m + 1.0)
        s2 = s * s
        p = 1.0 / 19.0
        p = p * s2 + 1.0 / 17.0
        p = p * s2 + 1.0 / 15.0
        p = p * s2 + 1.0 / 13.0
        p = p * s2 + 1.0 / 11.0
        p = p * s2 + 1.0 / 9.0
        p = p * s2 + 1.0 / 7.0
        p = p * s2 + 1.0 / 5.0
        p = p * s2 + 1.0 / 3.0
        log_u1 = ef * _LN2 + (2.0 * s + 2.0 * s * s2 * p)
        j = (((np.uint64(b2[q]) >> np.uint64(6)) << np.uint64(27))
             | ((np.uint64(b3[q]) >> np.uint64(6)) << _U1) | _U1)  # u2 = j / 2**53
        quad = j >> np.uint64(51)  # 2 pi u2 = pi/2 (quad + r)
        r = float(j & np.uint64(0x7FFFFFFFFFFFF)) * 2.0 ** -51
        flip = r > 0.5
        t = 1.0 - r if flip else r
        t2 = t * t
        c = _C8
        c = c * t2 + _C7
        c = c * t2 + _C6
        c = c * t2 + _C5
        c = c * t2 + _C4
        c = c * t2 + _C3
        c = c * t2 + _C2
        c = c * t2 + _C1
        c = c * t2 + _C0
        sn = _S8
        sn = sn * t2 + _S7
        sn = sn * t2 + _S6
        sn = sn * t2 + _S5
        sn = sn * t2 + _S4
        sn = sn * t2 + _S3
        sn = sn * t2 + _S2
        sn = sn * t2 + _S1
        sn = (sn * t2 + _S0) * t
        # cos(pi/2 (quad + r)) = cos, -sin, -cos, sin of pi/2 r for quad 0..3; r > 1/2
        # swaps cos and sin (of pi/2 (1 - r))
        use_sin = ((quad & _U1) != _U0) != flip
        v = sn if use_sin else c
        v = -v if (quad - _U1) < np.uint64(2) else v
        out[q] = math.sqrt(-2.0 * log_u1) * v


# Distribution codes shared with dtb.model.network.Dist.
D_CONSTANT = 0
D_UNIFORM = 1
D_NORMAL = 2
D_LOGNORMAL = 3
MAX_REDRAWS = 1000


@nb.njit(cache=True)
def draw(kind, a, b, low, high, seed, key1, gid, sub, index):
    """One value of a distribution.

    kind: D_CONSTANT (a), D_UNIFORM (a..b), D_NORMAL (mean a, sd b),
    D_LOGNORMAL (mu a, sigma b of the logarithm).  Normal and lognormal values outside
    [low, high] are redrawn (NEST's ``redraw``) with the attempt counter, up to
    MAX_REDRAWS times, then clipped (validation keeps that probability negligible).
    """
    if kind == D_CONSTANT:
        return a
    if kind == D_UNIFORM:
        w0, w1, w2, w3 = block(seed, key1, gid, sub, index, 0)
        return a + (b - a) * u01(w0, w1)
    x = 0.0
    for attempt in range(MAX_REDRAWS):
        w0, w1, w2, w3 = block(seed, key1, gid, sub, index, attempt)
        z = normal_pair(w0, w1, w2, w3)
        x = a + b * z
        if kind == D_LOGNORMAL:
            x = math.exp(x)
        if x >= low and x <= high:
            return x
    return min(max(x, low), high)


@nb.njit(cache=True)
def poisson(lam, seed, key1, gid, sub, index):
    """A Poisson(lam) count: inversion below lam 10, else PTRS (Hoermann 1993)."""
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        w0, w1, w2, w3 = block(seed, key1, gid, sub, index, 0)
        u = u01(w0, w1)
        p = math.exp(-lam)
        cdf = p
        k = 0
        while u > cdf and k < 1000:
            k += 1
            p *= lam / k
            cdf += p
        return k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    bb = 0.931 + 2.53 * slam
    aa = -0.059 + 0.02483 * bb
    invalpha = 1.1239 + 1.1328 / (bb - 3.4)
    vr = 0.9277 - 3.6224 / (bb - 2.0)
    for attempt in range(100000):
        w0, w1, w2, w3 = block(seed, key1, gid, sub, index, attempt)
        uu = u01(w0, w1) - 0.5
        v = u01(w2, w3)
        us = 0.5 - abs(uu)
        k = math.floor((2.0 * aa / us + bb) * uu + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return np.int64(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(invalpha) - math.log(aa / (us * us) + bb)) <= (
            -lam + k * loglam - math.lgamma(k + 1.0)
        ):
            return np.int64(k)
    return np.int64(lam)


@nb.njit(cache=True)
def philox_many(ctr, key):
    """Vectorised Philox over rows of ctr (n, 4) with key (2,); for tests and tools."""
    out = np.empty_like(ctr)
    for i in range(ctr.shape[0]):
        r = philox4x32(ctr[i, 0], ctr[i, 1], ctr[i, 2], ctr[i, 3], key[0], key[1])
        out[i, 0] = r[0]
        out[i, 1] = r[1]
        out[i, 2] = r[2]
        out[i, 3] = r[3]
    return out


@nb.njit(parallel=True, cache=True)
def draw_per_neuron(kind, a, b, low, high, seed, key1, gid0, n):
    """Values of one distribution for neurons gid0 .. gid0+n-1 (heterogeneous parameters)."""
    out = np.empty(n)
    for i in nb.prange(n):
        out[i] = draw(kind, a, b, low, high, seed, key1, gid0 + i, 0, 0)
    return out
