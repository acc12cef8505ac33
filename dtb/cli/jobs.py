"""``dtb job slurm``: ready-to-submit Slurm batch scripts for dtb runs.

This module is the command: its parser (:func:`add_job_parser`), the validation of its
arguments into a :class:`~dtb.cli.jobscript.SlurmJob` (:func:`job_from_args`) and writing the
script (:func:`run_job`).  The job and its templates live in :mod:`dtb.cli.jobscript`, sweep
files in :mod:`dtb.cli.sweep`.

Every value the user gives is validated before anything is written; control characters
(newlines, tabs, escape sequences) are refused everywhere.  Invalid values raise
:class:`~dtb.errors.ConfigError` naming the option, the value and what was expected; the
command prints them as ``dtb: error: ...`` and exits with status 2.

Public API: :class:`SlurmJob` (validated settings, :meth:`SlurmJob.script`),
:func:`job_from_args`, :func:`read_sweep`, :func:`template`, :func:`add_job_parser`,
:func:`run_job`.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtb.cli.jobscript import (
    COMMANDS,
    CONTROL,
    EX_TEMPFAIL,
    GPU_BINDS,
    MAX_SIGNAL_LEAD_S,
    PATTERNS,
    RESERVED,
    SOURCE,
    SlurmJob,
    as_word,
    template,
    template_dir,
    time_seconds,
)
from dtb.cli.sweep import check_task_types, read_sweep
from dtb.errors import ConfigError, UsageError
from dtb.models import BUILTIN

__all__ = [
    "EX_TEMPFAIL",
    "SlurmJob",
    "add_job_parser",
    "job_from_args",
    "read_sweep",
    "run_job",
    "template",
    "template_dir",
    "time_seconds",
]


# --- from the command line ----------------------------------------------------------------

def _check(problems: list[str], opt: str, value: str | None, kind: str) -> None:
    if value is None:
        return
    pat, expected = PATTERNS[kind]
    if not pat.fullmatch(value):
        problems.append(f"{opt}: {value!r} -- expected {expected}")


def _no_control(problems: list[str], opt: str, value: str | None) -> None:
    if value is not None and CONTROL.search(value):
        problems.append(f"{opt}: {value!r} -- expected no control characters (newlines, "
                        "tabs, escapes)")


def _default_dtb() -> list[str]:
    """The dtb that makes the script: this environment's ``bin/dtb`` when there is one."""
    exe = Path(sys.prefix) / "bin" / "dtb"
    return [str(exe)] if exe.is_file() else ["dtb"]


def job_from_args(a: argparse.Namespace, argv: Sequence[str] | None,
                  parser: argparse.ArgumentParser) -> SlurmJob:
    """Validate ``dtb job slurm`` arguments into a :class:`SlurmJob`; ConfigError lists every
    problem (option, value, expectation)."""

    problems: list[str] = []
    extra = _dtb_args(a, problems)
    source, name = _network(a, problems)
    tasks = _ranks(a, problems)
    _limits(a, problems)
    job_name = _sbatch_values(a, name, problems)
    sweep = _array_and_sweep(a, parser, problems)
    env = _environment(a, problems)
    dtb = _dtb_command(a, problems)
    _check_extra(a, extra, problems)
    if problems:
        raise ConfigError(problems, SOURCE)
    return SlurmJob(
        command=a.dtb_command, source=tuple(source), name=job_name, nodes=a.nodes,
        gpus_per_node=a.gpus_per_node, tasks_per_node=tasks, members=a.members,
        time=a.time, partition=a.partition, account=a.account, qos=a.qos, mem=a.mem,
        cpus_per_task=a.cpus_per_task, out=a.out, log=a.log,
        array=a.array, sweep=sweep, checkpoint_every=a.checkpoint_every,
        signal_lead_s=a.signal_lead, requeue=a.requeue, max_restarts=a.max_restarts,
        modules=tuple(a.module or ()), env_setup=(str(Path(a.env_setup).resolve())
                                                  if a.env_setup else None),
        env=tuple(env), dtb=tuple(dtb), mpi=a.mpi, gpu_bind=a.gpu_bind,
        sbatch=tuple(a.sbatch or ()), extra=tuple(extra),
        generated_by=("dtb", *argv) if argv is not None else ())


