"""First-use compilation (issue 15, defect 6; issue 16): said once, timed, and kept out of
build_s, simulate_s, progress and real-time factors (recorded as compile_s)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numba
import pytest
from interrupt import DTB, clean_env

from dtb.cli.progress import Progress
from dtb.cli.warmup import NETWORK
from dtb.engine import compiling
from dtb.engine.simulation import Engine
from dtb.model.config import parse_network

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ei_lif_cond.yaml"
_fresh = iter(range(10**6))


def fresh_kernel():
    """A jitted function numba has never seen (compiled at its first call, not cached)."""
    k = next(_fresh)
    scope: dict = {}
    exec(f"def f_{k}(x):\n    s = 0.0\n    for i in range(100):\n        s += x * i + {k}\n"
         "    return s\n", scope)
    return numba.njit(scope[f"f_{k}"])


def test_compile_seconds_counts_compilation_and_says_it_once(monkeypatch, caplog):
    compiling.install()
    monkeypatch.setitem(compiling._state, "said", False)
    c0 = compiling.compile_seconds()
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="dtb"):
        fresh_kernel()(1.0)
        fresh_kernel()(2.0)
    wall = time.perf_counter() - t0
    spent = compiling.compile_seconds() - c0
    assert 0 < spent <= wall
    said = [r for r in caplog.records if "compiling kernels (first run only" in r.getMessage()]
    assert len(said) == 1
    f = fresh_kernel()
    f(1.0)
    c1 = compiling.compile_seconds()
    f(3.0)  # compiled already: nothing more
    assert compiling.compile_seconds() == c1


def test_compilation_during_a_run_is_not_simulation_time():
    """Regression: the first run's compilation was counted as simulation (the first
    dtb demo reported simulate 35.3 s for a run of about 6 s, real-time factor 271)."""
    eng = Engine(parse_network(NETWORK, 0.1), dt=0.1, seed=1)
    eng.run(1.0)
    todo = [fresh_kernel() for _ in range(3)]

    def compile_in_the_run(steps, idx):  # the spikes' callback compiles, inside run()
        while todo:
            todo.pop()(1.0)

    s0, k0, c0 = eng.simulate_s, eng.compile_s, compiling.compile_seconds()
    t0 = time.perf_counter()
    eng.run(5.0, on_window=compile_in_the_run)
    wall = time.perf_counter() - t0
    compiled = compiling.compile_seconds() - c0
    assert compiled > 0 and not todo
    assert eng.compile_s - k0 == pytest.approx(compiled, abs=1e-9)
    assert eng.simulate_s - s0 == pytest.approx(wall - compiled, abs=0.05)
    assert eng.simulate_s - s0 < wall - 0.9 * compiled


def test_progress_leaves_compilation_out(monkeypatch):
    spent = [0.0]
    monkeypatch.setattr("dtb.cli.progress.compile_seconds", lambda: spent[0])
    p = Progress(0.1, io.StringIO(), tty=False)
    p.begin(0)
    time.sleep(0.3)
    spent[0] = 0.25  # of the 0.3 s, 0.25 s were compiling
    t0 = time.perf_counter()
    _, _, wall, rtf, eta = p.figures(10, 20)
    elapsed = 0.3 + (time.perf_counter() - t0)
    assert 0.05 - 0.01 <= wall < elapsed - 0.25 + 0.05
    assert rtf == pytest.approx(wall / (10 * 0.1e-3)) and eta == pytest.approx(wall)


@pytest.mark.slow
def test_a_cold_cache_is_said_and_reported_apart(tmp_path: Path):
    """End to end with an empty kernel cache (NUMBA_CACHE_DIR): the run says it is
    compiling, the manifest has compile_s, and simulate_s leaves it out; the next run in
    the same cache compiles nothing."""
    env = {**clean_env(), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for name in ("cold", "warm"):
        out = tmp_path / name
        r = subprocess.run([DTB, "simulate", str(EXAMPLE), "--t", "20", "--threads", "1",
                            "--out", str(out)], capture_output=True, text=True, env=env,
                           timeout=900)
        assert r.returncode == 0, r.stderr
        runs.append((r, json.loads((out / "manifest.json").read_text())["timings"]))
    (cold, tc), (warm, tw) = runs
    assert cold.stderr.count("dtb: compiling kernels (first run only") == 1
    assert "compiling kernels" in cold.stdout  # the summary says how long, apart
    assert tc["compile_s"] > 1.0 and tc["simulate_s"] < tc["compile_s"] / 4
    assert "compiling" not in warm.stderr and tw["compile_s"] == 0.0
    assert os.listdir(tmp_path / "cache")


def test_warmup_reaches_the_kernels_that_runs_use(tmp_path: Path, capsys):
    """After dtb warmup, a microcircuit, a config and a brain run compile nothing."""
    from dtb.cli.main import main

    assert main(["warmup", "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("dtb warmup: kernels ready in ")
    c0 = compiling.compile_seconds()
    for args in (["--model", "microcircuit", "--scale", "0.01"], [str(EXAMPLE)]):
        assert main(["simulate", *args, "--t", "2", "--threads", "1", "-q", "--out",
                     str(tmp_path / args[-1].replace("/", "_"))]) == 0
    assert main(["demo", "--neurons", "3000", "--t", "2", "--threads", "1", "-q", "--out",
                 str(tmp_path / "demo")]) == 0
    # the distributed loop (what every rank of an MPI run compiles first), on another network
    from dtb.cli.warmup import _warm_exchange
    from dtb.engine.simulation import Engine
    from dtb.kernels.loop import run_windows_exchanged
    from dtb.models.microcircuit import microcircuit

    assert run_windows_exchanged.signatures
    _warm_exchange(Engine(microcircuit(0.01), threads=1))
    assert compiling.compile_seconds() == c0
