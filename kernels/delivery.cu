// Spike delivery into the int64 fixed-point ring (CUDA twin of kernels/delivery.py).
//
// Work items are (spike, projection of the spike's population); one warp per item, its
// lanes striding over the projection's row of synapses (targets ascending, 8 bytes or
// fewer each: uint32 target, int16 weight mantissa, uint8 or uint16 delay).  Targets are
// updated with 64-bit integer atomics: integer addition is associative, so the sums, and
// hence the run, are bitwise independent of the order in which spikes and synapses are
// processed, exactly as on the CPU.
//
// The local launch also closes the window (the last block to finish advances the
// device-side control block, see dynamics.cu), so that a window is two launches with
// fixed arguments: dtb_dynamics, dtb_deliver_local; a run of windows can be captured
// once as a CUDA graph and replayed.
#include "common.cuh"

#ifndef DTB_CTL_T
#define DTB_CTL_T 0
#define DTB_CTL_COUNT 1
#define DTB_CTL_WIN 2
#define DTB_CTL_TICKET 3
#define DTB_CTL_BASE 4
#define DTB_CTL_OVERFLOW 5
#endif

// The synapse tables of one engine and its ring: projection p's row for source index r is
// proj_row0[p] + r in indptr; dly is uint8 when dly8 != 0, else uint16.
#define DTB_SYN_PARAMS                                                                  \
    const dtb_i64 *pop_proj_ptr, const dtb_i64 *pop_proj, dtb_i32 max_q,                 \
        const dtb_i64 *proj_row0, const dtb_i64 *proj_port, const dtb_i64 *proj_shift,   \
        const dtb_i64 *indptr, const dtb_u32 *tgt, const dtb_i16 *wq, const void *dly,   \
        dtb_i32 dly8, dtb_i64 *ring, dtb_i32 D, dtb_i32 n_ports, dtb_i64 n
#define DTB_SYN_ARGS                                                                    \
    pop_proj_ptr, pop_proj, max_q, proj_row0, proj_port, proj_shift, indptr, tgt, wq,   \
        dly, dly8, ring, D, n_ports, n

// Lane `lane` of `width` adds its share of projection number qq (of the population's
// projections) of one spike: emitted in `step` by source index src of population pop.
DTB_HD void dtb_deliver_item(dtb_i64 step, int pop, dtb_i64 src, dtb_i64 qq, int lane,
                             int width, DTB_SYN_PARAMS) {
    dtb_i64 q = pop_proj_ptr[pop] + qq;
    if (q >= pop_proj_ptr[pop + 1]) return;
    dtb_i64 p = pop_proj[q];
    dtb_i64 row = proj_row0[p] + src;
    dtb_i64 a = indptr[row];
    dtb_i64 z = indptr[row + 1];
    dtb_i64 s0 = step % D;
    dtb_i64 plane = static_cast<dtb_i64>(n_ports) * n;
    dtb_i64* base = ring + proj_port[p] * n;
    int sh = static_cast<int>(proj_shift[p]);
    if (dly8) {
        const dtb_u8* d8 = static_cast<const dtb_u8*>(dly);
        for (dtb_i64 k = a + lane; k < z; k += width) {
            dtb_i64 slot = s0 + d8[k];
            if (slot >= D) slot -= D;
            dtb_ring_add(base + slot * plane + tgt[k],
                         static_cast<dtb_i64>(static_cast<dtb_u64>(static_cast<dtb_i64>(wq[k]))
                                              << sh));
        }
    } else {
        const dtb_u16* d16 = static_cast<const dtb_u16*>(dly);
        for (dtb_i64 k = a + lane; k < z; k += width) {
            dtb_i64 slot = s0 + d16[k];
            if (slot >= D) slot -= D;
            dtb_ring_add(base + slot * plane + tgt[k],
                         static_cast<dtb_i64>(static_cast<dtb_u64>(static_cast<dtb_i64>(wq[k]))
                                              << sh));
        }
    }
}

// Local spikes: the record entries [ctl[WIN], ctl[COUNT]) of the window just advanced,
// engine indices whose population and source index are found from pop_lo/pop_first.
#define DTB_LOCAL_PARAMS                                                                 \
    dtb_i64 *ctl, dtb_i32 m, const dtb_i32 *rec_step, const dtb_i32 *rec_idx,             \
        dtb_i64 rec_cap, dtb_i32 n_pop, const dtb_i64 *pop_lo, const dtb_i64 *pop_first,  \
        DTB_SYN_PARAMS
