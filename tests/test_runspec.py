"""``dtb simulate --resume`` rebuilds a run from the resolved run specification its manifest
recorded (dtb.io.runspec), not from the command line it was started with: an edited
specification is refused naming the field, an older run directory without one is refused
saying so, and a run resumes through ``dtb.cli.simulate.resume`` with no parser at all."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from dtb.cli.main import main
from dtb.cli.runloop import StopRequest
from dtb.cli.simulate import resume
from dtb.io import checkpoint as ck
from dtb.io.runfiles import config_digest

MC = ["--model", "microcircuit", "--scale", "0.02", "--threads", "1", "--quiet",
      "--record", "rates:1"]


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an uninterrupted run, the same run interrupted at its first chunk boundary)."""
    work = tmp_path_factory.mktemp("runspec")
    ref, stopped = work / "ref", work / "stopped"
    assert main(["simulate", *MC, "--t", "20", "--out", str(ref)]) == 0
    _stopped_run(["simulate", *MC, "--t", "20", "--out", str(stopped)])
    return ref, stopped


def _stopped_run(args: list[str]) -> None:
    """``dtb simulate args`` stopped (as by SIGTERM) at its first chunk boundary."""
    agreed = StopRequest.agreed

    def stop_at_first_boundary(self: StopRequest, comm: object) -> int:
        self.signum = self.signum or int(signal.SIGTERM)
        return agreed(self, comm)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StopRequest, "agreed", stop_at_first_boundary)
        assert main(args) == 75
    out = Path(args[args.index("--out") + 1])
    assert manifest(out)["status"] == "interrupted" and ck.candidates(out)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _same_spikes(ref: Path, run: Path) -> None:
    ma, mb = manifest(ref), manifest(run)
    assert mb["status"] == "complete" and mb["restarts"]
    assert mb["counts"] == ma["counts"] and mb["rates_hz"] == ma["rates_hz"]
    assert ma["counts"]["spikes"] > 0
    with h5py.File(ref / "spikes.h5") as a, h5py.File(run / "spikes.h5") as b:
        assert sorted(a["spikes"]) == sorted(b["spikes"])
        for pop in a["spikes"]:
            for ds in ("timestamps", "node_ids"):
                assert np.array_equal(a["spikes"][pop][ds][()], b["spikes"][pop][ds][()])


def test_run_spec_is_what_the_run_resolved(runs: tuple[Path, Path]):
    m = manifest(runs[1])
    assert m["run_spec"] == {"version": 1, "dt": 0.1, "t": 20.0, "seed": 1,
                             "record": ["rates:1"], "backend": "cpu",
                             "partition": "slices", "routing": "direct",
                             "ranks_per_node": None, "checkpoint_every": None, "threads": 1}
    assert m["run_spec_sha256"] == config_digest(m["run_spec"])


def test_resume_through_the_library_with_no_parser(runs: tuple[Path, Path],
                                                   tmp_path: Path):
    """The stored command line is not read again: garbled, the run still resumes (by the
    function, and by the command), to the uninterrupted run's spikes."""
    ref, stopped = runs
    for way in ("library", "command"):
        run = _copy(stopped, tmp_path / way)
        m = manifest(run)
        m["command"] = ["dtb", "simulate", "--no-such-flag", "--t", "5"]
        (run / "manifest.json").write_text(json.dumps(m))
        if way == "library":
            assert resume(run, threads=1, quiet=True) == 0
        else:
            assert main(["simulate", "--resume", str(run), "--quiet"]) == 0
        _same_spikes(ref, run)


def _edited(run: Path, change) -> None:
    m = json.loads((run / "manifest.json").read_text())
    change(m)
    (run / "manifest.json").write_text(json.dumps(m))


def _rehash(m: dict) -> None:
    m["run_spec_sha256"] = config_digest(m["run_spec"])


def test_an_edited_or_missing_run_spec_is_refused(runs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    run = _copy(runs[1], tmp_path / "run")
    original = (run / "manifest.json").read_text()

    def spec(**kv):
        return lambda m: m["run_spec"].update(kv)

    def both(*fs):
        return lambda m: [f(m) for f in fs]

    cases = {
        "dt": (spec(dt=0.05),
               "run_spec.dt: 0.05, the recorded configuration's simulation.dt is 0.1"),
        # the hash recomputed: the configuration rebuilt from it is not the recorded one
        "dt, hash recomputed": (both(spec(dt=0.05), _rehash), "simulation.dt: 0.1 -> 0.05"),
        "routing": (spec(routing="two-level"), "\"run_spec\" was edited"),
        "record, hash recomputed": (both(spec(record="rates:1"), _rehash),
                                    "run_spec.record: 'rates:1' -- expected a list"),
        "missing field": (both(lambda m: m["run_spec"].pop("backend"), _rehash),
                          "run_spec.backend: missing"),
        "version": (both(spec(version=2), _rehash), "run_spec.version: 2 -- expected 1"),
        "older dtb": (lambda m: m.pop("run_spec"), "no \"run_spec\""),
    }
    for name, (change, words) in cases.items():
        (run / "manifest.json").write_text(original)
        _edited(run, change)
        assert main(["simulate", "--resume", str(run), "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert words in err and str(run / "manifest.json") in err, (name, err)
        assert manifest(run)["status"] == "interrupted"
    (run / "manifest.json").write_text(original)
    assert main(["simulate", "--resume", str(run), "--quiet"]) == 0
    _same_spikes(runs[0], run)


def test_a_noise_seed_is_recorded_and_resumed(runs: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]):
    """--noise-seed: the network of --seed under another noise; recorded in run_spec (a run
    without it records what it always did, above), a stopped run resumes to the
    uninterrupted run's spikes, and a bad value is refused."""
    ref = runs[0]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(["simulate", *MC, "--t", "20", "--noise-seed", "9", "--out", str(whole)]) == 0
    assert manifest(whole)["run_spec"]["noise_seed"] == 9
    with h5py.File(ref / "spikes.h5") as a, h5py.File(whole / "spikes.h5") as b:
        pop = sorted(a["spikes"])[0]
        ta, tb = a["spikes"][pop]["timestamps"][()], b["spikes"][pop]["timestamps"][()]
        assert len(ta) != len(tb) or not np.array_equal(ta, tb)
    _stopped_run(["simulate", *MC, "--t", "20", "--noise-seed", "9", "--out", str(stopped)])
    assert main(["simulate", "--resume", str(stopped), "--quiet"]) == 0
    _same_spikes(whole, stopped)
    assert main(["simulate", *MC, "--t", "20", "--noise-seed", "-2",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--noise-seed: -2 -- expected an integer in [0, 2**32)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
