"""Recorders: the record section and --record flags, what each recorder writes (checked
against the engine run on its own), chunking, failures, progress."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml

import dtb
from dtb.cli.main import main
from dtb.cli.progress import Progress
from dtb.engine.recording import Recording
from dtb.engine.simulation import Engine
from dtb.errors import ConfigError, OutputError
from dtb.io.rundir import write_atomic
from dtb.io.sonata import sample_ids
from dtb.model.record_spec import RecordSpec, SampleSpec

TINY = textwrap.dedent("""\
    name: tiny
    simulation: {dt: 0.1, t: 60.0, seed: 3}
    populations:
      - name: E
        size: 40
        model: iaf_psc_exp
        type: E
        inputs:
          - {type: poisson, rate: 8.0, weight: 87.8, in_degree: 2000, receptor: ex}
      - name: C
        size: 12
        model: lif_cond
        type: E
        inputs:
          - {type: ou, mean: 0.8, sigma: 0.3, tau: 10.0}
    projections:
      - {source: E, target: C, rule: {kind: fixed_indegree, k: 10}, weight: 0.02, delay: 1.5}
      - {source: C, target: E, rule: {kind: fixed_indegree, k: 5}, weight: 50.0, delay: 0.8}
    """)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def _config(tmp_path: Path, record: dict) -> Path:
    d = yaml.safe_load(TINY)
    d["record"] = record
    p = tmp_path / "rec.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


# --- configuration -------------------------------------------------------------------------

def test_record_section_parsed(tmp_path: Path):
    p = _config(tmp_path, {"spikes": {"sample": 5}, "rates": 2.0, "units": False,
                           "samples": {"neurons": {"E": [3, 1], "C": 2}, "every": 4,
                                       "variables": ["V", "syn"]}, "hdf5": True})
    _, sim = dtb.load_config(p)
    r = sim.record
    assert (r.spikes, r.spike_sample, r.rates_ms, r.units_ms, r.hdf5) == ("sample", 5, 2.0,
                                                                         None, True)
    assert r.samples == SampleSpec((("E", (1, 3)), ("C", 2)), 4, ("V", "syn"))
    # to_dict parses back to the same spec
    again = _config(tmp_path, r.to_dict())
    assert dtb.load_config(again)[1].record == r


def test_bad_record_section_names_every_problem(tmp_path: Path):
    p = _config(tmp_path, {"spikes": "some", "rates": -1, "samples": {"neurons": {"X": 2},
                                                                      "every": 0},
                           "bold": {"tr_ms": 100}, "colour": "red",
                           "spike_buffer_mb": 0})
    with pytest.raises(ConfigError) as e:
        dtb.load_config(p)
    msg = str(e.value)
    for words in ("record.spikes: 'some' -- expected all, none or {sample: N}",
                  "record.rates: -1 -- expected a bin width in ms > 0",
                  "record.samples.every: 0 -- expected a number of steps > 0",
                  "record.colour: 'red' -- expected one of the keys",
                  "record.spike_buffer_mb: 0 -- expected a buffer size in MB > 0"):
        assert words in msg, msg
    p = _config(tmp_path, {"rates": 0.25, "samples": {"neurons": {"X": 2, "E": [40]}},
                           "bold": 100})
    with pytest.raises(ConfigError) as e:
        dtb.load_config(p)
    msg = str(e.value)
    assert "record.rates: 0.25 -- expected a multiple of the time step dt = 0.1 ms" in msg
    assert "record.samples.neurons.X: 2 -- expected a population of the network" in msg
    assert "record.samples.neurons.E: [40] -- expected node ids < 40" in msg
    assert "record.bold: 100.0 -- expected a network with units" in msg


@pytest.mark.parametrize("flag, words", [
    ("rates:x", "--record.rates: 'x' -- expected a bin width"),
    ("spikes:sample=0", "--record.spikes.sample: 0"),
    ("samples:n=2,every=-3", "--record.samples.every: -3"),
    ("nope:1", "--record.nope"),
    ("samples:Q=1", "--record.samples.neurons.Q"),
    ("spike_buffer:-2", "--record.spike_buffer_mb: -2 -- expected a buffer size in MB > 0"),
])
def test_bad_record_flags_exit_2_before_building(flag, words, tiny: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch):
    def must_not_build(*a, **k):
        raise AssertionError("built before the flags were checked")

    monkeypatch.setattr(Engine, "__init__", must_not_build)
    out = tmp_path / "never"
    assert main(["simulate", str(tiny), "--record", flag, "--out", str(out)]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


# --- what the recorders write ----------------------------------------------------------------

def _reference(net, t_ms: float, every: int, idx: np.ndarray):
    """The engine alone, advanced every `every` steps, V and syn read by hand."""
    eng = Engine(net, dt=0.1, seed=3)
    V, S = [], []
    for _ in range(int(round(t_ms / 0.1)) // every):
        eng.run(every * 0.1)
        V.append(eng.V[idx].copy())
        S.append(eng.syn[:, idx].copy())
    return eng, np.array(V), np.array(S)


def test_recorders_match_the_engine(tiny: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--out", str(out), "--quiet", "--record", "rates:2",
                 "--record", "samples:E=0+7+39,C=5,every=3,variables=V+syn",
                 "--record", "hdf5"]) == 0
    net, _ = dtb.load_config(tiny)
    idx = np.array([0, 7, 39, 40 + 5])
    eng, V, S = _reference(net, 60.0, 3, idx)
    m = json.loads((out / "manifest.json").read_text())
    ds = xr.open_zarr(out / "series.zarr", consolidated=False)
    # samples: rows at steps 3, 6, ... (t = 0.3, 0.6, ... ms)
    assert list(ds.neuron.values) == ["E:0", "E:7", "E:39", "C:5"]
    np.testing.assert_allclose(ds.time_sample.values[:3], [0.3, 0.6, 0.9])
    np.testing.assert_allclose(ds.V.values, V.astype(np.float32))
    for ch in range(4):
        np.testing.assert_allclose(ds[f"syn{ch}"].values, S[:, ch].astype(np.float32))
    # spikes.h5 and the population rates against the engine's own spikes
    t, ids = eng.spikes()
    with h5py.File(out / "spikes.h5") as f:
        got_t = np.concatenate([f["spikes/E/timestamps"][()], f["spikes/C/timestamps"][()]])
        got_i = np.concatenate([f["spikes/E/node_ids"][()], f["spikes/C/node_ids"][()] + 40])
    order = np.lexsort((ids, t))
    o2 = np.lexsort((got_i, got_t))
    np.testing.assert_array_equal(got_t[o2], t[order])
    np.testing.assert_array_equal(got_i[o2], ids[order])
    edges = np.arange(0, 60.0 + 1e-9, 2.0)
    for p, (lo, n) in {"E": (0, 40), "C": (40, 12)}.items():
        sel = (ids >= lo) & (ids < lo + n)
        k = np.ceil(t[sel] / 2.0 - 1e-9).astype(int) - 1  # bins (t, t + 2]
        expect = np.bincount(k, minlength=len(edges) - 1) / n / 2e-3
        np.testing.assert_allclose(ds.population_rate.sel(population=p).values, expect,
                                   rtol=1e-6)
    assert m["outputs"]["series"]["arrays"]["population_rate"]["bin_ms"] == 2.0
    # series.h5 holds the same arrays, with dimension scales
    with h5py.File(out / "series.h5") as f:
        np.testing.assert_array_equal(f["V"][()], ds.V.values)
        assert [d.label or list(d.keys())[0] for d in f["V"].dims] == ["time_sample", "neuron"]


def test_spike_sample_and_chunking(tiny: Path, tmp_path: Path):
    """A sample of 5 neurons per population records exactly their spikes, and the chunks the
    recorder runs in (every 7 steps here) change nothing."""
    net, _ = dtb.load_config(tiny)
    ref = Engine(net, dt=0.1, seed=3)
    ref.run(60.0)
    want = ref.population_spikes()
    eng = Engine(net, dt=0.1, seed=3)
    eng.keep_spikes = False
    spec = RecordSpec(spikes="sample", spike_sample=5, rates_ms=None, units_ms=None,
                      samples=SampleSpec((("E", 1),), 7, ("V",)))
    rec = Recording(eng, tmp_path, spec, 60.0)
    assert rec.chunk_steps() == 7
    rec.run()
    res = rec.finish(write_atomic)
    assert res["pop_counts"] == {k: len(v[0]) for k, v in want.items()}  # every spike counted
    with h5py.File(tmp_path / "spikes.h5") as f:
        for pop, (t, ids) in want.items():
            keep = np.isin(ids, sample_ids(net.population(pop).size, 5))
            order = np.lexsort((t[keep], ids[keep]))
            np.testing.assert_array_equal(f[f"spikes/{pop}/timestamps"][()], t[keep][order])
            np.testing.assert_array_equal(f[f"spikes/{pop}/node_ids"][()], ids[keep][order])
    assert sample_ids(40, 5).tolist() == [0, 8, 16, 24, 32]


def test_series_disk_full_is_an_output_error(tiny: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch):
    from zarr.storage import LocalStore

    async def full(self, key, value, *a, **k):
        if "/c/" in key:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await real(self, key, value, *a, **k)

    real = LocalStore.set
    monkeypatch.setattr(LocalStore, "set", full)
    out = tmp_path / "run"
    assert main(["simulate", str(tiny), "--out", str(out), "--t", "20"]) == 1
    err = capsys.readouterr().err
    assert "series.zarr" in err and os.strerror(errno.ENOSPC) in err
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and "OutputError" in m["error"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_killed_run_is_never_complete(tiny: Path, tmp_path: Path):
    """SIGKILL mid-run (no handler can run): the manifest still says running."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", "import sys; from dtb.cli.main import main; "
                          "sys.exit(main())", "simulate", str(tiny), "--t", "100000", "--out",
                          str(out)], stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if line.startswith("dtb: simulate"):
                break
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=60)
        p.stderr.close()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"


