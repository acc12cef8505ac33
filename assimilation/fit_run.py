"""``dtb fit``: the run (``execute``) and its run directory (``FitRun``).

The run directory holds, when complete:

- ``manifest.json``: status ``"running"`` first, replaced atomically as the last act with
  ``"complete"`` (or ``"interrupted"`` after ``--stop-after`` or a signal, ``"failed"``);
  the command's arguments, options, inputs with their SHA-256, timings, outputs' checksums;
- ``fit.h5``: ``parameters`` (names, ``low``/``high``/``centre`` attributes),
  ``ensemble`` (stages, N, P) the members' parameter values, stage 0 the prior and stage i
  after iteration i, ``posterior`` (N, P), ``posterior_mean`` (P,) (the logit-scale mean,
  mapped back), ``misfit`` (iterations, N), ``y`` and ``Gamma`` the fitted statistics and
  their noise, ``basis/*`` the FC reduction and ``basis_variance/*`` the log variances'
  (``fit.BlockBasis``: ``centre``, ``components``, ``explained``, ``start``),
  ``bold/observed_fit``, ``bold/observed_test`` (detrended, the brain's region order),
  ``bold/fitted``, ``bold/unfitted`` (the free runs), ``regions/label``, ``regions/name``;
- ``metrics.json``: every held-out score beside its baselines (``fit_score``), the fit's
  misfit per iteration, the posterior, and with ``--truth`` the twin scores;
- ``figures/``: ``fc.png``, ``fcd.png``, ``parameters.png``;
- ``bold_free.tsv`` (+ ``.json``): the fitted free run, readable by ``dtb assimilate``;
- ``brain_fitted.h5``: the input brain at the posterior mean (``fit.fitted_spec``), a brain
  file for ``dtb simulate --brain`` and for the per-TR filter, ``dtb assimilate --brain``,
  to start from the fitted parameters.

``checkpoints/fit.npz`` (the ``fit_esmda.Fitter`` state after the noise runs and after every
iteration, with its JSON in ``meta``) is written atomically while the run goes and removed
when it completes; ``--resume`` continues from it, bit for bit as if never stopped (the
forward runs' seeds depend only on the seed, the iteration and the member; the update's
random state is in the checkpoint).
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation import fit as F
from dtb.assimilation import summary as S
from dtb.assimilation.fit_esmda import BASIS_KEY, Fitter
from dtb.assimilation.fit_inputs import FitInputs
from dtb.assimilation.fit_members import MemberMap
from dtb.assimilation.fit_options import FitOptions
from dtb.assimilation.fit_score import (
    baselines,
    figures,
    identity_values,
    realisation_scores,
    regional_scores,
    score,
    twin_scores,
)
from dtb.assimilation.summary import detrend
from dtb.engine.compiling import compile_seconds
from dtb.errors import InputError
from dtb.io.bids import write_bold_tsv
from dtb.io.fileio import TMP_PREFIX, file_entries, sha256_file, write_atomic, write_h5_atomic
from dtb.io.lifecycle import RunLifecycle
from dtb.io.manifest import NotResumable, jsonable, utc_now, versions
from dtb.io.runfiles import config_digest, read_manifest

__all__ = ["FitRun", "Stopped", "execute", "MANIFEST_FORMAT", "CHECKPOINT", "OUTPUTS"]

MANIFEST_FORMAT = "dtb-fit"
CHECKPOINT = "checkpoints/fit.npz"
RESULT = "fit.h5"
METRICS = "metrics.json"
FIGURES = "figures"
FREE_TSV = "bold_free.tsv"
FITTED_BRAIN = "brain_fitted.h5"
OUTPUTS = (RESULT, METRICS, FIGURES, FREE_TSV, "bold_free.json")
WRITTEN = ("manifest.json", *OUTPUTS, "checkpoints")
FREE_ITERATION = 2_000_000      # the seeds' iteration index of the scored free runs



class Stopped(Exception):
    """The run stopped after a checkpoint (``--stop-after``): resumable, exit 75."""

    def __init__(self, iteration: int, reason: str):
        super().__init__(f"{reason} after iteration {iteration}")
        self.iteration, self.reason = iteration, reason


class FitRun(RunLifecycle):
    """The run directory of ``dtb fit``: the lifecycle of ``dtb.io.lifecycle.RunLifecycle``
    (checks and lock on construction, or ``reopen`` for ``--resume``; overwrite; status
    transitions; failure on an exception) with a manifest of format ``dtb-fit``; outputs
    through temporary names, ``complete`` last.  A run that raises after a checkpoint is
    marked ``interrupted`` (``--resume`` continues it), before one ``failed``."""

    OUTPUTS = OUTPUTS

    @classmethod
    def reopen(cls, path: Path) -> FitRun:
        """The directory of an unfinished fit, locked, nothing removed; raises
        ``NotResumable`` when it is not one (no manifest of this format, complete, no
        checkpoint)."""
        manifest = read_resumable(Path(path))
        if not (Path(path) / CHECKPOINT).is_file():
            raise NotResumable(f"{path}: no checkpoint ({CHECKPOINT}) -- the run "
                               "stopped before its noise runs were done; start it again")
        return cls.reopened(path, manifest)

    def begin(self, o: FitOptions, inp: FitInputs, argv: list[str]) -> None:
        """Write the manifest ``running`` (an earlier run set aside first)."""
        opts = o.record()
        self.record_start({
            "format": MANIFEST_FORMAT, "format_version": 1, "status": "running",
            "error": None, "dtb_version": versions()["dtb"], "versions": versions(),
            "command": ["dtb", "fit", *argv], "argv": list(argv), "cwd": os.getcwd(),
            "hostname": socket.gethostname(), "platform": platform.platform(),
            "source": inp.source, "options": opts, "config_sha256": config_digest(opts),
            "written": sorted(WRITTEN), "seed": o.seed, "start_time": utc_now(),
            "end_time": None, "timings": None, "outputs": {}})

    def restart(self, iteration: int) -> None:
        """Mark a reopened run ``"running"`` again (``restarts`` gets the iteration)."""
        self.record_restart({"iteration": iteration})

    def failed_status(self) -> str:
        """``"interrupted"`` when the checkpoint lets ``--resume`` continue, else
        ``"failed"``."""
        return "interrupted" if (self.path / CHECKPOINT).is_file() else "failed"

    def checkpoint(self, state: tuple[dict[str, np.ndarray], dict[str, Any]],
                   extra: dict[str, Any]) -> None:
        """Write the fitter's state (and ``extra`` JSON values) to ``checkpoints/fit.npz``,
        atomically."""
        arrays, meta = state
        buf = io.BytesIO()
        payload: dict[str, Any] = {k.replace("/", "__"): v for k, v in arrays.items()}
        np.savez(buf, meta=np.array(json.dumps(meta | {"extra": extra})), **payload)
        (self.path / "checkpoints").mkdir(exist_ok=True)
        write_atomic(self.path / CHECKPOINT, buf.getbuffer(), "checkpoint")

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        f = self.path / CHECKPOINT
        try:
            with np.load(f, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k.replace("__", "/"): z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError) as e:
            raise NotResumable(f"{f}: unreadable checkpoint ({e}) -- start the run "
                               "again") from e
        return arrays, meta

    def interrupt(self, iteration: int, reason: str) -> None:
        """Mark the run ``"interrupted"`` after ``iteration`` (``reason``: what stopped
        it); ``--resume`` continues from the checkpoint."""
        self.record_interrupt({"iteration": int(iteration), "checkpoint": CHECKPOINT,
                               "reason": reason})

    def complete(self, files: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        """Write the outputs (``files``: fit.h5's arrays and attributes, figures' inputs),
        then the manifest ``complete``; the checkpoint is removed."""
        self.commit()
        outputs: dict[str, Any] = {}

        def fill(h: Any) -> None:
            for k, v in files["h5"].items():
                h.create_dataset(k, data=v)
            for k, v in files["h5_attrs"].items():
                h.attrs[k] = v
            g = h["parameters"]
            for k in ("low", "high", "centre", "mode", "map"):
                g.attrs[k] = files["param_attrs"][k]

        d, s, _ = write_h5_atomic(self.path / RESULT, fill, "fit results")
        outputs[RESULT] = {"path": RESULT, "sha256": d, "bytes": s}
        text = json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n"
        d, s = write_atomic(self.path / METRICS, text.encode(), "metrics")
        outputs[METRICS] = {"path": METRICS, "sha256": d, "bytes": s}
        files["brain"].save(self.path / FITTED_BRAIN)
        outputs[FITTED_BRAIN] = {"path": FITTED_BRAIN,
                                 "sha256": sha256_file(self.path / FITTED_BRAIN),
                                 "bytes": (self.path / FITTED_BRAIN).stat().st_size}
        outputs.update(write_bold_tsv(self.path / FREE_TSV, files["fitted"], files["labels"],
                                      files["names"], files["tr_s"],
                                      {"Description": "free run of the posterior-mean "
                                                      "brain, written by dtb fit"}))
        tmp = self.path / f"{TMP_PREFIX}{os.getpid()}-{FIGURES}"
        shutil.rmtree(tmp, ignore_errors=True)
        names = figures(tmp, **files["figures"])
        if (self.path / FIGURES).exists():
            shutil.rmtree(self.path / FIGURES)
        os.replace(tmp, self.path / FIGURES)
        outputs[FIGURES] = file_entries(self.path, FIGURES, names)
        return self.record_complete({"outputs": outputs, "timings": metrics["timings"],
                                     "summary": _summary_numbers(metrics)})


def read_resumable(path: Path) -> dict[str, Any]:
    """The manifest of an unfinished ``dtb fit`` run at ``path``; raises NotResumable."""
    m = read_manifest(path)
    if m is None or m.get("format") != MANIFEST_FORMAT:
        raise NotResumable(f"{path}: not a dtb fit run directory (no manifest.json of format "
                           f"{MANIFEST_FORMAT!r}) -- expected the --out of an interrupted "
                           "dtb fit")
    if m.get("status") == "complete":
        raise NotResumable(f"{path}: the fit is complete -- nothing to resume")
    if config_digest(m.get("options")) != m.get("config_sha256") or \
            not isinstance(m.get("argv"), list):
        raise NotResumable(f"{path}/manifest.json: its options were edited after the run "
                           "started -- restore the manifest or start a new run")
    return m


def _summary_numbers(m: dict[str, Any]) -> dict[str, Any]:
    h = m["heldout"]
    out = {"fc_r": h["fitted"]["fc_r"], "fc_r_unfitted": h["unfitted"]["fc_r"],
           "fc_r_log_sc": h["baselines"]["log_sc"]["fc_r"],
           "fc_r_split_half": h["baselines"]["split_half"]["fc_r"],
           "fcd_ks": h["fitted"]["fcd_ks"], "fcd_ks_unfitted": h["unfitted"]["fcd_ks"]}
    if "group_fc" in h["baselines"]:
        out["fc_r_group"] = h["baselines"]["group_fc"]["fc_r"]
    return out


# --- the run ---------------------------------------------------------------------------------

class _Progress:
    """A line to ``say`` (the command's: None, quiet) after each stage: forward runs done
    of all, seconds, an ETA from the mean time per forward run so far (compilation left
    out)."""

    def __init__(self, say: Callable[[str], None] | None, total: int, done: int = 0):
        self.say, self.total, self.done0, self.done = say, total, done, done
        self.t0 = time.perf_counter()
        self.c0 = compile_seconds()

    def stage(self, runs: int, text: str) -> None:
        self.done += runs
        if self.say is None:
            return
        dt = time.perf_counter() - self.t0
        # first-use compilation (numba) is left out of the rate the ETA assumes
        rate = max(dt - (compile_seconds() - self.c0), 0.0) / max(self.done - self.done0, 1)
        eta = rate * (self.total - self.done)
        self.say(f"dtb fit: {text} -- {self.done}/{self.total} forward runs, {dt:.0f} s, "
                 f"ETA {_fmt(eta)}")


def _fmt(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _pool_map(procs: int) -> tuple[Any, Any]:
    if procs <= 1:
        return map, None

    pool = mp.get_context("spawn").Pool(procs)
    return (lambda fn, it: pool.map(fn, list(it), chunksize=1)), pool


def execute(o: FitOptions, inp: FitInputs, run: Any, resume: bool,
            say: Callable[[str], None] | None, members: MemberMap | None = None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fit (from the checkpoint with ``resume``), the free runs, the scores; returns
    (``metrics``, the files for ``FitRun.complete``).  Raises ``Stopped`` after
    ``--stop-after`` iterations (checkpoint written).  ``run``: a ``FitRun`` (or, under
    MPI, a ``SharedRun``); ``members``: the forward runs on MPI member communicators
    (None: ``--procs`` processes)."""
    times: dict[str, float] = {}
    t_start = time.perf_counter()
    T_fit = inp.fit.shape[0]
    n_tr = o.n_tr or T_fit
    stats = F.StatisticsConfig(fc=True, fcd_quantiles=o.fcd_quantiles, window=o.window,
                               step=o.step, variance=o.fit_variance, mean=o.fit_mean,
                               fc_components=o.fc_components,
                               variance_components=o.variance_components, detrend=o.detrend)
    cfg = F.ForwardConfig(tr_s=inp.tr_s, n_tr=n_tr, dt_ms=o.dt_ms, spinup_s=o.spinup_s,
                          substeps=o.substeps, threads=o.threads, observable=o.observable,
                          network_seed=o.network_seed)
    y = F.statistics(inp.fit, stats)
    run_map, pool = (members, None) if members is not None else _pool_map(o.procs)
    try:
        fwd = F.Forward(inp.spec, o.params, cfg, stats, seed=o.seed, run_map=run_map,
                        model_error=o.model_error)
        fitter = Fitter(fwd, y, o.members, o.iterations, o.seed, o.noise_runs,
                          data_noise=n_tr / T_fit, prior_sd=o.prior_sd, centre=o.centre,
                          ratio=o.ratio, prior_sampling=o.prior_sampling, noise=o.noise)
        prog = _iterate(o, fitter, run, resume, times, say)
        res = fitter.result()
        fitted_runs, unfitted_runs, seeds = _free_runs(o, inp, res.posterior_mean, run_map,
                                                       times)
        prog.stage(2 * o.free_runs, "free runs of the posterior-mean and the unfitted brain")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    times["total_s_this_process"] = time.perf_counter() - t_start
    history = [res.prior] + [fwd.values(it.U) for it in res.inversion.iterations[1:]] + \
        [res.posterior]
    fitted_raw, unfitted_raw = fitted_runs[0], unfitted_runs[0]
    fitted, unfitted = detrend(fitted_raw, o.detrend), detrend(unfitted_raw, o.detrend)
    metrics = _metrics(o, inp, fwd, res, fitted, unfitted, seeds[0], n_tr, times)
    metrics["fit"]["layout"] = (members.describe() if members is not None
                                else {"ranks": 1, "procs": o.procs})
    files = _files(o, inp, res, history, fitted_raw, unfitted_raw)
    if o.free_runs > 1:
        metrics["heldout"]["realisations"] = {
            "seeds": seeds,
            **{k: realisation_scores([detrend(b, o.detrend) for b in runs], inp.test)
               for k, runs in (("fitted", fitted_runs), ("unfitted", unfitted_runs))}}
        files["h5"].update({"bold/fitted_runs": fitted_runs,
                            "bold/unfitted_runs": unfitted_runs})
    files["figures"] = {"test": inp.test, "fitted": fitted, "unfitted": unfitted,
                        "params": o.params, "history": history, "truth": o.truth,
                        "window": o.window, "step": o.step}
    return metrics, files


def _iterate(o: FitOptions, fitter: Any, run: Any, resume: bool,
             times: dict[str, float], say: Callable[[str], None] | None) -> _Progress:
    """The noise runs (or the checkpoint) and the ES-MDA iterations, a checkpoint after
    each; returns the progress line's state."""
    total = o.noise_runs + o.members * o.iterations + 2 * o.free_runs
    if resume:
        arrays, meta = run.load_checkpoint()
        fitter.restore(arrays, meta)
        times.update(meta["extra"]["times"])
        prog = _Progress(say, total, o.noise_runs + o.members * fitter.i)
        run.restart(fitter.i)
    else:
        prog = _Progress(say, total)
        t0 = time.perf_counter()
        fitter.start()
        times["noise_runs_s"] = time.perf_counter() - t0
        run.commit()
        run.checkpoint(fitter.state(), {"times": times})
        prog.stage(o.noise_runs, f"{o.noise_runs} noise runs at the prior centre")
    while not fitter.done:
        t0 = time.perf_counter()
        it = fitter.step()
        times[f"iteration_{fitter.i}_s"] = time.perf_counter() - t0
        run.checkpoint(fitter.state(), {"times": times})
        sd = zip(F.parameter_keys(o.params), np.std(fitter.U, axis=0, ddof=1), strict=True)
        prog.stage(o.members, f"iteration {fitter.i}/{o.iterations}: misfit median "
                   f"{np.median(it.misfit):.3g}, posterior SD (logit) "
                   + ", ".join(f"{k} {s:.3f}" for k, s in sd))
        if o.stop_after is not None and fitter.i >= o.stop_after and not fitter.done:
            raise Stopped(fitter.i, "--stop-after")
    return prog


def _free_runs(o: FitOptions, inp: FitInputs, xhat: np.ndarray, run_map: Any,
               times: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """BOLD (K, free TRs, regions) of the posterior mean and of the unfitted brain, the
    same ``--free-runs`` K seeds (network realisations, or noise realisations of the
    ``--network-seed`` network) for both; and those seeds."""
    free_trs = o.free_trs or inp.test.shape[0]
    fcfg = F.ForwardConfig(tr_s=inp.tr_s, n_tr=free_trs, dt_ms=o.dt_ms,
                           spinup_s=o.spinup_s, substeps=o.substeps, threads=o.threads,
                           observable=o.observable, network_seed=o.network_seed)
    seeds = [F.member_seed(o.seed, FREE_ITERATION, k) for k in range(o.free_runs)]
    jobs = ([(inp.spec, o.params, xhat, s, fcfg) for s in seeds]
            + [(inp.spec, o.params, identity_values(o.params), s, fcfg) for s in seeds])
    t0 = time.perf_counter()
    out = np.stack(list(run_map(F._run_job, jobs)))
    times["free_runs_s"] = time.perf_counter() - t0
    return out[:o.free_runs], out[o.free_runs:], seeds


def _metrics(o: FitOptions, inp: FitInputs, fwd: Any, res: Any, fitted: np.ndarray,
             unfitted: np.ndarray, free_seed: int, n_tr: int, times: dict[str, float]
             ) -> dict[str, Any]:
    """metrics.json: the data, every held-out score beside its baselines, the fit."""
    names = F.parameter_keys(o.params)
    post_u = fwd.unbounded(res.posterior)
    metrics: dict[str, Any] = {
        "format": "dtb-fit-metrics", "format_version": 1,
        "data": {"fit_trs": list(inp.fit_trs), "test_trs": list(inp.test_trs),
                 "tr_s": inp.tr_s, "regions": int(inp.fit.shape[1]),
                 "detrend": o.detrend, "observable": o.observable,
                 "mean_fc_test": float(np.mean(S.upper(S.fc(inp.test)))),
                 "mean_fc_fit": float(np.mean(S.upper(S.fc(inp.fit))))},
        "heldout": {"fitted": score(fitted, inp.test, o.window, o.step, o.detrend),
                    "unfitted": score(unfitted, inp.test, o.window, o.step, o.detrend),
                    "baselines": baselines(inp.fit, inp.test, inp.spec.weights,
                                           inp.group_fc, o.window, o.step),
                    "free_seed": free_seed, "network_seed": o.network_seed,
                    "unfitted_values": dict(zip(
                        names, identity_values(o.params).tolist(), strict=True))},
        "fit": {"parameters": names,
                "statistics": {"m": int(res.y.size), "fc_components": o.fc_components,
                               "fc_explained": _explained(res, "fc"),
                               "variance_components": o.variance_components,
                               "variance_explained": _explained(res, "variance"),
                               "fcd_quantiles": o.fcd_quantiles,
                               "variance": o.fit_variance, "mean": o.fit_mean,
                               "detrend": o.detrend},
                "members": o.members, "iterations": o.iterations,
                "misfit_median": [float(np.median(it.misfit))
                                  for it in res.inversion.iterations],
                "posterior_mean": dict(zip(names, map(float, res.posterior_mean),
                                           strict=True)),
                "posterior_sd_logit": dict(zip(names, np.std(post_u, axis=0,
                                                            ddof=1).tolist(), strict=True)),
                "prior_centre": dict(zip(names, o.centre, strict=True)),
                "prior_sd_logit": o.prior_sd, "data_noise": n_tr / inp.fit.shape[0],
                "noise_estimate": o.noise, "model_error": o.model_error,
                "forward_trs": n_tr, "free_trs": o.free_trs or inp.test.shape[0]},
        "timings": times}
    if o.truth:
        metrics["twin"] = twin_scores(o.params, o.truth, res.prior, res.posterior, o.centre)
        truth_x = np.array([o.truth[k] for k in names])
        regional = regional_scores(inp.spec, o.params, truth_x, res.posterior_mean, o.centre)
        if regional:
            metrics["twin_regional"] = regional
    return metrics


def _explained(res: Any, name: str) -> list[float] | None:
    """The variance fractions along block ``name``'s principal axes (None: not reduced)."""
    b = res.reduction(name)
    return None if b is None else b.explained.tolist()


def _files(o: FitOptions, inp: FitInputs, res: Any, history: list,
           fitted_raw: np.ndarray, unfitted_raw: np.ndarray) -> dict[str, Any]:
    """What FitRun.complete writes: fit.h5's arrays and attributes, bold_free.tsv."""
    names = F.parameter_keys(o.params)
    basis = {f"{BASIS_KEY[b.name]}/{k}": v for b in res.bases for k, v in b.to_dict().items()}
    return {
        "h5": {"parameters/name": np.array(names, dtype=object).astype("S"),
               "ensemble": np.stack(history), "posterior": res.posterior,
               "posterior_mean": res.posterior_mean, "prior": res.prior,
               "misfit": np.stack([it.misfit for it in res.inversion.iterations]),
               "y": res.y, "Gamma": res.Gamma,
               "bold/observed_fit": inp.fit, "bold/observed_test": inp.test,
               "bold/fitted": fitted_raw, "bold/unfitted": unfitted_raw,
               "regions/label": inp.labels,
               "regions/name": np.array(inp.names, dtype=object).astype("S")} | basis,
        "h5_attrs": {"format": "dtb-fit", "tr_s": inp.tr_s, "observable": o.observable},
        "param_attrs": {"low": [p.low for p in o.params], "high": [p.high for p in o.params],
                        "centre": list(o.centre), "mode": [p.mode for p in o.params],
                        "map": [p.map_name or "" for p in o.params]},
        "fitted": fitted_raw, "labels": inp.labels, "names": inp.names, "tr_s": inp.tr_s,
        "brain": F.fitted_spec(inp.spec, o.params, res.posterior_mean,
                               note={"by": "dtb fit", "at": "posterior mean",
                                     "network_seed": o.network_seed,
                                     "brain": inp.source.get("brain"),
                                     "brain_sha256": inp.source.get("brain_sha256")})}


def check_resume_inputs(m: dict[str, Any]) -> None:
    """The inputs of a resumed run are the files it started with (SHA-256)."""
    src = m.get("source", {})
    for k in ("brain", "bold", "group_fc", "maps"):
        if k not in src:
            continue
        p = Path(src[k])
        if not p.is_file() or sha256_file(p) != src.get(f"{k}_sha256"):
            raise InputError(str(p), "content", "changed or missing since the run started",
                             f"the file the run started with (SHA-256 "
                             f"{str(src.get(f'{k}_sha256'))[:12]}...)")


def summary(manifest: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: the held-out scores beside their baselines."""
    h = m["heldout"]
    b = h["baselines"]
    f, u = h["fitted"], h["unfitted"]
    lines = [f"dtb fit: {out} (complete)",
             f"  held-out FC r: fitted {f['fc_r']:.3f}, unfitted {u['fc_r']:.3f}, log-SC "
             f"{b['log_sc']['fc_r']:.3f}, split-half {b['split_half']['fc_r']:.3f}"
             + (f", group {b['group_fc']['fc_r']:.3f}" if "group_fc" in b else ""),
             f"  FCD KS: fitted {f['fcd_ks']:.3f}, unfitted {u['fcd_ks']:.3f}, split-half "
             f"{b['split_half']['fcd_ks']:.3f}",
             "  posterior mean: " + ", ".join(f"{k} {v:.3g}"
                                               for k, v in m["fit"]["posterior_mean"].items())]
    seg = f.get("segments")
    if seg is not None:
        lines.append(f"  free run in {len(seg['fc_r'])} stretches of {seg['trs']} TRs: FC r "
                     + ", ".join(f"{v:.2f}" for v in seg["fc_r"]) + "; mean FC "
                     + ", ".join(f"{v:.2f}" for v in seg["mean_fc"])
                     + f"; between stretches {seg['self_r']:.2f}")
    rr = h.get("realisations")
    if rr is not None:
        lines.append(f"  {len(rr['seeds'])} realisations: FC r of their mean FC fitted "
                     f"{rr['fitted']['fc_r_of_mean_fc']:.3f}, unfitted "
                     f"{rr['unfitted']['fc_r_of_mean_fc']:.3f} (single runs "
                     + ", ".join(f"{v:.2f}" for v in rr["fitted"]["fc_r_runs"]) + ")")
    for k, v in m.get("twin", {}).items():
        lines.append(f"  twin {k}: truth {v['truth']:.3g}, posterior {v['posterior_mean']:.3g}"
                     f", 90 % interval [{v['interval_90'][0]:.3g}, {v['interval_90'][1]:.3g}]")
    lines.append(f"  {out / METRICS}, {out / RESULT}, {out / FIGURES}/")
    return "\n".join(lines)
