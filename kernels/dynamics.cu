// Neuron updates, background inputs and spike compaction over one window (CUDA twin of
// kernels/dynamics.py).
//
// One thread per neuron advances it through the m <= min-delay steps of a window (no spike
// can reach any neuron inside it), in exactly the numba kernel's order and arithmetic:
//   1. external current: I_e + DC + OU; Poisson background adds to this step's ring slot
//      (one Philox block per 4 steps, each 32-bit word inverted through the input's integer
//      CDF table for mean counts below 10; PTRS above);
//   2. V advances with the synaptic state at the step's start; 3. traces decay and take the
//   ring slot; 4. threshold, reset, refractoriness.
// Spikes are appended to a record buffer with warp-aggregated atomics (their order is not
// deterministic; the host sorts them by (step, index), and delivery does not depend on
// order because the ring sums integers), and counted per population.
//
// Exactness against the CPU (compiled with --fmad=false):
// * iaf_psc_exp: only +, * and comparisons per step (propagators are precomputed on the
//   host in the packed parameters): bitwise identical.
// * Poisson below 10 per step, DC: integer or exact arithmetic: bitwise identical.
// * lif_cond: exp(-dt g / C) per step (g depends on the conductances), and with the Mg
//   block exp(-0.062 V): libdevice's exp and glibc's may differ in the last bit for some
//   arguments, so V may differ by an ulp.  A spike differs only when V lands within that
//   ulp of threshold (and the reset then erases the difference), so spikes agree in
//   practice; V is compared with a tolerance of a few ulps.
// * OU: log, sqrt, cos, sin once per 4 steps per neuron: the same caveat (last-bit noise
//   differences, no systematic change).
// * Poisson with 10 or more events per step: PTRS with log and lgamma; a last-bit
//   difference can flip an acceptance, rarely.
#include "common.cuh"
#include "philox.cuh"

#define DTB_IN_POISSON 0
#define DTB_IN_OU 1
#define DTB_IN_DC 2

#define DTB_INV_FIX (1.0 / 4294967296.0)

// ctl: the device-side control block (int64), so that every launch of a window has the
// same arguments and a window's launches can be replayed as a CUDA graph.
#define DTB_CTL_T 0         // first step of the current window
#define DTB_CTL_COUNT 1     // spikes appended to the record buffer
#define DTB_CTL_WIN 2       // record position where the current window's spikes start
#define DTB_CTL_TICKET 3    // blocks of the delivery launch that have finished
#define DTB_CTL_BASE 4      // step that rec_step entries are relative to
#define DTB_CTL_OVERFLOW 5  // set when a spike did not fit the record buffer
#define DTB_CTL_LEN 8

// iaf_psc_exp (NEST): exact propagation; ex/inh arrivals in pA; returns spiked.
// P rows: P22 P20 P21ex P21in P11ex P11in theta V_reset-E_L n_ref I_e E_L (dtb/neurons.py).
DTB_HD bool dtb_psc_exp_step(double& V, double* syn, dtb_i32& refr, const double* P,
                             double ex, double inh, double current) {
    double el = P[10];
    double y = V - el;
    if (refr == 0) {
        y = y * P[0] + syn[0] * P[2] + syn[1] * P[3] + (P[9] + current) * P[1];
    } else {
        refr -= 1;
    }
    syn[0] = syn[0] * P[4] + ex;
    syn[1] = syn[1] * P[5] + inh;
    bool spiked = false;
    if (y >= P[6]) {
        refr = static_cast<dtb_i32>(P[8]);
        y = P[7];
        spiked = true;
    }
    V = y + el;
    return spiked;
}

