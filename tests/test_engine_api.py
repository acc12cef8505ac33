"""The engine's interface for recorders, data assimilation and checkpoints: the spike
callback, per-unit hyperparameters and get/set of the full dynamic state.

Expectations come from a second engine: a run split by a state copy must equal one run;
a hyperparameter set at step 0 must equal a network built with those values; the
callback must report exactly the spikes the engine keeps.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dtb.brain.build import BuildOptions, build
from dtb.data import demo_inputs
from dtb.engine.simulation import Engine
from dtb.model.network import PerUnit


@pytest.fixture(scope="module")
def brain():
    return build(**demo_inputs(), options=BuildOptions(neurons=3000)).to_network()


def _spikes_between(eng: Engine, t0: float, t1: float):
    t, g = eng.spikes()
    sel = (t > t0) & (t <= t1)
    return t[sel], g[sel]


def test_on_window_reports_every_kept_spike_window_after_window(brain):
    eng = Engine(brain, dt=0.1, seed=3, threads=1)
    got_st, got_ix = [], []
    last = [-1]

    def cb(st, ix):
        if len(st):  # calls come in time order; each holds steps already done
            assert st.min() > last[0] and st.max() < eng.step
            last[0] = st.max()
        got_st.append(st)
        got_ix.append(ix)

    eng.run(60.0, on_window=cb)
    eng.run(40.0)  # no callback: nothing reported
    st, ix = np.concatenate(got_st), np.concatenate(got_ix)
    t, g = eng.spikes()
    sel = t <= 60.0 + 1e-9
    assert len(st) == sel.sum() > 100
    order = np.lexsort((eng.gids[ix], st))
    np.testing.assert_array_equal((st[order] + 1) * 0.1, t[sel])
    np.testing.assert_array_equal(eng.gids[ix][order], g[sel])


def test_keep_spikes_false_leaves_results_unchanged(brain):
    a = Engine(brain, dt=0.1, seed=3, threads=1)
    a.run(50.0)
    b = Engine(brain, dt=0.1, seed=3, threads=1)
    b.keep_spikes = False
    seen = []
    b.run(50.0, on_window=lambda st, ix: seen.append(b.gids[ix]))
    assert len(b.spikes()[0]) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(a.spikes()[1]))


def test_unit_of_follows_the_unit_sizes(brain):
    eng = Engine(brain, dt=0.1, seed=1, threads=1)
    assert eng.n_units == len(brain.populations[0].units)
    for lay in eng.layout:
        units = np.asarray(brain.populations[lay.index].units)
        expect = np.repeat(np.arange(len(units)), units)[lay.first:lay.first + lay.size]
        np.testing.assert_array_equal(eng.unit_of[lay.lo:lay.hi], expect)


def test_set_unit_param_at_start_equals_a_network_built_with_it(brain):
    pop = brain.populations[0]
    g = np.asarray(pop.params["g_AMPA"].values) * np.linspace(0.5, 1.5, len(pop.units))
    changed = replace(brain, populations=[
        replace(pop, params={**pop.params, "g_AMPA": PerUnit(tuple(g))}),
        *brain.populations[1:]])
    ref = Engine(changed, dt=0.1, seed=5, threads=1)
    ref.run(80.0)
    eng = Engine(brain, dt=0.1, seed=5, threads=1)
    eng.set_unit_param(pop.name, "g_AMPA", g)
    np.testing.assert_array_equal(eng.unit_param(pop.name, "g_AMPA"), g)
    eng.run(80.0)
    for x, y in zip(ref.spikes(), eng.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    base = Engine(brain, dt=0.1, seed=5, threads=1)
    base.run(80.0)
    assert len(base.spikes()[0]) != len(eng.spikes()[0])  # the change mattered


def test_set_unit_param_on_a_population_constant(brain):
    """A parameter constant over the population (one parameter set) becomes per unit."""
    pop = brain.populations[1]
    assert not isinstance(pop.params.get("V_th", -50.0), PerUnit)
    vth = np.full(len(pop.units), float(pop.params.get("V_th", -50.0)))
    vth[::2] += 2.0
    changed = replace(brain, populations=[
        brain.populations[0], replace(pop, params={**pop.params, "V_th": PerUnit(tuple(vth))}),
        *brain.populations[2:]])
    ref = Engine(changed, dt=0.1, seed=2, threads=1)
    ref.run(50.0)
    eng = Engine(brain, dt=0.1, seed=2, threads=1)
    eng.set_unit_param(pop.name, "V_th", vth)
    eng.run(50.0)
    for x, y in zip(ref.spikes(), eng.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_unit_param_errors(brain):
    eng = Engine(brain, dt=0.1, seed=1, threads=1)
    name = brain.populations[0].name
    with pytest.raises(ValueError, match="nope"):
        eng.unit_param("nope", "g_AMPA")
    with pytest.raises(ValueError, match="unknown parameter"):
        eng.unit_param(name, "g_XYZ")
    with pytest.raises(ValueError, match="one per unit"):
        eng.set_unit_param(name, "g_AMPA", np.ones(3))
    with pytest.raises(ValueError, match="one per unit"):
        eng.set_unit_param(name, "g_AMPA", np.full(eng.n_units, np.nan))


def test_state_roundtrip_continues_bitwise(brain):
    ref = Engine(brain, dt=0.1, seed=9, threads=1)
    ref.run(40.0)
    ref.set_unit_param(brain.populations[0].name, "g_GABA_A",
                       np.linspace(0.8, 1.2, ref.n_units)
                       * ref.unit_param(brain.populations[0].name, "g_GABA_A"))
    state = ref.get_state()
    ref.run(60.0)
    other = Engine(brain, dt=0.1, seed=9, threads=1)
    other.set_state(state)
    assert other.t_ms == pytest.approx(40.0)
    other.run(60.0)
    np.testing.assert_array_equal(other.V, ref.V)
    for x, y in zip(_spikes_between(ref, 40.0, 100.0), other.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    # the restored hyperparameters are live: changing them again works
    other.set_unit_param(brain.populations[0].name, "g_GABA_A", np.ones(other.n_units))


def test_state_saved_before_adaptation_resumes_bitwise(brain):
    """A state written before lif_cond had its adaptation trace (syn with 4 rows, no
    g_adapt/E_adapt/tau_adapt among the parameter values) continues as the run it came
    from: the brain has no adaptation, so the missing trace row is zero."""
    ref = Engine(brain, dt=0.1, seed=9, threads=1)
    ref.run(40.0)
    state = ref.get_state()
    ref.run(30.0)
    old = {k: v for k, v in state.items() if not k.endswith(("_adapt", "/g_adapt"))}
    old["syn"] = state["syn"][:4]
    assert len(old) < len(state)  # the parameter values did carry the new names
    other = Engine(brain, dt=0.1, seed=9, threads=1)
    other.set_state(old)
    other.run(30.0)
    np.testing.assert_array_equal(other.V, ref.V)
    np.testing.assert_array_equal(other.syn[:4], ref.syn[:4])


def test_state_of_another_network_is_refused(brain):
    small = Engine(build(**demo_inputs(), options=BuildOptions(neurons=2500)).to_network(),
                   dt=0.1, seed=1, threads=1)
    eng = Engine(brain, dt=0.1, seed=1, threads=1)
    with pytest.raises(ValueError, match="expected"):
        eng.set_state(small.get_state())


def test_several_pieces_of_a_population_on_one_process(brain):
    """Ownership ranges that split every population into pieces (as a METIS plan does on
    each rank) give the same synapses and spikes as one piece per population."""
    from dtb.engine.decomposition import Ownership
    sizes = [p.size for p in brain.populations]
    own = Ownership([np.array([0, n // 3, n // 2, n]) for n in sizes],
                    [np.zeros(3, np.int64) for _ in sizes], 1)
    a = Engine(brain, dt=0.1, seed=4, threads=2)
    b = Engine(brain, dt=0.1, seed=4, threads=2, ownership=own)
    assert len(b.layout) == 3 * len(sizes)
    for pid in range(len(brain.projections)):
        for x, y in zip(a.synapses(pid), b.synapses(pid), strict=True):
            np.testing.assert_array_equal(x, y)
    a.run(60.0)
    b.run(60.0)
    for x, y in zip(a.spikes(), b.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(b.local_index(b.gids), np.arange(b.n_local))


def test_gpu_backend_through_the_engine_emulated(brain):
    """backend="gpu-emulated" runs the CUDA kernels' code on the host through the same
    engine loop: same spikes as the CPU backend, hyperparameters and state included."""
    pytest.importorskip("dtb.engine.gpu.hostemu")
    cpu = Engine(brain, dt=0.1, seed=6, threads=1)
    emu = Engine(brain, dt=0.1, seed=6, threads=1, backend="gpu-emulated")
    seen = []
    for e in (cpu, emu):
        e.run(20.0)
        e.set_unit_param(brain.populations[0].name, "g_AMPA",
                         1.3 * e.unit_param(brain.populations[0].name, "g_AMPA"))
        e.run(20.0, on_window=lambda st, ix: seen.append(len(st)))
    for x, y in zip(cpu.spikes(), emu.spikes(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert len(cpu.spikes()[0]) > 50
    emu.sync_host()
    np.testing.assert_array_equal(cpu.V, emu.V)
    back = Engine(brain, dt=0.1, seed=6, threads=1)
    back.set_state(emu.get_state())  # a GPU state continues on the CPU
    back.run(10.0)
    cpu.run(10.0)
    np.testing.assert_array_equal(back.V, cpu.V)


def test_unknown_backend_is_refused(brain):
    with pytest.raises(ValueError, match="backend"):
        Engine(brain, backend="tpu")


def test_gpu_backend_without_a_gpu_is_a_clear_error_before_building(
        brain, tmp_path, monkeypatch, capsys):
    """Without CuPy or a device, --backend gpu is refused before anything is built or
    written (exit 2, the reason named); the Engine raises GpuUnavailable."""
    import dtb.engine.gpu.device as device
    from dtb.cli.main import main

    why = "no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver)"
    monkeypatch.setattr(device, "gpu_unavailable", lambda: why)
    built = []
    import dtb.engine.simulation as simulation

    monkeypatch.setattr(simulation, "build_partition", lambda *a, **k: built.append(1))
    out = tmp_path / "run"
    assert main(["simulate", "--model", "microcircuit", "--scale", "0.01", "--t", "1",
                 "--backend", "gpu", "--out", str(out)]) == 2
    assert f"--backend gpu: {why}" in capsys.readouterr().err
    assert not out.exists() and not built
    with pytest.raises(device.GpuUnavailable, match="backend gpu: no CUDA device"):
        Engine(brain, backend="gpu")
    assert not built


def test_manifest_names_the_backend_and_its_device_figures(brain, tmp_path):
    """The manifest says which backend ran; a GPU backend adds its device, memory per
    synapse (checked against the arrays allocated) and launch
    figures; the CPU backend has none."""
    import json

    from dtb.io.rundir import write_run

    emu = Engine(brain, dt=0.1, seed=2, threads=1, backend="gpu-emulated")
    emu.run(5.0)
    m = write_run(tmp_path / "emu", emu)
    assert m["backend"] == "gpu-emulated"
    g = m["gpu"]
    assert g["device"] == "host emulation" and g["emulated"] is True
    assert g["memory"]["synapses"] == emu.n_synapses > 0
    be = emu.backend  # the estimate is what was allocated: target, weight and delay arrays
    assert g["memory"]["synapse_bytes"] == be.tgt.nbytes + be.wq.nbytes + be.dly.nbytes
    assert g["memory"]["index_bytes"] == be.indptr.nbytes
    assert g["launch_calls"] > 0 and g["spike_exchange"] == "host"
    assert g["cuda_aware_mpi"] is None  # one rank: nothing to ask the MPI
    assert json.loads((tmp_path / "emu" / "manifest.json").read_text())["gpu"] == g
    cpu = Engine(brain, dt=0.1, seed=2, threads=1)
    cpu.run(5.0)
    m = write_run(tmp_path / "cpu", cpu)
    assert m["backend"] == "cpu" and m["gpu"] is None
