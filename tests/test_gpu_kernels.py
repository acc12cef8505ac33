"""The CUDA kernels without a GPU: they compile with nvcc for sm_80 and sm_90, and their
host build (the same inline functions, dtb/engine/gpu/hostemu.cpp) agrees bit for bit with the
numba kernels -- function by function here, and whole runs through GpuBackend in
test_gpu_emulated below.  Random123's known-answer vectors pin Philox independently.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numba as nb
import numpy as np
import pytest

from dtb.engine.build import poisson_cdf_table
from dtb.kernels import dynamics as kd
from dtb.kernels import philox as ph
from dtb.model.neurons import IAF_PSC_EXP, LIF_COND, pack

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not on the PATH")


def _host():
    from dtb.engine.gpu.hostemu import HostBuildError, load_host_library

    try:
        return load_host_library()
    except HostBuildError as e:  # pragma: no cover - machines without a C++ compiler
        pytest.skip(f"host build of the CUDA kernels not possible: {e}")


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


# --- nvcc ------------------------------------------------------------------------------------

def _nvcc(args: list[str], sources: list[Path], tag: str) -> Path:
    """Run nvcc once per (args, sources) and cache its output under the temp folder."""
    h = hashlib.sha256(" ".join(args).encode())
    for s in sources:
        h.update(s.read_bytes())
    out = Path(tempfile.gettempdir()) / "dtb-nvcc" / f"{tag}-{h.hexdigest()[:16]}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    done = subprocess.run([NVCC, *args, "-o", str(tmp)], capture_output=True, text=True)
    assert done.returncode == 0, f"nvcc {' '.join(args)}:\n{done.stderr}"
    tmp.replace(out)
    return out


def _cu_files() -> list[Path]:
    from dtb.engine.gpu.sources import kernel_dir

    return sorted(kernel_dir().glob("*.cu"))


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_cu_file_compiles_with_nvcc(arch):
    from dtb.engine.gpu.sources import kernel_files

    files = _cu_files()
    assert {f.name for f in files} >= {"dynamics.cu", "delivery.cu"}
    for f in files:
        cubin = _nvcc([f"-arch={arch}", "--fmad=false", "-cubin", str(f)], kernel_files(),
                      f"{f.stem}-{arch}.cubin")
        assert cubin.stat().st_size > 1000


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_nvrtc_translation_unit_is_self_contained(arch, tmp_path):
    """What GpuBackend hands to NVRTC (headers inlined, no include path) compiles alone and
    exports the kernels it launches, unmangled."""
    from dtb.engine.gpu.kernels import NVRTC_OPTIONS, SIGNATURES
    from dtb.engine.gpu.sources import cuda_source

    src = tmp_path / "dtb_gpu.cu"
    src.write_text(cuda_source())
    ptx = _nvcc([f"-arch={arch}", *NVRTC_OPTIONS, "-ptx", str(src)], [src], f"tu-{arch}.ptx")
    text = ptx.read_text()
    for name in SIGNATURES:
        assert f".entry {name}(" in text


@needs_nvcc
def test_fmad_false_keeps_the_neuron_update_unfused(tmp_path):
    """--fmad=false removes the fused multiply-adds that nvcc otherwise makes of the
    psc_exp update (which the CPU never fuses): the PTX is checked both ways."""
    from dtb.engine.gpu.sources import kernel_dir

    src = tmp_path / "psc.cu"
    src.write_text('#include "dynamics.cu"\n'
                   'extern "C" __global__ void k(double* V, double* s, int* r, const double* P)'
                   ' { dtb_psc_exp_step(V[0], s, r[0], P, s[2], s[3], s[4]); }\n')
    inc = ["-I", str(kernel_dir())]
    fused = _nvcc(["-arch=sm_80", *inc, "-ptx", str(src)], [src], "psc-fmad.ptx")
    plain = _nvcc(["-arch=sm_80", "--fmad=false", *inc, "-ptx", str(src)], [src],
                  "psc-nofmad.ptx")
    def body(ptx: Path) -> str:  # the test kernel only (dynamics.cu brings its own)
        text = ptx.read_text()
        start = text.index(".entry k(")
        return text[start:text.index("\n}\n", start)]

    assert "fma.rn.f64" in body(fused)
    assert "fma.rn.f64" not in body(plain)
    assert "mul.rn.f64" in body(plain) or "mul.f64" in body(plain)


# --- Philox and draws --------------------------------------------------------------------

KAT = [  # Random123 kat_vectors, philox4x32 10 rounds: counter, key, expected
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_philox_known_answers():
    lib = _host()
    ctr = np.array([k[0] for k in KAT], np.uint32)
    for r, (_, key, expected) in enumerate(KAT):
        out = np.zeros((1, 4), np.uint32)
        lib.host_philox_many(1, _p(ctr[r:r + 1]), _p(np.array(key, np.uint32)),
                             _p(out))
        assert [int(x) for x in out[0]] == list(expected)


def test_philox_matches_numba_on_random_counters():
    lib = _host()
    rng = np.random.default_rng(5)
    ctr = rng.integers(0, 2**32, (5000, 4), dtype=np.uint64).astype(np.uint32)
    key = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)
    out = np.zeros_like(ctr)
    lib.host_philox_many(np.int64(len(ctr)), _p(ctr), _p(key), _p(out))
    np.testing.assert_array_equal(out, ph.philox_many(ctr, key))


@nb.njit
def _numba_blocks(seed, key1, gid, sub, index, attempt):
    out = np.empty((gid.shape[0], 4), np.uint32)
    for r in range(gid.shape[0]):
        w0, w1, w2, w3 = ph.block(seed, key1, gid[r], sub, index[r], attempt)
        out[r, 0] = w0
        out[r, 1] = w1
        out[r, 2] = w2
        out[r, 3] = w3
    return out


@nb.njit
def _numba_draws(w, bound):
    out = np.empty((w.shape[0], 3))
    for r in range(w.shape[0]):
        out[r, 0] = ph.u01(w[r, 0], w[r, 1])
        out[r, 1] = ph.below(w[r, 2], bound[r])
        out[r, 2] = ph.normal_pair(w[r, 0], w[r, 1], w[r, 2], w[r, 3])
    return out


@pytest.mark.parametrize("purpose,sub", [(ph.POISSON, 1), (ph.OU, 2), (ph.CONNECT, 0)])
def test_block_counters_and_draws_match_numba(purpose, sub):
    """Keys and counters as the engine forms them (gids beyond 2**32, steps beyond 2**32
    wrap as np.uint32 does), then u01, below and Box-Muller on the words."""
    lib = _host()
    rng = np.random.default_rng(purpose)
    gid = rng.integers(0, 2**47, 3000).astype(np.int64)
    gid[:10] = np.arange(10)
    index = rng.integers(0, 2**33, 3000).astype(np.int64)
    stream, seed = 300 * 256 + 7, 123456789
    out = np.zeros((3000, 4), np.uint32)
    lib.host_block_many(np.int64(3000), np.uint32(seed), np.uint32(purpose), np.int64(stream),
                        np.uint32(sub), _p(gid), _p(index), np.uint32(3), _p(out))
    expect = _numba_blocks(np.uint32(seed), ph.make_key1(purpose, stream), gid, sub, index, 3)
    np.testing.assert_array_equal(out, expect)
    bound = rng.integers(1, 2**32, 3000).astype(np.int64)
    draws = np.zeros((3000, 3))
    lib.host_draws_many(np.int64(3000), _p(out), _p(bound), _p(draws))
    ref = _numba_draws(out, bound)
    np.testing.assert_array_equal(draws.view(np.int64), ref.view(np.int64))
    assert (draws[:, 1] < bound).all() and (draws[:, 0] > 0).all() and (draws[:, 0] < 1).all()


def test_ou_normals_match_the_numba_formula():
    """The OU kernel's four normals per block, against the same formula evaluated by
    Python's math (glibc's libm, as numba's)."""
    lib = _host()
    rng = np.random.default_rng(2)
    w = rng.integers(0, 2**32, (2000, 4), dtype=np.uint64).astype(np.uint32)
    w[0] = 0
    w[1] = 0xFFFFFFFF
    out = np.zeros((2000, 4))
    lib.host_ou_normals_many(np.int64(2000), _p(w), _p(out))
    c = 2.3283064365386963e-10
    for r in range(2000):
        w0, w1, w2, w3 = (int(x) for x in w[r])
        rad = math.sqrt(-2.0 * math.log((w0 + 0.5) * c))
        th = 6.283185307179586 * (w1 + 0.5) * c
        rad2 = math.sqrt(-2.0 * math.log((w2 + 0.5) * c))
        th2 = 6.283185307179586 * (w3 + 0.5) * c
        assert tuple(out[r]) == (rad * math.cos(th), rad * math.sin(th),
                                 rad2 * math.cos(th2), rad2 * math.sin(th2))