// DTB conductance LIF: exponential Euler with frozen conductances; returns spiked.
// P rows: C g_L V_L V_th V_reset n_ref I_e mg_on Mg g_u[4] E_u[4] decay_u[4] g_adapt
// E_adapt decay_adapt; syn[0..3] the receptor traces, syn[4] the adaptation trace.
DTB_HD bool dtb_lif_cond_step(double& V, double* syn, dtb_i32& refr, const double* P,
                              double a0, double a1, double a2, double a3, double current,
                              double dt) {
    double v = V;
    if (refr == 0) {
        double g = P[1];
        double num = P[1] * P[2] + P[6] + current;
        for (int c = 0; c < 4; ++c) {
            double gc = P[9 + c] * syn[c];
            if (c == 1 && P[7] != 0.0) gc = gc / (1.0 + P[8] * exp(-0.062 * v) / 3.57);
            g += gc;
            num += gc * P[13 + c];
        }
        if (P[21] != 0.0) {
            double gc = P[21] * syn[4];
            g += gc;
            num += gc * P[22];
        }
        double vinf = num / g;
        v = vinf + (v - vinf) * exp(-dt * g / P[0]);
    } else {
        refr -= 1;
    }
    syn[0] = syn[0] * P[17] + a0;
    syn[1] = syn[1] * P[18] + a1;
    syn[2] = syn[2] * P[19] + a2;
    syn[3] = syn[3] * P[20] + a3;
    syn[4] = syn[4] * P[23];
    bool spiked = false;
    if (v >= P[3]) {
        refr = static_cast<dtb_i32>(P[5]);
        v = P[4];
        syn[4] += 1.0;
        spiked = true;
    }
    V = v;
    return spiked;
}

// The Poisson count of one 32-bit word through an integer CDF table (tab[n] =
// floor(2**32 P(N <= n)), the last entry 2**32): the number of entries <= u.
DTB_HD dtb_i64 dtb_cdf_count(const dtb_u64* tab, dtb_u64 u) {
    int n_tab = 0;
    while (tab[n_tab] < 4294967296ull) ++n_tab;
    dtb_i64 c = 0;
    for (int j = 0; j < n_tab; ++j) c += (u >= tab[j]) ? 1 : 0;
    return c;
}

// Four standard normals of the OU noise from one Philox block (Box-Muller, both outputs,
// of 32-bit uniforms), as kernels/dynamics.py.
DTB_HD void dtb_ou_normals(dtb_block4 w, double* z0, double* z1, double* z2, double* z3) {
    double r = sqrt(-2.0 * log((w.w0 + 0.5) * 2.3283064365386963e-10));
    double th = 6.283185307179586 * (w.w1 + 0.5) * 2.3283064365386963e-10;
    *z0 = r * cos(th);
    *z1 = r * sin(th);
    r = sqrt(-2.0 * log((w.w2 + 0.5) * 2.3283064365386963e-10));
    th = 6.283185307179586 * (w.w3 + 0.5) * 2.3283064365386963e-10;
    *z2 = r * cos(th);
    *z3 = r * sin(th);
}

// The arguments of the dynamics launch (and of its host emulation), in order.
// Shapes: V (n,), syn (5, n), refr (n,), P (sets, 24), pid (n,) set of each neuron;
// pop_* (n_pop,) with pop_in_ptr (n_pop + 1) into pop_in (input numbers, ascending);
// ring (D, n_ports, n); masks (2, n_ports, 4); in_* (n_in,), in_cdf (n_in, 48);
// ou (6, ou_n): value, 4 cached normals, their 4-step group; rec_step/rec_idx (rec_cap,)
// step relative to ctl[BASE] and engine index; pop_count (n_pop,).
#define DTB_DYN_PARAMS                                                                    \
    dtb_i64 *ctl, dtb_i32 m, double dt, dtb_u32 seed, dtb_i64 n, double *V, double *syn,  \
        dtb_i32 *refr, const double *P, const dtb_i32 *pid, dtb_i32 n_pop,                \
        const dtb_i64 *pop_lo, const dtb_i64 *pop_model, const dtb_i64 *pop_gid0,         \
        const dtb_i64 *pop_in_ptr, const dtb_i64 *pop_in, dtb_i64 *ring, dtb_i32 D,       \
        dtb_i32 n_ports, const double *masks, const dtb_i64 *in_kind,                     \
        const dtb_i64 *in_lo, const dtb_i64 *in_hi, const dtb_i64 *in_id,                 \
        const dtb_i64 *in_port, const double *in_a, const double *in_b,                   \
        const double *in_c, const dtb_i64 *in_wfix, const dtb_i64 *in_off,                \
        const dtb_u64 *in_cdf, double *ou, dtb_i64 ou_n, dtb_i32 *rec_step,               \
        dtb_i32 *rec_idx, dtb_i64 rec_cap, dtb_i64 *pop_count
