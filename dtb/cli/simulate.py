"""The ``simulate`` and ``demo`` commands: resolve what to run, build it, drive the engine
with its recorders, checkpoint, and finish the run directory.

``dtb simulate`` writes a checkpoint every ``--checkpoint-every`` ms of model time, and on
SIGTERM or SIGUSR1 (a batch system's warning) one at the next chunk boundary, after which it
marks the run ``"interrupted"`` and exits with status 75 (EX_TEMPFAIL: resumable);
``dtb simulate --resume RUN`` continues such a run to the result of an uninterrupted one.
The parser, the signal handlers and the error handling are in dtb/cli/main.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numba

from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec
from dtb.cli.exits import EXIT_TEMPFAIL, Terminated
from dtb.cli.progress import Progress
from dtb.cli.report import make_report
from dtb.data import demo_inputs
from dtb.engine.context import on_root, world
from dtb.engine.gpu import device as gpu_device
from dtb.engine.recording import Recording, unit_labels
from dtb.engine.simulation import Engine
from dtb.engine.threads import choose_threads
from dtb.errors import DtbError, UsageError
from dtb.io import checkpoint
from dtb.io.export import UnitRegions, write_run_bold_tsv
from dtb.io.rundir import RunDirectory, sha256_file, write_atomic
from dtb.log import ONCE
from dtb.model.config import SimulationSettings, load_config, parse_network
from dtb.model.record_spec import check_duration, resolve_record
from dtb.models import BUILTIN
from dtb.partition.ownership import planned_ownership

log = logging.getLogger(__name__)


class StopRequest:
    """The handler of STOP_SIGNALS during ``dtb simulate``: remembers the signal; the run
    checks ``agreed`` after every chunk and, if any rank got one, checkpoints and stops."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or int(signum)

    def agreed(self, comm: Any) -> int:
        """The signal some rank received (0: none): a collective on ``comm`` (an allreduce
        of one integer), so that every rank stops at the same step."""
        if comm is None:
            return self.signum
        from mpi4py import MPI

        return int(comm.allreduce(self.signum, op=MPI.MAX))


def _check_args(a: argparse.Namespace) -> None:
    if sum(x is not None for x in (a.config, a.model, a.brain)) != 1:
        raise UsageError("give exactly one of CONFIG.yaml, --brain BRAIN.h5 or --model "
                          f"({', '.join(BUILTIN)})")
    if a.partition != "slices" and a.brain is None:
        raise UsageError(f"--partition {a.partition}: plans partition a brain's units -- "
                          "expected --brain BRAIN.h5 (or --partition slices)")
    if a.model is not None and a.model not in BUILTIN:
        raise UsageError(f"--model: {a.model!r} -- expected one of {', '.join(BUILTIN)}")
    if a.scale is not None:
        if a.model is None:
            raise UsageError("--scale applies to --model only (a config gives sizes itself)")
        if not (math.isfinite(a.scale) and 0 < a.scale <= 1):
            raise UsageError(f"--scale: {a.scale!r} -- expected a number in (0, 1]")
    if a.t is not None and not (math.isfinite(a.t) and a.t > 0):
        raise UsageError(f"--t: {a.t!r} -- expected a model time in ms > 0")
    if a.dt is not None and not (math.isfinite(a.dt) and a.dt > 0):
        raise UsageError(f"--dt: {a.dt!r} -- expected a time step in ms > 0")
    if a.seed is not None and not 0 <= a.seed < 2**32:
        raise UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32)")
    if getattr(a, "backend", "cpu") == "gpu":
        why = gpu_device.gpu_unavailable()
        if why is not None:
            raise UsageError(f"--backend gpu: {why} -- run on a machine with a CUDA GPU, "
                              "or use --backend cpu")
    ce = getattr(a, "checkpoint_every", None)
    if ce is not None and not (math.isfinite(ce) and ce > 0):
        raise UsageError(f"--checkpoint-every: {ce!r} -- expected a model time in ms > 0")
    if a.threads is not None:
        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= a.threads <= top:
            raise UsageError(f"--threads: {a.threads!r} -- expected 1 to {top} "
                              "(NUMBA_NUM_THREADS)")