@pytest.mark.parametrize("lam", [0.0, 0.05, 1.6, 7.5, 9.99])
def test_cdf_table_count_is_the_inverse_cdf(lam):
    """count(u) = #{n : table[n] <= u}: the smallest n with u < table[n], and its frequency
    over random words follows Poisson(lam)."""
    lib = _host()
    tab = poisson_cdf_table(lam)
    rng = np.random.default_rng(int(lam * 100))
    u = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    edges = np.unique(np.concatenate([tab[tab < 2**32], tab[tab < 2**32] - 1])).clip(0, 2**32 - 1)
    u[:len(edges)] = edges.astype(np.uint32)
    out = np.zeros(len(u), np.int64)
    lib.host_cdf_count_many(np.int64(len(u)), _p(tab), _p(u), _p(out))
    np.testing.assert_array_equal(out, np.searchsorted(tab, u.astype(np.uint64), side="right"))
    if lam > 0:
        assert abs(out.mean() - lam) < 5 * math.sqrt(lam / len(u))


@pytest.mark.parametrize("lam", [10.0, 37.5, 400.0])
def test_ptrs_poisson_matches_numba(lam):
    lib = _host()
    gid = np.arange(4000, dtype=np.int64) * 7919
    index = np.arange(4000, dtype=np.int64) + 2**31
    out = np.zeros(4000, np.int64)
    lib.host_poisson_many(np.int64(4000), np.float64(lam), np.uint32(9), np.int64(513),
                          _p(gid), _p(index), _p(out))
    key1 = ph.make_key1(ph.POISSON, 513)
    expect = [ph.poisson(lam, 9, key1, int(g), 0, int(i)) for g, i in zip(gid, index,
                                                                           strict=True)]
    np.testing.assert_array_equal(out, expect)
    assert abs(out.mean() - lam) < 5 * math.sqrt(lam / 4000)


