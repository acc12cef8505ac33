"""The ``dtb`` command line.

``dtb simulate`` builds a network (a YAML config or a built-in model), runs it and writes a
run directory; ``dtb info`` reports versions and available backends.  Everything the user
gives is checked before anything expensive happens; errors are printed as
``dtb: error: <message>`` without a traceback, exit status 2 for invalid configurations or
arguments and 1 for other errors (output directory, runtime failures).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dtb.errors import ConfigError, DtbError, InputError

EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid configuration or arguments (argparse uses 2 as well)


class _UsageError(Exception):
    """An invalid command-line value, found before anything is built."""


class Terminated(BaseException):
    """SIGTERM arrived (a batch system's time limit or scancel): the run is marked failed."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _parser() -> argparse.ArgumentParser:
    from dtb import __version__

    p = argparse.ArgumentParser(
        prog="dtb", description="dtb: a distributed whole-brain digital-twin simulator.")
    p.add_argument("--version", action="version", version=f"dtb {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser(
        "simulate", help="build and run a network, write a run directory",
        description="Build and run a network from a YAML config or a built-in model and "
                    "write a run directory (manifest.json, spikes.h5). Values given here "
                    "override the config's simulation section.")
    s.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                   help="network and simulation configuration (YAML)")
    s.add_argument("--model", help="a built-in model instead of a config (microcircuit)")
    s.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    s.add_argument("--scale", type=float, metavar="S",
                   help="fraction of the full-scale model's neurons, in (0, 1] (--model "
                        "only; default 0.1)")
    s.add_argument("--t", type=float, metavar="MS", help="model time to simulate, ms")
    s.add_argument("--dt", type=float, metavar="MS", help="time step, ms")
    s.add_argument("--seed", type=int, metavar="N", help="random seed, 0 <= N < 2**32")
    s.add_argument("--out", metavar="DIR",
                   help="run directory (default runs/<model-or-config-name>-<UTC time>)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run directory at --out")
    s.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all)")
    s.add_argument("--routing", choices=("direct", "two-level"), default="direct",
                   help="spike exchange between MPI ranks: to each peer directly, or "
                        "through one relay per group of ranks (large jobs)")
    s.add_argument("--backend", choices=("cpu", "gpu"), default="cpu",
                   help="where neurons and synapses live: CPU (numba) or one GPU per rank "
                        "(CuPy; the rank's node-local index picks the GPU)")
    s.add_argument("--partition", choices=("slices", "metis", "contiguous"),
                   default="slices",
                   help="which neurons each MPI rank owns: a cost-balanced slice of every "
                        "population (default), or a plan of a brain's units (--brain only): "
                        "METIS (fewest tracts cut; see dtb partition) or contiguous units")
    s.add_argument("--ranks-per-node", type=int, metavar="G",
                   help="group size for two-level routing (default: round(sqrt(ranks)))")
    s.add_argument("--quiet", action="store_true",
                   help="print only the run directory (no progress, no summary)")
    _add_record_flag(s)

    from dtb.brain.commands import add_build_parser
    from dtb.partition import add_partition_parser

    add_build_parser(sub)
    add_partition_parser(sub)
    m = sub.add_parser(
        "demo", help="build the embedded default subject, simulate it, write a run directory",
        description="The main job on the embedded (synthetic) default subject: build its "
                    "brain, simulate it and write a run directory (brain.h5, manifest.json, "
                    "spikes.h5).")
    m.add_argument("--out", metavar="DIR", help="run directory (default runs/demo-<UTC time>)")
    m.add_argument("--overwrite", action="store_true", help="replace an earlier run there")
    m.add_argument("--t", type=float, default=1000.0, metavar="MS", help="model time (1000)")
    m.add_argument("--dt", type=float, default=0.1, metavar="MS", help="time step (0.1)")
    m.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (1)")
    m.add_argument("--neurons", type=int, default=20_000, help="total neurons (20000)")
    m.add_argument("--level", choices=("region", "voxel"), default="region")
    m.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all)")
    m.add_argument("--quiet", action="store_true", help="print only the run directory")
    _add_record_flag(m)
    from dtb.report import add_report_parser

    add_report_parser(sub)
    from dtb.jobs import add_job_parser

    add_job_parser(sub)
    i = sub.add_parser("info", help="versions, MPI, GPUs and available backends",
                       description="Report versions, MPI library, GPUs and backends.")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _add_record_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--record", action="append", metavar="KIND[:ARGS]",
                   help="what to record, over the config's record section (repeatable): "
                        "spikes:all|none|sample=N, rates:BIN_MS|off, units:BIN_MS|off, "
                        "samples:n=N,every=K,variables=V+syn, bold:TR_MS|off, hdf5")


