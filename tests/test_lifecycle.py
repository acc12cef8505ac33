"""The run-directory lifecycle every command shares (dtb.io.lifecycle.RunLifecycle):
status transitions, failure on an exception, overwrite set aside and put back, and the
commands' run directories built on it (simulate, assimilate, fit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtb.assimilation.fit_run import CHECKPOINT, FitRun
from dtb.assimilation.outputs import AssimilationRun
from dtb.errors import OutputError
from dtb.io.lifecycle import RunLifecycle
from dtb.io.rundir import RunDirectory


class Toy(RunLifecycle):
    OUTPUTS = ("result.txt", "figures")


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _start(rd: RunLifecycle) -> None:
    rd.record_start({"format": "dtb-run", "format_version": 1, "status": "running",
                     "error": None, "written": ["manifest.json", "result.txt", "figures"],
                     "end_time": None, "outputs": {}})


def test_every_command_shares_the_lifecycle():
    for cls in (RunDirectory, AssimilationRun, FitRun):
        assert issubclass(cls, RunLifecycle)
        for name in ("fail", "__exit__", "record_start", "record_complete", "commit"):
            assert getattr(cls, name) is getattr(RunLifecycle, name), (cls, name)


def test_running_then_complete_removes_checkpoints(tmp_path: Path):
    out = tmp_path / "run"
    with Toy(out) as rd:
        _start(rd)
        assert _manifest(out)["status"] == "running"
        (out / "checkpoints").mkdir()
        (out / "result.txt").write_text("42")
        m = rd.record_complete({"outputs": {"result.txt": {"bytes": 2}}})
    assert m["status"] == "complete" and _manifest(out)["outputs"] == m["outputs"]
    assert not (out / "checkpoints").exists() and not (out / ".dtb-lock").exists()


def test_an_exception_marks_the_run_failed_and_removes_its_outputs(tmp_path: Path):
    out = tmp_path / "run"
    with pytest.raises(KeyError), Toy(out) as rd:
        _start(rd)
        (out / "result.txt").write_text("half")
        (out / "figures").mkdir()
        raise KeyError("x")
    m = _manifest(out)
    assert m["status"] == "failed" and m["error"] == "KeyError: 'x'"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_manifest_that_cannot_be_finalised_is_marked_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The assimilate and fit run directories once left "complete" in memory when its
    write failed, so the way out did not mark the run failed."""
    real = RunLifecycle._write_manifest

    def write(self: RunLifecycle) -> None:
        if self.manifest["status"] == "complete":
            raise OutputError(f"{self.path / 'manifest.json'}: disk full")
        real(self)

    monkeypatch.setattr(RunLifecycle, "_write_manifest", write)
    out = tmp_path / "run"
    with pytest.raises(OutputError), Toy(out) as rd:
        _start(rd)
        rd.record_complete({})
    assert _manifest(out)["status"] == "failed"


def test_a_failed_start_puts_the_earlier_run_back(tmp_path: Path):
    out = tmp_path / "run"
    with Toy(out) as rd:
        _start(rd)
        (out / "result.txt").write_text("earlier")
        rd.record_complete({})
    before = (out / "manifest.json").read_text()
    with pytest.raises(RuntimeError), Toy(out, overwrite=True) as rd:
        _start(rd)                       # the earlier run set aside
        (out / "result.txt").write_text("new, half written")
        raise RuntimeError("the new run's set-up failed before commit")
    assert rd.restored
    assert (out / "result.txt").read_text() == "earlier"
    assert (out / "manifest.json").read_text() == before


def test_interrupted_then_reopened_and_restarted(tmp_path: Path):
    out = tmp_path / "run"
    with Toy(out) as rd:
        _start(rd)
        rd.record_interrupt({"step": 10, "checkpoint": "step-10", "reason": "SIGTERM"})
    m = _manifest(out)
    assert m["status"] == "interrupted" and m["interrupted"]["step"] == 10
    with Toy.reopened(out, m) as rd:
        rd.record_restart({"step": 10}, threads=3)
    m = _manifest(out)
    assert m["status"] == "running" and "interrupted" not in m and m["threads"] == 3
    assert [r["step"] for r in m["restarts"]] == [10]


def test_a_fit_that_fails_after_a_checkpoint_is_interrupted(tmp_path: Path):
    out = tmp_path / "fit"
    with pytest.raises(RuntimeError), FitRun(out, False) as rd:
        _start(rd)
        (out / CHECKPOINT).parent.mkdir()
        (out / CHECKPOINT).write_bytes(b"state")
        raise RuntimeError("a forward run failed")
    m = _manifest(out)
    assert m["status"] == "interrupted" and m["error"].startswith("RuntimeError")
    assert (out / CHECKPOINT).is_file()