# --- one neuron-update step ------------------------------------------------------------------

@nb.njit
def _numba_steps(model, V, syn, refr, P, pid, arr, cur, dt, spiked):
    for i in range(V.shape[0]):
        if model == 0:
            s = kd.psc_exp_step(i, pid[i], V, syn, refr, P, arr[0, i], arr[1, i], cur[i])
        else:
            s = kd.lif_cond_step(i, pid[i], V, syn, refr, P, arr[0, i], arr[1, i], arr[2, i],
                                 arr[3, i], cur[i], dt)
        spiked[i] = s


def _random_sets(model, n_sets, rng, dt):
    if model == 0:
        p = {"C_m": rng.uniform(100, 400, n_sets), "tau_m": rng.uniform(5, 30, n_sets),
             "tau_syn_ex": rng.uniform(0.2, 3, n_sets), "tau_syn_in": rng.uniform(0.2, 8, n_sets),
             "t_ref": rng.choice([0.0, 0.1, 2.0], n_sets), "E_L": rng.uniform(-70, -60, n_sets),
             "V_th": rng.uniform(-55, -48, n_sets), "V_reset": rng.uniform(-75, -65, n_sets),
             "I_e": rng.uniform(-50, 400, n_sets)}
        p["tau_syn_ex"][0] = p["tau_m"][0]  # the coinciding-time-constant limit
        return pack(IAF_PSC_EXP, p, dt).T.copy()
    p = {k: np.full(n_sets, v) for k, v in LIF_COND.defaults.items()}
    for k in ("g_AMPA", "g_NMDA", "g_GABA_A", "g_GABA_B"):
        p[k] = p[k] * rng.uniform(0.2, 5, n_sets)
    p["I_e"] = rng.uniform(0, 1.2, n_sets)
    p["mg_block"] = rng.choice([0.0, 1.0], n_sets)
    p["Mg"] = rng.uniform(0.5, 2.0, n_sets)
    p["t_ref"] = rng.choice([0.0, 2.0, 5.0], n_sets)
    p["g_adapt"] = rng.choice([0.0, 0.01, 0.05], n_sets)
    p["E_adapt"] = rng.uniform(-90, -70, n_sets)
    p["tau_adapt"] = rng.uniform(50, 1000, n_sets)
    return pack(LIF_COND, p, dt).T.copy()


