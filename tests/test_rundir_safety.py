"""Run directories never lose a user's data and are never read damaged (issue 14: items 1,
2, 3, 4, 5, 7, 10, 13), and the fault-injection cases of the README's "Reliability / Run
directories": damaged run directories, a full disk at each write, concurrent runs.

Most runs are the microcircuit at scale 0.02 for a few ms in this process (about a second
each once numba's cache is warm); the concurrency, MPI and tmpfs cases start processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interrupt import DTB, MPIEXEC, clean_env

from dtb.cli.main import main
from dtb.io import checkpoint as ck
from dtb.io.runfiles import DamagedOutput, RefusedOutput
from dtb.io.runlock import LOCK, RunDirectoryBusy, RunLock

MC = ["--model", "microcircuit", "--scale", "0.02", "--threads", "1", "--quiet"]


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` (relative path -> content)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    """A complete recorded run: manifest, spikes.h5 over spikes/rank-00000.h5, series.zarr."""
    out = tmp_path / "run"
    assert main(["simulate", *MC, "--t", "20", "--out", str(out)]) == 0
    return out


# --- 1. --overwrite replaces only what dtb wrote ------------------------------------------

@pytest.mark.parametrize("forged", [{}, {"format": "dtb-run", "format_version": 1},
                                    {"format": "dtb-run", "format_version": 99,
                                     "written": ["src", "manifest.json"]}])
def test_overwrite_never_removes_a_users_files(tmp_path: Path, forged: dict,
                                               capsys: pytest.CaptureFixture[str]):
    """The issue's reproduction: a directory holding a manifest.json (empty, forged with
    dtb's format, or of an unknown version) and a user's source tree."""
    x = tmp_path / "X"
    (x / "src").mkdir(parents=True)
    (x / "manifest.json").write_text(json.dumps(forged))
    (x / "src" / "app.js").write_text("c")
    (x / ".bashrc").write_text("alias ll='ls -l'")
    before = snapshot(x)
    assert main(["simulate", *MC, "--t", "5", "--out", str(x), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert str(x) in err and ("not a dtb run directory" in err or "did not write" in err)
    assert snapshot(x) == before and not (x / LOCK).exists()


def test_overwrite_of_a_run_with_user_files_removes_nothing(run: Path,
                                                            capsys: pytest.CaptureFixture[str]):
    (run / "notes.txt").write_text("my notes")
    (run / "report").mkdir()
    (run / "report" / "draft.md").write_text("my draft")
    before = snapshot(run)
    assert main(["simulate", *MC, "--t", "5", "--out", str(run), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "report/draft.md" in err and "did not write" in err
    assert snapshot(run) == before


def test_overwrite_replaces_a_dtb_run_and_its_report(run: Path):
    assert main(["report", str(run)]) == 0
    assert main(["simulate", *MC, "--t", "10", "--out", str(run), "--overwrite"]) == 0
    m = manifest(run)
    assert m["status"] == "complete" and m["config"]["simulation"]["t"] == 10.0
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "series.zarr",
                                                     "spikes", "spikes.h5"]
    assert "report" in m["written"] and "manifest.json" in m["written"]


def test_overwrite_refuses_to_remove_an_input_of_the_run(run: Path):
    from dtb.io.rundir import RunDirectory

    with pytest.raises(RefusedOutput, match="an input of this run"):
        RunDirectory(run, overwrite=True, inputs=[run / "spikes.h5"])
    assert (run / "spikes.h5").is_file() and not (run / LOCK).exists()


# --- 2. one dtb process at a time in a run directory --------------------------------------

def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding ``path``'s lock until killed."""
    code = ("import sys, time; from dtb.io.runlock import RunLock; "
            f"RunLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def _stop(p: subprocess.Popen[str]) -> None:
    p.kill()
    p.wait()
    if p.stdout is not None:
        p.stdout.close()


def test_a_second_run_into_a_locked_directory_fails_at_once_naming_the_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        t0 = time.monotonic()
        assert main(["simulate", *MC, "--t", "5", "--out", str(out)]) == 1
        assert time.monotonic() - t0 < 30
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and socket.gethostname() in err and "in use" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
        # --overwrite and --resume wait for it as well, and so does dtb report
        assert main(["simulate", *MC, "--t", "5", "--out", str(out), "--overwrite"]) == 1
        assert "in use" in capsys.readouterr().err
        assert main(["report", str(out)]) == 1
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        _stop(holder)
    # its holder is dead: the lock is stale and taken over
    assert main(["simulate", *MC, "--t", "5", "--out", str(out)]) == 0
    assert manifest(out)["status"] == "complete" and not (out / LOCK).exists()


def test_lock_of_an_earlier_start_of_a_requeued_slurm_job_is_taken_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / LOCK).write_text(json.dumps({
        "format": "dtb-lock", "pid": 12345, "host": "node-that-died", "started": None,
        "slurm_job_id": "777", "slurm_restart_count": 0, "command": ["dtb", "simulate"],
        "time": "2025-01-01T00:00:00Z"}))
    with pytest.raises(RunDirectoryBusy, match="node-that-died.*Slurm job 777"):
        RunLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with RunLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