def _dtb_args(a: argparse.Namespace, problems: list[str]) -> list[str]:
    """``--dtb-args`` split into words as a shell would."""
    if a.dtb_args is not None and CONTROL.search(a.dtb_args):
        _no_control(problems, "--dtb-args", a.dtb_args)
    elif a.dtb_args is not None:
        try:
            return shlex.split(a.dtb_args)
        except ValueError as e:
            problems.append(f"--dtb-args: {a.dtb_args!r} -- expected dtb arguments as on a "
                            f"command line ({e})")
    return []


def _network(a: argparse.Namespace, problems: list[str]) -> tuple[list[str], str]:
    """The dtb arguments naming the network (CONFIG, --brain or --model [--scale]) and the
    name the job takes from it."""
    source: list[str] = []
    name = "dtb"
    given = [x for x in (a.config, a.brain, a.model) if x is not None]
    if len(given) != 1:
        problems.append("CONFIG: expected exactly one of CONFIG.yaml, --brain BRAIN.h5 or "
                        f"--model ({', '.join(BUILTIN)})")
    for opt, path in (("CONFIG", a.config), ("--brain", a.brain)):
        if path is None:
            continue
        if CONTROL.search(path):
            _no_control(problems, opt, path)
        elif not Path(path).is_file():
            problems.append(f"{opt}: {path!r} -- expected an existing file")
        else:
            resolved = str(Path(path).resolve())
            source += [resolved] if opt == "CONFIG" else ["--brain", resolved]
            name = Path(path).stem
    if a.model is not None:
        if a.model not in BUILTIN:
            problems.append(f"--model: {a.model!r} -- expected one of {', '.join(BUILTIN)}")
        else:
            source += ["--model", a.model]
            name = a.model
    if a.scale is not None:
        if a.model is None:
            problems.append(f"--scale: {a.scale!r} -- expected only with --model")
        elif not (math.isfinite(a.scale) and 0 < a.scale <= 1):
            problems.append(f"--scale: {a.scale!r} -- expected a number in (0, 1]")
        else:
            source += ["--scale", as_word(a.scale)]
    return source, name


def _ranks(a: argparse.Namespace, problems: list[str]) -> int:
    """Ranks per node, after checking --nodes, --gpus-per-node, --tasks-per-node and
    --members (a divisor of the ranks)."""
    if a.nodes < 1:
        problems.append(f"--nodes: {a.nodes!r} -- expected an integer >= 1")
    if a.gpus_per_node < 0:
        problems.append(f"--gpus-per-node: {a.gpus_per_node!r} -- expected an integer >= 0")
    tasks = a.gpus_per_node
    if a.tasks_per_node is not None:
        if a.tasks_per_node < 1:
            problems.append(f"--tasks-per-node: {a.tasks_per_node!r} -- expected an "
                            "integer >= 1")
        elif a.gpus_per_node and a.tasks_per_node != a.gpus_per_node:
            problems.append(f"--tasks-per-node: {a.tasks_per_node!r} -- expected "
                            f"{a.gpus_per_node} (one rank per GPU, --gpus-per-node) or "
                            "--gpus-per-node 0")
        tasks = a.tasks_per_node
    tasks = max(tasks or 1, 1)
    ranks = max(a.nodes, 1) * tasks
    if a.members is not None:
        if a.dtb_command != "assimilate":
            problems.append(f"--members: {a.members!r} -- expected only with --command "
                            "assimilate")
        elif a.members < 1 or ranks % a.members:
            problems.append(f"--members: {a.members!r} -- expected a divisor of the {ranks} "
                            f"ranks (--nodes {a.nodes} x {tasks} per node), so that every "
                            "ensemble member gets the same number of ranks")
    return int(tasks)


