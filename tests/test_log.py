"""Logging (issue 15, "Logging" convention): stdlib logging with levels on every command
(--log-level, -q, -v), a rank prefix under MPI and "say once" on rank 0; Python warnings as
one clean line; library modules log and never print."""

from __future__ import annotations

import ast
import io
import logging
import subprocess
import warnings
from pathlib import Path

import pytest
from interrupt import DTB, MPIEXEC, clean_env

from dtb.cli.parser import _parser
from dtb.log import ONCE, cli_logging, level_from_args

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "default_subject"
EXAMPLE = ROOT / "examples" / "ei_lif_cond.yaml"


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
            return
    yield prefix, parser


def test_every_command_takes_the_log_flags():
    commands = list(_commands(_parser()))
    assert len(commands) >= 8
    for path, p in commands:
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose", "--log-level"} <= flags, path
    a = _parser().parse_args(["report", "RUN", "-v"])
    assert level_from_args(a) == logging.DEBUG
    a = _parser().parse_args(["build", "--demo", "-o", "x.h5", "-q"])
    assert level_from_args(a) == logging.WARNING
    a = _parser().parse_args(["simulate", "--model", "microcircuit", "-q", "--log-level",
                              "DEBUG"])
    assert level_from_args(a) == logging.DEBUG and a.quiet
    assert level_from_args(_parser().parse_args(["info"])) == logging.INFO


@pytest.mark.parametrize("rank", [None, 0, 1])
def test_rank_prefix_and_say_once(monkeypatch: pytest.MonkeyPatch, rank: int | None):
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(var, raising=False)
    if rank is not None:
        monkeypatch.setenv("PMI_SIZE", "2")
        monkeypatch.setenv("PMI_RANK", str(rank))
    out = io.StringIO()
    log = logging.getLogger("dtb.cli.simulate")
    with cli_logging(logging.INFO, out):
        log.info("built %d synapses", 12, extra=ONCE)
        log.info("my part")
        log.debug("not shown at info")
        log.warning("disk nearly full")
    lines = out.getvalue().splitlines()
    p = "" if rank is None else f"rank {rank}: "
    want = ([] if rank == 1 else ["dtb: built 12 synapses"]) + [
        f"dtb: {p}my part", f"dtb: {p}warning: disk nearly full"]
    assert lines == want
    assert logging.getLogger("dtb").handlers == []  # put back after the command


def test_python_warnings_become_one_line():
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with cli_logging(logging.INFO, out):
            warnings.warn("no grey-matter map given", UserWarning, stacklevel=1)
        with cli_logging(logging.WARNING, out):
            warnings.warn("still said under -q", UserWarning, stacklevel=1)
    assert out.getvalue().splitlines() == ["dtb: warning: no grey-matter map given",
                                           "dtb: warning: still said under -q"]


def test_build_without_an_atlas_warns_in_one_line(tmp_path: Path):
    """Regression (issue 15, defect 7): dtb build without an atlas printed a raw
    ``UserWarning`` with a source line (commands.py:127 and the code)."""
    r = subprocess.run([DTB, "build", "--sc", str(DATA / "sc_weights.csv"), "--lengths",
                        str(DATA / "tract_lengths.csv"), "-o", str(tmp_path / "b.h5")],
                       capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "dtb: warning: no atlas or volume table: every region gets the same volume"]
    r = subprocess.run([DTB, "build", "--sc", str(DATA / "sc_weights.csv"), "--lengths",
                        str(DATA / "tract_lengths.csv"), "-o", str(tmp_path / "c.h5"), "-v"],
                       capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0 and "(UserWarning, " in r.stderr  # -v says where it came from


def test_quiet_and_verbose_on_simulate(tmp_path: Path):
    base = ["simulate", str(EXAMPLE), "--t", "1", "--threads", "1"]
    r = subprocess.run([DTB, *base, "--out", str(tmp_path / "a"), "-q"], capture_output=True,
                       text=True, timeout=300, env=clean_env())
    assert r.returncode == 0 and r.stderr == "" and r.stdout.strip() == str(tmp_path / "a")
    r = subprocess.run([DTB, *base, "--out", str(tmp_path / "b"), "--log-level", "warning"],
                       capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0 and "dtb: building" not in r.stderr
    assert "neurons" in r.stdout  # the summary is the command's result, not a log record
    r = subprocess.run([DTB, *base, "--out", str(tmp_path / "c")], capture_output=True,
                       text=True, timeout=300, env=clean_env())
    assert r.returncode == 0 and "dtb: building ei_lif_cond" in r.stderr


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_two_ranks_say_it_once(tmp_path: Path):
    r = subprocess.run([MPIEXEC, "-n", "2", DTB, "simulate", str(EXAMPLE), "--t", "1",
                        "--threads", "1", "--out", str(tmp_path / "r")], capture_output=True,
                       text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("dtb: building ei_lif_cond") == 1
    assert "rank 1" not in r.stderr


LIBRARY_PRINTS = {  # modules that print a command's result to stdout (or draw progress)
    "dtb/cli/main.py", "dtb/cli/simulate.py", "dtb/cli/report.py", "dtb/info.py", "dtb/cli/jobs.py",
    "dtb/cli/progress.py", "dtb/cli/build.py", "dtb/cli/partition.py", "dtb/cli/warmup.py",
    "dtb/io/export.py",
    "dtb/cli/assimilate.py", "dtb/cli/fit.py"}


def test_library_modules_log_and_do_not_print():
    offenders = []
    for path in [*ROOT.glob("dtb/**/*.py"), *ROOT.glob("assimilation/*.py"),
                 *ROOT.glob("kernels/*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel in LIBRARY_PRINTS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "print"):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