# --- simulate ---------------------------------------------------------------------------

def _check_args(a: argparse.Namespace) -> None:
    from dtb.models import BUILTIN

    if sum(x is not None for x in (a.config, a.model, a.brain)) != 1:
        raise _UsageError("give exactly one of CONFIG.yaml, --brain BRAIN.h5 or --model "
                          f"({', '.join(BUILTIN)})")
    if a.partition != "slices" and a.brain is None:
        raise _UsageError(f"--partition {a.partition}: plans partition a brain's units -- "
                          "expected --brain BRAIN.h5 (or --partition slices)")
    if a.model is not None and a.model not in BUILTIN:
        raise _UsageError(f"--model: {a.model!r} -- expected one of {', '.join(BUILTIN)}")
    if a.scale is not None:
        if a.model is None:
            raise _UsageError("--scale applies to --model only (a config gives sizes itself)")
        if not (math.isfinite(a.scale) and 0 < a.scale <= 1):
            raise _UsageError(f"--scale: {a.scale!r} -- expected a number in (0, 1]")
    if a.t is not None and not (math.isfinite(a.t) and a.t > 0):
        raise _UsageError(f"--t: {a.t!r} -- expected a model time in ms > 0")
    if a.dt is not None and not (math.isfinite(a.dt) and a.dt > 0):
        raise _UsageError(f"--dt: {a.dt!r} -- expected a time step in ms > 0")
    if a.seed is not None and not 0 <= a.seed < 2**32:
        raise _UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32)")
    if a.threads is not None:
        import numba

        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= a.threads <= top:
            raise _UsageError(f"--threads: {a.threads!r} -- expected 1 to {top} "
                              "(NUMBA_NUM_THREADS)")


def _resolve(a: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], str]:
    """The validated network and settings, where they came from, and a name for the run."""
    from dtb.config import SimulationSettings, load_config, parse_network
    from dtb.models import BUILTIN
    from dtb.recording import resolve_record, unit_labels
    from dtb.rundir import sha256_file

    if a.brain is not None:
        from dtb.brain.spec import BrainSpec

        path = Path(a.brain)
        spec = BrainSpec.load(path)
        sim = SimulationSettings()
        name = path.stem
        net = spec.to_network(name=name)
        source = {"kind": "brain", "path": str(path.resolve()), "sha256": sha256_file(path),
                  "level": spec.level, "units": spec.n_units}
        a.unit_labels = unit_labels(spec)
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
        raise _UsageError(f"t: {sim.t!r} ms -- expected at least one time step of "
                          f"{sim.dt!r} ms")
    # validate once more at the final dt (delays must be >= dt), still before building
    net = parse_network(net, sim.dt, a.config)
    record = resolve_record(sim.record, a.record, net, sim.dt, a.config)
    sim = SimulationSettings(sim.dt, sim.t, sim.seed, record)
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
                labels: Any = None) -> dict[str, Any] | None:
    """Run the engine for sim.t with the recorders of sim.record (progress on ``err``);
    returns what rank 0's RunDirectory.finish needs (None on other ranks)."""
    from dtb.progress import Progress
    from dtb.recording import Recording
    from dtb.rundir import write_atomic

    eng.keep_spikes = False  # the recorders hold what the run writes
    rec = Recording(eng, out, sim.record, sim.t, labels)
    progress = Progress(eng.dt, err) if err is not None else None
    try:
        rec.run(progress)
    except BaseException:
        rec.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
    return rec.finish(write_atomic)