@pytest.mark.slow
def test_concurrent_runs_into_one_directory_one_wins(tmp_path: Path):
    """Two processes started together into one --out (the issue: both exited 0 in 6 of 7
    trials, one's outputs replacing the other's): one completes, the other fails."""
    for trial in range(3):
        out = tmp_path / f"run{trial}"
        procs = [subprocess.Popen([DTB, "simulate", *MC, "--t", "30", "--seed", str(s),
                                   "--out", str(out)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=clean_env())
                 for s in (1, 2)]
        res = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
        codes = sorted(r[2] for r in res)
        assert codes == [0, 1], res
        loser = next(r for r in res if r[2] == 1)
        assert "in use" in loser[1] or "not empty" in loser[1], loser[1]
        winner = (1, 2)[[r[2] for r in res].index(0)]
        m = manifest(out)
        assert m["status"] == "complete" and m["seed"] == winner
        from dtb.io.runfiles import verify_outputs

        verify_outputs(out, m, checksums=True)  # the winner's outputs, whole


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="needs mpiexec")
def test_mpi_ranks_all_learn_that_the_directory_is_locked(tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        r = subprocess.run([MPIEXEC, "-n", "2", DTB, "simulate", *MC, "--t", "5", "--out",
                            str(out)], capture_output=True, text=True, timeout=300,
                           env=clean_env())
    finally:
        _stop(holder)
    assert r.returncode != 0
    assert f"pid {holder.pid}" in r.stderr and "in use" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK]


# --- 3. dtb build -o must not be an input ---------------------------------------------------