@pytest.mark.parametrize("model", [0, 1], ids=["iaf_psc_exp", "lif_cond"])
def test_one_step_is_bitwise_the_numba_step(model):
    """Random states, parameter sets, arrivals and currents; 20 consecutive steps, so
    refractory counting, resets and the Mg block are all exercised."""
    lib = _host()
    rng = np.random.default_rng(11 + model)
    n, dt = 20_000, 0.1
    P = _random_sets(model, 64, rng, dt)
    pid = rng.integers(0, 64, n).astype(np.int64)
    vth = P[pid, 6] + P[pid, 10] if model == 0 else P[pid, 3]
    V = vth + rng.normal(0, 3.0, n)
    syn = np.abs(rng.normal(0, 50 if model == 0 else 0.5, (5, n)))  # row 4: adaptation
    if model == 0:
        syn[1] *= -1
    refr = rng.integers(0, 3, n).astype(np.int32) * (rng.random(n) < 0.3)
    refr = refr.astype(np.int32)
    a = (V.copy(), syn.copy(), refr.copy())
    b = (V.copy(), syn.copy(), refr.copy())
    n_spikes = 0
    for _ in range(20):
        arr = np.abs(rng.normal(0, 30 if model == 0 else 0.3, (4, n))) * (rng.random((4, n)) < 0.5)
        if model == 0:
            arr[1] *= -1
        cur = rng.normal(0, 100 if model == 0 else 0.5, n)
        sp_a = np.zeros(n, np.int32)
        sp_b = np.zeros(n, np.bool_)
        lib.host_step_many(np.int32(model), np.int64(n), _p(a[0]), _p(a[1]), _p(a[2]), _p(P),
                           _p(pid), _p(arr), _p(cur), np.float64(dt), _p(sp_a))
        _numba_steps(model, b[0], b[1], b[2], P, pid, arr, cur, dt, sp_b)
        np.testing.assert_array_equal(sp_a.astype(bool), sp_b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))
        n_spikes += int(sp_b.sum())
    assert n_spikes > 1000
    assert (a[2] > 0).any()


# --- whole runs: GpuBackend on the host build vs the numba engine ----------------------------

def mixed_network():
    """Both models, every input type (Poisson below and above 10 per step, OU, DC), the
    NMDA Mg block, spike-triggered adaptation, heterogeneous parameters, delays of several
    steps (windows of m > 1)."""
    import dtb

    lif = {"C": 1.0, "g_L": 0.03, "t_ref": dtb.Dist.uniform(2.0, 5.0), "mg_block": 1.0,
           "g_adapt": dtb.Dist.uniform(0.0, 0.02), "tau_adapt": 200.0}
    pops = (
        dtb.Population("E", 300, model="iaf_psc_exp", type="E",
                       params={"tau_m": dtb.Dist.normal(10.0, 1.0, low=5.0)},
                       initial={"V": dtb.Dist.normal(-58.0, 5.0)},
                       inputs=(dtb.PoissonInput(8.0, 87.8, 1300),)),
        dtb.Population("I", 100, model="iaf_psc_exp", type="I",
                       initial={"V": dtb.Dist.uniform(-65.0, -50.0)},
                       inputs=(dtb.PoissonInput(8.0, 8.0, 20000), dtb.DCInput(5.0))),
        dtb.Population("C", 150, model="lif_cond", type="E", params=lif,
                       initial={"V": dtb.Dist.uniform(-70.0, -55.0)},
                       inputs=(dtb.OUInput(0.8, 0.2, 10.0), dtb.DCInput(0.05),
                               dtb.PoissonInput(5.0, 0.5, 100, receptor="AMPA"))),
    )
    w_e = dtb.Dist.normal(87.8, 8.78, low=0.0)
    w_i = dtb.Dist.normal(-351.2, 35.12, high=0.0)
    d_e = dtb.Dist.uniform(0.3, 4.0)
    projs = (
        dtb.Projection("E", "E", dtb.FixedInDegree(40), w_e, d_e),
        dtb.Projection("E", "I", dtb.PairwiseBernoulli(0.1), w_e, d_e),
        dtb.Projection("I", "E", dtb.FixedTotalNumber(6000), w_i, dtb.Dist.uniform(0.3, 1.0)),
        dtb.Projection("I", "I", dtb.FixedInDegree(20), w_i, 0.8, autapses=False,
                       multapses=False),
        dtb.Projection("C", "E", dtb.FixedInDegree(10), w_e, 2.0),
        dtb.Projection("E", "C", dtb.FixedInDegree(30), dtb.Dist.uniform(0.01, 0.05), d_e),
        dtb.Projection("I", "C", dtb.PairwiseBernoulli(0.05), 0.05, 1.0),
        dtb.Projection("C", "C", dtb.FixedInDegree(10), 0.02, 1.2, receptor="NMDA"),
    )
    return dtb.Network(pops, projs)


