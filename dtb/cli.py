"""The ``dtb`` command line.

``dtb simulate`` builds a network (a YAML config or a built-in model), runs it and writes a
run directory; ``dtb info`` reports versions and available backends.  Everything the user
gives is checked before anything expensive happens; errors are printed as
``dtb: error: <message>`` without a traceback, exit status 2 for invalid configurations or
arguments and 1 for other errors (output directory, runtime failures).

``dtb simulate`` and ``dtb demo`` live in dtb/simulate.py; on SIGTERM or SIGUSR1 a
simulation or an assimilation checkpoints and exits 75 (resumable), other commands turn
SIGTERM into a failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtb.errors import ConfigError, DtbError, InputError, command_line_message

EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid configuration or arguments (argparse uses 2 as well)
EXIT_TEMPFAIL = 75  # a checkpoint was written on request and the run stopped: resume it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # dtb simulate: checkpoint and stop


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
    s.add_argument("-q", "--quiet", action="store_true",
                   help="print only the run directory (no progress, no summary; warnings "
                        "and errors still)")
    s.add_argument("--checkpoint-every", type=float, metavar="MS",
                   help="write a checkpoint into RUN/checkpoints/ every MS of model time "
                        "(SIGTERM or SIGUSR1 writes one anyway, then exits with status 75)")
    s.add_argument("--resume", metavar="RUN",
                   help="continue the interrupted run directory RUN from its newest usable "
                        "checkpoint, with the network, settings and rank count it was "
                        "started with (allowed besides: --checkpoint-every, --threads, "
                        "--quiet)")
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
    m.add_argument("-q", "--quiet", action="store_true",
                   help="print only the run directory (warnings and errors still)")
    _add_record_flag(m)
    from dtb.report import add_report_parser

    add_report_parser(sub)
    from dtb.export import add_export_parser

    add_export_parser(sub)
    from dtb.assimilation.cli import add_assimilate_parser
    from dtb.jobs import add_job_parser

    add_assimilate_parser(sub)
    from dtb.assimilation.fit_cli import add_fit_parser, run_fit  # dtb fit (issue 13)
    add_fit_parser(sub).set_defaults(run=run_fit)
    add_job_parser(sub)
    from dtb.warmup import add_warmup_parser

    add_warmup_parser(sub)
    i = sub.add_parser("info", help="versions, MPI, GPUs and available backends",
                       description="Report versions, MPI library, GPUs and backends.")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    from dtb.log import add_log_flags

    for command in sub.choices.values():
        add_log_flags(command)
    return p


def _add_record_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--record", action="append", metavar="KIND[:ARGS]",
                   help="what to record, over the config's record section (repeatable): "
                        "spikes:all|none|sample=N, rates:BIN_MS|off, units:BIN_MS|off, "
                        "samples:n=N,every=K,variables=V+syn, bold:TR|off with the TR's "
                        "unit (bold:0.72s or bold:720ms; a bare number is ms, as the other "
                        "kinds' bins), hdf5, chunks:COLUMNS, spike_buffer:MB")


# --- simulate ---------------------------------------------------------------------------

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
    from dtb.log import cli_logging, level_from_args

    with cli_logging(level_from_args(a)):
        return _run(a, args_list)


def _run(a: argparse.Namespace, args_list: list[str]) -> int:
    """The command of the parsed arguments ``a``, its errors turned into exit codes."""
    try:
        if a.command == "info":
            from dtb.info import info, render

            d = info()
            print(json.dumps(d, indent=2) if a.json else render(d))
            return 0
        # SLURM and friends send SIGTERM (or USR1) before SIGKILL.  dtb simulate and dtb
        # assimilate write a checkpoint and stop (exit 75, resumable); other commands turn
        # SIGTERM into an exception, so a run directory is marked failed, not left "running"
        on_main = threading.current_thread() is threading.main_thread()
        from dtb.simulate import StopRequest, demo, simulate

        stop = StopRequest() if a.command in ("simulate", "assimilate") else None
        handlers = ({sig: stop for sig in STOP_SIGNALS} if stop is not None
                    else {signal.SIGTERM: _raise_terminated})
        old = {sig: signal.signal(sig, h) for sig, h in handlers.items()} if on_main else {}
        try:
            if a.command == "build":
                from dtb.brain.commands import run_build

                return run_build(a)
            if a.command == "demo":
                return demo(a, ["dtb", *args_list])
            if a.command == "partition":
                from dtb.partition import run_partition

                return run_partition(a)
            if a.command == "assimilate":
                from dtb.assimilation.cli import run_assimilate

                a.command_line = ["dtb", *args_list]
                return run_assimilate(a, stop)
            if a.command == "fit":
                return a.run(a, args_list[args_list.index("fit") + 1:])
            if a.command == "job":
                from dtb.jobs import run_job

                return run_job(a, args_list)
            if a.command == "report":
                from dtb.report import run_report

                return run_report(a)
            if a.command == "warmup":
                from dtb.warmup import run_warmup

                return run_warmup(a)
            if a.command == "export":
                from dtb.export import run_export

                return run_export(a)
            return simulate(a, ["dtb", *args_list], stop)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
    except (ConfigError, _UsageError) as e:
        _mpi_abort(e, EXIT_USAGE)
        print(f"dtb: error: {command_line_message(e)}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_USAGE
    except InputError as e:
        _mpi_abort(e, EXIT_USAGE)
        print(f"dtb: error: {command_line_message(e)}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_USAGE
    except (DtbError, ValueError, OSError) as e:
        _mpi_abort(e, EXIT_ERROR)
        print(f"dtb: error: {command_line_message(e)}", file=sys.stderr)
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
        rank = MPI.COMM_WORLD.Get_rank()
        print(f"dtb: rank {rank}: error: {command_line_message(e)}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(code)


def _launched_mpi() -> bool:
    from dtb.distributed import launched_under_mpi

    return launched_under_mpi()