def _summary(m: dict[str, Any], out: Path, command: str = "simulate") -> str:
    c, t = m["counts"], m["timings"]
    src = m["source"]
    what = (f"{src['model']} (scale {src['scale']:g})" if src["kind"] == "model"
            else src["path"])
    if src["kind"] == "brain":
        what += f" ({src['level']} level, {src['units']:,} units)"
    rtf = f"{t['rtf']:.3g}" if t["rtf"] is not None else "n/a"
    rates = "  ".join(f"{k} {v:.2f}" for k, v in m["rates_hz"].items())
    return "\n".join([
        f"dtb {command}: {what}",
        f"  neurons {c['neurons']:,}  synapses {c['synapses']:,}  "
        f"({c['bytes_per_synapse']:.2f} bytes/synapse)  threads {m['threads']}",
        f"  build {t['build_s']:.2f} s  simulate {t['simulate_s']:.2f} s for "
        f"{t['model_time_ms']:g} ms model time  (real-time factor {rtf})",
        f"  spikes {c['spikes']:,}  rates (Hz): {rates}",
        f"  run directory: {out}",
    ])


def _demo(a: argparse.Namespace, command: list[str]) -> int:
    import numba

    from dtb.brain.build import BuildOptions, build
    from dtb.brain.commands import demo_inputs
    from dtb.config import SimulationSettings, parse_network
    from dtb.engine import Engine
    from dtb.recording import resolve_record, unit_labels
    from dtb.rundir import RunDirectory, sha256_file

    for name in ("t", "dt"):
        v = getattr(a, name)
        if not (math.isfinite(v) and v > 0):
            raise _UsageError(f"--{name}: {v!r} -- expected a time in ms > 0")
    if not 0 <= a.seed < 2**32:
        raise _UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32)")
    err = None if a.quiet else sys.stderr
    spec = build(**demo_inputs(), options=BuildOptions(level=a.level, neurons=a.neurons))
    net = parse_network(spec.to_network(name="default_subject"), a.dt)
    sim = SimulationSettings(dt=a.dt, t=a.t, seed=a.seed,
                             record=resolve_record(None, a.record, net, a.dt))
    out = Path(a.out) if a.out is not None else _default_out("demo")
    with RunDirectory(out, overwrite=a.overwrite) as rd:
        a.run_dir = out
        brain = out / "brain.h5"
        spec.save(brain)
        source = {"kind": "brain", "path": str(brain.resolve()), "sha256": sha256_file(brain),
                  "level": spec.level, "units": spec.n_units}
        rd.start(net, sim, command=command, source=source,
                 threads=a.threads or numba.get_num_threads())
        if err is not None:
            print(f"dtb demo: default subject, {spec.level} level, {spec.n_units} units, "
                  f"{net.n_neurons:,} neurons (run directory {out})", file=err, flush=True)
        eng = Engine(net, dt=sim.dt, seed=sim.seed, threads=a.threads)
        recorded = _record_run(eng, out, sim, err, unit_labels(spec))
        manifest = rd.finish(eng, recorded=recorded)
    if a.quiet:
        print(out)
        return 0
    print(_summary(manifest, out, "demo"))
    print("  in it:\n"
          f"    {out / 'brain.h5'}       the brain built from data/default_subject "
          "(dtb.BrainSpec.load)\n"
          f"    {out / 'spikes.h5'}      every spike, SONATA layout (h5py; /spikes/<family>)\n"
          f"    {out / 'manifest.json'}  configuration, versions, seed, counts, timings, "
          "rates, checksums, status")
    return 0


