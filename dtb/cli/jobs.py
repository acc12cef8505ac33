"""``dtb job slurm``: ready-to-submit Slurm batch scripts for dtb runs.

The scripts are made from the templates in the repository's ``jobs/`` folder
(``simulate.sbatch``, ``assimilate.sbatch``, ``sweep.sbatch``; see ``jobs/README.md``), which
are the single source of their shell logic.  Placeholders are written ``@{NAME}`` (``$`` is
the shell's) and filled with :class:`string.Template` in one pass, so a value is never
expanded again.

Every value the user gives is validated before anything is written; values that go into
``#SBATCH`` lines must match strict patterns (Slurm reads those lines itself, without a
shell), and every value in the script body is quoted with :func:`shlex.quote`.  Control
characters (newlines, tabs, escape sequences) are refused everywhere.  Invalid values raise
:class:`~dtb.errors.ConfigError` naming the option, the value and what was expected; the
command prints them as ``dtb: error: ...`` and exits with status 2.

Public API: :class:`SlurmJob` (validated settings, :meth:`SlurmJob.script`),
:func:`job_from_args`, :func:`read_sweep`, :func:`template`, :func:`add_job_parser`,
:func:`run_job`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import shlex
import string
import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from dtb.errors import ConfigError
from dtb.model.config import MAX_CONFIG_BYTES, read_yaml
from dtb.model.problems import short_repr
from dtb.models import BUILTIN
from dtb.version import __version__

__all__ = [
    "EX_TEMPFAIL",
    "SlurmJob",
    "add_job_parser",
    "job_from_args",
    "read_sweep",
    "run_job",
    "template",
    "template_dir",
]

EX_TEMPFAIL = 75  # dtb's exit status after writing a checkpoint on request (resumable)
COMMANDS = ("simulate", "assimilate")
GPU_BINDS = ("dtb", "slurm")
MAX_SIGNAL_LEAD_S = 65535  # Slurm's limit for --signal=...@SECONDS
SOURCE = "dtb job slurm"

# Values that go into #SBATCH lines: Slurm parses them without a shell, so only characters
# that can never end the line or start something else are allowed.
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "partition": (re.compile(rf"{_NAME}(,{_NAME})*"),
                  "a partition name or comma-separated names (letters, digits, '_', '.', "
                  "'-')"),
    "account": (re.compile(_NAME), "an account name (letters, digits, '_', '.', '-')"),
    "qos": (re.compile(_NAME), "a QOS name (letters, digits, '_', '.', '-')"),
    "job_name": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"),
                 "a job name of letters, digits, '_', '.', '-' (at most 128)"),
    "mem": (re.compile(r"[1-9][0-9]*[KMGT]?"),
            "a memory size per node such as 64G, 500M or 16000 (MB)"),
    "module": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-/]*"),
               "a module name such as cuda/12.4 (letters, digits, '_', '.', '+', '-', '/')"),
    "array": (re.compile(r"[0-9]+(-[0-9]+(:[0-9]+)?)?(,[0-9]+(-[0-9]+(:[0-9]+)?)?)*"
                         r"(%[1-9][0-9]*)?"),
              "a Slurm array spec such as 0-9, 1,3,5, 0-99:2 or 0-99%10"),
    "log": (re.compile(r"[A-Za-z0-9_%./\-]+"),
            "a log file pattern of letters, digits, '_', '%', '.', '/', '-' (e.g. "
            "logs/%x-%j.out)"),
    "mpi": (re.compile(r"[a-z][a-z0-9_]*"), "an srun --mpi type such as pmi2 or pmix"),
    "env_name": (re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
                 "NAME=VALUE with NAME of letters, digits and '_'"),
    "sbatch": (re.compile(r"--[a-z][a-z\-]*(=[A-Za-z0-9_.:,%/+@=\-]*)?"),
               "an sbatch option such as --qos=high, --constraint=a100 or --exclusive "
               "(no spaces or quotes)"),
    "option": (re.compile(r"[a-z][a-z0-9\-]*"),
               "a dtb option name of lower-case letters, digits and '-'"),
}
# Slurm's time formats: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"(?:(?P<d>[0-9]+)-)?(?P<h>[0-9]+)(?::(?P<m>[0-5]?[0-9]))?"
                   r"(?::(?P<s>[0-5]?[0-9]))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# options the job script sets itself: a sweep or pass-through argument may not give them
_RESERVED = {"out", "resume", "overwrite", "checkpoint-every", "members"}


def template_dir() -> Path:
    """The folder of the Slurm templates: ``dtb.job_templates`` when installed as package
    data, else the repository's ``jobs/`` beside the ``dtb`` package (editable installs)."""
    try:
        d = Path(str(files("dtb.job_templates")))
        if (d / "simulate.sbatch").is_file():
            return d
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "jobs"


