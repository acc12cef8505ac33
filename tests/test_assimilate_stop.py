"""Issue 14, item 9: a stop request is honoured within seconds wherever ``dtb assimilate``
is, not only at TR boundaries.

Before, SIGTERM was looked at only at TR boundaries: a long TR (here 3 s of model time for
each of 2 members, about 6 s on one core; a large brain's take minutes) ran to its end, and
a run stuck inside one went on for ever.  Now the forecast and the hemodynamic integration
poll the request: once the grace period (``DTB_STOP_GRACE_S``, 0.5 s here instead of the
default 5 s, so that the test does not have to run long TRs) has passed without a TR
boundary, the TR is given up and the run stops at its newest checkpoint (exit 75,
"interrupted", resumable), or, with none yet, fails (exit 128 + 15).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from interrupt import DTB, clean_env, run_dtb, signal_after_checkpoint

from dtb.cli.exits import EXIT_TEMPFAIL
from dtb.io import checkpoint as ck

pytestmark = pytest.mark.slow
TR_S = 3.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A 3,000-neuron default brain and 12 TRs of quiet BOLD (SD 0.001) for it."""
    d = tmp_path_factory.mktemp("stop")
    brain = d / "brain.h5"
    p = run_dtb("build", "--demo", "--neurons", "3000", "-o", str(brain))
    assert p.returncode == 0, p.stderr
    from dtb.brain.spec import BrainSpec

    labels = [int(x) for x in BrainSpec.load(brain).region_labels]
    x = 0.001 * np.random.default_rng(0).standard_normal((12, len(labels)))
    bold = d / "bold.csv"
    bold.write_text(",".join(map(str, labels)) + "\n"
                    + "".join(",".join(f"{v:.6g}" for v in row) + "\n" for row in x))
    return brain, bold


def _cmd(inputs: tuple[Path, Path], out: Path) -> list[str]:
    brain, bold = inputs
    return [DTB, "assimilate", "--brain", str(brain), "--bold", str(bold), "--tr", str(TR_S),
            "--members", "2", "--dt", "0.5", "--threads", "1", "--spinup", "0.3",
            "--checkpoint-every", "1", "--quiet", "--out", str(out)]


def _env() -> dict[str, str]:
    return {**clean_env(), "DTB_STOP_GRACE_S": "0.5"}


def test_sigterm_inside_a_tr_stops_within_the_grace_period(inputs, tmp_path):
    """Signalled just after the checkpoint of TR 1, within TR 1 (about 6 s long): exit 75
    about 0.5 s later, at the checkpoint of TR 1 (no checkpoint of TR 2 was waited for)."""
    out = tmp_path / "run"
    t = {}
    cmd = _cmd(inputs, out)
    real_send = subprocess.Popen.send_signal

    def send(self, sig):
        t["sent"] = time.monotonic()
        real_send(self, sig)

    subprocess.Popen.send_signal = send
    try:
        p = signal_after_checkpoint(cmd, out, signal.SIGTERM, 1, _env())
    finally:
        subprocess.Popen.send_signal = real_send
    waited = time.monotonic() - t["sent"]
    assert p.returncode == EXIT_TEMPFAIL, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted"
    assert m["interrupted"]["tr"] == 1 and m["interrupted"]["reason"] == "SIGTERM"
    assert [d.name for d in ck.candidates(out)] == [ck.step_dir(out, 1).name]
    assert "TR in progress was given up" in p.stderr and f"--resume {out}" in p.stderr
    assert waited < 2 * TR_S, waited          # not the end of the TR (about 2 TR_S away)


def test_sigterm_before_any_checkpoint_fails_cleanly(inputs, tmp_path):
    """Signalled while the baselines are measured (no checkpoint yet): nothing to resume,
    so the run fails (exit 143, status failed, said why), promptly."""
    out = tmp_path / "run"
    p = subprocess.Popen(_cmd(inputs, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env())
    try:
        t0 = time.monotonic()
        while not (out / "manifest.json").exists():
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() - t0 < 120
            time.sleep(0.02)
        time.sleep(0.5)
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        waited = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "before the first checkpoint" in err
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    assert waited < 2 * TR_S, waited
