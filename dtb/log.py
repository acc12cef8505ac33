"""Logging: dtb's messages go through the standard library's ``logging``.

Library modules log to ``logging.getLogger(__name__)`` (loggers under ``"dtb"``) and never
print; the command line (``dtb.cli.main``) installs one handler for the duration of a command,
at the level of ``--log-level`` (or ``-q``: warnings and errors, ``-v``: debug):

    dtb: building microcircuit: 7,712 neurons on 1 rank(s) (run directory runs/mc)
    dtb: warning: no atlas or volume table: every region gets the same volume
    dtb: rank 1: debug: exchange window 15 steps          (under MPI, with several ranks)

Under MPI every rank logs with its rank in the prefix, except what only needs saying once:
``log.info(..., extra=ONCE)`` is emitted by rank 0 alone, without a prefix.  Python
warnings (``warnings.warn``, which the library uses for what the caller can fix) are shown
by the command line as one ``dtb: warning:`` line, without a source line.  Progress bars and
log lines (``dtb.cli.progress``) and the commands' results on stdout are not log records.

Used as a library, dtb configures nothing: Python's last-resort handler prints warnings and
errors to stderr, and an application's own ``logging`` configuration applies.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from dtb.launch import launched_under_mpi

ROOT = "dtb"
ONCE = {"once": True}  # extra= for a record that rank 0 alone emits (it speaks for the job)
LEVELS = ("debug", "info", "warning", "error")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def mpi_rank() -> int | None:
    """This process's rank when an MPI launcher started several (from the environment, so
    MPI is not initialised); None otherwise."""
    if not launched_under_mpi():
        return None
    for var in _RANK_VARS:
        v = os.environ.get(var)
        if v is not None and v.isdigit():
            return int(v)
    return None


class _Formatter(logging.Formatter):
    """``dtb: [rank R: ][level: ]message``; the level is named for anything but info."""

    def __init__(self, rank: int | None):
        super().__init__()
        self.rank = rank

    def format(self, record: logging.LogRecord) -> str:
        head = "dtb: "
        if self.rank is not None and not getattr(record, "once", False):
            head += f"rank {self.rank}: "
        if record.levelno != logging.INFO:
            head += f"{record.levelname.lower()}: "
        text = head + record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Once(logging.Filter):
    """Drops ``ONCE`` records on ranks other than 0."""

    def __init__(self, rank: int | None):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "once", False) and self.rank not in (None, 0))


def level_from_args(args: Any) -> int:
    """The logging level a command's arguments ask for: ``--log-level`` if given, else
    ``-v`` (debug), ``-q`` (warning) or info."""
    name = getattr(args, "log_level", None)
    if name:
        return getattr(logging, name.upper())
    if getattr(args, "verbose", False):
        return logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.INFO


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    log = logging.getLogger(ROOT)
    if log.isEnabledFor(logging.DEBUG):
        log.warning("%s (%s, %s:%d)", message, category.__name__, filename, lineno)
    else:
        log.warning("%s", message)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO, stream: TextIO | None = None) -> Iterator[None]:
    """Log dtb's records at ``level`` and above to ``stream`` (default: sys.stderr now) for
    the duration of a command, with the rank prefix under MPI and rank 0 alone saying
    ``ONCE`` records; Python warnings become one ``dtb: warning:`` line.  Everything is put
    back afterwards (commands run in-process in tests, one after another)."""
    rank = mpi_rank()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter(rank))
    handler.addFilter(_Once(rank))
    log = logging.getLogger(ROOT)
    saved = (log.level, log.propagate, warnings.showwarning)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        handler.flush()
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
        warnings.showwarning = saved[2]


def add_log_flags(parser: Any) -> None:
    """``--log-level``, ``-v/--verbose`` and (unless the command has its own ``--quiet``)
    ``-q/--quiet`` on a command's parser and on its subcommands' (``dtb job slurm``)."""

    for action in parser._actions:  # argparse has no public way to list subcommands
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_log_flags(sub)
            return
    if parser.get_default("quiet") is None:  # simulate, demo, assimilate have their own
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug messages too")
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower, metavar="LEVEL",
                        help=f"messages at this level and above ({', '.join(LEVELS)}; "
                             "default info; overrides -q/-v)")