#define DTB_LOCAL_ARGS \
    ctl, m, rec_step, rec_idx, rec_cap, n_pop, pop_lo, pop_first, DTB_SYN_ARGS

DTB_HD void dtb_deliver_local_warp(dtb_i64 warp, dtb_i64 n_warps, int lane,
                                   DTB_LOCAL_PARAMS) {
    dtb_i64 j0 = ctl[DTB_CTL_WIN];
    dtb_i64 j1 = ctl[DTB_CTL_COUNT] < rec_cap ? ctl[DTB_CTL_COUNT] : rec_cap;
    dtb_i64 t_base = ctl[DTB_CTL_BASE];
    dtb_i64 n_items = (j1 - j0) * max_q;
    for (dtb_i64 it = warp; it < n_items; it += n_warps) {
        dtb_i64 j = j0 + it / max_q;
        dtb_i64 i = rec_idx[j];
        int pop = dtb_find_pop(pop_lo, n_pop, i);
        dtb_deliver_item(t_base + rec_step[j], pop, i - pop_lo[pop] + pop_first[pop],
                         it % max_q, lane, DTB_WARP, DTB_SYN_ARGS);
    }
}

// After every block of the local delivery: the next window starts m steps later and its
// spikes after this window's.
DTB_HD void dtb_window_done(dtb_i64* ctl, dtb_i32 m) {
    ctl[DTB_CTL_WIN] = ctl[DTB_CTL_COUNT];
    ctl[DTB_CTL_T] += m;
    ctl[DTB_CTL_TICKET] = 0;
}

// Spikes from other ranks: steps, source populations and source indices (n_spk,).
#define DTB_REMOTE_PARAMS                                                             \
    dtb_i64 n_spk, const dtb_i64 *sp_step, const dtb_i64 *sp_pop, const dtb_i64 *sp_src, \
        DTB_SYN_PARAMS
#define DTB_REMOTE_ARGS n_spk, sp_step, sp_pop, sp_src, DTB_SYN_ARGS

DTB_HD void dtb_deliver_remote_warp(dtb_i64 warp, dtb_i64 n_warps, int lane,
                                    DTB_REMOTE_PARAMS) {
    dtb_i64 n_items = n_spk * max_q;
    for (dtb_i64 it = warp; it < n_items; it += n_warps) {
        dtb_i64 j = it / max_q;
        dtb_deliver_item(sp_step[j], static_cast<int>(sp_pop[j]), sp_src[j], it % max_q,
                         lane, DTB_WARP, DTB_SYN_ARGS);
    }
}

#if defined(__CUDACC__)
extern "C" __global__ void dtb_deliver_local(DTB_LOCAL_PARAMS) {
    dtb_i64 warp = (static_cast<dtb_i64>(blockIdx.x) * blockDim.x + threadIdx.x) / DTB_WARP;
    dtb_i64 n_warps = static_cast<dtb_i64>(gridDim.x) * blockDim.x / DTB_WARP;
    dtb_deliver_local_warp(warp, n_warps, threadIdx.x & (DTB_WARP - 1), DTB_LOCAL_ARGS);
    // the last block to finish closes the window (threadFenceReduction pattern)
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        unsigned long long ticket = atomicAdd(
            reinterpret_cast<unsigned long long*>(&ctl[DTB_CTL_TICKET]), 1ull);
        if (ticket == gridDim.x - 1) {
            dtb_window_done(ctl, m);
            __threadfence();
        }
    }
}

extern "C" __global__ void dtb_deliver_remote(DTB_REMOTE_PARAMS) {
    dtb_i64 warp = (static_cast<dtb_i64>(blockIdx.x) * blockDim.x + threadIdx.x) / DTB_WARP;
    dtb_i64 n_warps = static_cast<dtb_i64>(gridDim.x) * blockDim.x / DTB_WARP;
    dtb_deliver_remote_warp(warp, n_warps, threadIdx.x & (DTB_WARP - 1), DTB_REMOTE_ARGS);
}
#endif
