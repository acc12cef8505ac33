"""Slurm batch scripts for dtb runs: the validated job (:class:`SlurmJob`) and the templates
it is made from.

The scripts are made from the templates in the repository's ``jobs/`` folder
(``simulate.sbatch``, ``assimilate.sbatch``, ``sweep.sbatch``; see ``jobs/README.md``), which
are the single source of their shell logic.  Placeholders are written ``@{NAME}`` (``$`` is
the shell's) and filled with :class:`string.Template` in one pass, so a value is never
expanded again.  Values that go into ``#SBATCH`` lines must match :data:`PATTERNS` (Slurm
reads those lines itself, without a shell), and every value in the script body is quoted
with :func:`shlex.quote`.

Public API: :class:`SlurmJob`, :func:`template`, :func:`template_dir`, :func:`time_seconds`,
:func:`as_word`, :data:`PATTERNS`, :data:`CONTROL`, :data:`RESERVED`.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import string
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from dtb.errors import ConfigError, UsageError
from dtb.version import __version__

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
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# options the job script sets itself: a sweep or pass-through argument may not give them
RESERVED = {"out", "resume", "overwrite", "checkpoint-every", "members"}



def template_dir() -> Path:
    """The folder of the Slurm templates: ``dtb.job_templates`` when installed as package
    data, else the repository's ``jobs/`` beside the ``dtb`` package (editable installs)."""
    try:
        d = Path(str(files("dtb.job_templates")))
        if (d / "simulate.sbatch").is_file():
            return d
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "jobs"  # dtb/cli/jobscript.py -> jobs/


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
    UsageError (a ValueError) if it is not one."""
    m = _TIME.fullmatch(value)
    if m is None:
        raise UsageError(f"--time: {value!r} -- expected a Slurm time limit HH:MM:SS, MM, "
                         "MM:SS or D-HH[:MM[:SS]]")
    d, mi, s = (int(m[k]) if m[k] is not None else None for k in "dms")
    h = int(m["h"])  # always there
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


def as_word(v: object) -> str:
    """A sweep value as one command-line word (numbers as Python prints them)."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


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
        return ["--checkpoint-every", as_word(self.checkpoint_every)]

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
            "GENERATED_BY": CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}",
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