def _resolve(a: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], str]:
    """The validated network and settings, where they came from, and a name for the run."""

    if a.brain is not None:
        path = Path(a.brain)
        spec = BrainSpec.load(path)
        sim = SimulationSettings()
        name = path.stem
        net = spec.to_network(name=name)
        source = {"kind": "brain", "path": str(path.resolve()), "sha256": sha256_file(path),
                  "level": spec.level, "units": spec.n_units}
        a.unit_labels = unit_labels(spec)
        a.unit_regions = UnitRegions.from_spec(spec)
    elif a.config is not None:
        net, sim = load_config(a.config)
        path = Path(a.config)
        source = {"kind": "config", "path": str(path.resolve()),
                  "sha256": sha256_file(path)}
        name = path.stem
    else:
        sim = SimulationSettings()
        scale = 0.1 if a.scale is None else a.scale
        net = BUILTIN[a.model](scale, a.dt if a.dt is not None else sim.dt)
        source = {"kind": "model", "model": a.model, "scale": scale}
        name = a.model
    sim = SimulationSettings(dt=sim.dt if a.dt is None else float(a.dt),
                             t=sim.t if a.t is None else float(a.t),
                             seed=sim.seed if a.seed is None else int(a.seed),
                             record=sim.record)
    if round(sim.t / sim.dt) < 1:
        raise UsageError(f"t: {sim.t!r} ms -- expected at least one time step of "
                          f"{sim.dt!r} ms")
    # validate once more at the final dt (delays must be >= dt), still before building
    net = parse_network(net, sim.dt, a.config)
    record = resolve_record(sim.record, a.record, net, sim.dt, a.config)
    sim = SimulationSettings(sim.dt, sim.t, sim.seed, record)

    why = check_duration(record, sim.t, sim.dt)       # bounded by the memory it implies
    if why is not None:
        raise UsageError(f"t: {why}")
    return net, sim, source, name


def _default_out(name: str) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{name}-{stamp}"
    out, k = base, 1
    while out.exists():
        out = base.with_name(f"{base.name}-{k}")
        k += 1
    return out


def _record_run(eng: Any, out: Path, sim: Any, err: TextIO | None,
                labels: Any = None, checkpoint_steps: int | None = None,
                stop: StopRequest | None = None,
                resume: dict[str, Any] | None = None,
                ready: Any = None, regions: Any = None) -> tuple[dict[str, Any] | None, Any]:
    """Run the engine to sim.t with the recorders of sim.record (progress on ``err``).

    ``checkpoint_steps``: write a checkpoint every this many steps; ``stop``: the signal
    handler's request, checked after every chunk (a checkpoint, then a stop); ``resume``:
    this rank's state from a checkpoint (``recording/...`` and ``engine/...``) to continue
    from; ``ready()``: called once the recorders are set up (RunDirectory.commit: the
    earlier run an --overwrite replaces is removed only then); ``regions``: a brain's
    ``dtb.io.export.UnitRegions`` (the series' ``label`` coordinate, and the regions of
    ``bold.tsv``, written when BOLD is recorded).  Returns (what rank 0's
    RunDirectory.finish needs, None on other ranks; None) when the run reached its end, or
    (None, the last checkpoint as a _Checkpoint) when it stopped on request."""

    eng.keep_spikes = False  # the recorders hold what the run writes
    rec = Recording(eng, out, sim.record, sim.t, labels, resume=resume is not None,
                    unit_region_labels=None if regions is None else regions.unit_label)
    if resume is not None:  # the recording first: it takes its start step from the engine
        rec.set_state(_sub(resume, "recording/"))
        _set_engine_state(eng, _sub(resume, "engine/"))
    if ready is not None:
        ready()
    last: list[_Checkpoint] = []
    agreed = [0]

    def on_checkpoint() -> None:
        last.append(_save_checkpoint(eng, rec, out, agreed[0]))

    def stop_requested() -> bool:
        agreed[0] = stop.agreed(rec.comm) if stop is not None else 0
        return agreed[0] != 0

    progress = Progress(eng.dt, err) if err is not None else None
    try:
        finished = rec.run(progress, checkpoint_steps, on_checkpoint, stop_requested)
    except BaseException:
        rec.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
    if not finished:
        rec.abort()  # closes the HDF5 part; everything else is in the checkpoint
        return None, last[-1]
    recorded = rec.finish(write_atomic)
    if recorded is not None and rec.bold is not None and rec.store is not None:
        recorded["outputs"].update(write_run_bold_tsv(out, regions, labels))
    return recorded, None


