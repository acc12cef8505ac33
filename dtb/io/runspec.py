"""The resolved run specification of ``dtb simulate`` (``RunSpec``) and the one check a run
directory passes before a run continues from it (``resumable``).

``dtb simulate`` records, when a run starts, what it needs to build the run again, resolved
(a config's defaults and the command line's overrides applied): the manifest's ``source``
(a config or brain file by absolute path and SHA-256, or a built-in model and its scale)
and ``run_spec``, with its SHA-256 in ``run_spec_sha256``::

    "run_spec": {"version": 1, "dt": 0.1, "t": 1500.0, "seed": 3,
                 "record": ["bold:200", "units:0.1"], "backend": "cpu",
                 "partition": "slices", "routing": "direct", "ranks_per_node": null,
                 "checkpoint_every": 100.0, "threads": 1}

(dt, t and ``checkpoint_every`` in ms; ``threads`` as asked for, null: as many as are
idle; ``record`` the ``--record`` flags over the config's record section, whose resolved
form is the manifest's ``config.record``; ``noise_seed`` only where ``--noise-seed`` was
given).  ``dtb simulate
--resume RUN`` rebuilds the run from these, never from the command line it was started
with, and a resumed run's configuration is checked against the recorded one
(``RunDirectory.check_config``).  A run directory without ``run_spec`` (written by a dtb
before it) is refused with a message that says so.

``resumable(run, ranks)`` is the check, shared with ``dtb assimilate --resume`` through
``check_input_file`` and ``check_checkpoints``: the manifest (format, status, edits), the
source files (present, same SHA-256), a checkpoint written by as many ranks.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtb.io import checkpoint
from dtb.io.fileio import sha256_file
from dtb.io.manifest import MANIFEST, NotResumable, resumable_manifest
from dtb.io.runfiles import config_digest

__all__ = ["RUN_SPEC_VERSION", "RunSpec", "resumable", "check_input_file",
           "check_checkpoints", "latest_checkpoint"]

RUN_SPEC_VERSION = 1
BACKENDS = ("cpu", "gpu")
PARTITIONS = ("slices", "metis", "contiguous")
ROUTINGS = ("direct", "two-level")


@dataclass(frozen=True)
class RunSpec:
    """What ``dtb simulate`` needs to build a run again, resolved.

    ``source``: where the network comes from (the manifest's ``source``: ``kind``
    ``"config"`` or ``"brain"`` with the file's absolute ``path`` and ``sha256``, or
    ``"model"`` with ``model`` and ``scale``); ``dt`` the time step and ``t`` the model
    time (ms); ``seed``; ``noise_seed`` (None: ``seed``; the initial state and noise apart
    from the network, ``dtb.Engine``); ``record`` the ``--record`` flags over the config's record
    section; ``backend``, ``partition``, ``routing`` and ``ranks_per_node`` as the
    command's flags; ``checkpoint_every`` the checkpoint interval (ms of model time, None:
    only on a stop signal); ``threads`` the CPU threads asked for (None: as many as are
    idle).  A resumed run may change ``checkpoint_every`` and ``threads``: neither changes
    its result."""

    source: Mapping[str, Any]
    dt: float
    t: float
    seed: int
    record: tuple[str, ...] = ()
    backend: str = "cpu"
    partition: str = "slices"
    routing: str = "direct"
    ranks_per_node: int | None = None
    checkpoint_every: float | None = None
    threads: int | None = None
    noise_seed: int | None = None
    version: int = field(default=RUN_SPEC_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``run_spec`` (JSON values; the source is the manifest's own);
        ``noise_seed`` only when set, so a run without it records what earlier runs did."""
        d = {"version": self.version, "dt": float(self.dt), "t": float(self.t),
             "seed": int(self.seed), "record": list(self.record),
             "backend": self.backend, "partition": self.partition,
             "routing": self.routing, "ranks_per_node": self.ranks_per_node,
             "checkpoint_every": (None if self.checkpoint_every is None
                                  else float(self.checkpoint_every)),
             "threads": self.threads}
        if self.noise_seed is not None:
            d["noise_seed"] = int(self.noise_seed)
        return d

    def manifest_fields(self) -> dict[str, Any]:
        """``run_spec`` and its SHA-256 ``run_spec_sha256``, as a manifest holds them."""
        d = self.to_dict()
        return {"run_spec": d, "run_spec_sha256": config_digest(d)}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], where: Path) -> RunSpec:
        """The run specification a manifest recorded (``where``: its path, for messages).
        Raises ``NotResumable`` naming the field when it is missing, edited (its SHA-256
        is no longer ``run_spec_sha256``; dt, t and seed at odds with the recorded
        configuration are named) or not of the expected type."""
        d = manifest.get("run_spec")
        if not isinstance(d, dict):
            raise NotResumable(f"{where}: no \"run_spec\" -- expected the resolved run "
                               "specification a run started by this dtb records (the run was "
                               "started by an older dtb, which resumed from its command line: "
                               "resume it with that version, or start it again with "
                               "--overwrite)")
        if d.get("version") != RUN_SPEC_VERSION:
            raise NotResumable(f"{where}: run_spec.version: {d.get('version')!r} -- expected "
                               f"{RUN_SPEC_VERSION} (written by a newer or altered dtb?)")
        _check_unedited(manifest, d, where)
        values = {k: _field(d, k, check, expected, where)
                  for k, (check, expected) in _FIELDS.items()}
        values["record"] = tuple(values["record"])
        if "noise_seed" in d:
            values["noise_seed"] = _field(d, "noise_seed", _FIELDS["seed"][0],
                                          _FIELDS["seed"][1], where)
        return cls(source=dict(manifest.get("source") or {}), **values)