class _Template(string.Template):
    """``@{NAME}`` placeholders: ``$`` and ``${...}`` belong to the shell."""

    delimiter = "@"
    idpattern = r"[A-Z][A-Z0-9_]*"
    flags = re.ASCII  # upper-case only (the default flag would ignore case)


def template(name: str) -> _Template:
    """The template ``jobs/<name>`` (``simulate.sbatch``, ``assimilate.sbatch``,
    ``sweep.sbatch``)."""
    path = template_dir() / name
    try:
        return _Template(path.read_text())
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the job template ({e.strerror}) -- "
                           "expected dtb's jobs/ folder"], SOURCE) from e


def time_seconds(value: str) -> int:
    """Seconds in a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``);
    ValueError if it is not one."""
    m = _TIME.fullmatch(value)
    if m is None:
        raise ValueError(value)
    d, h, mi, s = (int(m[k]) if m[k] is not None else None for k in "dhms")
    if d is not None:  # D-H, D-H:M, D-H:M:S
        return ((d * 24 + h) * 60 + (mi or 0)) * 60 + (s or 0)
    if mi is None:  # minutes
        return h * 60
    if s is None:  # M:S
        return h * 60 + mi
    return (h * 60 + mi) * 60 + s


def _q(words: Sequence[str]) -> str:
    """Words quoted for bash, space-separated."""
    return " ".join(shlex.quote(w) for w in words)


