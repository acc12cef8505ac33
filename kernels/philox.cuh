// Counter-based random numbers: Philox4x32-10 and the draws built on it (CUDA twin of
// kernels/philox.py; the same keys, counters and bit manipulations, so every draw is
// identical on the CPU and the GPU).
//
//   key     = (seed, purpose << 24 | stream)
//   counter = (gid & 0xffffffff, gid >> 32 | sub << 16, index, attempt)
//
// The core is pinned by the Random123 known-answer vectors (tests/test_gpu_kernels.py).
#ifndef DTB_PHILOX_CUH
#define DTB_PHILOX_CUH

#include "common.cuh"

// Purposes (kernels/philox.py): never renumber.
#define DTB_CONNECT 1
#define DTB_WEIGHT 2
#define DTB_DELAY 3
#define DTB_PARAM 4
#define DTB_INIT 5
#define DTB_POISSON 6
#define DTB_OU 7

struct dtb_block4 {
    dtb_u32 w0, w1, w2, w3;
};

// Philox4x32 with 10 rounds on counter (c0..c3) and key (k0, k1).
DTB_HD dtb_block4 dtb_philox4x32(dtb_u32 c0, dtb_u32 c1, dtb_u32 c2, dtb_u32 c3,
                                 dtb_u32 k0, dtb_u32 k1) {
    for (int r = 0; r < 10; ++r) {
        dtb_u64 p0 = 0xD2511F53ull * static_cast<dtb_u64>(c0);
        dtb_u64 p1 = 0xCD9E8D57ull * static_cast<dtb_u64>(c2);
        dtb_u32 hi0 = static_cast<dtb_u32>(p0 >> 32);
        dtb_u32 lo0 = static_cast<dtb_u32>(p0);
        dtb_u32 hi1 = static_cast<dtb_u32>(p1 >> 32);
        dtb_u32 lo1 = static_cast<dtb_u32>(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    dtb_block4 out = {c0, c1, c2, c3};
    return out;
}

DTB_HD dtb_u32 dtb_make_key1(dtb_u32 purpose, dtb_u64 stream) {
    return (purpose << 24) | (static_cast<dtb_u32>(stream) & 0xFFFFFFu);
}

// Four uint32 for (seed, key1, gid, sub, index, attempt); gid < 2**48, sub < 2**16.  index
// is reduced modulo 2**32 as np.uint32 does.
DTB_HD dtb_block4 dtb_block(dtb_u32 seed, dtb_u32 key1, dtb_u64 gid, dtb_u32 sub,
                            dtb_u64 index, dtb_u32 attempt) {
    dtb_u32 c0 = static_cast<dtb_u32>(gid);
    dtb_u32 c1 = static_cast<dtb_u32>((gid >> 32) | (static_cast<dtb_u64>(sub) << 16));
    return dtb_philox4x32(c0, c1, static_cast<dtb_u32>(index), attempt, seed, key1);
}

// A float64 uniform in (0, 1) from two uint32: (k + 1/2) / 2**52 for a 52-bit k.
DTB_HD double dtb_u01(dtb_u32 a, dtb_u32 b) {
    dtb_u64 hi = static_cast<dtb_u64>(a) >> 6;
    dtb_u64 lo = static_cast<dtb_u64>(b) >> 6;
    return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo) + 0.5)
           * (1.0 / 4503599627370496.0);
}

// An integer in [0, n) from one uint32 (Lemire's multiply-shift; n < 2**32).
DTB_HD dtb_i64 dtb_below(dtb_u32 a, dtb_u64 n) {
    return static_cast<dtb_i64>((static_cast<dtb_u64>(a) * n) >> 32);
}

// One standard normal from a Philox block (Box-Muller; log and cos: see common.cuh).
DTB_HD double dtb_normal_pair(dtb_block4 w) {
    double u1 = dtb_u01(w.w0, w.w1);
    double u2 = dtb_u01(w.w2, w.w3);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// A Poisson(lam) count for lam >= 10 by PTRS (Hoermann 1993), as kernels/philox.py's
// poisson() (whose inversion branch below 10 the engine replaces by CDF tables).  Uses
// log and lgamma: a last-bit difference between libms can flip an acceptance at the
// boundary, so on the GPU this count is not guaranteed identical to the CPU's.
DTB_HD dtb_i64 dtb_poisson_ptrs(double lam, dtb_u32 seed, dtb_u32 key1, dtb_u64 gid,
                                dtb_u32 sub, dtb_u64 index) {
    double slam = sqrt(lam);
    double loglam = log(lam);
    double bb = 0.931 + 2.53 * slam;
    double aa = -0.059 + 0.02483 * bb;
    double invalpha = 1.1239 + 1.1328 / (bb - 3.4);
    double vr = 0.9277 - 3.6224 / (bb - 2.0);
    for (dtb_u32 attempt = 0; attempt < 100000u; ++attempt) {
        dtb_block4 w = dtb_block(seed, key1, gid, sub, index, attempt);
        double uu = dtb_u01(w.w0, w.w1) - 0.5;
        double v = dtb_u01(w.w2, w.w3);
        double us = 0.5 - fabs(uu);
        double k = floor((2.0 * aa / us + bb) * uu + lam + 0.43);
        if (us >= 0.07 && v <= vr) return static_cast<dtb_i64>(k);
        if (k < 0 || (us < 0.013 && v > us)) continue;
        if ((log(v) + log(invalpha) - log(aa / (us * us) + bb))
            <= (-lam + k * loglam - lgamma(k + 1.0)))
            return static_cast<dtb_i64>(k);
    }
    return static_cast<dtb_i64>(lam);
}

#endif  // DTB_PHILOX_CUH