def _number(lo: float) -> Callable[[Any], bool]:
    return lambda v: (isinstance(v, int | float) and not isinstance(v, bool)
                      and math.isfinite(v) and v > lo)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dt": (_number(0), "a time step in ms > 0"),
    "t": (_number(0), "a model time in ms > 0"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32,
             "an integer in [0, 2**32)"),
    "record": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
               "a list of --record flags (strings)"),
    "backend": (lambda v: v in BACKENDS, f"one of {', '.join(BACKENDS)}"),
    "partition": (lambda v: v in PARTITIONS, f"one of {', '.join(PARTITIONS)}"),
    "routing": (lambda v: v in ROUTINGS, f"one of {', '.join(ROUTINGS)}"),
    "ranks_per_node": (_optional(lambda v: isinstance(v, int) and not isinstance(v, bool)
                                 and v >= 1), "null or an integer >= 1"),
    "checkpoint_every": (_optional(_number(0)), "null or a model time in ms > 0"),
    "threads": (_optional(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                "null or an integer >= 1"),
}


def _field(d: Mapping[str, Any], key: str, check: Callable[[Any], bool], expected: str,
           where: Path) -> Any:
    if key not in d:
        raise NotResumable(f"{where}: run_spec.{key}: missing -- expected {expected}")
    v = d[key]
    if not check(v):
        raise NotResumable(f"{where}: run_spec.{key}: {v!r} -- expected {expected}")
    return v


def _check_unedited(manifest: Mapping[str, Any], d: Mapping[str, Any], where: Path) -> None:
    """``run_spec`` as the run recorded it: its SHA-256 the recorded one (when not, the
    fields at odds with the recorded configuration, dt, t and seed, are named).  An edit
    with the SHA-256 recomputed is found by ``RunDirectory.check_config``, which compares
    the configuration rebuilt from the specification with the recorded one."""
    if config_digest(d) == manifest.get("run_spec_sha256"):
        return
    sim = (manifest.get("config") or {}).get("simulation") or {}
    named = [f"run_spec.{k}: {d.get(k)!r}, the recorded configuration's simulation.{k} is "
             f"{sim[k]!r}" for k in ("dt", "t", "seed") if k in sim and d.get(k) != sim[k]]
    what = "; ".join(named) or ("its SHA-256 is no longer the recorded run_spec_sha256 "
                                f"{manifest.get('run_spec_sha256')}")
    raise NotResumable(f"{where}: its \"run_spec\" was edited after the run started "
                       f"({what}) -- a resumed run continues the run it names; restore the "
                       "manifest or start a new run")


