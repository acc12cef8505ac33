"""Checkpoint and restart of ``dtb simulate`` (issue 8, item 1): a run stopped by SIGTERM or
SIGUSR1 exits 75 with status "interrupted", and ``dtb simulate --resume RUN`` finishes it
with outputs identical to those of the same command run without interruption (the
independent expectation here): spikes.h5 (read with h5py), every series.zarr array, series.h5,
the manifest's counts and rates.  On 1 and 2 ranks (mpiexec); with a damaged newest
checkpoint; and the errors of --resume.

The subprocess runs are real: the test waits until a checkpoint directory appears, then
signals the process (or mpiexec, which forwards SIGTERM and SIGUSR1 to every rank), so the
signal arrives at an arbitrary point of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from interrupt import DTB, MPIEXEC, signal_after_checkpoint
from interrupt import clean_env as _env
from interrupt import run_dtb as dtb

from dtb.cli.exits import EXIT_TEMPFAIL
from dtb.cli.main import main
from dtb.engine.simulation import Engine
from dtb.io import checkpoint as ck

needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")

# the brain: unit rates in 0.1 ms bins (chunks of 3196 rows x 82 units, so several are
# flushed during the run) feeding BOLD (hemodynamic models stepped at every flush), the HDF5
# mirror
BRAIN_ARGS = ["--t", "1500", "--record", "bold:200", "--record", "units:0.1",
              "--record", "hdf5", "--threads", "1", "--seed", "3"]
BRAIN_AFTER = 4000  # interrupt the brain after its checkpoint of step 4000 (400 ms)
# the microcircuit: 640 membrane potentials sampled every 1 ms, in chunks of 819 rows x 320
# columns, so that whole chunks are written (by both ranks, on 2) before the interruption
MC_ARGS = ["--model", "microcircuit", "--scale", "0.02", "--t", "2000", "--threads", "1",
           "--record", "samples:n=80,every=10,variables=V", "--record", "chunks:320",
           "--record", "hdf5"]
MC_AFTER = 10_000  # interrupt the microcircuit after its checkpoint of step 10000 (1000 ms)
EVERY = ["--checkpoint-every", "100"]


def interrupted(out: Path, args: list[str], sig: int = signal.SIGTERM, ranks: int = 1,
                after: int = 0) -> subprocess.CompletedProcess[str]:
    """Start ``dtb simulate ARGS --out OUT --checkpoint-every 100``, wait for a checkpoint
    of a step >= ``after`` (at least the first), send ``sig`` (to mpiexec under MPI) and wait
    for the end."""
    cmd = [DTB, "simulate", *args, *EVERY, "--out", str(out)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return signal_after_checkpoint(cmd, out, sig, after, _env())


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def assert_interrupted(run: Path, p: subprocess.CompletedProcess[str], sig: int) -> int:
    """The run stopped on request: exit 75, status interrupted at a checkpoint it names, no
    final outputs.  Returns the checkpoint's step."""
    assert p.returncode == EXIT_TEMPFAIL, p.stderr[-3000:]
    m = manifest(run)
    assert m["status"] == "interrupted", m["status"]
    info = m["interrupted"]
    assert info["reason"] == signal.Signals(sig).name
    assert (run / ck.CHECKPOINTS / info["checkpoint"] / ck.COMPLETE).is_file()
    assert ck.candidates(run)[0].name == info["checkpoint"]  # the newest
    assert not (run / "spikes.h5").exists()
    assert f"--resume {run}" in p.stderr
    return int(info["step"])