def _limits(a: argparse.Namespace, problems: list[str]) -> None:
    """Check --time, --signal-lead, --checkpoint-every, --cpus-per-task, --max-restarts."""
    if a.time is not None:
        try:
            limit = time_seconds(a.time)
        except UsageError:
            problems.append(f"--time: {a.time!r} -- expected a Slurm time limit HH:MM:SS, "
                            "MM, MM:SS or D-HH[:MM[:SS]]")
        else:
            if limit <= 0:
                problems.append(f"--time: {a.time!r} -- expected a time limit > 0")
            elif a.signal_lead >= limit:
                problems.append(f"--signal-lead: {a.signal_lead!r} -- expected fewer seconds "
                                f"than the time limit ({a.time} = {limit} s), so that the "
                                "checkpoint request comes before the end")
    if not 1 <= a.signal_lead <= MAX_SIGNAL_LEAD_S:
        problems.append(f"--signal-lead: {a.signal_lead!r} -- expected seconds in 1 to "
                        f"{MAX_SIGNAL_LEAD_S}")
    if a.checkpoint_every is not None and not (math.isfinite(a.checkpoint_every)
                                               and a.checkpoint_every > 0):
        problems.append(f"--checkpoint-every: {a.checkpoint_every!r} -- expected model time "
                        "in ms > 0")
    if a.cpus_per_task is not None and a.cpus_per_task < 1:
        problems.append(f"--cpus-per-task: {a.cpus_per_task!r} -- expected an integer >= 1")
    if a.max_restarts < 0:
        problems.append(f"--max-restarts: {a.max_restarts!r} -- expected an integer >= 0")


def _sbatch_values(a: argparse.Namespace, name: str, problems: list[str]) -> str:
    """Check the values that go into #SBATCH lines; returns the job name."""
    job_name: str = a.job_name if a.job_name is not None else f"dtb-{name}"[:128]
    if a.job_name is None and not PATTERNS["job_name"][0].fullmatch(job_name):
        job_name = "dtb"  # a config file name with unusual characters
    for opt, attr, kind in (("--partition", "partition", "partition"),
                            ("--account", "account", "account"), ("--qos", "qos", "qos"),
                            ("--mem", "mem", "mem"), ("--log", "log", "log"),
                            ("--mpi", "mpi", "mpi"), ("--job-name", "job_name", "job_name")):
        _check(problems, opt, getattr(a, attr), kind)
    for m in a.module or []:
        _check(problems, "--module", m, "module")
    for s in a.sbatch or []:
        _check(problems, "--sbatch", s, "sbatch")
    return job_name


def _array_and_sweep(a: argparse.Namespace, parser: argparse.ArgumentParser,
                     problems: list[str]) -> tuple[tuple[str, ...], ...] | None:
    """Check --array; read and check --sweep (its tasks, or None)."""
    sweep = None
    if a.array is not None:
        if a.sweep is not None:
            if not re.fullmatch(r"%[1-9][0-9]*", a.array):
                problems.append(f"--array: {a.array!r} -- expected only a concurrency limit "
                                "such as %4 with --sweep (the sweep file sets the tasks)")
        else:
            _check(problems, "--array", a.array, "array")
    if a.sweep is not None:
        _no_control(problems, "--sweep", a.sweep)
        if not CONTROL.search(a.sweep):
            try:
                sweep = tuple(tuple(t) for t in read_sweep(a.sweep))
            except ConfigError as e:
                problems += e.problems
            else:
                problems += check_task_types(sweep, a.dtb_command, f"--sweep {a.sweep!r}",
                                             parser)
    return sweep