def _simulate(a: argparse.Namespace, command: list[str]) -> int:
    import numba

    from dtb.distributed import world
    from dtb.engine import Engine
    from dtb.rundir import RunDirectory

    _check_args(a)
    comm = world()
    rank0 = comm is None or comm.Get_rank() == 0
    net, sim, source, name = _resolve(a)
    out = Path(a.out) if a.out is not None else _default_out(name)
    if comm is not None:
        out = Path(comm.bcast(str(out), root=0))  # one name, even if clocks differ
    err = None if (a.quiet or not rank0) else sys.stderr
    ranks = comm.Get_size() if comm is not None else 1
    with (RunDirectory(out, overwrite=a.overwrite) if rank0 else contextlib.nullcontext()) as rd:
        if rank0:
            a.run_dir = out  # from here on, a failure is recorded in the run directory
            rd.start(net, sim, command=command, source=source,
                     threads=a.threads or numba.get_num_threads())
        if err is not None:
            print(f"dtb: building {net.name}: {net.n_neurons:,} neurons on {ranks} rank(s) "
                  f"(run directory {out})", file=err, flush=True)
        own = None
        if a.partition != "slices":
            from dtb.brain.spec import BrainSpec
            from dtb.distributed import planned_ownership

            own = planned_ownership(BrainSpec.load(a.brain), comm, method=a.partition,
                                    routing=a.routing, ranks_per_node=a.ranks_per_node)
        eng = Engine(net, dt=sim.dt, seed=sim.seed, threads=a.threads, comm=comm,
                     routing=a.routing, ranks_per_node=a.ranks_per_node, ownership=own,
                     backend=a.backend)
        eng.partition = a.partition
        if err is not None:
            print(f"dtb: built {eng.n_synapses:,} synapses in {eng.build_s:.2f} s "
                  f"({eng.threads} threads{' on rank 0' if ranks > 1 else ''})", file=err,
                  flush=True)
        recorded = _record_run(eng, out, sim, err, getattr(a, "unit_labels", None))
        dist = eng.distribution_report() if ranks > 1 else None
        if not rank0:
            return 0
        manifest = rd.finish(eng, distribution=dist, recorded=recorded)
    print(out if a.quiet else _summary(manifest, out))
    return 0


# --- entry point --------------------------------------------------------------------------

def _report_failed_run(a: argparse.Namespace) -> None:
    """Say where the failed run's directory is, if the run got as far as making one."""
    out = getattr(a, "run_dir", None)
    if out is None:
        return
    try:
        status = json.loads((Path(out) / "manifest.json").read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        status = "unknown"
    print(f"dtb: run directory {out} (status: {status})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dtb`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Errors dtb raises on purpose (ConfigError, OutputError, ValueError, ...) are printed as
    ``dtb: error: <message>`` with exit code 2 (configuration, arguments) or 1 (other).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    a = parser.parse_args(args_list)  # exits 2 with a usage message on bad syntax
    try:
        if a.command == "info":
            from dtb.info import info, render

            d = info()
            print(json.dumps(d, indent=2) if a.json else render(d))
            return 0
        # SLURM and friends send SIGTERM before SIGKILL: turn it into an exception so the
        # run directory is marked failed instead of being left "running"
        on_main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _raise_terminated) if on_main else None
        try:
            if a.command == "build":
                from dtb.brain.commands import run_build

                return run_build(a)
            if a.command == "demo":
                return _demo(a, ["dtb", *args_list])
            if a.command == "partition":
                from dtb.partition import run_partition

                return run_partition(a)
            if a.command == "job":
                from dtb.jobs import run_job

                return run_job(a, args_list)
            if a.command == "report":
                from dtb.report import run_report

                return run_report(a)
            return _simulate(a, ["dtb", *args_list])
        finally:
            if on_main:
                signal.signal(signal.SIGTERM, old)
    except (ConfigError, _UsageError) as e:
        _mpi_abort(e, EXIT_USAGE)
        print(f"dtb: error: {e}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_USAGE
    except InputError as e:
        _mpi_abort(e, EXIT_USAGE)
        print(f"dtb: error: {e}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_USAGE
    except (DtbError, ValueError, OSError) as e:
        _mpi_abort(e, EXIT_ERROR)
        print(f"dtb: error: {e}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("dtb: interrupted", file=sys.stderr)
        _report_failed_run(a)
        return 130
    except Terminated as e:
        print(f"dtb: {e}", file=sys.stderr)
        _report_failed_run(a)
        return 128 + e.signum
    except Exception as e:  # a bug: keep the traceback, but never leave other ranks waiting
        import traceback

        if _launched_mpi():
            traceback.print_exc()
        _mpi_abort(e, EXIT_ERROR)
        raise


def _mpi_abort(e: BaseException, code: int) -> None:
    """Under MPI a failure on one rank must end the whole job promptly (the others would
    wait in a collective for ever): print this rank's message and abort every rank."""
    from dtb.distributed import launched_under_mpi

    if not launched_under_mpi():
        return
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        print(f"dtb: rank {MPI.COMM_WORLD.Get_rank()}: error: {e}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(code)


def _launched_mpi() -> bool:
    from dtb.distributed import launched_under_mpi

    return launched_under_mpi()