def _emulated(net, seed=3, noise_seed=None, **kw):
    import dtb
    from dtb.engine.gpu.backend import GpuBackend

    _host()
    cpu = dtb.Engine(net, dt=0.1, seed=seed, threads=1, noise_seed=noise_seed)
    gpu_eng = dtb.Engine(net, dt=0.1, seed=seed, threads=1, noise_seed=noise_seed)
    return cpu, GpuBackend(gpu_eng, emulate=True, **kw)


def _assert_same_run(cpu, be, steps_st, steps_ix):
    t, g = cpu.spikes()
    order = np.lexsort((cpu.gids[steps_ix], steps_st))
    np.testing.assert_array_equal((steps_st[order] + 1) * cpu.dt, t)
    np.testing.assert_array_equal(cpu.gids[steps_ix][order], g)
    s, ref = be.get_state(), cpu.get_state()
    assert int(s["step"]) == cpu.step
    for name in ("V", "syn", "refr", "ring", "ou", "psets", "pid"):
        np.testing.assert_array_equal(s[name], ref[name], err_msg=name)


@pytest.mark.parametrize("noise_seed", [None, 11])
def test_emulated_backend_reproduces_the_cpu_engine_bitwise(noise_seed):
    """Spikes, V, traces, refractory counts, the ring and the OU state after 300 ms of the
    mixed network; a small record buffer forces many chunks, and the call is split; with
    the network's seed and, apart from it, a noise seed."""
    cpu, be = _emulated(mixed_network(), noise_seed=noise_seed, record_capacity=1)
    m = cpu.min_delay_steps
    assert m > 1 and cpu.max_delay_steps < 256 and be.dly8 == 1
    cpu.run(300.0)
    st1, ix1 = be.advance_local(1234, m)
    st2, ix2 = be.advance_local(3000 - 1234, m)
    st, ix = np.concatenate([st1, st2]), np.concatenate([ix1, ix2])
    assert np.all(np.diff(st1) >= 0) and len(st) > 2000
    _assert_same_run(cpu, be, st, ix)
    counts = be.population_counts()
    np.testing.assert_array_equal(
        counts, [np.sum((ix >= lay.lo) & (ix < lay.hi)) for lay in cpu.layout])
    rates = cpu.rates()
    assert all(r > 2.0 for r in rates.values()), rates


def test_emulated_microcircuit_matches_step_by_step_windows():
    """The microcircuit (one-step windows, Poisson background) at 2 % scale."""
    from dtb.models.microcircuit import microcircuit

    cpu, be = _emulated(microcircuit(scale=0.02), seed=7, record_capacity=5000)
    assert cpu.min_delay_steps == 1
    cpu.run(100.0)
    st, ix = be.advance_local(1000, 1)
    _assert_same_run(cpu, be, st, ix)
    assert len(st) > 100


def test_emulated_brain_demo_matches():
    """The default subject's brain (lif_cond, long-range delays up to tens of ms)."""
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    net = build(**demo_inputs(), options=BuildOptions(neurons=3000)).to_network()
    cpu, be = _emulated(net, seed=2)
    cpu.run(200.0)
    st, ix = be.advance_local(2000, cpu.min_delay_steps)
    _assert_same_run(cpu, be, st, ix)
    assert len(st) > 100


