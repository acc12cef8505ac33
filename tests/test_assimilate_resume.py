"""Checkpoint and restart of ``dtb assimilate`` (issue 8, item 1, "the same for
assimilation"): a run stopped by SIGTERM or SIGUSR1 writes a checkpoint at the next TR
boundary, is marked "interrupted" and exits 75; ``dtb assimilate --resume RUN`` finishes it
with outputs identical to those of the same command run without interruption (the
independent expectation): every array of assimilation.zarr and every number of
metrics.json but the timings.  On one process and under ``mpiexec -n 2`` (two member
communicators of one rank); and the errors of --resume.

The interrupted runs are real subprocesses: the test waits until a checkpoint directory
appears, then signals the process (or mpiexec, which forwards the signal to every rank), so
the signal arrives at an arbitrary point of a TR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from interrupt import DTB, MPIEXEC, signal_after_checkpoint
from interrupt import clean_env as _env
from interrupt import run_dtb as dtb

from dtb.cli.exits import EXIT_TEMPFAIL
from dtb.cli.main import main
from dtb.io import checkpoint as ck

needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")

# a small twin experiment: 2 members of 3000 neurons, 12 TRs of 0.8 s (9 assimilated, 3 a
# free forecast), a 3-TR free run; about 15 s on one core
ARGS = ["--demo", "--members", "2", "--trs", "12", "--spinup", "0.3", "--free-run-trs", "3",
        "--neurons", "3000", "--threads", "1", "--quiet"]
EVERY = ["--checkpoint-every", "1600"]   # ms: every 2 TRs
T = 12
FREE = 3                                 # free-run TRs: checkpoint steps T + 1 .. T + FREE


def interrupted(out: Path, sig: int = signal.SIGTERM, ranks: int = 1,
                after: int = 2) -> subprocess.CompletedProcess[str]:
    """Start ``dtb assimilate ARGS --checkpoint-every 1600 --out OUT``, wait for a
    checkpoint of a TR >= ``after``, send ``sig`` (to mpiexec under MPI), wait for the end."""
    cmd = [DTB, "assimilate", *ARGS, *EVERY, "--out", str(out)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return signal_after_checkpoint(cmd, out, sig, after, _env())


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def assert_interrupted(run: Path, p: subprocess.CompletedProcess[str], sig: int) -> int:
    """Exit 75, status interrupted at the newest checkpoint, which it names, at a TR inside
    the run (a step T + f: after f TRs of the free run); no final outputs.  Returns that
    TR."""
    assert p.returncode == EXIT_TEMPFAIL, p.stderr[-3000:]
    m = manifest(run)
    assert m["status"] == "interrupted", m["status"]
    info = m["interrupted"]
    assert info["reason"] == signal.Signals(sig).name
    assert ck.candidates(run)[0].name == info["checkpoint"]
    assert 2 <= info["tr"] <= T + FREE
    for name in ("assimilation.zarr", "metrics.json", "figures"):
        assert not (run / name).exists(), name
    assert f"--resume {run}" in p.stderr
    return int(info["tr"])


def _without_timings(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "timings"}


def assert_same_outputs(ref: Path, run: Path) -> None:
    """``run`` (resumed) is complete and equals the uninterrupted ``ref``: every Zarr array
    bitwise, metrics.json but its timings exactly."""
    import zarr

    ma, mb = manifest(ref), manifest(run)
    assert ma["status"] == mb["status"] == "complete"
    assert mb["restarts"] and not (run / ck.CHECKPOINTS).exists()
    za = zarr.open_group(str(ref / "assimilation.zarr"), mode="r")
    zb = zarr.open_group(str(run / "assimilation.zarr"), mode="r")
    names = sorted(n for n, _ in za.arrays())
    assert names == sorted(n for n, _ in zb.arrays())
    assert {"theta", "theta_forecast", "bold_forecast", "rates", "bold_free"} <= set(names)
    for n in names:
        x, y = za[n][...], zb[n][...]
        assert x.dtype == y.dtype and x.shape == y.shape, n
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{n} differs"
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert _without_timings(a) == _without_timings(b)
    assert (run / "observed_bold.csv").read_bytes() == (ref / "observed_bold.csv").read_bytes()


# --- the runs the tests share ---------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("assim_resume")


@pytest.fixture(scope="module")
def ref(work: Path) -> Path:
    """The uninterrupted run (no checkpoints at all)."""
    p = dtb("assimilate", *ARGS, "--out", str(work / "ref"))
    assert p.returncode == 0, p.stderr
    return work / "ref"


@pytest.fixture(scope="module")
def stopped(work: Path) -> Path:
    """A run interrupted by SIGTERM; the error tests use copies of it."""
    run = work / "stopped"
    assert_interrupted(run, interrupted(run), signal.SIGTERM)
    return run


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- resuming gives the uninterrupted result --------------------------------------------------

def test_sigterm_resume_equals_the_uninterrupted_run(ref: Path, stopped: Path,
                                                     tmp_path: Path) -> None:
    run = copy(stopped, tmp_path / "run")
    tr = manifest(run)["interrupted"]["tr"]
    p = dtb("assimilate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref, run)
    assert manifest(run)["restarts"][0]["tr"] == tr


def test_sigusr1_then_sigterm_again_after_resume_equals_the_uninterrupted_run(
        ref: Path, tmp_path: Path) -> None:
    """SIGUSR1 stops the first part; the resumed part is stopped again (SIGTERM, at a later
    checkpoint) and resumed once more."""
    run = tmp_path / "run"
    tr1 = assert_interrupted(run, interrupted(run, signal.SIGUSR1), signal.SIGUSR1)
    if tr1 < T - 3:
        cmd = [DTB, "assimilate", "--resume", str(run), "--quiet"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
        try:
            while not [d for d in (run / ck.CHECKPOINTS).glob("step-*")
                       if int(d.name[5:]) > tr1]:
                assert p.poll() is None, p.stderr.read() if p.stderr else ""
                time.sleep(0.02)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        tr2 = assert_interrupted(run, subprocess.CompletedProcess(cmd, p.returncode, out, err),
                                 signal.SIGTERM)
        assert tr2 > tr1
    p = dtb("assimilate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref, run)


def test_resume_from_the_boundary_before_the_first_tr(ref: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """In process: SIGTERM during the twin truth's simulation is honoured at the first
    boundary, TR 0 (no TR assimilated yet); the handler is restored; the resumed run equals
    the uninterrupted one."""
    from dtb.assimilation import loop

    real = loop._run_members
    calls = []

    def run_members(members, t_ms, parts):
        calls.append(t_ms)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(members, t_ms, parts)

    monkeypatch.setattr(loop, "_run_members", run_members)
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["assimilate", *ARGS, "--out", str(run)]) == EXIT_TEMPFAIL
    assert signal.getsignal(signal.SIGTERM) is handler
    m = manifest(run)
    assert m["status"] == "interrupted" and m["interrupted"]["tr"] == 0
    assert [d.name for d in ck.candidates(run)] == ["step-000000000000"]
    assert "SIGTERM" in capsys.readouterr().err
    monkeypatch.setattr(loop, "_run_members", real)
    assert main(["assimilate", "--resume", str(run), "--quiet"]) == 0
    assert_same_outputs(ref, run)


def test_sigterm_during_the_free_run_resume_equals_the_uninterrupted_run(
        ref: Path, tmp_path: Path) -> None:
    """The posterior-mean free run is checkpointed too (steps T + f): SIGTERM after its
    periodic checkpoint at T + 2 stops the run at the next free TR, T + 3, exit 75;
    resuming from there, and from T + 2 (the newest damaged: one free TR to run again),
    gives the uninterrupted run."""
    run = tmp_path / "run"
    p = interrupted(run, after=T + 1)
    assert assert_interrupted(run, p, signal.SIGTERM) == T + FREE
    assert f"TR {FREE} of the posterior-mean free run" in p.stderr
    assert [d.name for d in ck.candidates(run)] == [ck.step_dir(run, T + FREE).name,
                                                    ck.step_dir(run, T + 2).name]
    torn = copy(run, tmp_path / "torn")
    (ck.candidates(torn)[0] / "rank-00000.h5").write_bytes(b"torn")
    for r, step in ((run, T + FREE), (torn, T + 2)):
        p = dtb("assimilate", "--resume", str(r), "--quiet")
        assert p.returncode == 0, p.stderr
        restart = manifest(r)["restarts"][0]
        assert (restart["tr"], restart["checkpoint"]) == (step, ck.step_dir(r, step).name)
        assert_same_outputs(ref, r)


def test_sigterm_at_the_start_of_the_free_run_stops_after_its_first_tr(
        ref: Path, stopped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, resuming the stopped run: SIGTERM as the free run starts is honoured
    after its first TR (step T + 1; it used to be ignored: the run completed); the resumed
    run runs the other free TRs (a periodic checkpoint at T + 2) and equals the
    uninterrupted one."""
    from dtb.cli import assimilate as command  # where the command looks free_run up

    real = command.free_run

    def free_run(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    run = copy(stopped, tmp_path / "run")
    monkeypatch.setattr(command, "free_run", free_run)
    assert main(["assimilate", "--resume", str(run), "--quiet"]) == EXIT_TEMPFAIL
    m = manifest(run)
    assert m["status"] == "interrupted" and m["interrupted"]["tr"] == T + 1
    assert ck.candidates(run)[0].name == ck.step_dir(run, T + 1).name
    monkeypatch.setattr(command, "free_run", real)
    assert main(["assimilate", "--resume", str(run), "--quiet"]) == 0
    assert manifest(run)["restarts"][-1]["tr"] == T + 1
    assert_same_outputs(ref, run)


@pytest.mark.mpi
@needs_mpi
def test_two_member_communicators_sigterm_resume_equals_the_uninterrupted_run(
        ref: Path, tmp_path: Path) -> None:
    """mpiexec -n 2 (2 members, one rank each): every rank writes its member's state; the
    resumed run equals the one-process uninterrupted run (the layouts are bitwise equal,
    tests/test_assimilate_cli.py); another rank count is refused."""
    run = tmp_path / "run"
    assert_interrupted(run, interrupted(run, ranks=2), signal.SIGTERM)
    newest = ck.candidates(run)[0]
    assert sorted(f.name for f in newest.glob("rank-*.h5")) == ["rank-00000.h5",
                                                                 "rank-00001.h5"]
    wrong = dtb("assimilate", "--resume", str(run))
    _error(wrong, "written by 2 rank(s), this job has 1")
    assert manifest(run)["status"] == "interrupted"
    p = dtb("assimilate", "--resume", str(run), "--quiet", ranks=2)
    assert p.returncode == 0, p.stderr
    assert manifest(run)["ranks"] == 2
    assert_same_outputs(ref, run)


def _edit_manifest(run: Path, **fields) -> dict:
    m = manifest(run)
    m.update(fields)
    (run / "manifest.json").write_text(json.dumps(m, indent=2))
    return m


def test_resume_does_not_read_the_stored_command_line(ref: Path, stopped: Path,
                                                      tmp_path: Path) -> None:
    """The run is rebuilt from the manifest's resolved ``options`` (Options.from_record),
    never by parsing the command it recorded: with that command garbled (an option value
    and a flag argparse refuses, which used to end the resume with a usage error) it
    resumes, from another directory, to the uninterrupted run."""
    run = copy(stopped, tmp_path / "run")
    garbled = ["dtb", "assimilate", "--members", "banana", "--no-such-flag", "--demo=1"]
    _edit_manifest(run, command=garbled)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = subprocess.run([DTB, "assimilate", "--resume", str(run), "--quiet"], cwd=elsewhere,
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref, run)
    assert manifest(run)["command"] == garbled


def test_a_manifest_of_the_earlier_dtb_resumes(ref: Path, stopped: Path,
                                               tmp_path: Path) -> None:
    """A run started by the dtb before the record (its ``options`` without out, overwrite
    and quiet, the fields --resume sets itself) resumes through the same record."""
    from dtb.io.runfiles import config_digest

    run = copy(stopped, tmp_path / "run")
    old = {k: v for k, v in manifest(run)["options"].items()
           if k not in ("out", "overwrite", "quiet")}
    _edit_manifest(run, options=old, config_sha256=config_digest(old))
    p = dtb("assimilate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref, run)


def test_the_manifest_records_every_option_resolved(stopped: Path) -> None:
    """What --resume reads: every field of the options (the TR resolved), their digest."""
    import dataclasses

    from dtb.assimilation.options import Options
    from dtb.io.runfiles import config_digest

    m = manifest(stopped)
    assert set(m["options"]) == {f.name for f in dataclasses.fields(Options)} - {"extra"}
    assert m["options"]["tr_s"] == 0.8 and m["options"]["members"] == 2
    assert m["config_sha256"] == config_digest(m["options"])


# --- errors ----------------------------------------------------------------------------------

def _error(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("dtb: error: "), p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def _main_error(capsys: pytest.CaptureFixture[str], args: list[str], *words: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("dtb: error: "), err
    for w in words:
        assert w in err, (w, err)


def test_resume_of_a_complete_run_is_refused(ref: Path, capsys) -> None:
    _main_error(capsys, ["assimilate", "--resume", str(ref)], str(ref), "complete")
    assert manifest(ref)["status"] == "complete"


def test_resume_without_a_usable_checkpoint_is_refused(stopped: Path, tmp_path: Path,
                                                       capsys) -> None:
    run = copy(stopped, tmp_path / "run")
    shutil.rmtree(run / ck.CHECKPOINTS)
    _main_error(capsys, ["assimilate", "--resume", str(run)], "no checkpoint")
    run2 = copy(stopped, tmp_path / "run2")
    for d in ck.candidates(run2):
        (d / "rank-00000.h5").write_bytes(b"torn")
    _main_error(capsys, ["assimilate", "--resume", str(run2)], "no usable checkpoint")
    assert manifest(run2)["status"] == "interrupted"
    _main_error(capsys, ["assimilate", "--resume", str(tmp_path / "nothing")],
                "no readable manifest.json")


def test_damaged_newest_checkpoint_falls_back_to_the_previous(ref: Path, stopped: Path,
                                                              tmp_path: Path) -> None:
    run = copy(stopped, tmp_path / "run")
    cands = ck.candidates(run)
    if len(cands) < 2:
        pytest.fail(f"expected two checkpoints kept, found {[d.name for d in cands]}")
    (cands[0] / "rank-00000.h5").write_bytes(b"torn")
    p = dtb("assimilate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr
    assert "skipped" in p.stderr
    assert manifest(run)["restarts"][0]["checkpoint"] == cands[1].name
    assert_same_outputs(ref, run)


def test_resume_with_changed_or_missing_input_files_is_refused(stopped: Path,
                                                               tmp_path: Path,
                                                               capsys) -> None:
    """A run of --brain/--bold files (the demo's own, as a user would reuse them): a
    changed or missing file is refused, naming it and the recorded checksum."""
    from dtb.io.rundir import sha256_file

    run = copy(stopped, tmp_path / "run")
    m = manifest(run)
    brain, bold = tmp_path / "brain.h5", tmp_path / "bold.csv"
    shutil.copy(run / "brain.h5", brain)
    bold.write_text("1,2\n0.1,0.2\n")
    m["source"] = {"kind": "brain", "brain": str(brain), "brain_sha256": sha256_file(brain),
                   "bold": str(bold), "bold_sha256": sha256_file(bold)}
    (run / "manifest.json").write_text(json.dumps(m))
    with open(bold, "a") as f:
        f.write("0.3,0.4\n")
    _main_error(capsys, ["assimilate", "--resume", str(run)], str(bold), "has changed",
                m["source"]["bold_sha256"])
    brain.unlink()
    _main_error(capsys, ["assimilate", "--resume", str(run)], str(brain), "missing")
    assert manifest(run)["status"] == "interrupted"


def test_resume_refuses_options_that_would_change_the_run(stopped: Path, capsys) -> None:
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--members", "4"],
                "--members cannot be given")
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--seed", "7"],
                "--seed cannot be given")
    _main_error(capsys, ["assimilate", "--checkpoint-every", "0", "--demo"],
                "--checkpoint-every")
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--preprocess", "zscore"],
                "--preprocess cannot be given")
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--out", "elsewhere"],
                "--out cannot be given")
    # the flags it may give anew are checked as in a new run
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--checkpoint-every", "0"],
                "--checkpoint-every: 0.0 -- expected a model time in ms > 0")
    _main_error(capsys, ["assimilate", "--resume", str(stopped), "--threads", "0"],
                "--threads: 0 -- expected 1 to")
    assert manifest(stopped)["status"] == "interrupted"