def assert_same_outputs(ref: Path, run: Path) -> None:
    """``run`` (resumed) is complete and its outputs equal the uninterrupted ``ref``'s."""
    import zarr

    ma, mb = manifest(ref), manifest(run)
    assert ma["status"] == mb["status"] == "complete"
    assert mb["counts"] == ma["counts"] and mb["rates_hz"] == ma["rates_hz"]
    assert mb["ranks"] == ma["ranks"]
    assert mb["counts"]["spikes"] > 1000
    with h5py.File(ref / "spikes.h5") as a, h5py.File(run / "spikes.h5") as b:
        assert sorted(a["spikes"]) == sorted(b["spikes"])
        for pop in a["spikes"]:
            for ds in ("timestamps", "node_ids"):
                x, y = a["spikes"][pop][ds][()], b["spikes"][pop][ds][()]
                assert x.dtype == y.dtype and np.array_equal(x, y), f"{pop}/{ds} differ"
    za = zarr.open_group(str(ref / "series.zarr"), mode="r")
    zb = zarr.open_group(str(run / "series.zarr"), mode="r")
    names = sorted(n for n, _ in za.arrays())
    assert names == sorted(n for n, _ in zb.arrays())
    for n in names:
        x, y = za[n][...], zb[n][...]
        nan = x.dtype.kind == "f"
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=nan), f"series {n}"
        if nan and x.ndim == 2:
            assert not np.isnan(y).all(), f"series {n} is empty"
    if (ref / "series.h5").exists():
        with h5py.File(ref / "series.h5") as a, h5py.File(run / "series.h5") as b:
            for n in a:
                x, y = a[n][()], b[n][()]
                assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"series.h5 {n}"
    # the outputs the manifest lists are there with their checksums
    files = [f for f in mb["outputs"]["series"]["files"] if "/c/" in f["path"]]
    assert len(files) == len([f for f in ma["outputs"]["series"]["files"] if "/c/" in f["path"]])
    for f in files:
        assert (run / f["path"]).is_file(), f["path"]
    assert mb["restarts"] and not (run / ck.CHECKPOINTS).exists()


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- the runs the tests share ---------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def brain(work: Path) -> Path:
    p = dtb("build", "--demo", "--neurons", "4000", "-o", str(work / "b.h5"))
    assert p.returncode == 0, p.stderr
    return work / "b.h5"


@pytest.fixture(scope="module")
def brain_ref(work: Path, brain: Path) -> Path:
    p = dtb("simulate", "--brain", str(brain), *BRAIN_ARGS, "--out", str(work / "bref"))
    assert p.returncode == 0, p.stderr
    return work / "bref"


@pytest.fixture(scope="module")
def brain_stopped(work: Path, brain: Path) -> Path:
    """An interrupted brain run (SIGTERM); tests resume copies of it."""
    run = work / "bstop"
    p = interrupted(run, ["--brain", str(brain), *BRAIN_ARGS], after=BRAIN_AFTER)
    assert_interrupted(run, p, signal.SIGTERM)
    return run


@pytest.fixture(scope="module")
def mc_ref(work: Path) -> Path:
    p = dtb("simulate", *MC_ARGS, "--out", str(work / "mref"))
    assert p.returncode == 0, p.stderr
    return work / "mref"


# --- resuming gives the uninterrupted result --------------------------------------------------