#define DTB_DYN_ARGS                                                                     \
    ctl, m, dt, seed, n, V, syn, refr, P, pid, n_pop, pop_lo, pop_model, pop_gid0,        \
        pop_in_ptr, pop_in, ring, D, n_ports, masks, in_kind, in_lo, in_hi, in_id,       \
        in_port, in_a, in_b, in_c, in_wfix, in_off, in_cdf, ou, ou_n, rec_step, rec_idx,  \
        rec_cap, pop_count

// Neuron i through the window's m steps, from step t0; spiking calls append(step, pop).
template <class Append>
DTB_HD void dtb_dyn_neuron(dtb_i64 i, dtb_i64 t0, Append& append, DTB_DYN_PARAMS) {
    int pop = dtb_find_pop(pop_lo, n_pop, i);
    dtb_u64 gid = static_cast<dtb_u64>(pop_gid0[pop] + (i - pop_lo[pop]));
    int model = static_cast<int>(pop_model[pop]);
    const double* Pj = P + static_cast<dtb_i64>(pid[i]) * DTB_N_PARAM_ROWS;
    double v = V[i];
    double s[DTB_N_SYN];
    for (int c = 0; c < DTB_N_SYN; ++c) s[c] = syn[c * n + i];
    dtb_i32 r = refr[i];
    for (int st = 0; st < m; ++st) {
        dtb_i64 step = t0 + st;
        dtb_i64 slot = step % D;
        double cur = 0.0;
        for (dtb_i64 q = pop_in_ptr[pop]; q < pop_in_ptr[pop + 1]; ++q) {
            dtb_i64 k = pop_in[q];
            if (i < in_lo[k] || i >= in_hi[k]) continue;
            dtb_i64 kind = in_kind[k];
            if (kind == DTB_IN_POISSON) {
                dtb_u32 key1 = dtb_make_key1(DTB_POISSON, static_cast<dtb_u64>(in_id[k]));
                dtb_i64* cell = ring + (slot * n_ports + in_port[k]) * n + i;
                double lam = in_a[k];
                if (lam < 10.0) {
                    dtb_block4 w = dtb_block(seed, key1, gid, 1,
                                             static_cast<dtb_u64>(step >> 2), 0);
                    int word = static_cast<int>(step & 3);
                    dtb_u32 u = word == 0 ? w.w0 : word == 1 ? w.w1 : word == 2 ? w.w2 : w.w3;
                    *cell += dtb_cdf_count(in_cdf + k * DTB_CDF_LEN, u) * in_wfix[k];
                } else {
                    dtb_i64 cnt = dtb_poisson_ptrs(lam, seed, key1, gid, 0,
                                                   static_cast<dtb_u64>(step));
                    if (cnt > 0) *cell += cnt * in_wfix[k];
                }
            } else if (kind == DTB_IN_OU) {
                dtb_u32 key1 = dtb_make_key1(DTB_OU, static_cast<dtb_u64>(in_id[k]));
                dtb_i64 c = in_off[k] - in_lo[k] + i;
                dtb_i64 quad = step >> 2;
                if (ou[5 * ou_n + c] != static_cast<double>(quad)) {
                    dtb_block4 w = dtb_block(seed, key1, gid, 2, static_cast<dtb_u64>(quad), 0);
                    dtb_ou_normals(w, &ou[ou_n + c], &ou[2 * ou_n + c], &ou[3 * ou_n + c],
                                   &ou[4 * ou_n + c]);
                    ou[5 * ou_n + c] = static_cast<double>(quad);
                }
                dtb_i64 row = 1 + (step & 3);
                double mu = in_a[k];
                double x = mu + (ou[c] - mu) * in_c[k] + in_b[k] * ou[row * ou_n + c];
                ou[c] = x;
                cur += x;
            } else {
                cur += in_a[k];
            }
        }
        bool spiked;
        const double* mk = masks + static_cast<dtb_i64>(model) * n_ports * DTB_N_CHANNELS;
        if (model == 0) {
            double ex = 0.0;
            double inh = 0.0;
            for (int p = 0; p < n_ports; ++p) {
                dtb_i64* cell = ring + (slot * n_ports + p) * n + i;
                dtb_i64 rr = *cell;
                if (rr != 0) {
                    double x = static_cast<double>(rr) * DTB_INV_FIX;
                    ex += mk[p * DTB_N_CHANNELS + 0] * x;
                    inh += mk[p * DTB_N_CHANNELS + 1] * x;
                    *cell = 0;
                }
            }
            spiked = dtb_psc_exp_step(v, s, r, Pj, ex, inh, cur);
        } else {
            double a0 = 0.0;
            double a1 = 0.0;
            double a2 = 0.0;
            double a3 = 0.0;
            for (int p = 0; p < n_ports; ++p) {
                dtb_i64* cell = ring + (slot * n_ports + p) * n + i;
                dtb_i64 rr = *cell;
                if (rr != 0) {
                    double x = static_cast<double>(rr) * DTB_INV_FIX;
                    a0 += mk[p * DTB_N_CHANNELS + 0] * x;
                    a1 += mk[p * DTB_N_CHANNELS + 1] * x;
                    a2 += mk[p * DTB_N_CHANNELS + 2] * x;
                    a3 += mk[p * DTB_N_CHANNELS + 3] * x;
                    *cell = 0;
                }
            }
            spiked = dtb_lif_cond_step(v, s, r, Pj, a0, a1, a2, a3, cur, dt);
        }
        if (spiked) append(step, i, pop);
    }
    V[i] = v;
    for (int c = 0; c < DTB_N_SYN; ++c) syn[c * n + i] = s[c];
    refr[i] = r;
}