def test_resume_of_a_manifest_without_its_options_is_refused(stopped: Path, tmp_path: Path,
                                                             capsys) -> None:
    """Without ``options`` (or with ones another dtb wrote) there is nothing to rebuild the
    run from: NotResumable naming the manifest and what it lacks, exit 2."""
    from dtb.io.runfiles import config_digest

    run = copy(stopped, tmp_path / "run")
    m = manifest(run)
    _edit_manifest(run, options=None, config_sha256=None)
    _main_error(capsys, ["assimilate", "--resume", str(run)],
                f"{run / 'manifest.json'}: no \"options\"")
    opts = {k: v for k, v in m["options"].items() if k != "members"}
    opts["ensemble"] = 2
    _edit_manifest(run, options=opts, config_sha256=config_digest(opts))
    _main_error(capsys, ["assimilate", "--resume", str(run)], str(run / "manifest.json"),
                "missing ['members']", "unknown ['ensemble']")
    assert manifest(run)["status"] == "interrupted"


@pytest.mark.mpi
@needs_mpi
def test_two_member_communicators_stopped_in_the_free_run_resume_equals_the_uninterrupted_run(
        ref: Path, tmp_path: Path) -> None:
    """mpiexec -n 2: a stop during the free run (each rank writes its member's free-run rows
    and hemodynamic state) resumes to the one-process uninterrupted run."""
    run = tmp_path / "run"
    assert assert_interrupted(run, interrupted(run, ranks=2, after=T + 1),
                              signal.SIGTERM) == T + FREE
    p = dtb("assimilate", "--resume", str(run), "--quiet", ranks=2)
    assert p.returncode == 0, p.stderr
    assert_same_outputs(ref, run)


def test_outputs_left_by_a_killed_completion_are_replaced(tmp_path):
    """Regression (found by tests/test_assimilate_random_signals.py, SIGKILL at 13.9 s): a
    run killed after writing assimilation.zarr but before its manifest said complete is
    resumed, and the resumed completion wrote its store with os.replace onto the leftover,
    non-empty directory: 'Directory not empty', exit 1.  The leftover is now replaced."""
    from dtb.assimilation.outputs import _replace_dir

    dest = tmp_path / "assimilation.zarr"
    (dest / "theta").mkdir(parents=True)
    (dest / "theta" / "c0").write_bytes(b"old")
    tmp = tmp_path / ".dtb-tmp-1-assimilation.zarr"
    (tmp / "theta").mkdir(parents=True)
    (tmp / "theta" / "c0").write_bytes(b"new")
    _replace_dir(tmp, dest)
    assert (dest / "theta" / "c0").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assimilation.zarr"]
    fresh = tmp_path / ".dtb-tmp-2-figures"
    fresh.mkdir()
    _replace_dir(fresh, tmp_path / "figures")
    assert (tmp_path / "figures").is_dir() and not fresh.exists()
