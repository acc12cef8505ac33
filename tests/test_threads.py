"""Default threads on shared machines (issue 15, defect 4; issue 16): idle OpenMP threads
sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose a waiting policy.  Spinning threads
made runs 3-65 times slower with another busy process on the cores; the measurement is
benchmarks/shared_machine.py, not a test (timings do not belong in tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from interrupt import clean_env

PROBE = ("import os, dtb, numba, numpy as np\n"
         "@numba.njit(parallel=True)\n"
         "def f(a):\n"
         "    for i in numba.prange(a.size):\n"
         "        a[i] += 1\n"
         "f(np.zeros(64))\n"
         "print(os.environ.get('OMP_WAIT_POLICY'), numba.threading_layer())\n")


def _policy(**env: str) -> list[str]:
    base = {k: v for k, v in clean_env().items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       env={**base, **env}, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_idle_threads_sleep_by_default():
    """Regression: the default left libgomp spinning."""
    policy, layer = _policy()
    assert policy == "PASSIVE"
    assert layer in ("omp", "tbb", "workqueue")


@pytest.mark.parametrize("env,want", [({"OMP_WAIT_POLICY": "active"}, "active"),
                                      ({"GOMP_SPINCOUNT": "10000"}, "None"),
                                      ({"KMP_BLOCKTIME": "0"}, "None")])
def test_a_users_choice_stands(env: dict[str, str], want: str):
    assert _policy(**env)[0] == want


def test_default_threads_follow_the_idle_cores(monkeypatch: pytest.MonkeyPatch):
    """Sizing from the load: as many threads as cores are idle, at least 1, at most
    NUMBA_NUM_THREADS; every core when the load cannot be read."""
    import numba

    from dtb.engine import threads
    top = numba.config.NUMBA_NUM_THREADS
    for idle, want in ((0.0, 1), (0.4, 1), (top - 0.4, top), (top + 3.0, top), (None, top)):
        monkeypatch.setattr(threads, "idle_cores", lambda sample_s=0.1, v=idle: v)
        assert threads.default_threads() == want
    monkeypatch.setattr(threads, "idle_cores", lambda sample_s=0.1: 0.0)
    assert threads.choose_threads(3) == 3  # --threads wins
    monkeypatch.setenv("PMI_SIZE", "2")
    assert threads.choose_threads(None) is None  # MPI: the engine shares the node's cores


def test_idle_cores_reads_this_machine():
    from dtb.engine import threads
    idle = threads.idle_cores(0.05)
    import os

    assert idle is None or 0.0 <= idle <= len(os.sched_getaffinity(0)) + 1e-9
