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
import logging
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec
from dtb.cli.exits import EXIT_TEMPFAIL, Terminated
from dtb.cli.report import make_report
from dtb.cli.resume import checkpoint_steps, resume_plan
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
        a, resume = resume_plan(a, comm, parser)
    _check_args(a)
    net, sim, source, name = _resolve(a)
    if stop is not None and stop.signum:    # a stop while the inputs were read: nothing ran
        raise Terminated(stop.signum)
    every = checkpoint_steps(a.checkpoint_every, sim.dt)
    out = Path(a.out) if a.out is not None else _default_out(name)
    if comm is not None:
        out = Path(comm.bcast(str(out), root=0))  # one name, even if clocks differ
    err = None if (a.quiet or not rank0) else sys.stderr
    make = _directory_maker(a, out, resume is not None, net, sim, source)
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
        recorded, stopped = record_run(eng, out, sim, err, getattr(a, "unit_labels", None),
                                       every, stop,
                                       resume["state"] if resume is not None else None,
                                       ready=rd.commit if rank0 else None,
                                       regions=getattr(a, "unit_regions", None))
        if stopped is not None:
            if rank0:
                _record_stop(rd, stopped, sim.t, out)
            return EXIT_TEMPFAIL
        dist = eng.distribution_report() if ranks > 1 else None
        if not rank0:
            return 0
        manifest = rd.finish(eng, distribution=dist, recorded=recorded)
    print(out if a.quiet else _summary(manifest, out))
    return 0


def _directory_maker(a: argparse.Namespace, out: Path, resuming: bool, net: Network,
                     sim: SimulationSettings, source: dict[str, Any]
                     ) -> Callable[[], RunDirectory]:
    """What rank 0 calls to check and lock the run directory: reopen the run a --resume
    continues (its configuration checked against ``net``, ``sim``, ``source``), or make a
    new one."""
    if resuming:
        def reopen() -> RunDirectory:
            rd = RunDirectory.reopen(out)
            try:
                rd.check_config(net, sim, source)
            except BaseException:
                rd.close()
                raise
            return rd
        return reopen
    inputs = [x for x in (a.brain, a.config) if x is not None]

    def make() -> RunDirectory:
        return RunDirectory(out, overwrite=a.overwrite, inputs=inputs)
    return make


def _record_stop(rd: RunDirectory, stopped: Checkpoint, t_ms: float, out: Path) -> None:
    """Mark the run interrupted at the checkpoint ``stopped`` and say how to resume it."""
    why = signal.Signals(stopped.signum).name
    rd.interrupt(stopped.step, stopped.t_ms, stopped.path.name, why)
    log.warning("%s: stopped at %g of %g ms after writing %s -- resume with: "
                "dtb simulate --resume %s", why, stopped.t_ms, t_ms, stopped.path, out)
