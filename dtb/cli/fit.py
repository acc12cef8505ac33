"""``dtb fit``: fit a brain to the FC/FCD of recorded BOLD and score it on held-out TRs.

::

    dtb fit --brain brain.h5 --bold bold.tsv --tr 0.72 --fit-trs 0:600 --test-trs 600:1200 \\
        --param coupling=0.25:3@1 --param coupling.I=0:1@0.25 --out runs/fit
    dtb fit --resume runs/fit                  # after a stop, a signal or --stop-after

The command is put together from small modules of dtb.assimilation, in the order it runs:

- ``fit_options``: the parser (``add_fit_parser``) and every value checked
  (``check_args`` -> ``FitOptions``);
- ``fit_inputs``: the brain, the BOLD (read as ``dtb assimilate`` reads it), the fit and
  test TRs, the group FC, checked (``load_inputs`` -> ``FitInputs``); nothing simulated;
- ``fit_run``: the run directory (``FitRun``: manifest, checkpoint after every iteration,
  ``--resume``), the ES-MDA fit (``fit_esmda.Fitter``), the free runs, ``fit.h5``;
- ``fit_score``: every held-out score beside its baselines (``metrics.json``), figures.

Every input is checked before anything is simulated; bad input is an error naming the
file or option, the field, the value and what was expected (exit status 2).  Units: TR and
spin-up in seconds, the engine's time step in ms.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dtb.assimilation.fit_inputs import load_inputs
from dtb.assimilation.fit_members import MemberMap, SharedRun
from dtb.assimilation.fit_options import FitOptions, add_fit_parser, check_args
from dtb.assimilation.fit_run import (
    FitRun,
    Stopped,
    check_resume_inputs,
    execute,
    read_resumable,
    summary,
)
from dtb.cli.exits import EXIT_TEMPFAIL
from dtb.engine.context import on_root, world
from dtb.errors import ConfigError, DtbError

__all__ = ["add_fit_parser", "run_fit"]


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The command line after ``fit`` (recorded in the manifest for the record; ``--resume``
    rebuilds the run from the manifest's resolved ``options`` instead)."""
    argv = getattr(args, "fit_argv", None)
    if argv is not None:
        return list(argv)
    raw = list(sys.argv[1:])
    return raw[raw.index("fit") + 1:] if "fit" in raw else raw


def _strip(argv: list[str], flags: Sequence[str]) -> list[str]:
    """``argv`` without ``flags`` and their values (``--flag V`` or ``--flag=V``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        if any(a.startswith(f + "=") for f in flags):
            continue
        out.append(a)
    return out


def run_fit(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """``dtb fit``: returns the exit status (0; 75 after ``--stop-after``); errors are
    raised (``ConfigError``, ``InputError``: status 2; ``OutputError``: 1), as
    ``dtb.cli.main`` expects.  ``argv``: the arguments after ``fit`` (recorded in the
    manifest; default: from ``sys.argv``).  ``--resume`` rebuilds the options from the
    manifest's ``options`` (``FitOptions.from_record``), never by parsing ``argv`` again."""
    argv = list(argv) if argv is not None else _argv_of(args)
    if args.resume is not None:
        given = _strip(argv, ["--resume", "--stop-after", "--threads", "--procs",
                              "--ranks-per-member"])
        given = [a for a in given if a not in ("-q", "--quiet")]
        if given:
            raise ConfigError([f"--resume: with {given} -- expected only --stop-after, "
                               "--threads, --procs, --ranks-per-member and --quiet beside "
                               "it (the rest come from the run's manifest)"], "dtb fit")
        run_dir = Path(args.resume)
        m = read_resumable(run_dir)
        # the run's options as it resolved them (manifest "options", its digest checked
        # by read_resumable), with the few that --resume may give anew
        o = replace(FitOptions.from_record(m["options"], m.get("cwd", ".")), out=run_dir,
                    overwrite=False, resume=True,
                    **{k: getattr(args, k) for k in ("stop_after", "threads", "procs",
                                                      "quiet", "ranks_per_member")})
        check_resume_inputs(m)
        inp = load_inputs(o)
        o = replace(o, params=inp.params)   # with their maps resolved for the brain
        resume = True
    else:
        o = check_args(args)
        inp = load_inputs(o)
        o = replace(o, params=inp.params)
        resume = False
    comm = world()
    members = _members(o, comm)
    rank0 = comm is None or comm.Get_rank() == 0
    # rank 0 alone checks, locks and writes the run directory; its error reaches every rank
    made: list[Any] = []
    on_root(comm, lambda: made.append(_run_dir(o, resume)), DtbError)
    run: Any = made[0] if comm is None else SharedRun(made[0] if rank0 else None, comm)
    say = None if (o.quiet or not rank0) else _say
    with run as rd:
        if rank0:
            args.run_dir = o.out
        if not resume:
            rd.begin(o, inp, argv)
        try:
            metrics, files = execute(o, inp, rd, resume, say, members)
        except Stopped as e:
            rd.interrupt(e.iteration, e.reason)
            if rank0:
                print(f"dtb fit: stopped after iteration {e.iteration} of {o.iterations} "
                      f"({e.reason}) -- resume with: dtb fit --resume {o.out}",
                      file=sys.stderr)
            return EXIT_TEMPFAIL
        manifest = rd.complete(files, metrics)
    if rank0:
        print(o.out if o.quiet else summary(manifest, metrics, o.out))
    return 0


def _run_dir(o: FitOptions, resume: bool) -> FitRun:
    """The run directory: reopened for ``--resume``, else checked, locked and made."""
    if resume:
        return FitRun.reopen(o.out)
    inputs = [x for x in (o.brain, o.bold, o.group_fc, o.maps) if x is not None]
    return FitRun(o.out, o.overwrite, inputs)


def _members(o: FitOptions, comm: Any) -> MemberMap | None:
    """The forward runs' member communicators under mpiexec (None: one process)."""
    if comm is None:
        if o.ranks_per_member > 1:
            raise ConfigError([f"--ranks-per-member: {o.ranks_per_member} -- expected 1 "
                               "outside mpiexec (a member of several ranks needs them)"],
                              "dtb fit")
        return None
    size = comm.Get_size()
    if o.procs > 1:
        raise ConfigError([f"--procs: {o.procs} -- expected 1 under mpiexec (the ranks run "
                           "the forward runs: --ranks-per-member)"], "dtb fit")
    if size % o.ranks_per_member:
        raise ConfigError([f"--ranks-per-member: {o.ranks_per_member} -- expected a divisor "
                           f"of the {size} ranks"], "dtb fit")
    return MemberMap(comm, o.ranks_per_member)


def _say(line: str) -> None:
    """A progress line on stderr (a terminal or a batch job's log)."""
    print(line, file=sys.stderr, flush=True)