#if defined(__CUDACC__)
// Warp-aggregated append: one atomic per warp and step for the record position, one per
// warp, step and population for the counters.
struct DtbDeviceAppend {
    dtb_i64* ctl;
    dtb_i32* rec_step;
    dtb_i32* rec_idx;
    dtb_i64 rec_cap;
    dtb_i64* pop_count;
    dtb_i64 base;
    __device__ void operator()(dtb_i64 step, dtb_i64 i, int pop) {
        unsigned mask = __activemask();
        int lane = threadIdx.x & (DTB_WARP - 1);
        int leader = __ffs(mask) - 1;
        unsigned long long first = 0;
        if (lane == leader)
            first = atomicAdd(reinterpret_cast<unsigned long long*>(&ctl[DTB_CTL_COUNT]),
                              static_cast<unsigned long long>(__popc(mask)));
        first = __shfl_sync(mask, first, leader);
        dtb_i64 pos = static_cast<dtb_i64>(first) + __popc(mask & ((1u << lane) - 1u));
        if (pos < rec_cap) {
            rec_step[pos] = static_cast<dtb_i32>(step - base);
            rec_idx[pos] = static_cast<dtb_i32>(i);
        } else {
            ctl[DTB_CTL_OVERFLOW] = 1;
        }
        unsigned same = __match_any_sync(mask, pop);
        if (lane == __ffs(same) - 1)
            atomicAdd(reinterpret_cast<unsigned long long*>(&pop_count[pop]),
                      static_cast<unsigned long long>(__popc(same)));
    }
};

// One thread per neuron: the window of m steps starting at ctl[T].
extern "C" __global__ void dtb_dynamics(DTB_DYN_PARAMS) {
    dtb_i64 i = static_cast<dtb_i64>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    DtbDeviceAppend append = {ctl, rec_step, rec_idx, rec_cap, pop_count, ctl[DTB_CTL_BASE]};
    dtb_dyn_neuron(i, ctl[DTB_CTL_T], append, DTB_DYN_ARGS);
}
#endif