def test_sigterm_brain_with_bold_resumes_to_the_uninterrupted_result(brain_stopped, brain_ref,
                                                                     tmp_path):
    run = copy(brain_stopped, tmp_path / "run")
    step = manifest(run)["interrupted"]["step"]
    assert BRAIN_AFTER <= step < 15000
    # the hemodynamic models had been stepped (so their state is in the checkpoint)
    _, state, _ = ck.load_latest(run)
    assert any(k.startswith("recording/bold/") and k.endswith("/x") for k in state)
    # partial outputs kept: the Zarr store and the HDF5 part (rebuilt on resume)
    assert (run / "series.zarr").is_dir()
    p = dtb("simulate", "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert_same_outputs(brain_ref, run)
    m = manifest(run)
    assert [r["step"] for r in m["restarts"]] == [step]
    assert "interrupted" not in m and m["config"]["simulation"]["t"] == 1500.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_microcircuit_resumes_to_the_uninterrupted_result(sig, mc_ref, tmp_path):
    run = tmp_path / "run"
    p = interrupted(run, MC_ARGS, sig, after=MC_AFTER)
    step = assert_interrupted(run, p, sig)
    assert step >= MC_AFTER
    # the first time chunk of both column chunks was written before the stop, and stays
    assert sorted(str(q.relative_to(run / "series.zarr"))
                  for q in (run / "series.zarr" / "V" / "c" / "0").iterdir()) == [
        "V/c/0/0", "V/c/0/1"]
    p = dtb("simulate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(run)
    assert_same_outputs(mc_ref, run)
    assert manifest(run)["restarts"][0]["step"] == step


def test_resumed_run_can_be_interrupted_again(brain_stopped, brain_ref, tmp_path):
    """Stopped, resumed, stopped again (SIGUSR1), resumed: still the same result."""
    run = copy(brain_stopped, tmp_path / "run")
    cmd = [DTB, "simulate", "--resume", str(run), "--checkpoint-every", "100"]
    first = ck.candidates(run)[0].name
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        while [d.name for d in ck.candidates(run)][:1] == [first]:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_TEMPFAIL, err[-3000:]
    assert manifest(run)["interrupted"]["reason"] == "SIGUSR1"
    p = dtb("simulate", "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert_same_outputs(brain_ref, run)
    assert len(manifest(run)["restarts"]) == 2


def test_killed_run_resumes_from_its_last_periodic_checkpoint(mc_ref, tmp_path):
    """SIGKILL (no warning): the manifest stays "running", chunks and the HDF5 part may have
    been written after the last checkpoint; resuming from it still gives the same result."""
    run = tmp_path / "run"
    p = interrupted(run, MC_ARGS, signal.SIGKILL, after=MC_AFTER)
    assert p.returncode == -signal.SIGKILL
    assert manifest(run)["status"] == "running"
    newest = ck.candidates(run)[0].name
    p = dtb("simulate", "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert manifest(run)["restarts"][0]["checkpoint"] == newest
    assert_same_outputs(mc_ref, run)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(brain_stopped, brain_ref,
                                                              tmp_path):
    run = copy(brain_stopped, tmp_path / "run")
    newest, previous = ck.candidates(run)[:2]
    f = newest / "rank-00000.h5"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a torn write found later
    f.write_bytes(bytes(data))
    p = dtb("simulate", "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert f"checkpoint {newest} skipped" in p.stderr and "checksum differs" in p.stderr
    assert manifest(run)["restarts"][0]["checkpoint"] == previous.name
    assert_same_outputs(brain_ref, run)


def test_sigterm_in_process_checkpoints_exits_75_and_restores_the_handler(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The signal arriving inside a chunk (main() in this process): no --checkpoint-every,
    still a checkpoint at the next chunk end, exit 75, outputs kept, the old handler back."""
    args = ["--model", "microcircuit", "--scale", "0.02", "--t", "60", "--threads", "1",
            "--quiet"]
    ref = tmp_path / "ref"
    assert main(["simulate", *args, "--out", str(ref)]) == 0
    calls = []
    real_run = Engine.run

    def run(self, t_ms, on_window=None):
        calls.append(t_ms)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        real_run(self, t_ms, on_window)

    monkeypatch.setattr(Engine, "run", run)
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    usr1 = signal.getsignal(signal.SIGUSR1)
    assert main(["simulate", *args, "--out", str(out)]) == EXIT_TEMPFAIL
    assert signal.getsignal(signal.SIGTERM) is handler
    assert signal.getsignal(signal.SIGUSR1) is usr1
    m = manifest(out)
    assert m["status"] == "interrupted" and m["error"] is None
    step = m["interrupted"]["step"]
    chunk = round(calls[0] / 0.1)  # steps per chunk: the signal came during the third
    assert 1 <= chunk < 200 and step == 3 * chunk
    assert [d.name for d in ck.candidates(out)] == [f"step-{step:012d}"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "manifest.json",
                                                     "series.zarr"]
    assert "SIGTERM" in capsys.readouterr().err
    monkeypatch.setattr(Engine, "run", real_run)
    assert main(["simulate", "--resume", str(out), "--quiet"]) == 0
    assert_same_outputs(ref, out)


# --- 2 ranks: the acceptance test ---------------------------------------------------

@pytest.mark.mpi
@needs_mpi
def test_two_ranks_sigterm_to_mpiexec_resume_gives_identical_spikes(mc_ref, tmp_path):
    ref2 = tmp_path / "ref2"
    p = dtb("simulate", *MC_ARGS, "--out", str(ref2), ranks=2)
    assert p.returncode == 0, p.stderr
    assert manifest(ref2)["ranks"] == 2
    run = tmp_path / "run"
    p = interrupted(run, MC_ARGS, signal.SIGTERM, ranks=2, after=MC_AFTER)
    assert_interrupted(run, p, signal.SIGTERM)
    # every rank wrote its part of the same step
    newest = ck.candidates(run)[0]
    assert sorted(f.name for f in newest.glob("rank-*.h5")) == ["rank-00000.h5",
                                                                 "rank-00001.h5"]
    # another rank count is refused, naming both
    wrong = dtb("simulate", "--resume", str(run))
    assert wrong.returncode == 2, wrong.stderr
    assert "written by 2 rank(s), this job has 1" in wrong.stderr
    assert manifest(run)["status"] == "interrupted"
    p = dtb("simulate", "--resume", str(run), ranks=2)
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref2, run)
    with h5py.File(mc_ref / "spikes.h5") as a, h5py.File(run / "spikes.h5") as b:
        for pop in a["spikes"]:  # and the 1-rank run's spikes (rank-count invariance)
            np.testing.assert_array_equal(a["spikes"][pop]["timestamps"][()],
                                          b["spikes"][pop]["timestamps"][()])


# --- errors ----------------------------------------------------------------------------------

def _error(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("dtb: error: ") and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_resume_of_a_complete_run_is_refused(brain_ref):
    _error(dtb("simulate", "--resume", str(brain_ref)), str(brain_ref), "complete already")
    assert manifest(brain_ref)["status"] == "complete"


def test_resume_without_a_checkpoint_is_refused(brain_stopped, tmp_path):
    run = copy(brain_stopped, tmp_path / "run")
    shutil.rmtree(run / ck.CHECKPOINTS)
    _error(dtb("simulate", "--resume", str(run)), "no checkpoint", str(run / ck.CHECKPOINTS))
    # only damaged ones
    run2 = copy(brain_stopped, tmp_path / "run2")
    for d in ck.candidates(run2):
        (d / "rank-00000.h5").write_bytes(b"torn")
    _error(dtb("simulate", "--resume", str(run2)), "no usable checkpoint")
    _error(dtb("simulate", "--resume", str(tmp_path / "nothing")), "no such run directory")


def test_resume_with_a_changed_or_missing_source_file_is_refused(brain_stopped, brain,
                                                                 tmp_path):
    run = copy(brain_stopped, tmp_path / "run")
    m = manifest(run)
    assert m["source"]["path"] == str(brain.resolve())
    # the run's brain file, moved to a copy the test may change
    mine = tmp_path / "mine.h5"
    shutil.copy(brain, mine)
    m["source"]["path"] = str(mine)
    (run / "manifest.json").write_text(json.dumps(m))
    with open(mine, "ab") as f:
        f.write(b"\0")
    _error(dtb("simulate", "--resume", str(run)), str(mine), "has changed",
           m["source"]["sha256"])
    mine.unlink()
    _error(dtb("simulate", "--resume", str(run)), str(mine), "missing")
    assert manifest(run)["status"] == "interrupted"


def test_resume_refuses_settings_that_would_change_the_run(brain_stopped):
    _error(dtb("simulate", "--resume", str(brain_stopped), "--t", "3000"), "--t cannot be given")
    _error(dtb("simulate", "--resume", str(brain_stopped), "--model", "microcircuit"),
           "--model cannot be given")
    assert manifest(brain_stopped)["status"] == "interrupted"


def test_checkpoint_interval_must_be_whole_steps(tmp_path):
    _error(dtb("simulate", "--model", "microcircuit", "--scale", "0.02", "--t", "10",
               "--checkpoint-every", "0.25", "--out", str(tmp_path / "r")),
           "--checkpoint-every", "0.25", "dt = 0.1")
    assert not (tmp_path / "r").exists()  # refused before the run directory is made
    _error(dtb("simulate", "--model", "microcircuit", "--checkpoint-every", "-1"),
           "--checkpoint-every")