@dataclass
class _Checkpoint:
    """A checkpoint just written: its directory, step, model time, bytes (this rank),
    seconds taken and the signal that asked for it (0: periodic)."""

    path: Path
    step: int
    t_ms: float
    nbytes: int
    seconds: float
    signum: int


def _sub(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


def _engine_state(eng: Any) -> dict[str, Any]:
    """The engine's state (get_state) plus the spikes it keeps, if it keeps them."""

    d = eng.get_state()
    if eng.keep_spikes:
        d["kept_spikes/steps"], d["kept_spikes/idx"] = eng.kept_spikes()
    return d


def _set_engine_state(eng: Any, d: dict[str, Any]) -> None:
    eng.set_state({k: v for k, v in d.items() if not k.startswith("kept_spikes/")})
    if "kept_spikes/steps" in d:
        eng.keep(d["kept_spikes/steps"], d["kept_spikes/idx"])


def _save_checkpoint(eng: Any, rec: Any, out: Path, signum: int) -> _Checkpoint:
    """Write this rank's engine and recorder state as the checkpoint of the engine's
    step (a collective); logs it (rank 0)."""

    t0 = time.perf_counter()
    state = {f"engine/{k}": v for k, v in _engine_state(eng).items()}
    state.update({f"recording/{k}": v for k, v in rec.get_state().items()})
    meta = {"t_ms": eng.t_ms, "end_step": rec.step0 + rec.n_steps, "dt": eng.dt,
            "seed": eng.seed, "signal": signal.Signals(signum).name if signum else None}
    path = checkpoint.save(out, eng.step, state, meta, comm=rec.comm)
    nbytes = sum(f.stat().st_size for f in path.glob("rank-*.h5"))
    c = _Checkpoint(path, eng.step, eng.t_ms, nbytes, time.perf_counter() - t0, signum)
    log.info("checkpoint at %g ms: %s (%.1f MB, %.2f s)", c.t_ms, path, nbytes / 1e6,
             c.seconds, extra=ONCE)
    return c


def _summary(m: dict[str, Any], out: Path, command: str = "simulate") -> str:
    c, t = m["counts"], m["timings"]
    src = m["source"]
    what = (f"{src['model']} (scale {src['scale']:g})" if src["kind"] == "model"
            else src["path"])
    if src["kind"] == "brain":
        what += f" ({src['level']} level, {src['units']:,} units)"
    rtf = f"{t['rtf']:.3g}" if t["rtf"] is not None else "n/a"
    rates = "  ".join(f"{k} {v:.2f}" for k, v in m["rates_hz"].items())
    compiled = t.get("compile_s") or 0.0
    return "\n".join([
        f"dtb {command}: {what}",
        f"  neurons {c['neurons']:,}  synapses {c['synapses']:,}  "
        f"({c['bytes_per_synapse']:.2f} bytes/synapse)  threads {m['threads']}",
        f"  build {t['build_s']:.2f} s  simulate {t['simulate_s']:.2f} s for "
        f"{t['model_time_ms']:g} ms model time  (real-time factor {rtf})",
        *([f"  compiling kernels {compiled:.1f} s (first run only; not in the times above)"]
          if compiled >= 0.05 else []),
        f"  spikes {c['spikes']:,}  rates (Hz): {rates}",
        f"  run directory: {out}",
    ])


DEMO_BOLD_TR_MS = 720.0   # dtb demo records BOLD at this TR (ms) unless --record bold:...


def demo(a: argparse.Namespace, command: list[str]) -> int:


    for name in ("t", "dt"):
        v = getattr(a, name)
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"--{name}: {v!r} -- expected a time in ms > 0")
    if not 0 <= a.seed < 2**32:
        raise UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32)")
    err = None if a.quiet else sys.stderr
    spec = build(**demo_inputs(), options=BuildOptions(level=a.level, neurons=a.neurons))
    net = parse_network(spec.to_network(name="default_subject"), a.dt)
    # BOLD at an HCP-like TR unless --record says otherwise (dtb report explains what a
    # short run's BOLD can and cannot show)
    flags = [f"bold:{DEMO_BOLD_TR_MS:g}", *(a.record or [])]
    sim = SimulationSettings(dt=a.dt, t=a.t, seed=a.seed,
                             record=resolve_record(None, flags, net, a.dt))
    out = Path(a.out) if a.out is not None else _default_out("demo")
    with RunDirectory(out, overwrite=a.overwrite) as rd:
        a.run_dir = out
        rd.set_aside()  # an earlier run's brain.h5 included
        brain = out / "brain.h5"
        spec.save(brain)
        source = {"kind": "brain", "path": str(brain.resolve()), "sha256": sha256_file(brain),
                  "level": spec.level, "units": spec.n_units}
        rd.start(net, sim, command=command, source=source,
                 threads=a.threads or numba.get_num_threads(), written=("brain.h5",))
        log.info("demo: default subject, %s level, %d units, %s neurons (run directory %s)",
                 spec.level, spec.n_units, f"{net.n_neurons:,}", out)

        # threads sized from the idle cores once every check has passed (so the line that
        # says so never precedes an error)
        a.threads = choose_threads(a.threads)
        eng = Engine(net, dt=sim.dt, seed=sim.seed, threads=a.threads)
        recorded, _ = _record_run(eng, out, sim, err, unit_labels(spec), ready=rd.commit,
                                  regions=UnitRegions.from_spec(spec))
        manifest = rd.finish(eng, recorded=recorded)

    report = make_report(out)  # derived from the finished run, so after the manifest
    if a.quiet:
        print(out)
        return 0
    print(_summary(manifest, out, "demo"))
    print("  in it:\n"
          f"    {out / 'brain.h5'}       the brain built from data/default_subject "
          "(dtb.BrainSpec.load)\n"
          f"    {out / 'spikes.h5'}      every spike, SONATA layout (h5py; /spikes/<family>)\n"
          f"    {out / 'series.zarr'}    population and unit rates, BOLD per unit "
          "(xarray.open_zarr, dtb.analysis.open_run)\n"
          + (f"    {out / 'bold.tsv'}       BOLD per region, TSV + BIDS sidecar "
             "(dtb assimilate --bold)\n" if (out / "bold.tsv").exists() else "") +
          f"    {out / 'manifest.json'}  configuration, versions, seed, counts, timings, "
          "rates, checksums, status\n"
          f"    {report / 'index.md'}  figures and statistics (dtb report)")
    return 0