def check_input_file(run: Path, what: str, path: str | Path, sha256: str | None) -> None:
    """The input file ``path`` (``what``: "config", "brain", "bold", ...) a resumed run at
    ``run`` reads is there and unchanged since the run started (its SHA-256 ``sha256``);
    raises ``NotResumable`` naming it otherwise."""
    p = Path(path)
    if not p.is_file():
        raise NotResumable(f"--resume {run}: the run's {what} file {p} is missing -- "
                           f"expected it where the run was started from (sha256 {sha256})")
    digest = sha256_file(p)
    if digest != sha256:
        raise NotResumable(f"--resume {run}: the run's {what} file {p} has changed since "
                           f"the run started (sha256 {digest}, the run recorded {sha256}) "
                           "-- a resumed run must read the same files")


def check_checkpoints(run: Path, ranks: int) -> None:
    """``run`` holds a checkpoint (complete or not) written by ``ranks`` ranks, if the
    checkpoints say how many wrote them; raises ``NotResumable`` otherwise.  Whether one is
    usable (every rank's file, undamaged) is ``checkpoint.load_latest``'s to say."""
    cands = checkpoint.candidates(run)
    if not cands:
        raise NotResumable(f"--resume {run}: no checkpoint in {run / checkpoint.CHECKPOINTS} "
                           "-- the run stopped before writing one; start it again with "
                           "--overwrite")
    counts = set()
    for d in cands:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            counts.add(int(json.loads((d / checkpoint.COMPLETE).read_text())["ranks"]))
    if counts and ranks not in counts:
        raise NotResumable(f"--resume {run}: its checkpoints were written by "
                           f"{' or '.join(map(str, sorted(counts)))} rank(s), this job has "
                           f"{ranks} -- resume with the same number of ranks (mpiexec -n "
                           f"{max(counts)})")


def resumable(run: Path, ranks: int) -> tuple[RunSpec, dict[str, Any]]:
    """(the run specification, the manifest) of the ``dtb simulate`` run at ``run``, after
    checking that ``ranks`` ranks can continue it: a run directory of this dtb, interrupted
    (or killed while running), made by ``dtb simulate``, its configuration and run
    specification as recorded, its source file unchanged, a checkpoint written by as many
    ranks.  Raises ``NotResumable`` (exit status 2) naming what is wrong."""
    manifest = resumable_manifest(run)
    command = manifest.get("command")
    if not isinstance(command, list) or len(command) < 2 or command[1] != "simulate":
        made = " ".join(map(str, command or [])) if isinstance(command, list) else command
        raise NotResumable(f"--resume {run}: made by {made!r} -- only runs of dtb simulate "
                           "can be resumed")
    spec = RunSpec.from_manifest(manifest, run / MANIFEST)
    if spec.source.get("kind") in ("config", "brain"):
        check_input_file(run, str(spec.source["kind"]), spec.source.get("path", ""),
                         spec.source.get("sha256"))
    check_checkpoints(run, ranks)
    return spec, manifest


def latest_checkpoint(run: Path, comm: Any) -> tuple[int, dict[str, Any], dict[str, Any], Path]:
    """(step, this rank's arrays, metadata, directory) of the newest usable checkpoint of
    ``run`` (every rank's file there and readable: ``checkpoint.load_latest``, a collective
    on ``comm``); raises ``NotResumable`` when there is none."""
    got = checkpoint.load_latest(run, comm)
    if got is None:
        raise NotResumable(f"--resume {run}: no usable checkpoint in {run / 'checkpoints'} "
                           "(each one is missing a rank's file, damaged or written by "
                           "another number of ranks) -- start the run again with "
                           "--overwrite")
    step, state, meta = got
    return step, state, meta, checkpoint.step_dir(run, step)
