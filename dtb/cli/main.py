"""The ``dtb`` command line.

``dtb simulate`` builds a network (a YAML config or a built-in model), runs it and writes a
run directory; ``dtb info`` reports versions and available backends.  Everything the user
gives is checked before anything expensive happens; errors are printed as
``dtb: error: <message>`` without a traceback, exit status 2 for invalid configurations or
arguments and 1 for other errors (output directory, runtime failures).

``dtb simulate`` and ``dtb demo`` live in dtb/cli/simulate.py; on SIGTERM or SIGUSR1 a
simulation or an assimilation checkpoints and exits 75 (resumable), other commands turn
SIGTERM into a failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from dtb.cli.assimilate import run_assimilate
from dtb.cli.build import run_build
from dtb.cli.exits import (
    EXIT_ERROR,
    EXIT_USAGE,
    STOP_SIGNALS,
    Terminated,
    _raise_terminated,
)
from dtb.cli.fit import run_fit
from dtb.cli.jobs import run_job
from dtb.cli.parser import _parser
from dtb.cli.partition import run_partition
from dtb.cli.report import run_report
from dtb.cli.simulate import StopRequest, demo, simulate
from dtb.cli.warmup import run_warmup
from dtb.errors import ConfigError, DtbError, InputError, UsageError, command_line_message
from dtb.info import info, render
from dtb.io.export import run_export
from dtb.launch import launched_under_mpi
from dtb.log import cli_logging, level_from_args

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

    with cli_logging(level_from_args(a)):
        return _run(a, args_list, parser)


def _run(a: argparse.Namespace, args_list: list[str], parser: argparse.ArgumentParser) -> int:
    """The command of the parsed arguments ``a``, its errors turned into exit codes."""
    try:
        if a.command == "info":
            d = info()
            print(json.dumps(d, indent=2) if a.json else render(d))
            return 0
        # SLURM and friends send SIGTERM (or USR1) before SIGKILL.  dtb simulate and dtb
        # assimilate write a checkpoint and stop (exit 75, resumable); other commands turn
        # SIGTERM into an exception, so a run directory is marked failed, not left "running"
        on_main = threading.current_thread() is threading.main_thread()

        stop = StopRequest() if a.command in ("simulate", "assimilate") else None
        handlers = ({sig: stop for sig in STOP_SIGNALS} if stop is not None
                    else {signal.SIGTERM: _raise_terminated})
        old = {sig: signal.signal(sig, h) for sig, h in handlers.items()} if on_main else {}
        try:
            if a.command == "build":
                return run_build(a)
            if a.command == "demo":
                return demo(a, ["dtb", *args_list])
            if a.command == "partition":
                return run_partition(a)
            if a.command == "assimilate":
                a.command_line = ["dtb", *args_list]
                return run_assimilate(a, stop)
            if a.command == "fit":
                return run_fit(a, args_list[args_list.index("fit") + 1:])
            if a.command == "job":
                return run_job(a, args_list, parser)
            if a.command == "report":
                return run_report(a)
            if a.command == "warmup":
                return run_warmup(a)
            if a.command == "export":
                return run_export(a)
            return simulate(a, ["dtb", *args_list], stop, parser)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
    except (ConfigError, UsageError, InputError) as e:
        _fail(e, a, EXIT_USAGE)
        return EXIT_USAGE
    except (DtbError, ValueError, OSError) as e:
        _fail(e, a, EXIT_ERROR)
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

        if _launched_mpi():
            traceback.print_exc()
        _mpi_abort(e, EXIT_ERROR)
        raise


def _fail(e: BaseException, a: argparse.Namespace, code: int) -> None:
    """Say what failed (under MPI: end the job, see ``_mpi_abort``)."""
    if _mpi_abort(e, code):
        print(f"dtb: error: {command_line_message(e)}", file=sys.stderr)
        _report_failed_run(a)


def _mpi_abort(e: BaseException, code: int) -> bool:
    """Under MPI a failure on one rank must end the whole job promptly (the others would
    wait in a collective for ever): print this rank's message and abort every rank.

    An error every rank raised together (``on_every_rank``, set by
    ``dtb.engine.context.on_root``) needs no abort: every rank returns its exit code in
    order, and only rank 0 prints the message.  Aborting there raced the launcher's
    forwarding of stderr: the job could end with its message lost.  Returns whether this
    process should print the message."""
    if not launched_under_mpi():
        return True
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        rank = MPI.COMM_WORLD.Get_rank()
        if getattr(e, "on_every_rank", False):
            return rank == 0
        print(f"dtb: rank {rank}: error: {command_line_message(e)}", file=sys.stderr,
              flush=True)
        time.sleep(0.5)  # the launcher forwards the message before the abort tears it down
        MPI.COMM_WORLD.Abort(code)
    return True


def _launched_mpi() -> bool:
    return launched_under_mpi()