def _word(v: Any) -> str:
    """A sweep value as one command-line word (numbers as Python prints them)."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def read_sweep(path: str | os.PathLike[str]) -> list[list[str]]:
    """The argument lists of a parameter sweep, one per array task.

    CSV or TSV with a header of dtb option names (``seed,scale``), or YAML / JSON: a list
    of mappings (``- {seed: 1, scale: 0.1}``).  A ``true`` value gives the bare flag, an
    empty cell or ``false``/``null`` leaves the option out.  Raises ConfigError naming the
    file, the row and the field.
    """
    p = Path(path)
    where = f"--sweep {str(p)!r}"

    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{where}: {p.stat().st_size:,} bytes -- expected a sweep "
                               f"file of at most {MAX_CONFIG_BYTES:,} bytes"], SOURCE)
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{where}: cannot read it ({e.strerror}) -- expected a CSV, TSV, "
                           "YAML or JSON file"], SOURCE) from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{where}: byte {e.start}: {raw[e.start:e.start + 1]!r} -- "
                           "expected UTF-8 text"], SOURCE) from None
    rows: list[dict[str, Any]]
    if p.suffix.lower() in (".csv", ".tsv"):
        delim = "\t" if p.suffix.lower() == ".tsv" else ","
        rows = [dict(r) for r in csv.DictReader(text.splitlines(), delimiter=delim)]
        if any(None in r or None in r.values() for r in rows):
            raise ConfigError([f"{where}: a row has more or fewer cells than the header -- "
                               "expected one cell per column"], SOURCE)
    elif p.suffix.lower() in (".yaml", ".yml", ".json"):
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except (ValueError, RecursionError) as e:
                raise ConfigError([f"{where}: not valid JSON ({short_repr(str(e))[1:-1]})"],
                                  SOURCE) from None
        else:
            try:
                data = read_yaml(p, "sweep file")
            except ConfigError as e:
                raise ConfigError([f"{where}: {x}" for x in e.problems], SOURCE) from None
        if not (isinstance(data, list) and all(isinstance(r, dict) for r in data)):
            raise ConfigError([f"{where}: {type(data).__name__} -- expected a list of "
                               "mappings of option to value, one per task"], SOURCE)
        rows = data
    else:
        raise ConfigError([f"{where}: suffix {p.suffix!r} -- expected .csv, .tsv, .yaml, "
                           ".yml or .json"], SOURCE)
    if not rows:
        raise ConfigError([f"{where}: no rows -- expected at least one task"], SOURCE)
    problems: list[str] = []
    tasks: list[list[str]] = []
    pat, expected = PATTERNS["option"]
    for i, row in enumerate(rows):
        words: list[str] = []
        for key, v in row.items():
            k = str(key).strip().removeprefix("--")
            if not pat.fullmatch(k):
                problems.append(f"{where}: row {i}: option {key!r} -- expected {expected}")
                continue
            if k in _RESERVED:
                problems.append(f"{where}: row {i}: option {k!r} -- expected an option the "
                                "job does not set itself (not " + ", ".join(sorted(_RESERVED))
                                + ")")
                continue
            if isinstance(v, str):
                v = v.strip()
                if p.suffix.lower() in (".csv", ".tsv"):     # as the docstring says
                    v = {"true": True, "false": False, "null": None}.get(v.lower(), v)
            if v is None or v is False or v == "":
                continue
            if isinstance(v, dict | list):
                problems.append(f"{where}: row {i}: {k}: {short_repr(v)} -- expected a single "
                                "value")
                continue
            if v is True:
                words.append(f"--{k}")
                continue
            w = _word(v)
            if _CONTROL.search(w):
                problems.append(f"{where}: row {i}: {k}: {w!r} -- expected a value without "
                                "control characters (newlines, tabs)")
                continue
            words += [f"--{k}", w]
        tasks.append(words)
    if problems:
        raise ConfigError(problems, SOURCE)
    return tasks


def check_task_types(tasks: Sequence[Sequence[str]], command: str, where: str,
                     parser: argparse.ArgumentParser) -> list[str]:
    """Problems with the argument lists of array tasks, found now rather than when a task
    runs on the cluster: each option must be one ``dtb COMMAND`` has (in ``parser``, the
    ``dtb`` parser), given a value if and only if it takes one, of its type (integer,
    number: finite) and among its choices."""

    sub = next(a for a in parser._actions
               if isinstance(a, argparse._SubParsersAction)).choices[command]
    actions = {o: act for act in sub._actions for o in act.option_strings}
    problems: list[str] = []
    for i, words in enumerate(tasks):
        j = 0
        while j < len(words):
            opt = words[j]
            act = actions.get(opt)
            j += 1
            if act is None:
                problems.append(f"{where}: row {i}: option {opt[2:]!r} -- expected an option "
                                f"of dtb {command}")
                continue
            if act.nargs == 0:
                if j < len(words) and words[j] not in actions:
                    problems.append(f"{where}: row {i}: {opt[2:]}: {words[j]!r} -- expected "
                                    "true (a flag takes no value)")
                    j += 1
                continue
            if j >= len(words) or words[j] in actions:
                problems.append(f"{where}: row {i}: {opt[2:]}: no value -- expected a value")
                continue
            value = words[j]
            j += 1
            try:
                x = act.type(value) if act.type is not None else value
            except (TypeError, ValueError):
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected "
                                f"{'an integer' if act.type is int else 'a number'}")
                continue
            if isinstance(x, float) and not math.isfinite(x):
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected a "
                                "finite number")
            elif act.choices is not None and x not in act.choices:
                problems.append(f"{where}: row {i}: {opt[2:]}: {value!r} -- expected one of "
                                f"{', '.join(map(str, act.choices))}")
    return problems


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """A validated Slurm job for one dtb command (see :func:`job_from_args`).

    ``source`` holds the dtb arguments naming the network (``[CONFIG]``, ``[--brain, B]``
    or ``[--model, M, ...]``); ``extra`` further dtb arguments; ``sweep`` one argument list
    per array task (or None); ``seed_array`` makes ``--array`` a sweep over seeds.
    """

    command: str
    source: tuple[str, ...]
    name: str
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    members: int | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    out: str | None = None
    log: str | None = None
    array: str | None = None
    sweep: tuple[tuple[str, ...], ...] | None = None
    checkpoint_every: float | None = None
    signal_lead_s: int = 300
    requeue: bool = True
    max_restarts: int = 10
    modules: tuple[str, ...] = ()
    env_setup: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    dtb: tuple[str, ...] = ("dtb",)
    mpi: str | None = None
    gpu_bind: str = "dtb"
    sbatch: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    generated_by: tuple[str, ...] = ()

    @property
    def ranks(self) -> int:
        """MPI ranks in all: nodes × tasks per node (one per GPU when there are GPUs)."""
        return self.nodes * self.tasks_per_node

    @property
    def is_array(self) -> bool:
        """True for a job array (a sweep, or --array over seeds)."""
        return self.array is not None or self.sweep is not None

    @property
    def array_spec(self) -> str | None:
        """The ``--array`` value: as given, or 0..rows-1 of the sweep file."""
        if self.sweep is not None:
            spec = f"0-{len(self.sweep) - 1}"
            if self.array is not None:  # a concurrency limit such as %4
                spec += self.array
            return spec
        return self.array

    def sbatch_lines(self) -> list[str]:
        """The ``#SBATCH`` lines (values already validated against :data:`PATTERNS`)."""
        lines = [f"--job-name={self.name}", f"--nodes={self.nodes}",
                 f"--ntasks-per-node={self.tasks_per_node}"]
        if self.gpus_per_node:
            lines.append(f"--gpus-per-node={self.gpus_per_node}")
        if self.cpus_per_task is not None:
            lines.append(f"--cpus-per-task={self.cpus_per_task}")
        if self.mem is not None:
            lines.append(f"--mem={self.mem}")
        for opt in ("time", "partition", "account", "qos"):
            v = getattr(self, opt)
            if v is not None:
                lines.append(f"--{opt}={v}")
        if self.is_array:
            lines.append(f"--array={self.array_spec}")
        log = self.log or ("%x-%A_%a.out" if self.is_array else "%x-%j.out")
        lines += [f"--output={log}", "--open-mode=append",
                  f"--signal=B:USR1@{self.signal_lead_s}",
                  "--requeue" if self.requeue else "--no-requeue"]
        lines += list(self.sbatch)
        return ["#SBATCH " + s for s in lines]

    def _env_setup(self) -> str:
        lines = []
        if self.modules:
            lines.append(f"module load {_q(self.modules)}")
        if self.env_setup is not None:
            lines += ["# shellcheck source=/dev/null",
                      f"source {shlex.quote(self.env_setup)}"]
        for k, v in self.env:
            lines.append(f"export {k}={shlex.quote(v)}")
        if self.cpus_per_task is not None:
            lines.append('export NUMBA_NUM_THREADS="$SLURM_CPUS_PER_TASK"'
                         "   # numba threads per rank")
        return "\n".join(lines) if lines else "# (no modules, setup file or variables given)"

    def _srun_args(self) -> str:
        args = [f"--nodes={self.nodes}", f"--ntasks={self.ranks}",
                f"--ntasks-per-node={self.tasks_per_node}"]
        if self.cpus_per_task is not None:
            args.append(f"--cpus-per-task={self.cpus_per_task}")
        if self.gpus_per_node and self.gpu_bind == "slurm":
            args.append("--gpus-per-task=1")
        if self.mpi is not None:
            args.append(f"--mpi={self.mpi}")
        return " ".join(args)

    def _run(self) -> str:
        if self.out is not None:
            return shlex.quote(self.out)
        jobid = "SLURM_ARRAY_JOB_ID" if self.is_array else "SLURM_JOB_ID"
        return shlex.quote(f"runs/{self.name}-") + f'"${jobid}"'

    def _start_args(self) -> list[str]:
        words = list(self.source) + list(self.extra)
        if self.members is not None:
            words += ["--members", str(self.members)]
        return words + self._checkpoint_args()

    def _checkpoint_args(self) -> list[str]:
        if self.checkpoint_every is None:
            return []
        return ["--checkpoint-every", _word(self.checkpoint_every)]

    def _gpu_note(self) -> str:
        if not self.gpus_per_node:
            return "no GPUs requested"
        if self.gpu_bind == "slurm":
            return "one GPU per rank, bound by srun --gpus-per-task=1"
        return ("one GPU per rank: dtb binds each rank to GPU SLURM_LOCALID modulo the "
                "GPUs it sees")

    def _tasks(self) -> str:
        if self.sweep is not None:
            arms = [f"    {i}) TASK=({_q(words)}) ;;" for i, words in enumerate(self.sweep)]
            arms.append('    *) say "no row $SLURM_ARRAY_TASK_ID in the sweep (0-'
                        f'{len(self.sweep) - 1})"; exit 2 ;;')
            return ('case "$SLURM_ARRAY_TASK_ID" in\n' + "\n".join(arms) + "\nesac")
        return 'TASK=(--seed "$SLURM_ARRAY_TASK_ID")   # one seed per array task'

    def template_name(self) -> str:
        """Which template in jobs/ this job is made from."""
        if self.is_array:
            return "sweep.sbatch"
        return f"{self.command}.sbatch"

    def script(self) -> str:
        """The sbatch script."""

        values = {
            "SBATCH": "\n".join(self.sbatch_lines()),
            "VERSION": __version__,
            "GENERATED_BY": _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}",
                                         _q(self.generated_by)) if self.generated_by
                            else "(the Python API)",
            "RANKS": str(self.ranks),
            "NODES": str(self.nodes),
            "TASKS_PER_NODE": str(self.tasks_per_node),
            "MEMBERS": str(self.members or 1),
            "RANKS_PER_MEMBER": str(self.ranks // (self.members or 1)),
            "GPU_NOTE": self._gpu_note(),
            "ENV_SETUP": self._env_setup(),
            "DTB": _q(self.dtb),
            "RUN": self._run(),
            "START_ARGS": _q(self._start_args()),
            "RESUME_ARGS": _q(self._checkpoint_args()),
            "REQUEUE": "1" if self.requeue else "0",
            "MAX_RESTARTS": str(self.max_restarts),
            "SRUN_ARGS": self._srun_args(),
            "COMMAND": self.command,
            "TASKS": self._tasks() if self.is_array else "",
        }
        text = template(self.template_name()).safe_substitute(values)
        left = sorted(set(re.findall(r"@\{([A-Z][A-Z0-9_]*)\}", template(
            self.template_name()).template)) - set(values))
        if left:  # a template placeholder this generator does not know: a bug in jobs/
            raise RuntimeError(f"jobs/{self.template_name()}: unknown placeholders {left}")
        return text