def _environment(a: argparse.Namespace, problems: list[str]) -> list[tuple[str, str]]:
    """Check --out and --env-setup; the --env variables as (name, value)."""
    for opt, v in (("--out", a.out), ("--env-setup", a.env_setup)):
        _no_control(problems, opt, v)
    if a.env_setup is not None and not CONTROL.search(a.env_setup) \
            and not Path(a.env_setup).is_file():
        problems.append(f"--env-setup: {a.env_setup!r} -- expected an existing file (sourced "
                        "by the job before dtb starts)")
    env: list[tuple[str, str]] = []
    for kv in a.env or []:
        k, eq, v = kv.partition("=")
        if not eq or not PATTERNS["env_name"][0].fullmatch(k):
            problems.append(f"--env: {kv!r} -- expected {PATTERNS['env_name'][1]}")
        elif CONTROL.search(v):
            _no_control(problems, "--env", kv)
        else:
            env.append((k, v))
    return env


def _dtb_command(a: argparse.Namespace, problems: list[str]) -> list[str]:
    """How the job runs dtb: --dtb split into words, or this environment's dtb."""
    dtb = _default_dtb()
    if a.dtb is not None:
        _no_control(problems, "--dtb", a.dtb)
        try:
            dtb = shlex.split(a.dtb)
        except ValueError as e:
            problems.append(f"--dtb: {a.dtb!r} -- expected a command line ({e})")
        if not dtb:
            problems.append(f"--dtb: {a.dtb!r} -- expected a command such as dtb or "
                            "'apptainer exec --nv dtb.sif dtb'")
    return dtb


def _check_extra(a: argparse.Namespace, extra: list[str], problems: list[str]) -> None:
    """Check the --dtb-args words: none the job sets itself, no --seed with --array."""
    for w in extra:
        _no_control(problems, "--dtb-args", w)
        opt = w.removeprefix("--").partition("=")[0]
        if w.startswith("--") and opt in RESERVED:
            problems.append(f"--dtb-args: {w!r} -- expected an option the job does not "
                            "set itself (use the job's own --out, --checkpoint-every, "
                            "--members)")
        if w.startswith("--seed") and a.array is not None and a.sweep is None:
            problems.append(f"--dtb-args: {w!r} -- expected no --seed with --array (each "
                            "array task's seed is its index)")


