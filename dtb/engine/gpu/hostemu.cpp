// Host build of the CUDA kernels (dtb.gpu.hostemu): the same inline functions as the GPU
// runs, compiled for the CPU (g++ -ffp-contract=off, glibc's libm), with every launch
// emulated one thread at a time.  The tests use it to compare the CUDA sources, function
// by function and whole runs through GpuBackend, with the numba kernels -- the checks that
// can run on a machine without a GPU.
#include "dynamics.cu"
#include "delivery.cu"

// Appends a spike to the record, one emulated thread at a time (host only: NVRTC
// compiles no host functions, so this is not in dynamics.cu).
struct DtbHostAppend {
    dtb_i64* ctl;
    dtb_i32* rec_step;
    dtb_i32* rec_idx;
    dtb_i64 rec_cap;
    dtb_i64* pop_count;
    void operator()(dtb_i64 step, dtb_i64 i, int pop) {
        dtb_i64 pos = ctl[DTB_CTL_COUNT]++;
        if (pos < rec_cap) {
            rec_step[pos] = static_cast<dtb_i32>(step - ctl[DTB_CTL_BASE]);
            rec_idx[pos] = static_cast<dtb_i32>(i);
        } else {
            ctl[DTB_CTL_OVERFLOW] = 1;
        }
        pop_count[pop] += 1;
    }
};

extern "C" {

// --- the launches, emulated -------------------------------------------------------------

void host_dynamics(DTB_DYN_PARAMS) {
    DtbHostAppend append = {ctl, rec_step, rec_idx, rec_cap, pop_count};
    dtb_i64 t0 = ctl[DTB_CTL_T];
    for (dtb_i64 i = 0; i < n; ++i) dtb_dyn_neuron(i, t0, append, DTB_DYN_ARGS);
}

void host_deliver_local(DTB_LOCAL_PARAMS, dtb_i64 n_warps) {
    for (dtb_i64 w = 0; w < n_warps; ++w)
        for (int lane = 0; lane < DTB_WARP; ++lane)
            dtb_deliver_local_warp(w, n_warps, lane, DTB_LOCAL_ARGS);
    dtb_window_done(ctl, m);
}

void host_deliver_remote(DTB_REMOTE_PARAMS, dtb_i64 n_warps) {
    for (dtb_i64 w = 0; w < n_warps; ++w)
        for (int lane = 0; lane < DTB_WARP; ++lane)
            dtb_deliver_remote_warp(w, n_warps, lane, DTB_REMOTE_ARGS);
}

// --- single functions, vectorised for the tests -----------------------------------------

// Philox4x32-10 on rows of ctr (n, 4) with key (2,) into out (n, 4).
void host_philox_many(dtb_i64 n, const dtb_u32* ctr, const dtb_u32* key, dtb_u32* out) {
    for (dtb_i64 r = 0; r < n; ++r) {
        const dtb_u32* c = ctr + 4 * r;
        dtb_block4 w = dtb_philox4x32(c[0], c[1], c[2], c[3], key[0], key[1]);
        out[4 * r] = w.w0;
        out[4 * r + 1] = w.w1;
        out[4 * r + 2] = w.w2;
        out[4 * r + 3] = w.w3;
    }
}

// dtb_block for gids gid[r] and indices index[r]; out (n, 4).
void host_block_many(dtb_i64 n, dtb_u32 seed, dtb_u32 purpose, dtb_i64 stream, dtb_u32 sub,
                     const dtb_i64* gid, const dtb_i64* index, dtb_u32 attempt,
                     dtb_u32* out) {
    dtb_u32 key1 = dtb_make_key1(purpose, static_cast<dtb_u64>(stream));
    for (dtb_i64 r = 0; r < n; ++r) {
        dtb_block4 w = dtb_block(seed, key1, static_cast<dtb_u64>(gid[r]), sub,
                                 static_cast<dtb_u64>(index[r]), attempt);
        out[4 * r] = w.w0;
        out[4 * r + 1] = w.w1;
        out[4 * r + 2] = w.w2;
        out[4 * r + 3] = w.w3;
    }
}

// u01, below and normal_pair of the words w (n, 4): out (n, 3) = (u01(w0, w1),
// below(w2, bound[r]), normal_pair(w)).
void host_draws_many(dtb_i64 n, const dtb_u32* w, const dtb_i64* bound, double* out) {
    for (dtb_i64 r = 0; r < n; ++r) {
        dtb_block4 b = {w[4 * r], w[4 * r + 1], w[4 * r + 2], w[4 * r + 3]};
        out[3 * r] = dtb_u01(b.w0, b.w1);
        out[3 * r + 1] = static_cast<double>(dtb_below(b.w2, static_cast<dtb_u64>(bound[r])));
        out[3 * r + 2] = dtb_normal_pair(b);
    }
}

// The four OU normals of each Philox block w (n, 4) into out (n, 4).
void host_ou_normals_many(dtb_i64 n, const dtb_u32* w, double* out) {
    for (dtb_i64 r = 0; r < n; ++r) {
        dtb_block4 b = {w[4 * r], w[4 * r + 1], w[4 * r + 2], w[4 * r + 3]};
        dtb_ou_normals(b, out + 4 * r, out + 4 * r + 1, out + 4 * r + 2, out + 4 * r + 3);
    }
}

// CDF-table counts of the words u (n,) through the table tab (48,).
void host_cdf_count_many(dtb_i64 n, const dtb_u64* tab, const dtb_u32* u, dtb_i64* out) {
    for (dtb_i64 r = 0; r < n; ++r) out[r] = dtb_cdf_count(tab, u[r]);
}

// PTRS Poisson counts for gids gid[r], steps index[r] (sub 0), mean lam.
void host_poisson_many(dtb_i64 n, double lam, dtb_u32 seed, dtb_i64 stream,
                       const dtb_i64* gid, const dtb_i64* index, dtb_i64* out) {
    dtb_u32 key1 = dtb_make_key1(DTB_POISSON, static_cast<dtb_u64>(stream));
    for (dtb_i64 r = 0; r < n; ++r)
        out[r] = dtb_poisson_ptrs(lam, seed, key1, static_cast<dtb_u64>(gid[r]), 0,
                                  static_cast<dtb_u64>(index[r]));
}

// One step of model `model` for neurons i < n: V (n,), syn (4, n), refr (n,) in place,
// parameter set pid[i] of P (sets, 24), arrivals arr (4, n), currents cur (n,);
// spiked (n,) receives 0/1.
void host_step_many(dtb_i32 model, dtb_i64 n, double* V, double* syn, dtb_i32* refr,
                    const double* P, const dtb_i64* pid, const double* arr, const double* cur,
                    double dt, dtb_i32* spiked) {
    for (dtb_i64 i = 0; i < n; ++i) {
        double s[DTB_N_SYN];
        for (int c = 0; c < DTB_N_SYN; ++c) s[c] = syn[c * n + i];
        double v = V[i];
        dtb_i32 r = refr[i];
        const double* Pj = P + pid[i] * DTB_N_PARAM_ROWS;
        bool sp;
        if (model == 0)
            sp = dtb_psc_exp_step(v, s, r, Pj, arr[i], arr[n + i], cur[i]);
        else
            sp = dtb_lif_cond_step(v, s, r, Pj, arr[i], arr[n + i], arr[2 * n + i],
                                   arr[3 * n + i], cur[i], dt);
        V[i] = v;
        for (int c = 0; c < DTB_N_SYN; ++c) syn[c * n + i] = s[c];
        refr[i] = r;
        spiked[i] = sp ? 1 : 0;
    }
}

}  // extern "C"