def test_read_only_output_is_a_clear_error(tmp_path: Path):
    eng = Engine(dtb.load_config(_config(tmp_path, {}))[0], dt=0.1, seed=3)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: read-only directories are writable")
        with pytest.raises(OutputError, match=str(ro)):
            Recording(eng, ro, RecordSpec(), 10.0)
        with pytest.raises(OutputError, match="spikes"):
            write_atomic(ro / "spikes.h5", b"x", "spikes")
    finally:
        ro.chmod(0o700)


# --- progress ----------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal():
    s = _Tty()
    p = Progress(0.1, s, redraw_s=0.0)
    for k in range(1, 11):
        p.update(k * 100, 1000)
    text = s.getvalue()
    assert text.count("\r") == 10 and text.endswith("\n")
    last = text.split("\r")[-1]
    assert "100.0%" in last and "100.0/100.0 ms" in last and "RTF" in last and "ETA" in last
    assert "#" * 30 in last


def test_progress_log_lines_elsewhere(monkeypatch: pytest.MonkeyPatch):
    s = io.StringIO()
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    p = Progress(0.1, s, interval_s=20.0)
    for k in range(1, 101):
        now[0] = 7.0 * k  # 7 s of wall time per 1 ms of model time
        p.update(k * 10, 1000)
    lines = s.getvalue().splitlines()
    # a line at each tenth, and never more than 20 s of wall time (3 updates) without one
    walls = [float(ln.split("model time, ")[1].split(" s,")[0]) for ln in lines]
    assert walls == sorted(walls) and max(np.diff([0.0, *walls])) <= 21.0
    assert len(lines) < 100  # not one per update
    assert lines[0] == ("dtb: simulate   3%  3.0/100.0 ms model time, 21.0 s, "
                        "real-time factor 7e+03, ETA 11:19 min")
    assert lines[-1].startswith("dtb: simulate 100%  100.0/100.0 ms model time, 700.0 s")
    tenths = [ln.split()[2] for ln in lines]
    assert all(f"{10 * j}%" in tenths for j in range(1, 11))


