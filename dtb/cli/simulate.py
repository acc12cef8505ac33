"""The ``simulate`` and ``demo`` commands: resolve what to run, build it, drive the engine
with its recorders, checkpoint, and finish the run directory.

``dtb simulate`` writes a checkpoint every ``--checkpoint-every`` ms of model time, and on
SIGTERM or SIGUSR1 (a batch system's warning) one at the next chunk boundary, after which it
marks the run ``"interrupted"`` and exits with status 75 (EX_TEMPFAIL: resumable);
``dtb simulate --resume RUN`` (``resume``, callable without a parser) continues such a run
to the result of an uninterrupted one, rebuilt from the resolved run specification the
manifest recorded when it started (dtb.io.runspec.RunSpec), not from its command line.
The flow: the command line (or a run specification) is resolved (``resolve``: network,
settings, source), then ``run`` writes the run directory.  The parser, the signal
handlers and the error handling are in dtb/cli/main.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import logging
import math
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numba

from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec
from dtb.cli.exits import EXIT_TEMPFAIL, Terminated
from dtb.cli.report import make_report
from dtb.cli.resume import checkpoint_steps, latest_checkpoint, refuse_options
from dtb.cli.runloop import Checkpoint, StopRequest, record_run
from dtb.data import demo_inputs
from dtb.engine.context import on_root, world
from dtb.engine.gpu import device as gpu_device
from dtb.engine.recording import unit_labels
from dtb.engine.simulation import Engine
from dtb.engine.threads import choose_threads
from dtb.errors import DtbError, UsageError
from dtb.io.export import UnitRegions
from dtb.io.rundir import RunDirectory, sha256_file
from dtb.io.runspec import RunSpec, resumable
from dtb.log import ONCE
from dtb.model.config import SimulationSettings, load_config, parse_network
from dtb.model.network import Network
from dtb.model.record_spec import check_duration, resolve_record
from dtb.models import BUILTIN
from dtb.partition.ownership import planned_ownership

log = logging.getLogger(__name__)


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
    for flag, v in (("--seed", a.seed), ("--noise-seed", a.noise_seed)):
        if v is not None and not 0 <= v < 2**32:
            raise UsageError(f"{flag}: {v!r} -- expected an integer in [0, 2**32)")
    _check_options(a.backend, a.checkpoint_every, a.threads)


def _check_options(backend: str, checkpoint_every: float | None, threads: int | None) -> None:
    """The options a resumed run checks too: the backend available, the checkpoint
    interval and the thread count in range."""
    if backend == "gpu":
        why = gpu_device.gpu_unavailable()
        if why is not None:
            raise UsageError(f"--backend gpu: {why} -- run on a machine with a CUDA GPU, "
                              "or use --backend cpu")
    ce = checkpoint_every
    if ce is not None and not (math.isfinite(ce) and ce > 0):
        raise UsageError(f"--checkpoint-every: {ce!r} -- expected a model time in ms > 0")
    if threads is not None:
        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= top:
            raise UsageError(f"--threads: {threads!r} -- expected 1 to {top} "
                              "(NUMBA_NUM_THREADS)")


@dataclass
class Built:
    """A run resolved and validated, ready to build: the network, the settings (dt, t in
    ms, seed, record spec), where they came from (the manifest's ``source``), a name for
    the run and, for a brain, its units' labels and regions."""

    net: Network
    sim: SimulationSettings
    source: dict[str, Any]
    name: str
    labels: Any = None
    regions: UnitRegions | None = None


def _requested(a: argparse.Namespace) -> dict[str, Any]:
    """The source the command line names (a path as given, or a model and its scale)."""
    if a.brain is not None:
        return {"kind": "brain", "path": a.brain}
    if a.config is not None:
        return {"kind": "config", "path": a.config}
    return {"kind": "model", "model": a.model, "scale": 0.1 if a.scale is None else a.scale}


def resolve(source: Mapping[str, Any], dt: float | None, t: float | None,
            seed: int | None, record: Sequence[str] | None) -> Built:
    """The validated network and settings of ``source`` (kind ``brain`` or ``config`` with
    a ``path``, or ``model`` with ``model`` and ``scale``), with ``dt``, ``t`` (ms) and
    ``seed`` over the source's own (None: the source's) and the ``record`` flags over its
    record section; a run specification's resolved values give the same run again."""
    labels = regions = config = None
    if source["kind"] == "brain":
        path = Path(source["path"])
        spec = BrainSpec.load(path)
        sim = SimulationSettings()
        name = path.stem
        net = spec.to_network(name=name)
        src = {"kind": "brain", "path": str(path.resolve()), "sha256": sha256_file(path),
               "level": spec.level, "units": spec.n_units}
        labels, regions = unit_labels(spec), UnitRegions.from_spec(spec)
    elif source["kind"] == "config":
        config = str(source["path"])
        net, sim = load_config(config)
        path = Path(config)
        src = {"kind": "config", "path": str(path.resolve()), "sha256": sha256_file(path)}
        name = path.stem
    else:
        model, scale = source.get("model"), source.get("scale")
        if model not in BUILTIN or not isinstance(scale, int | float):
            raise UsageError(f"source: model {model!r}, scale {scale!r} -- expected one of "
                             f"{', '.join(BUILTIN)} and a number in (0, 1]")
        sim = SimulationSettings()
        net = BUILTIN[model](float(scale), dt if dt is not None else sim.dt)
        src, name = {"kind": "model", "model": model, "scale": scale}, str(model)
    sim = SimulationSettings(dt=sim.dt if dt is None else float(dt),
                             t=sim.t if t is None else float(t),
                             seed=sim.seed if seed is None else int(seed), record=sim.record)
    if round(sim.t / sim.dt) < 1:
        raise UsageError(f"t: {sim.t!r} ms -- expected at least one time step of "
                          f"{sim.dt!r} ms")
    # validate once more at the final dt (delays must be >= dt), still before building
    net = parse_network(net, sim.dt, config)
    rec = resolve_record(sim.record, record, net, sim.dt, config)
    why = check_duration(rec, sim.t, sim.dt)       # bounded by the memory it implies
    if why is not None:
        raise UsageError(f"t: {why}")
    return Built(net, SimulationSettings(sim.dt, sim.t, sim.seed, rec), src, name, labels,
                 regions)


def _default_out(name: str) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{name}-{stamp}"
    out, k = base, 1
    while out.exists():
        out = base.with_name(f"{base.name}-{k}")
        k += 1
    return out


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
    """``dtb demo``: build the default subject's brain, simulate it (BOLD at an HCP-like TR),
    finish the run directory and write its report; ``command`` the whole command line."""
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
        recorded, _ = record_run(eng, out, sim, err, unit_labels(spec), ready=rd.commit,
                                  regions=UnitRegions.from_spec(spec))
        manifest = rd.finish(eng.summary(), recorded=recorded)

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
    """``dtb simulate``: ``a`` parsed by ``parser`` (the ``dtb`` parser, whose defaults
    tell which options a ``--resume`` was given besides); ``command`` the whole command
    line."""

    def noted(out: Path) -> None:
        a.run_dir = out  # from here on, a failure is recorded in the run directory

    if a.resume is not None:
        refuse_options(a, parser)
        return resume(Path(a.resume), threads=a.threads, checkpoint_every=a.checkpoint_every,
                      quiet=a.quiet, stop=stop, noted=noted)
    _check_args(a)
    built = resolve(_requested(a), a.dt, a.t, a.seed, a.record)
    spec = RunSpec(source=built.source, dt=built.sim.dt, t=built.sim.t, seed=built.sim.seed,
                   noise_seed=a.noise_seed,
                   record=tuple(a.record or ()), backend=a.backend, partition=a.partition,
                   routing=a.routing, ranks_per_node=a.ranks_per_node,
                   checkpoint_every=a.checkpoint_every, threads=a.threads)
    if stop is not None and stop.signum:    # a stop while the inputs were read: nothing ran
        raise Terminated(stop.signum)
    out = Path(a.out) if a.out is not None else _default_out(built.name)
    target = Target(out, a.overwrite, a.threads, a.quiet, command,
                    [x for x in (a.brain, a.config) if x is not None])
    return run(spec, built, target, stop, noted)


def resume(run_dir: Path, threads: int | None = None, checkpoint_every: float | None = None,
           quiet: bool = False, stop: StopRequest | None = None,
           noted: Callable[[Path], None] | None = None) -> int:
    """Continue the interrupted ``dtb simulate`` run at ``run_dir`` from its newest usable
    checkpoint, to the outputs an uninterrupted run gives (``dtb simulate --resume``; under
    MPI every rank calls it).  The run is rebuilt from the run specification its manifest
    recorded (dtb.io.runspec), checked first (``resumable``: raises ``NotResumable``);
    ``threads`` and ``checkpoint_every`` (ms) may differ from the run's; ``stop`` the
    signal handler's request; ``noted(run_dir)`` is called once a failure would be
    recorded there.  Returns the exit status (0; 75 when stopped again)."""
    comm = world()
    size = comm.Get_size() if comm is not None else 1
    _check_options("cpu", checkpoint_every, threads)
    spec, _ = on_root(comm, lambda: resumable(run_dir, size), DtbError)
    spec = replace(spec, threads=spec.threads if threads is None else threads,
                   checkpoint_every=(spec.checkpoint_every if checkpoint_every is None
                                     else checkpoint_every))
    _check_options(spec.backend, spec.checkpoint_every, spec.threads)
    built = resolve(spec.source, spec.dt, spec.t, spec.seed, list(spec.record) or None)
    if stop is not None and stop.signum:    # a stop while the inputs were read: nothing ran
        raise Terminated(stop.signum)
    target = Target(run_dir, False, spec.threads, quiet, None, [])
    return run(spec, built, target, stop, noted, latest_checkpoint(run_dir, comm))


@dataclass
class Target:
    """Where and how a run is written: its run directory ``out`` (``overwrite`` an
    earlier run there), the requested CPU threads (None: as many as are idle), ``quiet``,
    the command line for the manifest and the input files an overwrite must keep."""

    out: Path
    overwrite: bool
    threads: int | None
    quiet: bool
    command: list[str] | None
    inputs: list[str]


def run(spec: RunSpec, built: Built, target: Target, stop: StopRequest | None,
        noted: Callable[[Path], None] | None = None, resume: dict | None = None) -> int:
    """Run ``built`` (resolved from ``spec``) into ``target``'s run directory, from the
    checkpoint ``resume`` (``latest_checkpoint``) or from the start; returns the exit
    status (0; 75 after a checkpoint on a stop request)."""
    comm = world()
    rank0 = comm is None or comm.Get_rank() == 0
    ranks = comm.Get_size() if comm is not None else 1
    net, sim = built.net, built.sim
    every = checkpoint_steps(spec.checkpoint_every, sim.dt)
    out = target.out
    if comm is not None:
        out = Path(comm.bcast(str(out), root=0))  # one name, even if clocks differ
    err = None if (target.quiet or not rank0) else sys.stderr
    make = _directory_maker(target, out, resume is not None, built)
    made: list[RunDirectory] = []
    # rank 0 checks and locks the directory; every rank raises its error, if any
    on_root(comm, lambda: made.append(make()), DtbError)
    directory: Any = made[0] if made else contextlib.nullcontext()
    with directory as rd:
        threads = target.threads or numba.get_num_threads()
        if rank0:
            if noted is not None:
                noted(out)
            if resume is None:
                rd.start(net, sim, command=target.command, source=built.source,
                         threads=threads, run_spec=spec)
            else:
                rd.restart(resume["step"], resume["step"] * sim.dt, resume["path"].name,
                           threads)
        what = (f"resuming {out} from {resume['path'].name} "
                f"({resume['step'] * sim.dt:g} of {sim.t:g} ms)" if resume is not None
                else f"run directory {out}")
        log.info("building %s: %s neurons on %d rank(s) (%s)", net.name,
                 f"{net.n_neurons:,}", ranks, what, extra=ONCE)
        eng = _engine(spec, built, target.threads, comm)
        recorded, stopped = record_run(eng, out, sim, err, built.labels, every, stop,
                                       resume["state"] if resume is not None else None,
                                       ready=rd.commit if rank0 else None,
                                       regions=built.regions)
        if stopped is not None:
            if rank0:
                _record_stop(rd, stopped, sim.t, out)
            return EXIT_TEMPFAIL
        dist = eng.distribution_report() if ranks > 1 else None
        if not rank0:
            return 0
        manifest = rd.finish(eng.summary(), distribution=dist, recorded=recorded)
    print(out if target.quiet else _summary(manifest, out))
    return 0


def _engine(spec: RunSpec, built: Built, threads: int | None, comm: Any) -> Engine:
    """The engine of the run: its ownership planned (``spec.partition``), its threads
    chosen (one process: as many as cores are idle, dtb.engine.threads), built."""
    own = None
    if spec.partition != "slices":
        own = planned_ownership(BrainSpec.load(built.source["path"]), comm,
                                method=spec.partition, routing=spec.routing,
                                ranks_per_node=spec.ranks_per_node)
    if comm is None:
        threads = choose_threads(threads)
    eng = Engine(built.net, dt=built.sim.dt, seed=built.sim.seed, threads=threads, comm=comm,
                 routing=spec.routing, ranks_per_node=spec.ranks_per_node, ownership=own,
                 backend=spec.backend, noise_seed=spec.noise_seed)
    ranks = comm.Get_size() if comm is not None else 1
    log.info("built %s synapses in %.2f s (%d threads%s)", f"{eng.n_synapses:,}",
             eng.build_s, eng.threads, " on rank 0" if ranks > 1 else "", extra=ONCE)
    return eng


def _directory_maker(target: Target, out: Path, resuming: bool, built: Built
                     ) -> Callable[[], RunDirectory]:
    """What rank 0 calls to check and lock the run directory: reopen the run a --resume
    continues (its configuration checked against the one ``built`` from its run
    specification), or make a new one."""
    if resuming:
        def reopen() -> RunDirectory:
            rd = RunDirectory.reopen(out)
            try:
                rd.check_config(built.net, built.sim, built.source)
            except BaseException:
                rd.close()
                raise
            return rd
        return reopen

    def make() -> RunDirectory:
        return RunDirectory(out, overwrite=target.overwrite, inputs=target.inputs)
    return make


def _record_stop(rd: RunDirectory, stopped: Checkpoint, t_ms: float, out: Path) -> None:
    """Mark the run interrupted at the checkpoint ``stopped`` and say how to resume it."""
    why = signal.Signals(stopped.signum).name
    rd.interrupt(stopped.step, stopped.t_ms, stopped.path.name, why)
    log.warning("%s: stopped at %g of %g ms after writing %s -- resume with: "
                "dtb simulate --resume %s", why, stopped.t_ms, t_ms, stopped.path, out)
