"""Shared by the resume tests: start a dtb command, signal it once it has written a
checkpoint, and collect how it ended."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from dtb import checkpoint as ck


def signal_after_checkpoint(cmd: list[str], out: Path, sig: int, after: int,
                            env: dict[str, str], wait_s: float = 300.0
                            ) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (which writes its run directory at ``out``); as soon as a checkpoint of a
    step >= ``after`` is complete, send it ``sig`` (to mpiexec under MPI, which passes it
    on to every rank) and wait for the end."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    t0 = time.monotonic()
    try:
        while not [d for d in (out / ck.CHECKPOINTS).glob("step-*")
                   if int(d.name[5:]) >= after]:
            assert p.poll() is None, f"ended before its checkpoint:\n{p.stderr.read()}"
            assert time.monotonic() - t0 < wait_s, f"no checkpoint within {wait_s:g} s"
            time.sleep(0.02)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=wait_s)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
