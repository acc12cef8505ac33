"""SIGTERM and SIGKILL at random points of ``dtb assimilate``, then ``--resume`` (issue 14,
item 9 and "what else to build").

Seeded random moments (the same on every run) over the whole small twin experiment of
tests/test_assimilate_resume.py (baselines, spin-up, TRs, analyses, the free run), with the
stop grace period at 0.3 s (``DTB_STOP_GRACE_S``) so that a SIGTERM inside a TR gives the TR
up.  Whatever the moment, the run ends in one of the states the resume design allows, and
every resumable one resumes to the uninterrupted run's outputs, bit for bit:

- exit 75, "interrupted" at its newest checkpoint -> resumes;
- SIGKILL: "running" -> resumes from its newest checkpoint, or, with none, is refused (2);
- SIGTERM before any checkpoint: exit 143, "failed" -> refused (2);
- or it had finished (its manifest complete; the signal may still have ended the exiting
  process).
Which of these a moment gives depends on the machine's speed: the outcomes are printed.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from interrupt import DTB, clean_env, run_dtb
from test_assimilate_resume import ARGS, EVERY, assert_same_outputs

from dtb.io import checkpoint as ck

pytestmark = pytest.mark.slow
CASES = 6
rng = np.random.default_rng(14)
MOMENTS = [((signal.SIGTERM, signal.SIGKILL)[i % 2], float(rng.uniform(2.0, 35.0)))
           for i in range(CASES)]
OUTCOMES: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("random_signals") / "ref"
    p = run_dtb("assimilate", *ARGS, "--out", str(out))
    assert p.returncode == 0, p.stderr
    # a consistent twin: its observations are not reported as far outside the model
    # (its 2-member analyses do leave the physiological box: about 24 values are put back)
    far = json.loads((out / "metrics.json").read_text())["filter"]["observations_vs_model"]
    assert not far["far_outside"], far
    yield out
    print("\nrandom-signal outcomes:", dict(OUTCOMES))


@pytest.mark.parametrize("sig,after_s", MOMENTS,
                         ids=[f"{s.name}@{t:.1f}s" for s, t in MOMENTS])
def test_signal_at_a_random_moment_then_resume(reference, tmp_path, sig, after_s):
    out = tmp_path / "run"
    env = {**clean_env(), "DTB_STOP_GRACE_S": "0.3"}
    p = subprocess.Popen([DTB, "assimilate", *ARGS, *EVERY, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(after_s)
        if p.poll() is None:
            p.send_signal(sig)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    rc = p.returncode
    status = (json.loads((out / "manifest.json").read_text())["status"]
              if (out / "manifest.json").exists() else None)
    if rc == 0 or status == "complete":      # done before the signal, or as it came (exiting)
        assert status == "complete" and rc in (0, -sig), (rc, status)
        OUTCOMES["finished before the signal took effect"] += 1
        return
    resumable = bool(ck.candidates(out)) and status in ("interrupted", "running")
    if sig == signal.SIGTERM:
        assert rc in (75, 128 + signal.SIGTERM), err[-3000:]
        assert (rc == 75) == (status == "interrupted") and (rc == 75) == resumable, (rc, status)
        assert rc == 75 or status == "failed"
    else:
        assert rc == -signal.SIGKILL and status in (None, "running"), (rc, status)
    r = run_dtb("assimilate", "--resume", str(out), "--quiet")
    if resumable:
        assert r.returncode == 0, r.stderr[-3000:]
        assert_same_outputs(reference, out)
        OUTCOMES[f"{sig.name}: resumed, identical"] += 1
    else:
        assert r.returncode == 2 and "--resume" in r.stderr, r.stderr[-3000:]
        OUTCOMES[f"{sig.name}: nothing to resume, refused"] += 1
