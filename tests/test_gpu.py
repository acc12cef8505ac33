"""The GPU backend on a real device: identical spikes to the CPU engine, memory figures, the
fits-or-fails check.  Every test is marked ``gpu`` and skips without CuPy or a CUDA device.

What may differ (see kernels/dynamics.cu): lif_cond calls exp per step, and libdevice's exp
may differ from glibc's in the last bit, so its V is compared to a tolerance of 1e-9 mV;
spikes and iaf_psc_exp states must be identical.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dtb

pytestmark = pytest.mark.gpu


def _cuda_ok() -> str | None:
    try:
        with warnings.catch_warnings():  # a warning on import must not read as "no GPU"
            warnings.simplefilter("ignore")
            import cupy
    except Exception as e:  # noqa: BLE001 - ImportError or a CUDA library failing to load
        return f"cupy not importable ({type(e).__name__}: {e})"
    try:
        if not cupy.cuda.is_available() or cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as e:  # noqa: BLE001 - no driver
        return f"no CUDA device ({type(e).__name__}: {e})"
    return None


_WHY = _cuda_ok()
if _WHY is not None:
    pytest.skip(_WHY, allow_module_level=True)


def _pair(net, seed=1, noise_seed=None, **kw):
    from dtb.engine.gpu.backend import GpuBackend

    cpu = dtb.Engine(net, dt=0.1, seed=seed, noise_seed=noise_seed)
    return cpu, GpuBackend(dtb.Engine(net, dt=0.1, seed=seed, noise_seed=noise_seed), **kw)


def _compare(cpu, be, st, ix, v_tol=0.0):
    t, g = cpu.spikes()
    order = np.lexsort((cpu.gids[ix], st))
    np.testing.assert_array_equal(cpu.gids[ix][order], g)
    np.testing.assert_array_equal((st[order] + 1) * cpu.dt, t)
    s, ref = be.get_state(), cpu.get_state()
    for name in ("refr", "ring", "pid", "psets"):
        np.testing.assert_array_equal(s[name], ref[name], err_msg=name)
    if v_tol == 0.0:
        for name in ("V", "syn", "ou"):
            np.testing.assert_array_equal(s[name], ref[name], err_msg=name)
    else:
        for name in ("V", "syn", "ou"):
            np.testing.assert_allclose(s[name], ref[name], rtol=0, atol=v_tol, err_msg=name)


@pytest.mark.parametrize("graph_windows", [0, 32])
def test_microcircuit_spikes_identical_to_cpu(graph_windows):
    from dtb.models.microcircuit import microcircuit

    cpu, be = _pair(microcircuit(scale=0.05), seed=3, graph_windows=graph_windows)
    cpu.run(300.0)
    st, ix = be.advance_local(3000, cpu.min_delay_steps)
    assert len(st) > 1000
    _compare(cpu, be, st, ix)
    if graph_windows == 0:  # one-step windows: dynamics + delivery each
        assert be.launches == 3000 * 2
    else:
        assert be.launches < 3000 * 2 / 16


@pytest.mark.parametrize("noise_seed", [None, 9])
def test_mixed_network_identical_to_cpu(noise_seed):
    from test_gpu_kernels import mixed_network

    cpu, be = _pair(mixed_network(), seed=4, noise_seed=noise_seed, record_capacity=1000)
    cpu.run(300.0)
    st, ix = be.advance_local(3000, cpu.min_delay_steps)
    _compare(cpu, be, st, ix, v_tol=1e-9)
    np.testing.assert_array_equal(
        be.population_counts(),
        [np.sum((cpu.gids[ix] >= g0) & (cpu.gids[ix] < g0 + p.size))
         for p, g0 in zip(cpu.network.populations, cpu.part.pop_gid0, strict=True)])


def test_brain_demo_identical_to_cpu():
    pytest.importorskip("nibabel")
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    net = build(**demo_inputs(), options=BuildOptions(neurons=6000)).to_network()
    cpu, be = _pair(net, seed=2)
    cpu.run(500.0)
    st, ix = be.advance_local(5000, cpu.min_delay_steps)
    assert len(st) > 1000
    _compare(cpu, be, st, ix, v_tol=1e-9)


def test_deliver_remote_matches_cpu_delivery():
    from test_gpu_kernels import mixed_network

    from dtb.kernels.delivery import deliver

    cpu, be = _pair(mixed_network(), seed=4)
    rng = np.random.default_rng(0)
    k = 2000
    pop = rng.integers(0, len(cpu.network.populations), k)
    src = np.array([rng.integers(0, cpu.network.populations[p].size) for p in pop], np.int64)
    steps = rng.integers(0, 10_000, k).astype(np.int64)
    deliver(k, steps, pop, src, cpu.tables.pop_proj_ptr, cpu.tables.pop_proj,
            cpu.synapse_arrays, cpu.ring, 2)
    be.deliver_remote(steps, pop, src)
    np.testing.assert_array_equal(be.get_state()["ring"], cpu.ring)


def test_device_bytes_per_synapse_at_most_8():
    import gc

    import cupy

    gc.collect()  # earlier tests' backends: their device arrays go back to the pool
    from dtb.models.microcircuit import microcircuit

    eng = dtb.Engine(microcircuit(scale=0.1), dt=0.1, seed=1)
    from dtb.engine.gpu.backend import GpuBackend

    be = GpuBackend(eng)
    allocated = be.tgt.nbytes + be.wq.nbytes + be.dly.nbytes + be.indptr.nbytes
    assert allocated / eng.n_synapses <= 8.0
    assert be.memory.bytes_per_synapse == pytest.approx(allocated / eng.n_synapses, rel=1e-6)
    assert be.memory.bytes_per_synapse <= 8.0
    pool = cupy.get_default_memory_pool().used_bytes()
    assert pool <= be.memory.total_bytes * 1.1 + (64 << 20)


def test_a_partition_too_large_fails_early_with_the_figures():
    import cupy

    from dtb.engine.gpu.device import DeviceMemoryError, check_fits, estimate

    free = cupy.cuda.Device().mem_info[0]
    big = estimate(50_000_000, 20_000_000_000, 50_000_000, 200, 2, 0, 1 << 22)
    with pytest.raises(DeviceMemoryError, match=r"bytes each"):
        check_fits(big, free)
    from dtb.engine.gpu.backend import GpuBackend
    from dtb.models.microcircuit import microcircuit

    eng = dtb.Engine(microcircuit(scale=0.02), dt=0.1, seed=1)
    before = cupy.get_default_memory_pool().used_bytes()
    with pytest.raises(DeviceMemoryError, match="spike record"):
        GpuBackend(eng, record_capacity=1 << 42)  # 32 TiB of record buffer
    assert cupy.get_default_memory_pool().used_bytes() == before