@pytest.mark.parametrize("how", ["same", "link", "dotted"])
def test_build_output_equal_to_an_input_is_refused(tmp_path: Path, how: str,
                                                   capsys: pytest.CaptureFixture[str]):
    from dtb.data import demo_inputs

    src = demo_inputs()
    for k in ("regions", "sc", "lengths"):
        shutil.copy(src[k], tmp_path / Path(src[k]).name)
    sc = tmp_path / "sc_weights.csv"
    before = sc.read_bytes()
    out = {"same": sc, "link": tmp_path / "link.csv",
           "dotted": tmp_path / "." / "sub" / ".." / "sc_weights.csv"}[how]
    (tmp_path / "sub").mkdir()
    if how == "link":
        out.symlink_to(sc)
    argv = ["build", "--regions", str(tmp_path / "regions.tsv"), "--sc", str(sc),
            "--lengths", str(tmp_path / "tract_lengths.csv"), "-o", str(out), "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--sc" in err and str(sc) in err
    assert sc.read_bytes() == before
    assert not list(tmp_path.glob(".dtb-tmp-*"))


# --- 4. dtb report never replaces a user's files; nothing removed before all checks pass ----

def test_report_keeps_user_files_unless_overwrite(run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    d = tmp_path / "figs"
    d.mkdir()
    (d / "raster.png").write_bytes(b"mine")
    (d / "notes.txt").write_text("keep me")
    assert main(["report", str(run), "--out", str(d)]) == 2
    err = capsys.readouterr().err
    assert "raster.png" in err and "--overwrite" in err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "raster.png"]
    assert (d / "raster.png").read_bytes() == b"mine"
    assert main(["report", str(run), "--out", str(d), "--overwrite"]) == 0
    assert (d / "raster.png").read_bytes()[:4] == b"\x89PNG"
    assert (d / "notes.txt").read_text() == "keep me"
    # its own files are replaced without --overwrite; the user's are still kept
    assert main(["report", str(run), "--out", str(d)]) == 0
    assert (d / "notes.txt").read_text() == "keep me" and not (d / LOCK).exists()


def test_invalid_report_option_changes_nothing(run: Path,
                                               capsys: pytest.CaptureFixture[str]):
    assert main(["report", str(run)]) == 0
    before = snapshot(run)
    for bad in ("0", "-1", "nan", "inf"):
        assert main(["report", str(run), "--t-max", bad, "--overwrite"]) == 2
        assert "--t-max" in capsys.readouterr().err
    assert snapshot(run) == before


def test_overwrite_that_fails_while_starting_keeps_the_earlier_run(
        run: Path, capsys: pytest.CaptureFixture[str]):
    """The issue's --t 1e12: the replacement fails after its checks (it cannot allocate
    its recorders) and the earlier complete run is still there, untouched."""
    before = snapshot(run)
    try:  # the recorders cannot be allocated (a MemoryError, until --t is bounded up front)
        rc = main(["simulate", *MC, "--t", "1e12", "--out", str(run), "--overwrite"])
    except MemoryError:
        rc = 1
    assert rc in (1, 2)
    assert snapshot(run) == before and manifest(run)["status"] == "complete"
    assert not [p for p in run.iterdir() if p.name.startswith(".dtb-")]


# --- 5. readers verify what the manifest lists -------------------------------------------

def _damage(run: Path, how: str) -> Path:
    part = run / "spikes" / "rank-00000.h5"
    chunk = next(p for p in sorted((run / "series.zarr").rglob("*"))
                 if p.is_file() and "/c/" in p.as_posix())
    if how == "delete part":
        part.unlink()
        return part
    if how == "truncate part":
        with open(part, "r+b") as f:
            f.truncate(part.stat().st_size // 2)
        return part
    if how == "alter part":
        b = bytearray(part.read_bytes())
        b[-10] ^= 0xFF
        part.write_bytes(bytes(b))
        return part
    if how == "delete chunk":
        chunk.unlink()
        return chunk
    if how == "alter chunk":
        b = bytearray(chunk.read_bytes())
        b[-1] ^= 0xFF
        chunk.write_bytes(bytes(b))
        return chunk
    raise AssertionError(how)


DAMAGE = ["delete part", "truncate part", "alter part", "delete chunk", "alter chunk"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_run_is_refused_naming_the_file(run: Path, how: str,
                                                capsys: pytest.CaptureFixture[str]):
    from dtb.analysis import open_run

    bad = _damage(run, how)
    with pytest.raises(DamagedOutput, match=str(bad)):
        open_run(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert not (run / "report").exists()


def test_checksums_on_request_sizes_always(run: Path, monkeypatch: pytest.MonkeyPatch):
    import dtb.io.runfiles
    from dtb.analysis import open_run

    _damage(run, "alter part")
    monkeypatch.setattr(dtb.io.runfiles, "HASH_BYTES", 0)  # "large" outputs: sizes only
    open_run(run).close()
    with pytest.raises(DamagedOutput, match="SHA-256"):
        open_run(run, verify=True)
    _damage(run, "truncate part")
    with pytest.raises(DamagedOutput, match="bytes"):
        open_run(run, verify=False)


def test_missing_part_of_an_unfinished_run_is_refused(run: Path):
    """A run that is not complete lists no outputs; the virtual datasets still name their
    parts, and a missing one is refused instead of read as spikes at t = 0."""
    from dtb.analysis import open_run

    m = manifest(run)
    m["status"], m["outputs"] = "running", {}
    (run / "manifest.json").write_text(json.dumps(m))
    (run / "spikes" / "rank-00000.h5").unlink()
    with pytest.raises(DamagedOutput, match="rank-00000.h5"):
        open_run(run)


# --- 7. --resume refuses unknown versions and an edited configuration --------------------

@pytest.fixture()
def stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An interrupted run with one checkpoint (a stop request at the first chunk boundary:
    a stop while the inputs load ends the process before anything ran, exit 143)."""
    from dtb.cli.simulate import StopRequest

    agreed = StopRequest.agreed

    def stop_at_first_boundary(self: StopRequest, comm: object) -> int:
        self.signum = self.signum or int(signal.SIGTERM)
        return agreed(self, comm)

    monkeypatch.setattr(StopRequest, "agreed", stop_at_first_boundary)
    out = tmp_path / "stopped"
    assert main(["simulate", *MC, "--t", "20", "--out", str(out)]) == 75
    monkeypatch.setattr(StopRequest, "agreed", agreed)
    assert manifest(out)["status"] == "interrupted" and ck.candidates(out)
    return out


def _edit(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    for k, v in changes.items():
        if callable(v):
            v(d)
        else:
            d[k] = v
    path.write_text(json.dumps(d))


def test_resume_refuses_unknown_versions_and_edited_config(stopped: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    from dtb.io.runfiles import config_digest

    mf = stopped / "manifest.json"
    original = mf.read_text()
    cases = {
        "manifest version": (lambda: _edit(mf, format_version=99), "format_version 99"),
        "edited seed": (lambda: _edit(mf, config=dict(manifest(stopped)["config"], seed=0)),
                        "edited"),
        "edited t, hash recomputed": (
            lambda: _edit(mf, config=(c := dict(manifest(stopped)["config"],
                                                 simulation={"dt": 0.1, "t": 5.0,
                                                             "seed": 1})),
                          config_sha256=config_digest(c)), "simulation.t: 5.0 -> 20.0"),
    }
    for name, (damage, words) in cases.items():
        mf.write_text(original)
        damage()
        assert main(["simulate", "--resume", str(stopped), "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert words in err, (name, err)
        assert manifest(stopped)["status"] == "interrupted" or name == "manifest version"
    mf.write_text(original)
    complete = ck.candidates(stopped)[0] / ck.COMPLETE
    good = complete.read_text()
    _edit(complete, format_version=99)
    assert main(["simulate", "--resume", str(stopped), "--quiet"]) == 2
    assert "format_version 99" in capsys.readouterr().err
    complete.write_text(good)
    assert main(["simulate", "--resume", str(stopped), "--quiet"]) == 0
    assert manifest(stopped)["status"] == "complete"


# --- 10. a full disk: a clear OutputError, the run failed, no partial files ---------------

def test_disk_full_writing_a_checkpoint_in_process(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]):
    import errno

    from dtb.io.fileio import LatchedFile

    real = LatchedFile.write

    def full(self: LatchedFile, b) -> int:
        if "checkpoints" in str(self.name) and self.error is None:
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, b)

    monkeypatch.setattr(LatchedFile, "write", full)
    out = tmp_path / "run"
    assert main(["simulate", *MC, "--t", "20", "--checkpoint-every", "5",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the checkpoint" in err and os.strerror(errno.ENOSPC) in err
    assert manifest(out)["status"] == "failed"
    assert not list(out.rglob(".step-*")) and not list(out.rglob(".dtb-tmp-*"))


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


FULL_DISK_SIZES = (16_384, 40_960, 65_536, 131_072, 262_144, 409_600, 532_480, 819_200,
                   1_228_800)


@pytest.mark.slow
def test_disk_full_at_each_write_on_a_small_tmpfs(tmp_path: Path):
    """dtb simulate with checkpoints on file systems too small for it, from one that holds
    little more than the manifest to one that holds everything: every run ends with exit
    0, or 1 and a message naming the file, the manifest "failed" (or none at all), no
    partial or temporary file, and never a crash (the issue: SIGSEGV, exit 139)."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, 65_536):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    subprocess.run(["umount", str(mnt)], check=True)
    outcomes = {}
    for size in FULL_DISK_SIZES:
        assert _mount_tmpfs(mnt, size)
        try:
            out = mnt / "run"
            r = subprocess.run([DTB, "simulate", *MC, "--t", "40", "--checkpoint-every", "10",
                                "--out", str(out)], capture_output=True, text=True,
                               timeout=300, env=clean_env())
            outcomes[size] = r.returncode
            assert r.returncode in (0, 1), (size, r.returncode, r.stderr[-2000:])
            assert "Traceback" not in r.stderr, r.stderr
            if r.returncode == 1:
                assert os.strerror(28) in r.stderr and str(out) in r.stderr, r.stderr
                if (out / "manifest.json").exists():
                    assert manifest(out)["status"] == "failed"
                left = [p.name for p in out.rglob("*") if p.name.startswith((".dtb-", ".step"))]
                assert left == [], left
            else:
                from dtb.io.runfiles import verify_outputs

                verify_outputs(out, manifest(out), checksums=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    print("tmpfs bytes -> exit status:", outcomes)
    assert 1 in outcomes.values() and outcomes[FULL_DISK_SIZES[-1]] == 0, outcomes


# --- 13. brain.h5 follows the umask ---------------------------------------------------------

def test_brain_file_follows_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "brain.h5"
        assert main(["build", "--demo", "--neurons", "4000", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