# --- from the command line ----------------------------------------------------------------

def _check(problems: list[str], opt: str, value: str | None, kind: str) -> None:
    if value is None:
        return
    pat, expected = PATTERNS[kind]
    if not pat.fullmatch(value):
        problems.append(f"{opt}: {value!r} -- expected {expected}")


def _no_control(problems: list[str], opt: str, value: str | None) -> None:
    if value is not None and _CONTROL.search(value):
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
    extra: list[str] = []
    if a.dtb_args is not None and _CONTROL.search(a.dtb_args):
        _no_control(problems, "--dtb-args", a.dtb_args)
    elif a.dtb_args is not None:
        try:
            extra = shlex.split(a.dtb_args)
        except ValueError as e:
            problems.append(f"--dtb-args: {a.dtb_args!r} -- expected dtb arguments as on a "
                            f"command line ({e})")
    config = a.config
    source: list[str] = []
    name = "dtb"
    given = [x for x in (config, a.brain, a.model) if x is not None]
    if len(given) != 1:
        problems.append("CONFIG: expected exactly one of CONFIG.yaml, --brain BRAIN.h5 or "
                        f"--model ({', '.join(BUILTIN)})")
    for opt, path in (("CONFIG", config), ("--brain", a.brain)):
        if path is None:
            continue
        if _CONTROL.search(path):
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
            source += ["--scale", _word(a.scale)]
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
    if a.time is not None:
        try:
            limit = time_seconds(a.time)
        except ValueError:
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
    job_name = a.job_name if a.job_name is not None else f"dtb-{name}"[:128]
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
        if not _CONTROL.search(a.sweep):
            try:
                sweep = tuple(tuple(t) for t in read_sweep(a.sweep))
            except ConfigError as e:
                problems += e.problems
            else:
                problems += check_task_types(sweep, a.dtb_command, f"--sweep {a.sweep!r}",
                                             parser)
    for opt, v in (("--out", a.out), ("--env-setup", a.env_setup)):
        _no_control(problems, opt, v)
    if a.env_setup is not None and not _CONTROL.search(a.env_setup) \
            and not Path(a.env_setup).is_file():
        problems.append(f"--env-setup: {a.env_setup!r} -- expected an existing file (sourced "
                        "by the job before dtb starts)")
    env: list[tuple[str, str]] = []
    for kv in a.env or []:
        k, eq, v = kv.partition("=")
        if not eq or not PATTERNS["env_name"][0].fullmatch(k):
            problems.append(f"--env: {kv!r} -- expected {PATTERNS['env_name'][1]}")
        elif _CONTROL.search(v):
            _no_control(problems, "--env", kv)
        else:
            env.append((k, v))
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
    for w in extra:
        _no_control(problems, "--dtb-args", w)
        opt = w.removeprefix("--").partition("=")[0]
        if w.startswith("--") and opt in _RESERVED:
            problems.append(f"--dtb-args: {w!r} -- expected an option the job does not "
                            "set itself (use the job's own --out, --checkpoint-every, "
                            "--members)")
        if w.startswith("--seed") and a.array is not None and a.sweep is None:
            problems.append(f"--dtb-args: {w!r} -- expected no --seed with --array (each "
                            "array task's seed is its index)")
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
    if _CONTROL.search(a.output) or not (out.parent if str(out.parent) else Path(".")).is_dir():
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