def test_deliver_remote_matches_numba_delivery():
    """Spikes from 'other ranks' (any population, any source index, any step) land in the
    same ring cells with the same integer sums as kernels/delivery.py."""
    from dtb.kernels.delivery import deliver

    cpu, be = _emulated(mixed_network(), seed=4)
    rng = np.random.default_rng(0)
    k = 500
    pop = rng.integers(0, len(cpu.layout), k)
    src = np.array([rng.integers(0, cpu.layout[p].pop_size) for p in pop], np.int64)
    steps = rng.integers(0, 10_000, k).astype(np.int64)
    deliver(k, steps, pop, src, cpu.tables.pop_proj_ptr, cpu.tables.pop_proj,
            cpu.synapse_arrays, cpu.ring, 2)
    be.deliver_remote(steps, pop, src)
    ring = be.get_state()["ring"]
    assert np.count_nonzero(ring) > 1000
    np.testing.assert_array_equal(ring, cpu.ring)


def test_state_moves_between_backends_bitwise():
    """A GPU state continues on the CPU engine and a CPU state on the GPU, with the same
    spikes as an uninterrupted CPU run."""
    cpu = _emulated(mixed_network(), seed=5)[0]
    m = cpu.min_delay_steps
    cpu.run(30.0)
    ref_st, ref_ix = cpu.backend.advance(200, m, cpu._advanced)
    _, be = _emulated(mixed_network(), seed=5)
    be.advance_local(300, m)
    mid = be.get_state()
    cpu2, be2 = _emulated(mixed_network(), seed=5)
    cpu2.set_state(mid)  # GPU -> CPU
    st, ix = cpu2.backend.advance(200, m, cpu2._advanced)
    order = np.lexsort((ix, st))
    np.testing.assert_array_equal(st[order], ref_st[np.lexsort((ref_ix, ref_st))])
    be2.set_state(mid)  # GPU -> GPU
    st2, ix2 = be2.advance_local(200, m)
    np.testing.assert_array_equal(st2, st[order])
    np.testing.assert_array_equal(ix2, ix[order])
    # t_ref >= 2 ms everywhere (E, I: 2 ms default; C: drawn in [2, 5] ms): at most one
    # spike per neuron in 21 steps
    be = _emulated(mixed_network(), seed=5)[1]
    assert be.max_spikes(1) == be.n
    assert be.max_spikes(21) == be.n
    assert be.max_spikes(22) == 2 * be.n


class _CaptureStream:
    """A stand-in for CuPy's stream capture on the emulated backend: launches between
    begin_capture and end_capture are recorded, and the returned graph replays them."""

    def __init__(self, be):
        self.kernels, self.ops = be.kernels, None
        be.kernels, be.stream = self, self

    def launch(self, name, grid, block, args):
        if self.ops is not None:
            self.ops.append((name, grid, block, args))
        else:
            self.kernels.launch(name, grid, block, args)

    def begin_capture(self):
        self.ops = []

    def end_capture(self):
        ops, self.ops = self.ops, None
        kernels = self.kernels

        class Graph:
            def launch(self, stream):
                for op in ops:
                    kernels.launch(*op)

        return Graph()