def simulate(a: argparse.Namespace, command: list[str], stop: StopRequest | None,
             parser: argparse.ArgumentParser) -> int:
    """``dtb simulate``: ``a`` parsed by ``parser`` (the ``dtb`` parser, which ``--resume``
    uses to re-read the run's command line); ``command`` the whole command line."""

    comm = world()
    rank0 = comm is None or comm.Get_rank() == 0
    ranks = comm.Get_size() if comm is not None else 1
    resume = None
    if a.resume is not None:
        a, resume = _resume_plan(a, comm, parser)
    _check_args(a)
    net, sim, source, name = _resolve(a)
    if stop is not None and stop.signum:    # a stop while the inputs were read: nothing ran

        raise Terminated(stop.signum)
    every = _checkpoint_steps(a.checkpoint_every, sim.dt)
    out = Path(a.out) if a.out is not None else _default_out(name)
    if comm is not None:
        out = Path(comm.bcast(str(out), root=0))  # one name, even if clocks differ
    err = None if (a.quiet or not rank0) else sys.stderr
    if resume is not None:
        def make() -> RunDirectory:
            rd = RunDirectory.reopen(out)
            try:
                rd.check_config(net, sim, source)
            except BaseException:
                rd.close()
                raise
            return rd
    else:
        inputs = [x for x in (a.brain, a.config) if x is not None]

        def make() -> RunDirectory:
            return RunDirectory(out, overwrite=a.overwrite, inputs=inputs)
    made: list[RunDirectory] = []
    # rank 0 checks and locks the directory; every rank raises its error, if any
    on_root(comm, lambda: made.append(make()), DtbError)
    directory: Any = made[0] if made else contextlib.nullcontext()
    with directory as rd:
        threads = a.threads or numba.get_num_threads()
        if rank0:
            a.run_dir = out  # from here on, a failure is recorded in the run directory
            if resume is None:
                rd.start(net, sim, command=command, source=source, threads=threads)
            else:
                rd.restart(resume["step"], resume["step"] * sim.dt, resume["path"].name,
                           threads)
        what = (f"resuming {out} from {resume['path'].name} "
                f"({resume['step'] * sim.dt:g} of {sim.t:g} ms)" if resume is not None
                else f"run directory {out}")
        log.info("building %s: %s neurons on %d rank(s) (%s)", net.name,
                 f"{net.n_neurons:,}", ranks, what, extra=ONCE)
        own = None
        if a.partition != "slices":
            own = planned_ownership(BrainSpec.load(a.brain), comm, method=a.partition,
                                    routing=a.routing, ranks_per_node=a.ranks_per_node)
        if comm is None:  # one process: as many threads as cores are idle (dtb.engine.threads)

            a.threads = choose_threads(a.threads)
        eng = Engine(net, dt=sim.dt, seed=sim.seed, threads=a.threads, comm=comm,
                     routing=a.routing, ranks_per_node=a.ranks_per_node, ownership=own,
                     backend=a.backend)
        log.info("built %s synapses in %.2f s (%d threads%s)", f"{eng.n_synapses:,}",
                 eng.build_s, eng.threads, " on rank 0" if ranks > 1 else "", extra=ONCE)
        recorded, stopped = _record_run(eng, out, sim, err, getattr(a, "unit_labels", None),
                                        every, stop,
                                        resume["state"] if resume is not None else None,
                                        ready=rd.commit if rank0 else None,
                                        regions=getattr(a, "unit_regions", None))
        if stopped is not None:
            why = signal.Signals(stopped.signum).name
            if rank0:
                rd.interrupt(stopped.step, stopped.t_ms, stopped.path.name, why)
                log.warning("%s: stopped at %g of %g ms after writing %s -- resume with: "
                            "dtb simulate --resume %s", why, stopped.t_ms, sim.t,
                            stopped.path, out)
            return EXIT_TEMPFAIL
        dist = eng.distribution_report() if ranks > 1 else None
        if not rank0:
            return 0
        manifest = rd.finish(eng, distribution=dist, recorded=recorded)
    print(out if a.quiet else _summary(manifest, out))
    return 0


