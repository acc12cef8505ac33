"""Shared by the resume tests: run dtb (under mpiexec on several ranks), start a dtb
command, signal it once it has written a checkpoint, and collect how it ended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dtb.io import checkpoint as ck

BIN = Path(sys.executable).parent
DTB = str(BIN / "dtb")
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")


def clean_env() -> dict[str, str]:
    """This environment without the variables that would make a child think it is already
    a rank of this process's MPI job."""
    env = dict(os.environ)
    for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        env.pop(k, None)
    return env


def run_dtb(*args: str, ranks: int = 1) -> subprocess.CompletedProcess[str]:
    """``dtb ARGS`` (under ``mpiexec -n RANKS`` when ranks > 1), output captured."""
    cmd = [DTB, *args]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=clean_env())


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