def add_job_parser(sub: Any) -> None:
    """Add ``dtb job slurm`` to an argparse subparsers object."""
    j = sub.add_parser(
        "job", help="write batch-job scripts (Slurm)",
        description="Write ready-to-submit batch-job scripts for dtb runs.")
    jsub = j.add_subparsers(dest="job_kind", metavar="SCHEDULER", required=True)
    p = jsub.add_parser(
        "slurm", help="a Slurm sbatch script for dtb simulate or dtb assimilate",
        description="Write an sbatch script that runs dtb with one MPI rank per GPU, "
                    "checkpoints before the time limit (USR1), requeues itself and resumes, "
                    "and optionally runs a job array over seeds or a sweep file. Submit it with "
                    "`sbatch FILE`.",
        epilog="example: dtb job slurm --model microcircuit --scale 0.5 --nodes 2 "
               "--gpus-per-node 4 --time 02:00:00 --partition gpu --checkpoint-every 1000 "
               "-o mc.sbatch --dtb-args '--t 10000 --seed 3'")
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                   help="network configuration (YAML); or --brain / --model")
    p.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    p.add_argument("--model", help="a built-in model (microcircuit)")
    p.add_argument("--scale", type=float, metavar="S", help="--model's scale, in (0, 1]")
    p.add_argument("--command", dest="dtb_command", choices=COMMANDS, default="simulate",
                   help="the dtb command the job runs (simulate)")
    p.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes (1)")
    p.add_argument("--gpus-per-node", type=int, default=0, metavar="G",
                   help="GPUs per node; one MPI rank per GPU (0: CPU ranks)")
    p.add_argument("--tasks-per-node", type=int, metavar="T",
                   help="ranks per node without GPUs (default 1; with GPUs it is G)")
    p.add_argument("--members", type=int, metavar="M",
                   help="ensemble members (assimilate): the ranks are split into M equal "
                        "groups")
    p.add_argument("--time", metavar="HH:MM:SS", help="time limit")
    p.add_argument("--partition", metavar="P", help="partition (queue)")
    p.add_argument("--account", metavar="A", help="account to charge")
    p.add_argument("--qos", metavar="Q", help="quality of service")
    p.add_argument("--mem", metavar="SIZE", help="memory per node (e.g. 64G)")
    p.add_argument("--cpus-per-task", type=int, metavar="C",
                   help="CPU cores per rank (also numba's threads)")
    p.add_argument("--job-name", metavar="NAME", help="job name (dtb-<model or config>)")
    p.add_argument("--out", metavar="RUN",
                   help="run directory, relative to where the job is submitted (default "
                        "runs/<job name>-<job id>; array tasks get RUN/task-<index>)")
    p.add_argument("--log", metavar="PATTERN",
                   help="the job's log file, Slurm patterns allowed (%%x-%%j.out; arrays "
                        "%%x-%%A_%%a.out); its folder must exist")
    p.add_argument("--array", metavar="SPEC",
                   help="a job array over seeds: task i runs with --seed i (e.g. 1-10, "
                        "0-99%%8); with --sweep only a limit such as %%4")
    p.add_argument("--sweep", metavar="FILE",
                   help="a parameter sweep, one array task per row: CSV/TSV with a header "
                        "of dtb options, or a YAML/JSON list of mappings")
    p.add_argument("--checkpoint-every", type=float, metavar="MS",
                   help="write a checkpoint every MS of model time")
    p.add_argument("--signal-lead", type=int, default=300, metavar="SECONDS",
                   help="ask for a checkpoint this long before the time limit (300)")
    p.add_argument("--requeue", action=argparse.BooleanOptionalAction, default=True,
                   help="requeue the job after a checkpoint-and-stop (default yes)")
    p.add_argument("--max-restarts", type=int, default=10, metavar="K",
                   help="requeue at most K times (10)")
    p.add_argument("--module", action="append", metavar="NAME",
                   help="environment module to load (repeatable)")
    p.add_argument("--env-setup", metavar="FILE",
                   help="a shell file to source before dtb starts (e.g. a venv's activate)")
    p.add_argument("--env", action="append", metavar="NAME=VALUE",
                   help="an environment variable for the job (repeatable)")
    p.add_argument("--dtb", metavar="COMMAND",
                   help="how to run dtb, e.g. \"apptainer exec --nv dtb.sif dtb\" (default: "
                        "this environment's dtb)")
    p.add_argument("--mpi", metavar="TYPE", help="srun --mpi plugin (pmi2, pmix, ...)")
    p.add_argument("--gpu-bind", choices=GPU_BINDS, default="dtb",
                   help="dtb: every rank sees the node's GPUs and dtb picks SLURM_LOCALID "
                        "modulo their number (default); slurm: srun --gpus-per-task=1")
    p.add_argument("--sbatch", action="append", metavar="OPTION",
                   help="a further #SBATCH option, e.g. --constraint=a100 (repeatable)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the script here (stdout)")
    p.add_argument("--dtb-args", metavar="'ARGS'",
                   help="further arguments for dtb simulate/assimilate, as one string "
                        "(e.g. '--t 10000 --seed 3'); split like a shell would, then quoted")


def run_job(a: argparse.Namespace, argv: Sequence[str] | None,
            parser: argparse.ArgumentParser) -> int:
    """``dtb job slurm``: write the script; invalid values print ``dtb: error: ...`` naming
    option, value and expectation, and return 2."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        job = job_from_args(a, argv, parser)
        text = job.script()
    except ConfigError as e:
        print(f"dtb: error: {e}", file=sys.stderr)
        return 2
    if a.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(a.output)
    if CONTROL.search(a.output) or not (out.parent if str(out.parent) else Path(".")).is_dir():
        print(f"dtb: error: {SOURCE}: -o: {a.output!r} -- expected a file in an existing "
              "folder", file=sys.stderr)
        return 2
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(out)
    print(f"dtb job slurm: wrote {out} ({job.ranks} rank(s) on {job.nodes} node(s)"
          + (f", array {job.array_spec}" if job.is_array else "") + f"); submit it with: "
          f"sbatch {shlex.quote(str(out))}", file=sys.stderr)
    return 0