def _checkpoint_steps(ms: float | None, dt: float) -> int | None:
    """--checkpoint-every in whole steps of ``dt`` (None: off)."""
    if ms is None:
        return None
    every = int(round(ms / dt))
    if every < 1 or abs(ms / dt - every) > 1e-9 * max(1.0, every):
        raise UsageError(f"--checkpoint-every: {ms!r} ms -- expected a multiple of the "
                          f"time step dt = {dt} ms")
    return every


_RESUME_KEEPS = ("resume", "checkpoint_every", "threads", "quiet", "command", "verbose",
                 "log_level")


def _resume_plan(a: argparse.Namespace, comm: Any, parser: argparse.ArgumentParser
                 ) -> tuple[argparse.Namespace, dict]:
    """The arguments of the run ``--resume RUN`` continues, and its checkpoint.

    Rebuilt from RUN's manifest: the command line it was started with, its source file
    (checked: present, same SHA-256) and its newest usable checkpoint (same rank count).
    Options other than --checkpoint-every, --threads and --quiet are refused: a resumed run
    is the run it continues.  Raises UsageError / NotResumable (exit status 2)."""
    plain = parser.parse_args(["simulate", "--resume", a.resume])
    for k, v in vars(a).items():
        if k not in _RESUME_KEEPS and getattr(plain, k, None) != v:
            flag = "CONFIG.yaml" if k == "config" else "--" + k.replace("_", "-")
            raise UsageError(f"--resume {a.resume}: {flag} cannot be given -- a resumed run "
                              "continues with the network, settings and outputs it was "
                              "started with (only --checkpoint-every, --threads and --quiet "
                              "may be given)")
    run = Path(a.resume)
    size = comm.Get_size() if comm is not None else 1
    command, source = on_root(comm, lambda: _read_resume_plan(run, size),
                              (UsageError, DtbError))
    b = parser.parse_args(command[1:])
    if source["kind"] == "config":
        b.config = source["path"]
    elif source["kind"] == "brain":
        b.brain = source["path"]
    b.out, b.overwrite, b.resume = str(run), False, str(run)
    b.quiet = a.quiet
    if a.threads is not None:
        b.threads = a.threads
    if a.checkpoint_every is not None:
        b.checkpoint_every = a.checkpoint_every
    got = checkpoint.load_latest(run, comm)
    if got is None:
        raise UsageError(f"--resume {run}: no usable checkpoint in {run / 'checkpoints'} "
                          "(each one is missing a rank's file or damaged) -- start the run "
                          "again with --overwrite")
    step, state, meta = got
    return b, {"step": step, "state": state, "meta": meta,
               "path": checkpoint.step_dir(run, step)}


