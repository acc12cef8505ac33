// Shared definitions of the CUDA kernels (dtb.kernels, GPU twin of the numba kernels).
//
// Every per-neuron and per-synapse computation is an inline function marked DTB_HD, so the
// same source compiles for the GPU (nvcc or NVRTC through CuPy) and for the host (g++ or
// nvcc's host pass), where the tests compare it bit for bit with the numba kernels.
//
// Exactness: the numba kernels are compiled without fast-math, so LLVM never fuses a
// multiply and an add.  The device code must not either: NVRTC and nvcc are given
// --fmad=false (the host harness -ffp-contract=off).  Then +, -, *, / and sqrt are IEEE
// round-to-nearest on both sides and give identical bits.  exp, log, cos, sin and lgamma
// are not correctly rounded in either libm (glibc on the CPU, libdevice on the GPU) and
// may differ in the last bit; see dynamics.cu for where they are used per step.
//
// No standard headers under NVRTC: the integer types are spelled out here.
#ifndef DTB_COMMON_CUH
#define DTB_COMMON_CUH

#if defined(__CUDACC__)
#define DTB_HD __host__ __device__ __forceinline__
#else
#define DTB_HD inline
#endif

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

typedef unsigned int dtb_u32;
typedef unsigned long long dtb_u64;
typedef long long dtb_i64;
typedef int dtb_i32;
typedef short dtb_i16;
typedef unsigned short dtb_u16;
typedef unsigned char dtb_u8;

#define DTB_N_PARAM_ROWS 24  // dtb.neurons.N_PARAM_ROWS
#define DTB_N_CHANNELS 4     // dtb.neurons.N_CHANNELS (receptor channels of the masks)
#define DTB_N_SYN 5          // dtb.neurons.N_SYN (rows of the trace state syn)
#define DTB_CDF_LEN 48       // dtb.engine.CDF_LEN
#define DTB_WARP 32

// 64-bit integer add into the ring: atomic on the device (integer addition is associative,
// so the sum does not depend on the order of the atomics); plain on the host, where the
// emulated launches run one thread at a time.
DTB_HD void dtb_ring_add(dtb_i64* p, dtb_i64 v) {
#if defined(__CUDA_ARCH__)
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
#else
    *p += v;
#endif
}

// The population of engine index i: the largest p with pop_lo[p] <= i (numpy's
// searchsorted(pop_lo, i, side="right") - 1; empty populations share their lo).
DTB_HD int dtb_find_pop(const dtb_i64* pop_lo, int n_pop, dtb_i64 i) {
    int a = 0;
    int z = n_pop;  // invariant: pop_lo[a] <= i < pop_lo[z] (pop_lo[n_pop] = infinity)
    while (z - a > 1) {
        int c = (a + z) >> 1;
        if (pop_lo[c] <= i) a = c; else z = c;
    }
    return a;
}

#endif  // DTB_COMMON_CUH