def test_progress_after_a_resume_counts_only_new_steps(monkeypatch: pytest.MonkeyPatch):
    """A run resumed at 60 % advances 100 steps (10 ms) in 10 s: real-time factor 1000
    (not 10 s / 70 ms), and 30 s left for the remaining 300 steps."""
    s = io.StringIO()
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    p = Progress(0.1, s, interval_s=1e9)
    p.begin(600)
    now[0] = 110.0
    p.update(700, 1000)
    line = s.getvalue().splitlines()[-1]
    assert "70%" in line and "70.0/100.0 ms" in line
    assert "real-time factor 1e+03" in line and "ETA 30.0 s" in line


def test_samples_on_the_gpu_backend_read_the_device_state(tiny: Path, tmp_path: Path):
    """With the state on the device (here the host emulation of the GPU backend), sampled
    V and synaptic traces are the CPU engine's, not the copy left at construction."""
    pytest.importorskip("dtb.engine.gpu.hostemu")
    net, _ = dtb.load_config(tiny)
    spec = RecordSpec(spikes="none", rates_ms=None, units_ms=None,
                      samples=SampleSpec((("E", (0, 7, 39)), ("C", (5,))), 3, ("V", "syn")))
    got = {}
    for backend in ("cpu", "gpu-emulated"):
        eng = Engine(net, dt=0.1, seed=3, backend=backend)
        rec = Recording(eng, tmp_path / backend, spec, 30.0)
        rec.run()
        rec.finish(write_atomic)
        got[backend] = xr.open_zarr(tmp_path / backend / "series.zarr", consolidated=False)
    names = ["V", "syn0", "syn1", "syn2", "syn3"]
    assert np.ptp(got["cpu"]["V"].values) > 0  # the state moved
    assert any(np.ptp(got["cpu"][n].values) > 0 for n in names[1:])
    for name in names:
        np.testing.assert_array_equal(got["cpu"][name].values, got["gpu-emulated"][name].values)