def _read_resume_plan(run: Path, ranks: int) -> tuple[list[str], dict[str, Any]]:
    """(the command line, the source) of the run at ``run``, after checking that it can
    be resumed by ``ranks`` ranks (rank 0)."""


    m = RunDirectory.reopen(run, lock=False).manifest  # status, format, readable
    command = m.get("command")
    if (not isinstance(command, list) or len(command) < 2
            or command[1] != "simulate"):
        raise UsageError(f"--resume {run}: made by {' '.join(map(str, command or []))!r} "
                          "-- only runs of dtb simulate can be resumed")
    source = m.get("source") or {}
    if source.get("kind") in ("config", "brain"):
        path = Path(source["path"])
        if not path.is_file():
            raise UsageError(f"--resume {run}: the run's {source['kind']} file {path} is "
                              "missing -- expected it where the run was started from "
                              f"(sha256 {source.get('sha256')})")
        digest = sha256_file(path)
        if digest != source.get("sha256"):
            raise UsageError(f"--resume {run}: the run's {source['kind']} file {path} has "
                              f"changed since the run started (sha256 {digest}, the run "
                              f"recorded {source.get('sha256')}) -- a resumed run must be "
                              "built from the same file")
    cands = checkpoint.candidates(run)
    if not cands:
        raise UsageError(f"--resume {run}: no checkpoint in {run / checkpoint.CHECKPOINTS} "
                          "-- the run stopped before writing one; start it again with "
                          "--overwrite")
    counts = set()
    for d in cands:
        try:
            counts.add(json.loads((d / checkpoint.COMPLETE).read_text())["ranks"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if counts and ranks not in counts:
        n = sorted(counts)[-1]
        raise UsageError(f"--resume {run}: its checkpoints were written by "
                          f"{' or '.join(map(str, sorted(counts)))} rank(s), this job has "
                          f"{ranks} -- resume with the same number of ranks (mpiexec -n {n})")
    return command, source


# --- entry point --------------------------------------------------------------------------