@pytest.mark.parametrize("graph_windows", [32, 128])
def test_graph_replays_and_chunks_reproduce_the_cpu_engine(graph_windows):
    """The graph path of the backend (capture once, replay, plain launches for the rest,
    chunks ending inside and between graphs, a call split at an odd step) gives the CPU
    engine's spikes and state; a replay counts one launch call."""
    from dtb.models.microcircuit import microcircuit

    cpu, be = _emulated(microcircuit(scale=0.02), seed=3, record_capacity=20_000)
    _CaptureStream(be)
    be.graph_windows = graph_windows
    cpu.run(150.0)
    st1, ix1 = be.advance_local(577, 1)
    st2, ix2 = be.advance_local(1500 - 577, 1)
    _assert_same_run(cpu, be, np.concatenate([st1, st2]), np.concatenate([ix1, ix2]))
    assert list(be._graphs) == [(1, graph_windows)] and be.graph_error is None
    n_win = be._chunk_windows(1)
    assert n_win % graph_windows == 0
    replays = 577 // n_win * (n_win // graph_windows) + (577 % n_win) // graph_windows
    replays += (923 // n_win) * (n_win // graph_windows) + (923 % n_win) // graph_windows
    assert be.launches == replays + 2 * (1500 - replays * graph_windows)


def test_chunks_and_record_follow_the_spike_bound(monkeypatch):
    """A chunk is the most windows whose spike bound fits the record (whole graphs); the
    record grows to a graph's bound where memory allows, to one window's where it does
    not, and a window that cannot fit is a DeviceMemoryError."""
    from dtb.engine.gpu.device import DeviceMemoryError

    cpu, be = _emulated(mixed_network(), seed=5, record_capacity=1)
    m = cpu.min_delay_steps
    for cap, g in ((be.max_spikes(m), 0), (10 * be.n, 0), (10 * be.n, 4), (97 * be.n, 32)):
        be.rec_cap, be.graph_windows = cap, g
        n = be._chunk_windows(m)
        best = max(k for k in range(1, 2000) if be.max_spikes(k * m) <= cap)
        assert n == (best - best % g if g > 1 and best > g else best), (cap, g)
    # asked once per window in a distributed run: computed once, until the bound changes
    n = be._chunk_windows(m)
    with monkeypatch.context() as mp:
        mp.setattr(be, "max_spikes", lambda steps: 1 / 0)
        assert be._chunk_windows(m) == n
        be._size_record(m)
        be._set_spike_bound()
        with pytest.raises(ZeroDivisionError):
            be._chunk_windows(m)
    be.graph_windows = 32
    monkeypatch.setattr(be, "_free_bytes", lambda: 1 << 40)
    be._alloc_record(1)
    be._size_record(m)
    assert be.rec_cap == be.max_spikes(32 * m) > be.max_spikes(m)
    monkeypatch.setattr(be, "_free_bytes", lambda: 8 * 8 * be.max_spikes(m))
    be._alloc_record(1)
    be._size_record(m)
    assert be.rec_cap == be.max_spikes(m)
    monkeypatch.setattr(be, "_free_bytes", lambda: 8 * be.max_spikes(m) // 2)
    be._alloc_record(1)
    with pytest.raises(DeviceMemoryError, match="spike record needs"):
        be._size_record(m)


def test_samples_copy_back_only_what_they_read():
    """Engine.sync_host(("V", "syn")) brings V and syn from the device and leaves the
    ring on the host as it was (the ring is most of a partition)."""
    import dtb

    _host()
    e = dtb.Engine(mixed_network(), dt=0.1, seed=6, threads=1, backend="gpu-emulated")
    be = e.backend
    ring0 = e.ring.copy()
    e.run(20.0)
    assert e.step == be.step == 200
    e.sync_host(("V", "syn"))
    np.testing.assert_array_equal(e.V, be.V)
    np.testing.assert_array_equal(e.syn, be.syn)
    np.testing.assert_array_equal(e.ring, ring0)
    assert not np.array_equal(be.ring, ring0)
    with pytest.raises(ValueError, match="to_engine fields"):
        e.sync_host(("V", "weights"))


def _nvrtc():
    """libnvrtc: $DTB_NVRTC, the nvidia-cuda-nvrtc wheel (nvidia/cu*/lib on sys.path), or
    the system's; its builtins library is loaded first from the same folder."""
    import ctypes
    import ctypes.util
    import os
    import sys

    found = [os.environ.get("DTB_NVRTC")]
    for root in sys.path:
        found += sorted(str(p) for p in Path(root or ".").glob("nvidia/cu*/lib/libnvrtc.so.*"))
    found += [ctypes.util.find_library("nvrtc"), "libnvrtc.so.13", "libnvrtc.so.12"]
    for name in filter(None, found):
        folder = Path(name).parent
        try:
            for b in sorted(folder.glob("libnvrtc-builtins.so.*")) if folder.parts else []:
                ctypes.CDLL(str(b), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_nvrtc_compiles_the_backend_source(arch):
    """The exact source and options GpuBackend gives CuPy's RawModule, through NVRTC itself
    (no include path, no system headers).  Skips where libnvrtc is not found (set
    DTB_NVRTC to its path, e.g. from the nvidia-cuda-nvrtc wheel)."""
    import ctypes

    from dtb.engine.gpu.kernels import NVRTC_OPTIONS, SIGNATURES
    from dtb.engine.gpu.sources import cuda_source

    lib = _nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (set DTB_NVRTC)")
    prog = ctypes.c_void_p()
    src = cuda_source().encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"dtb_gpu.cu", 0, None, None) == 0
    opts = [o.encode() for o in (*NVRTC_OPTIONS, f"--gpu-architecture={arch}")]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    for name in SIGNATURES:
        assert f".entry {name}(".encode() in ptx.value
