"""The ``dtb`` command line, run directories and ``dtb info``.

Most tests call ``dtb.cli.main.main(argv)`` in this process (fast: numba kernels compile once);
a few run the installed ``dtb`` command in a subprocess to see what a user sees.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import dtb
from dtb.cli.main import main
from dtb.engine.simulation import Engine
from dtb.errors import OutputError
from dtb.io.rundir import RunDirectory, write_run
from dtb.io.sonata import read_sorting

MANIFEST_KEYS = {
    "format", "format_version", "status", "distribution", "error", "dtb_version", "versions",
    "source", "config", "seed", "backend", "gpu", "ranks", "threads", "hostname", "platform",
    "command", "cwd", "config_sha256", "run_spec", "run_spec_sha256", "written",
    "start_time", "end_time", "counts", "timings", "rates_hz", "outputs",
}

TINY = textwrap.dedent("""\
    name: tiny
    simulation: {dt: 0.1, t: 50.0, seed: 3}
    populations:
      - name: E
        size: 40
        model: iaf_psc_exp
        type: E
        inputs:
          - {type: poisson, rate: 8.0, weight: 87.8, in_degree: 2000, receptor: ex}
      - name: I
        size: 10
        model: iaf_psc_exp
        type: I
        inputs:
          - {type: poisson, rate: 8.0, weight: 87.8, in_degree: 2000, receptor: ex}
    projections:
      - {source: E, target: I, rule: {kind: fixed_indegree, k: 10}, weight: 80.0, delay: 1.5}
      - {source: I, target: E, rule: {kind: fixed_indegree, k: 5}, weight: -300.0, delay: 0.8}
    """)


def _dtb_command() -> list[str]:
    script = Path(sys.executable).parent / "dtb"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from dtb.cli.main import main; sys.exit(main())"]


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("micro") / "run"
    rc = main(["simulate", "--model", "microcircuit", "--scale", "0.02", "--t", "100",
               "--seed", "11", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


# --- dtb info ---------------------------------------------------------------------------

def test_info_lists_cpu_backend():
    r = subprocess.run([*_dtb_command(), "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "backends" in r.stdout and "cpu" in r.stdout
    assert dtb.__version__ in r.stdout


def test_info_json(capsys: pytest.CaptureFixture[str]):
    mpi_imported = "mpi4py.MPI" in sys.modules
    assert main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["backends"][0] == "cpu"
    assert d["dtb"] == dtb.__version__
    assert d["numpy"] == np.__version__ and d["h5py"] == h5py.__version__
    assert d["numba_threads"] >= 1
    for k in ("numba", "mpi4py", "mpi_library", "cupy", "cuda_available", "gpus"):
        assert k in d
    assert ("gpu" in d["backends"]) == d["cuda_available"]
    if d["mpi4py"] is not None:
        assert d["mpi_library"] or d.get("mpi_error")
    if not mpi_imported:  # asking about MPI must not import (and initialize) it here
        assert "mpi4py.MPI" not in sys.modules


def test_info_gpu_backend_with_cupy(monkeypatch: pytest.MonkeyPatch):
    """The GPU path, with a stand-in for cupy (no GPU is needed to test the reporting)."""
    import types

    from dtb.info import info, render

    runtime = types.SimpleNamespace(
        runtimeGetVersion=lambda: 12040, getDeviceCount=lambda: 2,
        getDeviceProperties=lambda i: {"name": f"NVIDIA H100 #{i}".encode()})
    fake = types.ModuleType("cupy")
    fake.__version__ = "13.9.9"
    fake.cuda = types.SimpleNamespace(is_available=lambda: True, runtime=runtime)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    d = info()
    assert d["cupy"] == "13.9.9" and d["cuda_available"] is True
    assert d["gpus"] == ["NVIDIA H100 #0", "NVIDIA H100 #1"]
    assert d["backends"] == ["cpu", "gpu"]
    assert "2 GPUs: NVIDIA H100 #0, NVIDIA H100 #1" in render(d)

    fake.cuda = types.SimpleNamespace(is_available=lambda: False, runtime=runtime)
    d = info()
    assert d["cuda_available"] is False and d["backends"] == ["cpu"] and d["gpus"] == []


def test_info_without_cupy(monkeypatch: pytest.MonkeyPatch):
    from dtb.info import info, render

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    d = info()
    assert d["cupy"] is None and d["backends"] == ["cpu"]
    assert "not installed" in render(d)


# --- a complete run -----------------------------------------------------------------------

def test_microcircuit_manifest(micro_run: Path):
    m = _manifest(micro_run)
    assert set(m) == MANIFEST_KEYS
    assert m["status"] == "complete" and m["error"] is None
    assert m["format"] == "dtb-run"
    assert m["dtb_version"] == dtb.__version__
    assert set(m["versions"]) >= {"dtb", "python", "numpy", "numba", "h5py"}
    assert m["backend"] == "cpu" and m["ranks"] == 1 and m["threads"] >= 1
    assert m["seed"] == 11
    assert m["source"] == {"kind": "model", "model": "microcircuit", "scale": 0.02}
    # what --resume rebuilds the run from: resolved (the model's default dt), not the argv
    assert m["run_spec"] == {"version": 1, "dt": 0.1, "t": 100.0, "seed": 11, "record": [],
                             "backend": "cpu", "partition": "slices", "routing": "direct",
                             "ranks_per_node": None, "checkpoint_every": None,
                             "threads": None}
    assert m["config"]["simulation"] == {"dt": 0.1, "t": 100.0, "seed": 11}
    assert m["command"][:2] == ["dtb", "simulate"]
    assert m["start_time"].endswith("Z") and m["end_time"] >= m["start_time"]
    c, t = m["counts"], m["timings"]
    assert set(c) == {"neurons", "synapses", "bytes_per_synapse", "spikes"}
    assert c["neurons"] == sum(p["size"] for p in m["config"]["populations"])
    from dtb.models.microcircuit import expected_synapses

    assert c["synapses"] == expected_synapses(0.02)
    assert c["bytes_per_synapse"] > 0
    assert set(t) == {"build_s", "simulate_s", "compile_s", "model_time_ms", "rtf"}
    assert t["model_time_ms"] == pytest.approx(100.0)
    assert t["rtf"] == pytest.approx(t["simulate_s"] / 0.1)
    assert set(m["rates_hz"]) == {p["name"] for p in m["config"]["populations"]}
    assert all(r >= 0 for r in m["rates_hz"].values())
    assert c["spikes"] > 0


def test_microcircuit_spikes_are_sonata(micro_run: Path):
    m = _manifest(micro_run)
    out = m["outputs"]["spikes"]
    path = micro_run / out["path"]
    assert out["format"] == "sonata"
    assert out["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert out["bytes"] == path.stat().st_size
    sizes = {p["name"]: p["size"] for p in m["config"]["populations"]}
    t_end = m["timings"]["model_time_ms"]
    total = 0
    with h5py.File(path, "r") as f:
        assert f.attrs["magic"] == 0x0A7A and f.attrs["magic"].dtype == np.uint32
        assert list(f.attrs["version"]) == [0, 1] and f.attrs["version"].dtype == np.uint32
        assert set(f["spikes"]) == set(sizes)
        for name, g in f["spikes"].items():
            assert read_sorting(g.attrs) == "by_id"  # the SONATA enum (test_sonata.py)
            ts, ids = g["timestamps"], g["node_ids"]
            assert ts.dtype == np.float64 and ts.attrs["units"] == "ms"
            assert ids.dtype == np.uint64
            t, n = ts[()], ids[()]
            assert len(t) == len(n) == out["populations"][name]
            if len(t):
                # sorted by (node id, time)
                assert np.all((np.diff(n.astype(np.int64)) > 0)
                              | ((np.diff(n.astype(np.int64)) == 0) & (np.diff(t) > 0)))
                assert t.min() > 0 and t.max() <= t_end + 1e-9
                assert n.max() < sizes[name]
                rate = len(t) / (sizes[name] * t_end * 1e-3)
                assert m["rates_hz"][name] == pytest.approx(rate)
            total += len(t)
    assert total == m["counts"]["spikes"]


def test_manifest_config_reproduces_the_run(micro_run: Path, tmp_path: Path):
    m = _manifest(micro_run)
    p = tmp_path / "again.yaml"
    p.write_text(yaml.safe_dump(m["config"]))
    net, sim = dtb.load_config(p)
    assert net.to_dict() == {k: v for k, v in m["config"].items()
                             if k not in ("simulation", "record")}
    assert (sim.dt, sim.t, sim.seed) == (0.1, 100.0, 11)
    assert sim.record is not None and sim.record.to_dict() == m["config"]["record"]


# --- YAML config runs -----------------------------------------------------------------------

def test_yaml_run_with_overrides(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--seed", "5", "--t", "30", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert str(out) in cap.out and "rates (Hz)" in cap.out and "synapses" in cap.out
    progress = [ln for ln in cap.err.splitlines() if ln.startswith("dtb: simulate")]
    assert len(progress) == 10 and progress[-1].split()[2] == "100%"
    m = _manifest(out)
    assert m["status"] == "complete"
    assert m["config"]["simulation"] == {"dt": 0.1, "t": 30.0, "seed": 5}
    assert m["source"]["kind"] == "config"
    assert m["source"]["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert m["counts"]["neurons"] == 50 and m["counts"]["synapses"] == 10 * 10 + 40 * 5

    # the progress chunks do not change the result: same spikes as one Engine.run
    net, _ = dtb.load_config(tiny)
    eng = Engine(net, dt=0.1, seed=5)
    eng.run(30.0)
    with h5py.File(out / "spikes.h5", "r") as f:
        for name, (t, ids) in eng.population_spikes().items():
            order = np.lexsort((t, ids))  # spikes.h5 is sorted by (node id, time)
            np.testing.assert_array_equal(f[f"spikes/{name}/timestamps"][()], t[order])
            np.testing.assert_array_equal(f[f"spikes/{name}/node_ids"][()], ids[order])


def test_quiet_prints_only_the_run_directory(tiny: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "q"
    assert main(["simulate", str(tiny), "--t", "5", "--out", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == str(out)
    assert "dtb: simulate" not in cap.err


def test_default_out_dir(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", str(tiny), "--t", "5", "--quiet"]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("tiny-") and runs[0].name.endswith("Z")
    assert _manifest(runs[0])["status"] == "complete"


# --- errors -----------------------------------------------------------------------------

def test_bad_yaml_exit_2_names_field_and_makes_no_directory(tiny: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("in_degree: 2000, receptor: ex", "in_degre: 2000, receptor: ex"))
    out = tmp_path / "never"
    r = subprocess.run([*_dtb_command(), "simulate", str(bad), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("dtb: error: ")
    assert "populations[0].inputs[0].in_degre" in r.stderr and str(bad) in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--model", "microcircuit", "CONFIG"], "exactly one"),
    ([], "exactly one"),
    (["--model", "nope"], "--model"),
    (["--model", "microcircuit", "--scale", "2"], "--scale"),
    (["CONFIG", "--scale", "0.1"], "--scale"),
    (["CONFIG", "--t", "-5"], "--t"),
    (["CONFIG", "--t", "0.01"], "time step"),
    (["CONFIG", "--dt", "0"], "--dt"),
    (["CONFIG", "--dt", "2"], "delay"),  # the config's delays are shorter than this dt
    (["CONFIG", "--seed", "-1"], "--seed"),
    (["CONFIG", "--threads", "0"], "--threads"),
])
def test_bad_arguments_exit_2_before_anything(args, words, tiny: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Engine, "__init__", _must_not_build)
    out = tmp_path / "never"
    argv = ["simulate", *[str(tiny) if x == "CONFIG" else x for x in args], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dtb: error: ") and words in err
    assert not out.exists()


def _must_not_build(*args, **kwargs):
    raise AssertionError("the engine was built before the output directory was checked")


def test_existing_directory_needs_overwrite(tiny: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--t", "5", "--out", str(out), "--quiet"]) == 0
    first = _manifest(out)
    assert main(["simulate", str(tiny), "--t", "5", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "dtb: error:" in err and str(out) in err and "--overwrite" in err
    assert _manifest(out) == first  # untouched
    assert main(["simulate", str(tiny), "--t", "10", "--out", str(out), "--quiet",
                 "--overwrite"]) == 0
    m = _manifest(out)
    assert m["status"] == "complete" and m["config"]["simulation"]["t"] == 10.0


def test_overwrite_never_clears_a_foreign_directory(tiny: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["simulate", str(tiny), "--out", str(out), "--overwrite"]) == 2
    assert "not a dtb run directory" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def test_output_under_a_file_fails_before_building(tiny: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Engine, "__init__", _must_not_build)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for out in (blocker / "run", blocker):
        assert main(["simulate", str(tiny), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("dtb: error: ") and str(out) in err and "Traceback" not in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories; the path-under-a-file "
                           "test covers the unwritable case")
def test_read_only_directory_fails_before_building(tiny: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Engine, "__init__", _must_not_build)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        for out in (ro / "run", ro):
            assert main(["simulate", str(tiny), "--out", str(out)]) == 1
            err = capsys.readouterr().err
            assert str(out) in err
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("exc, code, name", [
    (ValueError("bad value in step 7"), 1, "ValueError"),
    (KeyboardInterrupt(), 130, "KeyboardInterrupt"),
    # SIGTERM (a batch system's time limit) checkpoints and exits 75: tests/test_resume.py
])
def test_failure_mid_simulation_marks_failed(exc, code, name, tiny: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch):
    calls = []
    real_run = Engine.run

    def run(self, t_ms, on_window=None):
        calls.append(t_ms)
        if len(calls) == 3:
            if isinstance(exc, BaseException):
                raise exc
            os.kill(os.getpid(), exc)
        real_run(self, t_ms, on_window)

    monkeypatch.setattr(Engine, "run", run)
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["simulate", str(tiny), "--out", str(out)]) == code
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    err = capsys.readouterr().err
    assert "Traceback" not in err and "status: failed" in err
    m = _manifest(out)
    assert m["status"] == "failed"
    assert name in m["error"]
    assert not (out / "spikes.h5").exists()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_unexpected_error_propagates_and_marks_failed(tiny: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    def run(self, t_ms, on_window=None):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(Engine, "run", run)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="kernel exploded"):
        main(["simulate", str(tiny), "--out", str(out)])
    m = _manifest(out)
    assert m["status"] == "failed" and "kernel exploded" in m["error"]


def test_disk_full_writing_spikes(tiny: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch):
    import dtb.io.fileio

    class Full:
        """A file on a full disk: opening works, writing fails with ENOSPC."""

        def __init__(self, path, mode):
            self._f = open(path, mode)

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def full_open(path, mode="r", *args, **kwargs):
        if "spikes.h5" in str(path) and "w" in mode:
            return Full(path, mode)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(dtb.io.fileio, "open", full_open, raising=False)
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--t", "5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "spikes.h5" in err and os.strerror(errno.ENOSPC) in err
    assert _manifest(out)["status"] == "failed"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_manifest_that_cannot_be_finalized_is_never_complete(tiny: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    real = RunDirectory._write_manifest

    def write(self):
        if self.manifest["status"] == "complete":
            raise OutputError(f"{self.path / 'manifest.json'}: disk full")
        real(self)

    monkeypatch.setattr(RunDirectory, "_write_manifest", write)
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--t", "5", "--out", str(out), "--quiet"]) == 1
    assert _manifest(out)["status"] == "failed"


# --- the Python API ---------------------------------------------------------------------

def test_write_run_from_an_engine(tiny: Path, tmp_path: Path):
    net, sim = dtb.load_config(tiny)
    eng = Engine(net, dt=sim.dt, seed=sim.seed)
    eng.run(20.0)
    m = write_run(tmp_path / "run", eng)
    assert m["status"] == "complete" and m["counts"]["spikes"] == len(eng.spikes()[0])
    assert m["config"]["simulation"] == {"dt": 0.1, "t": pytest.approx(20.0), "seed": 3}
    with pytest.raises(OutputError, match="not empty"):
        write_run(tmp_path / "run", eng)
