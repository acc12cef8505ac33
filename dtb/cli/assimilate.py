"""``dtb assimilate``: fit a brain's per-unit hyperparameters to recorded BOLD.

::

    dtb assimilate --brain brain.h5 --bold bold.csv --tr 0.8 --members 8 --out runs/fit
    mpiexec -n 16 dtb assimilate ... --members 8 --ranks-per-member 2
    dtb assimilate --demo --out runs/twin           # a twin experiment on the default subject

The command is put together from small modules, in the order it runs:

- ``options``: the parser and every value checked (``check_args`` -> ``Options``);
- ``problem``: the brain, the observations, the parameters and prior draws (``Problem``), the
  MPI layout of member communicators (``Layout``), the members' engines, the twin truth;
- ``resume``: checkpoints at TR (and free-run TR) boundaries, stop signals and ``--resume``;
- ``evaluation``: ``metrics.json``, every score next to its baselines;
- ``outputs``: the run directory (``AssimilationRun``): manifest, ``assimilation.zarr``
  (``DIMENSIONS``), figures, the demo's observed CSV.

This module keeps the entry points: ``add_assimilate_parser`` and ``run_assimilate`` (for
``dtb.cli.main``), the fit itself (``_fit``: the assimilation and the posterior-mean free run), the
terminal ``summary`` and ``main`` (``python -m dtb.cli.assimilate``).  Units: TR and BOLD
time in seconds, the engine's time step and ``--checkpoint-every`` in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from dtb.assimilation.evaluation import evaluate, outside_model_range
from dtb.assimilation.loop import (
    AssimilationConfig,
    AssimilationResult,
    EngineMember,
    FreeRunState,
    LoopState,
    assimilate,
    free_run,
    member_gather,
)
from dtb.assimilation.options import (
    Options,
    UsageError,
    add_assimilate_parser,
    check_args,
    check_tr,
)
from dtb.assimilation.outputs import DIMENSIONS, FIGURES, METRICS, STORE, AssimilationRun
from dtb.assimilation.problem import (
    SETTLE_S,
    Layout,
    Problem,
    gather_rows,
    load_problem,
    make_engine,
    make_layout,
    nominal_baseline,
    twin_truth,
)
from dtb.assimilation.resume import (
    Resume,
    Stopped,
    checkpointer,
    free_checkpointer,
    load_resume,
    resume_options,
)
from dtb.assimilation.stop import Abandoned, StopSource, make_poll
from dtb.cli.exits import EXIT_TEMPFAIL, Terminated
from dtb.cli.progress import Progress
from dtb.engine.context import on_root, world
from dtb.engine.threads import choose_threads
from dtb.errors import DtbError, ModelError
from dtb.io import checkpoint
from dtb.log import ONCE

log = logging.getLogger(__name__)

__all__ = ["add_assimilate_parser", "run_assimilate", "DIMENSIONS", "Options",
           "evaluate"]


def run_assimilate(args: argparse.Namespace, stop: StopSource | None = None) -> int:
    """``dtb assimilate``: returns the exit status (0; 75 after a checkpoint on a stop
    signal, ``stop`` being ``dtb.cli.runloop.StopRequest``); errors are raised
    (``UsageError``, ``InputError``: status 2; ``OutputError`` and others: 1), as
    ``dtb.cli.main.main`` expects."""
    comm = world()
    rank0 = comm is None or comm.Get_rank() == 0
    args, o, lay, prob, resume = _prepare(args, comm)
    # progress lines (per TR, with an ETA) on rank 0's stderr, as dtb simulate's
    err = None if (o.quiet or not rank0) else sys.stderr
    inputs = [x for x in (o.brain, o.bold, o.labels, o.atlas) if x is not None]
    made: list[AssimilationRun] = []
    # rank 0 checks and locks the run directory; every rank raises its error, if any
    on_root(comm, lambda: made.append(AssimilationRun.reopen(o.out, o) if resume is not None
                                      else AssimilationRun(o.out, o.overwrite, inputs)),
            DtbError)
    run: Any = made[0] if made else contextlib.nullcontext()
    with run as rd:
        if rank0:
            args.run_dir = o.out
            if resume is None:
                rd.begin(o, prob, lay)
            else:
                rd.restart(resume.tr, resume.path.name, o.threads)
        what = (f"resuming {o.out} from {resume.path.name}" if resume is not None
                else f"run directory {o.out}")
        log.info("assimilate: %d units, %s neurons per member, %d members on %d rank(s), "
                 "%d TRs of %g s (%s)", prob.spec.n_units, f"{prob.net.n_neurons:,}",
                 o.members, lay.ranks, prob.obs.shape[0], o.tr_s, what, extra=ONCE)
        if err and resume is None:
            _warn_range(prob, o, err)
        _observations(prob, o, lay, resume, err)
        try:
            res, free, secs = _fit(prob, o, lay, err, stop, resume,
                                   ready=rd.commit if rank0 else None)
        except Abandoned as e:
            return _abandoned(e, rd if rank0 else None, o, lay)
        except ModelError as e:
            raise _where(e, prob) from None
        except Stopped as e:
            if rank0:
                _record_stop(rd, e, prob, o)
            return EXIT_TEMPFAIL
        if not rank0:
            return 0
        metrics = evaluate(prob, res, free, o)
        metrics["timings"] = secs
        manifest = rd.complete(o, prob, res, free, metrics, lay)
    if o.quiet:
        print(o.out)
    else:
        print(summary(manifest, metrics, o.out))
    return 0


def _prepare(args: argparse.Namespace, comm: Any
             ) -> tuple[argparse.Namespace, Options, Layout, Problem, Resume | None]:
    """The checked options (``--resume``: the resumed run's, from its manifest), the MPI
    layout, the problem and the checkpoint a resumed run continues from (None: a new run)."""
    resume: Resume | None = None
    if getattr(args, "resume", None) is not None:
        o = resume_options(args, comm)   # from the manifest's record, not its command line
    else:
        o = check_args(args)
        o.extra["command"] = getattr(args, "command_line", None)
    if comm is not None:
        o.out = Path(comm.bcast(str(o.out), root=0))
    lay = make_layout(comm, o.members, o.ranks_per_member)
    if o.threads is not None:
        lay.threads = o.threads
    prob = load_problem(o)
    tr_s = o.extra.get("tr_s", o.tr_s)
    if tr_s is None:
        raise UsageError("--tr: missing -- expected the repetition time in seconds")
    o.tr_s = float(tr_s)
    if getattr(args, "tr", None) is None:              # the TR the BOLD file states
        check_tr(o.tr_s, o.dt_ms, o.substeps, f"{o.bold}: tr")
    if getattr(args, "resume", None) is not None:
        resume = load_resume(o.out, comm)
    return args, o, lay, prob, resume


def _observations(prob: Problem, o: Options, lay: Layout, resume: Resume | None,
                  err: TextIO | None) -> None:
    """The observations the fit assimilates: a resumed run's as checkpointed, the demo's
    made from its twin truth (progress on ``err``), else as loaded."""
    if resume is not None:
        prob.obs = np.asarray(resume.state["problem/obs"], float)
        if "problem/obs_clean" in resume.state:
            prob.obs_clean = np.asarray(resume.state["problem/obs_clean"], float)
        o.extra["truth_s"] = float(resume.meta.get("truth_s", 0.0))
    elif o.demo:
        truth = _progress(o, err, "twin truth")
        try:
            twin_truth(prob, o, lay, truth)
        finally:
            if truth is not None:
                truth.close()


def _record_stop(rd: AssimilationRun, e: Stopped, prob: Problem, o: Options) -> None:
    """Mark the run interrupted at the checkpoint a stop signal wrote; say how to resume."""
    rd.interrupt(e.tr, e.path.name, e.reason)
    T = prob.obs.shape[0]
    where = (f"TR {e.tr} of {T}" if e.tr <= T else
             f"TR {e.tr - T} of the posterior-mean free run (step {e.tr})")
    log.warning("%s: stopped at %s after writing %s -- resume with: "
                "dtb assimilate --resume %s", e.reason, where, e.path, o.out)


def _progress(o: Options, err: TextIO | None, label: str) -> Progress | None:
    """A progress display counted in TRs on ``err`` (None: none)."""
    return None if err is None else Progress(o.tr_s * 1e3, err, label=label, unit="TR")


def _fit(prob: Problem, o: Options, lay: Layout, err: TextIO | None,
         stop: StopSource | None = None, resume: Resume | None = None,
         ready: Callable[[], None] | None = None
         ) -> tuple[AssimilationResult, np.ndarray, dict[str, float]]:
    """The assimilation (first ``n_assim`` TRs analysed, the rest a frozen forecast) and the
    posterior-mean free run; ``(AssimilationResult, bold_free (T_free, M, R), timings)``.
    Checkpoints at TR boundaries (``resume.checkpointer``) and, as steps ``T + f``, after
    free TRs (``resume.free_checkpointer``); ``resume`` continues from either.  Progress
    per TR on ``err`` (None: none): the assimilation's TRs and the free run's counted
    together, from the first TR boundary (after the spin-up) on.  ``ready()`` is called once
    the members are built (the earlier run an --overwrite replaces is removed only then)."""

    if o.threads is None and lay.comm is None:
        # one process: as many threads as cores are idle (dtb.engine.threads), sized once every
        # check has passed, so the line that says so never precedes an error
        lay.threads = choose_threads(None)
    t0 = time.perf_counter()
    if resume is None:
        log.info("assimilate: building %d member(s) per rank and measuring their baselines "
                 "(%g s of model time each) before TR 1", len(lay.local),
                 max(o.spinup_s, o.tr_s) + SETTLE_S, extra=ONCE)
    poll = make_poll(stop)
    members = [EngineMember(make_engine(prob.net, o, o.seed + 1 + i, lay), poll=poll)
               for i in lay.local]
    t_build = time.perf_counter() - t0
    if ready is not None:
        ready()
    if resume is None:
        base_loc = np.stack([nominal_baseline(m, prob, o) for m in members])
        base = gather_rows(lay, base_loc)                                # (M, U)
        t_base = time.perf_counter() - t0 - t_build
        loop_state, free_state = None, None
    else:
        base, base_loc, t_base, loop_state, free_state = _resumed(resume, lay, members)
    n_free = o.free_run_trs or prob.obs.shape[0]
    res, free, t_assim, t_free = _assimilate_then_free(
        prob, o, lay, members, (base, base_loc), {"baseline_s": t_base}, err, stop, poll,
        n_free, loop_state, free_state, resumed=resume is not None)
    log.info("assimilate: free run with the posterior mean, %d TRs (%.1f s)", n_free, t_free,
             extra=ONCE)
    secs = {"build_s": t_build, "baseline_s": t_base, "spinup_s": res.timings["spinup_s"],
            "forecast_s": res.timings["forecast_s"], "analysis_s": res.timings["analysis_s"],
            "assimilate_s": t_assim, "free_run_s": t_free,
            "truth_s": o.extra.get("truth_s", 0.0),
            "analysis_fraction_of_forecast": res.timings["analysis_s"]
            / max(res.timings["forecast_s"], 1e-12)}
    return res, free, secs


def _resumed(resume: Resume, lay: Layout, members: list[EngineMember]
             ) -> tuple[np.ndarray, np.ndarray, float, LoopState, FreeRunState | None]:
    """Restore this rank's members from the checkpoint ``resume``; returns the baselines
    (all members ``(M, U)``, this rank's), the seconds they took, the loop's state and the
    free run's (None: the checkpoint was written during the assimilation)."""
    st = resume.state
    for i, mem in zip(lay.local, members, strict=True):
        pre = f"member{i:05d}/engine/"
        mem.engine.set_state({k[len(pre):]: v for k, v in st.items() if k.startswith(pre)})
    base = np.asarray(st["problem/base"], float)
    base_loc = base[lay.local]
    t_base = float(resume.meta.get("times", {}).get("baseline_s", 0.0))
    loop_state = LoopState.from_parts(
        {k[len("loop/"):]: v for k, v in st.items() if k.startswith("loop/")},
        resume.meta["loop"])
    free_state = None
    if "free" in resume.meta:       # a checkpoint of the free run: the loop is done
        free_state = FreeRunState(int(resume.meta["free"]["f"]),
                                  np.asarray(st["free/bold"], float),
                                  np.asarray(st["free/hemo_state"], float))
    return base, base_loc, t_base, loop_state, free_state


def _assimilate_then_free(prob: Problem, o: Options, lay: Layout, members: list[EngineMember],
                          bases: tuple[np.ndarray, np.ndarray], times: dict[str, float],
                          err: TextIO | None, stop: StopSource | None,
                          poll: Callable[[], None] | None, n_free: int,
                          loop_state: LoopState | None, free_state: FreeRunState | None,
                          resumed: bool
                          ) -> tuple[AssimilationResult, np.ndarray, float, float]:
    """The assimilation, then the posterior-mean free run of ``n_free`` TRs, checkpointed at
    TR boundaries, with progress on ``err``.  ``bases``: the members' baselines (all
    ``(M, U)``, this rank's).  Returns (AssimilationResult, bold_free (T_free, M, R),
    seconds assimilating, seconds free-running)."""
    base, base_loc = bases
    T = prob.obs.shape[0]
    cfg = AssimilationConfig(tr_s=o.tr_s, substeps=o.substeps, obs_var=prob.obs_var,
                             rw_sd=o.rw_sd, inflation=o.inflation, rtps=o.rtps,
                             method=o.method, localize=o.localize, hemo=o.hemo,
                             spinup_s=SETTLE_S, seed=o.seed)
    gather = None
    if lay.comm is not None:
        gather = member_gather(lay.comm, lay.member_comm)
    tr_boundary = checkpointer(prob, o, lay, members, base, times, stop)
    # the loop state after the last TR: what a free-run checkpoint holds of the assimilation
    final = [loop_state] if loop_state is not None and loop_state.t == T else []
    progress = _progress(o, err, "assimilate")
    if progress is not None and resumed:  # no boundary at the resumed TR
        progress.begin(T + free_state.f if free_state is not None
                       else loop_state.t if loop_state is not None else 0)

    def on_tr(done: int) -> None:
        if progress is not None:
            if done == 0:
                progress.begin(0)  # after the spin-up: the ETA counts TRs only
            else:
                progress.update(done, T + n_free)

    def boundary(t: int, snapshot: Any) -> None:
        if t == T:
            final.append(snapshot())
        tr_boundary(t, snapshot)
        on_tr(t)

    t1 = time.perf_counter()
    try:
        res = assimilate(members, prob.obs, prob.obs_index, prob.params, prob.theta0, cfg,
                         assimilated=prob.assimilated, gather=gather, member_ids=lay.local,
                         baseline_hz=base, forecast_from=prob.n_assim, boundary=boundary,
                         resume=loop_state, poll=poll)
        t_assim = time.perf_counter() - t1
        tm = res.timings
        log.info("assimilate: %d TRs assimilated, %d forecast (%.1f s: forecast %.1f s, "
                 "analysis %.3f s)", prob.n_assim, prob.obs.shape[0] - prob.n_assim,
                 t_assim, tm["forecast_s"], tm["analysis_s"], extra=ONCE)
        # free run with the posterior mean (the last assimilated TR's ensemble mean),
        # checkpointed at steps T + f (f free TRs done)
        tr_free = free_checkpointer(prob, o, lay, members, base, times, stop, final[-1],
                                    n_free)

        def free_boundary(f: int, snapshot: Any) -> None:
            tr_free(f, snapshot)
            on_tr(T + f)

        free, t_free = _free_run(prob, o, lay, members, res, base_loc, n_free,
                                 free_boundary, free_state, poll)
    finally:
        if progress is not None:
            progress.close()
    return res, free, t_assim, t_free


def _warn_range(prob: Problem, o: Options, log: TextIO) -> None:
    """Say at once when observed values lie outside the BOLD range of every physiological
    state: the filter cannot follow them (raw intensities, drift, z-scores unscaled)."""

    r = outside_model_range(prob.obs, o.hemo)
    if r["values_outside"]:
        lo, hi = r["model_bold_range"]
        print(f"dtb assimilate: warning: {r['values_outside']} of {r['values']} observed "
              f"values (from {r['observed_min']:.3g} to {r['observed_max']:.3g}) lie outside "
              f"[{lo:.3g}, {hi:.3g}], the BOLD (fractional signal change) any physiological "
              "state of the model can produce -- check --preprocess (psc, detrend, scale=)",
              file=log, flush=True)


def _abandoned(e: Abandoned, rd: AssimilationRun | None, o: Options, lay: Layout) -> int:
    """A stop signal that no TR boundary followed in time (``dtb.assimilation.stop``): the
    run is marked interrupted at its newest checkpoint (exit 75), or, with none, failed
    (``dtb.cli.main.Terminated``: exit 128 + the signal).  Under MPI the other ranks may be
    waiting in the forecast's collectives for this one: the job is aborted with status 75
    once rank 0 has written the manifest (a rank other than 0 aborts at once; the manifest
    then still says running, which --resume accepts as it does after SIGKILL)."""

    newest = checkpoint.candidates(o.out)
    if rd is not None and newest:
        step = int(newest[0].name.split("-", 1)[1])
        rd.interrupt(step, newest[0].name, e.reason)
        print(f"dtb: {e.reason}: the TR in progress was given up ({e}); the run stopped at "
              f"its checkpoint {newest[0]} -- resume with: dtb assimilate --resume {o.out} "
              "(the work since that checkpoint is done again)", file=sys.stderr, flush=True)
    if lay.comm is not None and lay.comm.Get_size() > 1:
        lay.comm.Abort(EXIT_TEMPFAIL if newest else 128 + e.signum)
    if not newest:
        print(f"dtb: {e.reason} before the first checkpoint (no TR boundary within "
              f"{e.waited_s:.1f} s): nothing to resume; use --checkpoint-every to make "
              "long runs resumable", file=sys.stderr, flush=True)
        raise Terminated(e.signum)
    return EXIT_TEMPFAIL


def _where(e: ModelError, prob: Problem) -> ModelError:
    """``e`` with the TR, member and region (label) it happened at, for the user."""
    idx = getattr(e, "unit", None)
    tr = getattr(e, "tr", None)
    where = []
    if tr is not None:
        where.append(f"TR {tr}")
    if idx is not None and len(idx) == 2:
        labels = prob.spec.unit_labels
        where.append(f"member {idx[0]}, region {labels[idx[1]]} (unit {idx[1]})")
    out = ModelError(f"{', '.join(where)}: {e}" if where else str(e))
    out.tr, out.unit = tr, idx
    return out


def _far_text(far: dict[str, Any]) -> str:
    """One sentence on observations far outside what the model produces."""
    parts = []
    if far["far_trs"]:
        parts.append(f"normalised innovation above {far['far_threshold']:g} at "
                     f"{len(far['far_trs'])} TR(s) (max {far['normalized_innovation_max']:.3g}; "
                     "about 1 expected)")
    if far["values_outside"]:
        lo, hi = far["model_bold_range"]
        parts.append(f"{far['values_outside']} of {far['values']} observed values outside "
                     f"[{lo:.3g}, {hi:.3g}], the BOLD any physiological state can produce")
    return ("the observations are far outside what the model produces: " + "; ".join(parts)
            + " -- check the preprocessing (--preprocess psc, detrend, scale=)")


def _free_run(prob: Problem, o: Options, lay: Layout, members: list[EngineMember],
              res: AssimilationResult, base_loc: np.ndarray, n_free: int,
              boundary: Callable[[int, Any], None], free_state: FreeRunState | None,
              poll: Callable[[], None] | None = None) -> tuple[np.ndarray, float]:
    """The posterior-mean free run, from the last assimilated TR's ensemble mean, with
    ``boundary`` after every free TR: (bold_free (T_free, M, R), seconds)."""

    post = res.theta[prob.n_assim - 1].mean(axis=0)                      # (U, P)
    t2 = time.perf_counter()
    hs = res.hemo_state[:, lay.local]
    free_loc = free_run(members, prob.params, post.T, n_free, o.tr_s, base_loc,
                        prob.obs_index, prob.obs.shape[1], o.hemo, substeps=o.substeps,
                        hemo_state=hs, boundary=boundary, resume=free_state,
                        poll=poll)
    free = np.moveaxis(gather_rows(lay, np.moveaxis(free_loc, 1, 0)), 0, 1)
    return free, time.perf_counter() - t2


def summary(manifest: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: the scores next to their baselines."""
    def g(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    ins = m["in_sample"]
    lines = [f"dtb assimilate: {out} (complete)",
             f"  in-sample one-step correlation: model {g(ins['model']['correlation']['mean'])}"
             f", persistence {g(ins['persistence']['correlation']['mean'])}, AR(1) "
             f"{g(ins['ar1']['correlation']['mean'])}"]
    seg = m.get("held_out_segment")
    if seg:
        lines.append(f"  held-out last {seg['horizon_trs']} TRs, RMSE: model "
                     f"{seg['model']['rmse']:.3g}, persistence {seg['persistence']['rmse']:.3g}"
                     f", AR(1) {seg['ar1']['rmse']:.3g}, training mean "
                     f"{seg['train_mean']['rmse']:.3g}")
    f = m["fc"]
    lines.append(f"  FC correlation (free run, posterior mean): {g(f['fc_correlation'])} "
                 f"(structural connectome: {g(f['baseline_structural'])})")
    h = m["filter"]
    far = h.get("observations_vs_model") or {}
    if far.get("far_outside"):
        lines.append(f"  warning: {_far_text(far)}")
    if far.get("hemo_values_clamped"):
        lines.append(f"  note: the analysis put {far['hemo_values_clamped']} hemodynamic values "
                     f"back into the physiological range (at {len(far['hemo_clamped_trs'])} "
                     "TRs)")
    lines.append(f"  filter: spread/error {g(h['spread_error_ratio'])}, normalized innovation "
                 f"{g(h['normalized_innovation_mean'])}, parameter spread (logit) "
                 f"{g(h['param_spread_logit_first'])} -> {g(h['param_spread_logit_last'])}")
    for k, v in m.get("twin", {}).items():
        if isinstance(v, dict):
            lines.append(f"  twin {k}: relative RMSE {v['relative_rmse']:.3f} (prior mean "
                         f"{v['relative_rmse_prior_mean']:.3f}), 90 % coverage "
                         f"{v['coverage_90']:.2f} ({v['coverage_90_if_calibrated']:.2f} if "
                         f"calibrated), correlation with truth "
                         f"{g(v['correlation_with_truth'])}")
    lines.append(f"  {out / METRICS}, {out / STORE}, {out / FIGURES}/")
    return "\n".join(lines)
