"""Why did the per-TR filter fit the larger brain worse?  (issue 13)

``benchmarks/assimilation_calibration.py`` found that ``dtb assimilate --demo``'s twin
experiment (per-region E g_AMPA of the default subject, 82 regions, 6 members) fitted a
16,000-neuron brain (~200 neurons a region) worse than its prior on seeds 1-2, while the
4,000-neuron demo (~50 a region) improved on it somewhat.  This script measures, at both
sizes, the quantities that decide what a region's BOLD can say about its g_AMPA, and runs
small paired filter experiments.  Two stages:

``measure`` (no filter): for each size and network realisation (engine seeds 1-3, the
truth's and two members' networks of the twin with seed 1), the nominal baseline exactly as
``dtb assimilate`` measures it (``nominal_baseline``: 0.3 s transient, 2 s window), then,
from that same state (``Engine.get_state``/``set_state``: common random numbers), three
branches of 0.5 s settling + T TRs of 0.8 s in 4 pieces with E g_AMPA per region at

- ``nominal``: the brain's values (the BOLD a perfect baseline would keep at 0),
- ``truth1``, ``truth2``: the twin's true draws for seeds 1 and 2 (prior SD 0.8 logit);

every piece's rate per region is kept and the BOLD computed from it with the command's own
hemodynamics (``drive_from_rate`` against the run's own baseline).  From these:

- sensitivity: the slope, across the 82 regions, of the paired change (branch - nominal,
  same realisation, same noise) of the relative rate and of the late BOLD (TRs T/2..T) on
  the logit change of g_AMPA, and its correlation;
- noise: the nominal branch's BOLD (ideally 0): the SD across regions of its late mean
  (a persistent offset) and its SD over TRs (temporal); the relative rate's temporal SD
  against the Poisson SD 1/sqrt(r0 n 0.8 s) of a TR's count; the fraction of regions
  whose late rate differs from the baseline by more than 50 % ("switched");
- realisation mismatch: the BOLD of two realisations at the same (true) parameters: what
  separates the truth from a member that has exactly the true values;
- information: correlation across regions between the truth's BOLD and its logit
  g_AMPA offset, per TR, and of its mean from TR 7 on (the BOLD has followed the
  parameters by then);
- lag: the paired BOLD slope per TR relative to its late value (the hemodynamic step
  response of a parameter change; the rate responds within a TR).

``filter``: the demo's twin experiment over 18 assimilated TRs (as the calibration study:
``--holdout-fraction 0``, no free run), run through the command's own functions at a given
size, seed and observation error SD, recording the final ensemble per region.  Besides the
twin scores it records the information the truth's BOLD held (the correlation above, for
this twin) and whether the filter's per-region error follows the truth's BOLD residual (the
part of its late BOLD that its g_AMPA does not explain).

    .venv/bin/python benchmarks/twin_size.py measure --neurons 4000,16000 --seeds 1,2,3
    .venv/bin/python benchmarks/twin_size.py filter --neurons 16000 --seeds 3,4,5
    .venv/bin/python benchmarks/twin_size.py filter --neurons 4000 --seeds 1,2,3 --obs-sd 0.012
    .venv/bin/python benchmarks/twin_size.py report results/twin_size-*.json   # the tables

``--raw DIR`` keeps every run's arrays (``.npz``) and reuses those already there, so that
the analysis can be redone without simulating (``from_raw``; a run's ``wall_s`` is always
that of its simulation).  Each invocation writes
``results/twin_size-<stage>-<sizes, seeds, obs-sd>-<UTC date>.json`` (machine, load
average, wall times, results).  Wall times
on a shared 2-core machine are inflated by the other sessions' load (recorded).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from microcircuit import machine  # noqa: E402

TRUTH_DRAWS = (1, 2)        # twin seeds whose true g_AMPA draws are the measure branches
LATE_FROM = 6               # TRs from which the BOLD's parameter response is complete (lag)
RESPONDED = 4               # index of TR 5, by which the BOLD has followed a parameter change


def _options(neurons: int, seed: int, trs: int, threads: int, extra: list[str] | None = None
             ) -> Any:
    from dtb.assimilation.options import assimilate_parser, check_args

    argv = ["assimilate", "--demo", "--neurons", str(neurons), "--members", "6", "--trs",
            str(max(trs, 12)), "--seed", str(seed), "--threads", str(threads),
            "--out", "/nonexistent", *(extra or [])]
    return check_args(assimilate_parser().parse_args(argv))


def bold_from_rates(rates: np.ndarray, base: np.ndarray, tr_s: float) -> np.ndarray:
    """BOLD (T, U) at the end of each TR from piece rates ``rates`` (T, S, U) in Hz, driven
    against ``base`` (U,) Hz exactly as the loop does (hemodynamics from rest at TR 0)."""
    from dtb.model.hemodynamics import Hemodynamics, drive_from_rate

    T, S, U = rates.shape
    h = Hemodynamics(U)
    out = np.empty((T, U))
    for t in range(T):
        for k in range(S):
            h.step(drive_from_rate(rates[t, k], base), tr_s / S)
        out[t] = h.bold()
    return out


# --- stage 1: paired runs without a filter -------------------------------------------------

def measure_runs(neurons: int, seed: int, trs: int, threads: int, raw: Path | None
                 ) -> dict[str, np.ndarray]:
    """One realisation (engine seed ``seed``): baseline, then the nominal and the truth
    branches from the same state.  Arrays: ``r0`` (U,) Hz, ``neurons`` (U,),
    ``rates_<branch>`` (T, S, U) Hz, ``theta_<branch>`` (U,), ``low``/``high``, ``wall_s``."""
    path = raw / f"measure-n{neurons}-s{seed}-t{trs}.npz" if raw else None
    if path is not None and path.exists():
        return dict(np.load(path)) | {"from_raw": np.array(True)}
    from dtb.assimilation.loop import EngineMember
    from dtb.assimilation.problem import (
        SETTLE_S,
        load_problem,
        make_engine,
        make_layout,
        nominal_baseline,
    )

    o = _options(neurons, 1, trs, threads)
    lay = make_layout(None, o.members, 1)
    lay.threads = threads
    prob = load_problem(o)
    p = prob.params[0]
    thetas = {"nominal": prob.center[:, 0]}
    for ts in TRUTH_DRAWS:
        thetas[f"truth{ts}"] = load_problem(_options(neurons, ts, trs, threads)).truth[:, 0]
    t0 = time.perf_counter()
    mem = EngineMember(make_engine(prob.net, o, seed, lay))
    out: dict[str, np.ndarray] = {"r0": nominal_baseline(mem, prob, o),
                                  "neurons": mem.neurons, "low": np.array(p.low),
                                  "high": np.array(p.high)}
    snap = mem.engine.get_state()
    S = o.substeps
    for name, th in thetas.items():
        mem.engine.set_state(snap)
        mem.set_params(prob.params, th[None, :])
        mem.run_rates(SETTLE_S * 1e3)
        r = np.empty((trs, S, mem.n_units))
        for t in range(trs):
            for k in range(S):
                r[t, k] = mem.run_rates(o.tr_s * 1e3 / S)
        out[f"rates_{name}"] = r
        out[f"theta_{name}"] = th
    out["wall_s"] = np.array(time.perf_counter() - t0)
    out["tr_s"] = np.array(o.tr_s)
    if path is not None:
        np.savez(path, **out)
    return out


def _logit(theta: np.ndarray, low: float, high: float) -> np.ndarray:
    from dtb.assimilation.loop import logit

    return logit((np.asarray(theta, float) - low) / (high - low))


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def analyse_size(runs: dict[int, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The quantities of the module docstring for one size, from ``measure_runs`` of
    several realisations (keys: engine seeds)."""
    seeds = sorted(runs)
    first = runs[seeds[0]]
    low, high = float(first["low"]), float(first["high"])
    tr_s = float(first["tr_s"])
    branches = [f"truth{ts}" for ts in TRUTH_DRAWS]
    uc = _logit(first["theta_nominal"], low, high)
    du = {b: _logit(first[f"theta_{b}"], low, high) - uc for b in branches}
    n = first["neurons"]
    bold = {(s, b): bold_from_rates(runs[s][f"rates_{b}"], runs[s]["r0"], tr_s)
            for s in seeds for b in ["nominal", *branches]}
    T = bold[seeds[0], "nominal"].shape[0]
    late = slice(T // 2, T)
    sens_rate, sens_bold, r_rate, r_bold, r_bold_unpaired = [], [], [], [], []
    info_late, info_tr, lag = [], [], []
    for s in seeds:
        rn = runs[s]["rates_nominal"]
        for b in branches:
            rb = runs[s][f"rates_{b}"]
            e = (rb - rn).mean(axis=(0, 1)) / runs[s]["r0"]
            db = bold[s, b][late].mean(0) - bold[s, "nominal"][late].mean(0)
            sens_rate.append(_slope(du[b], e))
            r_rate.append(_corr(du[b], e))
            sens_bold.append(_slope(du[b], db))
            r_bold.append(_corr(du[b], db))
            y = bold[s, b]
            info_late.append(_corr(du[b], y[LATE_FROM:].mean(0)))
            info_tr.append([_corr(du[b], y[t]) for t in range(T)])
            paired = [_slope(du[b], (y - bold[s, "nominal"])[t]) for t in range(T)]
            lag.append(np.array(paired) / np.mean(paired[T // 2:]))
            r_bold_unpaired.append(_corr(du[b], y[late].mean(0)))
    # noise at nominal parameters (ideal BOLD 0)
    off_sd, temp_sd, rate_temp_vs_poisson, switched, drift = [], [], [], [], []
    for s in seeds:
        y = bold[s, "nominal"]
        off_sd.append(float(y[late].mean(0).std()))
        temp_sd.append(float(y[late].std(0).mean()))
        r0 = runs[s]["r0"]
        rt = runs[s]["rates_nominal"].mean(axis=1)                     # (T, U)
        rel = (rt - r0) / r0
        pois = 1.0 / np.sqrt(r0 * n * tr_s)
        rate_temp_vs_poisson.append(float(np.median(rel.std(0) / pois)))
        switched.append(float(np.mean(np.abs(rel[late].mean(0)) > 0.5)))
        drift.append(float((rel[late].mean(0) * n).sum() / n.sum()))
    # realisation mismatch at the same (true) parameters
    mm_late, mm_rms = [], []
    for b in branches:
        for i, s in enumerate(seeds):
            for s2 in seeds[i + 1:]:
                d = bold[s, b] - bold[s2, b]
                mm_late.append(float(d[late].mean(0).std()))
                mm_rms.append(float(np.sqrt(np.mean(d[late] ** 2))))
    r0s = np.stack([runs[s]["r0"] for s in seeds])
    sb = float(np.mean(sens_bold))
    mm = float(np.mean(mm_late))
    prior_sd = 0.8
    return {
        "seeds": seeds, "trs": T, "neurons_per_region_median": float(np.median(n)),
        "neurons_per_region_min": float(n.min()),
        "baseline_rate_hz_mean": float(r0s.mean()),
        "baseline_rate_realisation_cv_median": float(np.median(r0s.std(0, ddof=1)
                                                               / r0s.mean(0))),
        "rel_rate_per_logit": float(np.mean(sens_rate)),
        "rel_rate_per_logit_each": sens_rate,
        "rel_rate_vs_du_corr": float(np.mean(r_rate)),
        "bold_per_logit": sb, "bold_per_logit_each": sens_bold,
        "bold_vs_du_corr_paired": float(np.mean(r_bold)),
        "param_bold_sd_at_prior_sd": sb * prior_sd,
        "nominal_offset_sd": float(np.mean(off_sd)), "nominal_offset_sd_each": off_sd,
        "nominal_temporal_sd": float(np.mean(temp_sd)),
        "rate_temporal_sd_over_poisson_median": float(np.mean(rate_temp_vs_poisson)),
        "switched_fraction": float(np.mean(switched)), "switched_fraction_each": switched,
        "nominal_drift_weighted": float(np.mean(drift)), "nominal_drift_each": drift,
        "mismatch_late_sd": mm, "mismatch_late_sd_each": mm_late,
        "mismatch_rms_per_tr": float(np.mean(mm_rms)),
        "snr_param_over_mismatch": sb * prior_sd / mm,
        "expected_corr_from_snr": float(np.sqrt((sb * prior_sd) ** 2
                                                / ((sb * prior_sd) ** 2 + mm ** 2))),
        "info_corr_late": float(np.mean(info_late)), "info_corr_late_each": info_late,
        "info_corr_per_tr": np.mean(info_tr, axis=0).tolist(),
        "bold_response_per_tr": np.mean(lag, axis=0).tolist(),
        "measure_wall_s": float(sum(float(runs[s]["wall_s"]) for s in seeds)),
    }


# --- stage 2: filter runs ------------------------------------------------------------------

def run_twin(neurons: int, seed: int, obs_sd: float, threads: int, raw: Path | None,
             trs: int = 18, members: int = 6) -> dict[str, Any]:
    """The demo's twin experiment over ``trs`` assimilated TRs (the calibration study's
    protocol): twin scores, and the per-region arrays in ``raw``."""
    tag = f"filter-n{neurons}-s{seed}-obs{obs_sd:g}-m{members}-t{trs}"
    path = raw / f"{tag}.npz" if raw else None
    cached = path is not None and path.exists()
    if cached:
        a = dict(np.load(path))
    else:
        a = _run_twin_arrays(neurons, seed, obs_sd, threads, trs, members)
        if path is not None:
            np.savez(path, **a)
    return score_twin(a) | {"neurons": neurons, "seed": seed, "obs_sd": obs_sd,
                            "members": members, "trs": trs, "from_raw": cached}


def _run_twin_arrays(neurons: int, seed: int, obs_sd: float, threads: int, trs: int,
                     members: int) -> dict[str, np.ndarray]:
    from dtb.assimilation.evaluation import _health, _twin
    from dtb.assimilation.loop import AssimilationConfig, EngineMember, assimilate
    from dtb.assimilation.metrics import interval_coverage
    from dtb.assimilation.problem import (
        SETTLE_S,
        load_problem,
        make_engine,
        make_layout,
        nominal_baseline,
        twin_truth,
    )

    o = _options(neurons, seed, trs, threads,
                 ["--members", str(members), "--holdout-fraction", "0",
                  "--obs-sd", str(obs_sd)])
    lay = make_layout(None, o.members, 1)
    lay.threads = threads
    prob = load_problem(o)
    t0 = time.perf_counter()
    twin_truth(prob, o, lay, None)
    t1 = time.perf_counter()
    mems = [EngineMember(make_engine(prob.net, o, o.seed + 1 + i, lay)) for i in lay.local]
    base = np.stack([nominal_baseline(m, prob, o) for m in mems])
    cfg = AssimilationConfig(tr_s=o.tr_s, substeps=o.substeps, obs_var=prob.obs_var,
                             rw_sd=o.rw_sd, inflation=o.inflation, rtps=o.rtps,
                             method=o.method, localize=o.localize, hemo=o.hemo,
                             spinup_s=SETTLE_S, seed=o.seed)
    res = assimilate(mems, prob.obs, prob.obs_index, prob.params, prob.theta0, cfg,
                     assimilated=prob.assimilated, baseline_hz=base,
                     forecast_from=prob.n_assim)
    t2 = time.perf_counter()
    p = prob.params[0]
    tw = _twin(prob, res, interval_coverage)[p.key]
    h = _health(prob, res)
    return {
        "u_truth": p.to_unit(prob.truth[:, 0]), "u_centre": p.to_unit(prob.center[:, 0]),
        "u_prior": p.to_unit(prob.theta0[..., 0]),
        "u_final": p.to_unit(res.theta[prob.n_assim - 1][..., 0]),
        "u_traj_mean": p.to_unit(res.theta[..., 0]).mean(axis=1),      # (T, U)
        "obs_clean": prob.obs_clean, "obs": prob.obs, "obs_index": prob.obs_index,
        "bold_forecast": res.bold_forecast,
        "relative_rmse": np.array(tw["relative_rmse"]),
        "relative_rmse_prior_mean": np.array(tw["relative_rmse_prior_mean"]),
        "correlation_with_truth": np.array(tw["correlation_with_truth"]),
        "coverage_90": np.array(tw["coverage_90"]),
        "normalized_innovation_mean": np.array(h["normalized_innovation_mean"]),
        "bold_spread_error_ratio": np.array(h["spread_error_ratio"]),
        "truth_s": np.array(t1 - t0), "members_s": np.array(t2 - t1),
    }


def score_twin(a: dict[str, np.ndarray]) -> dict[str, Any]:
    """Twin scores and the diagnostics of the module docstring from ``run_twin``'s arrays."""
    ut, uc = a["u_truth"], a["u_centre"]
    du = ut - uc
    idx = a["obs_index"]
    y = a["obs_clean"][LATE_FROM:].mean(0)[idx]                 # the truth's late BOLD per unit
    beta = _slope(du, y)
    resid = y - beta * du                                       # what g_AMPA does not explain
    uf = a["u_final"]
    err = uf.mean(0) - ut
    err0 = a["u_prior"].mean(0) - ut
    move = uf.mean(0) - a["u_prior"].mean(0)
    big = np.abs(resid) > 2 * resid.std()
    traj = np.sqrt(np.mean((a["u_traj_mean"] - ut) ** 2, axis=1))     # (T,) after each TR
    bf = a["bold_forecast"][RESPONDED:]                              # (T', M, R) from TR 5
    return {
        "relative_rmse": float(a["relative_rmse"]),
        "relative_rmse_prior_mean": float(a["relative_rmse_prior_mean"]),
        "rmse_ratio": float(a["relative_rmse"] / a["relative_rmse_prior_mean"]),
        "correlation_with_truth": float(a["correlation_with_truth"]),
        "coverage_90": float(a["coverage_90"]),
        "normalized_innovation_mean": float(a["normalized_innovation_mean"]),
        "bold_spread_error_ratio": float(a["bold_spread_error_ratio"]),
        "logit_rmse": float(np.sqrt(np.mean(err ** 2))),
        "logit_rmse_prior_mean": float(np.sqrt(np.mean(err0 ** 2))),
        "info_corr_late": _corr(du, y),
        "truth_bold_per_logit": beta,
        "truth_resid_sd": float(resid.std()),
        "corr_move_with_truth_resid": _corr(move, resid),
        "corr_move_with_du": _corr(move, du - (a["u_prior"].mean(0) - uc)),
        "outlier_regions": int(big.sum()),
        "logit_rmse_outlier_regions": float(np.sqrt(np.mean(err[big] ** 2))) if big.any()
        else None,
        "logit_rmse_other_regions": float(np.sqrt(np.mean(err[~big] ** 2))),
        "logit_rmse_per_tr": traj.tolist(),
        "logit_rmse_min_tr": int(np.argmin(traj)) + 1,
        "member_bold_sd": float(np.sqrt(np.mean(bf.var(axis=1, ddof=1)))),
        "forecast_error_rms": float(np.sqrt(np.mean((bf.mean(axis=1)
                                                     - a["obs"][RESPONDED:]) ** 2))),
        "wall_s": float(a["truth_s"] + a["members_s"]),
    }


# --- report --------------------------------------------------------------------------------

MEASURE_ROWS = [
    ("neurons per region (median, min)",
     lambda s: f"{s['neurons_per_region_median']:.0f}, {s['neurons_per_region_min']:.0f}"),
    ("baseline rate, Hz (mean); its CV across realisations per region",
     lambda s: f"{s['baseline_rate_hz_mean']:.1f}; "
               f"{s['baseline_rate_realisation_cv_median']:.2f}"),
    ("relative rate change per logit of g_AMPA (paired; corr. across regions)",
     lambda s: f"{s['rel_rate_per_logit']:.2f} ({s['rel_rate_vs_du_corr']:.2f})"),
    ("late BOLD change per logit (paired; corr.)",
     lambda s: f"{s['bold_per_logit']:.4f} ({s['bold_vs_du_corr_paired']:.2f})"),
    ("BOLD spread a prior SD (0.8 logit) makes",
     lambda s: f"{s['param_bold_sd_at_prior_sd']:.4f}"),
    ("nominal parameters: late BOLD offset SD across regions (ideal 0)",
     lambda s: f"{s['nominal_offset_sd']:.4f}"),
    ("nominal parameters: BOLD SD over TRs (temporal)",
     lambda s: f"{s['nominal_temporal_sd']:.4f}"),
    ("TR rate SD / Poisson SD (median over regions)",
     lambda s: f"{s['rate_temporal_sd_over_poisson_median']:.1f}"),
    ("regions whose late rate left the baseline by > 50 % (nominal parameters)",
     lambda s: f"{s['switched_fraction']:.2f}"),
    ("mean relative rate change after the baseline, neuron-weighted (nominal)",
     lambda s: f"{s['nominal_drift_weighted']:+.2f} ("
               + ", ".join(f"{x:+.2f}" for x in s['nominal_drift_each']) + ")"),
    ("two realisations, same parameters: late BOLD difference SD; RMS per TR",
     lambda s: f"{s['mismatch_late_sd']:.4f}; {s['mismatch_rms_per_tr']:.4f}"),
    ("parameter signal / realisation mismatch",
     lambda s: f"{s['snr_param_over_mismatch']:.2f}"),
    (f"information: corr(truth's mean BOLD from TR {LATE_FROM + 1}, its logit g_AMPA offset)",
     lambda s: f"{s['info_corr_late']:.2f} ("
               + ", ".join(f"{x:.2f}" for x in s['info_corr_late_each']) + ")"),
    ("information per TR 1, 2, 3, 4, 8",
     lambda s: ", ".join(f"{s['info_corr_per_tr'][t]:.2f}" for t in (0, 1, 2, 3, 7))),
    ("BOLD response to a parameter step, TR 1, 2, 3, 4, 5 (fraction of late)",
     lambda s: ", ".join(f"{s['bold_response_per_tr'][t]:.2f}" for t in range(5))),
    ("wall s (3 realisations x 3 branches of 19.7 s + baseline)",
     lambda s: f"{s['measure_wall_s']:.0f}"),
]


def report(paths: list[str]) -> str:
    """Markdown tables of the given results files (measure and filter stages)."""
    lines: list[str] = []
    runs: list[dict[str, Any]] = []
    for p in paths:
        d = json.loads(Path(p).read_text())
        if d["stage"] == "measure":
            sizes = d["sizes"]
            lines += ["| quantity | " + " | ".join(f"{n} neurons" for n in sizes) + " |",
                      "|---|" + "---|" * len(sizes)]
            lines += [f"| {name} | " + " | ".join(f(s) for s in sizes.values()) + " |"
                      for name, f in MEASURE_ROWS]
            lines.append("")
        else:
            runs += d["runs"]
    if runs:
        lines += ["| neurons | obs-sd | seed | rel. RMSE (prior) | ratio | corr. | info | "
                  "move~residual | logit RMSE (prior) | logit RMSE at TR 5; best TR | "
                  "member BOLD SD | 90 % cov. | norm. innov. | wall s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(runs, key=lambda r: (r["neurons"], r["obs_sd"], r["seed"])):
            lines.append(
                f"| {r['neurons']} | {r['obs_sd']:g} | {r['seed']} | "
                f"{r['relative_rmse']:.3f} ({r['relative_rmse_prior_mean']:.3f}) | "
                f"{r['rmse_ratio']:.2f} | {r['correlation_with_truth']:.2f} | "
                f"{r['info_corr_late']:.2f} | {r['corr_move_with_truth_resid']:.2f} | "
                f"{r['logit_rmse']:.2f} ({r['logit_rmse_prior_mean']:.2f}) | "
                f"{r['logit_rmse_per_tr'][4]:.2f}; {r['logit_rmse_min_tr']} | "
                f"{r['member_bold_sd']:.4f} | {r['coverage_90']:.2f} | "
                f"{r['normalized_innovation_mean']:.2f} | "
                f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


# --- driver --------------------------------------------------------------------------------

def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _write(stage: str, tag: str, body: dict[str, Any], out: Path) -> Path:
    import dtb

    now = _dt.datetime.now(_dt.UTC)
    res = {"benchmark": "twin_size", "stage": stage, "date": now.isoformat(timespec="seconds"),
           "machine": machine(), "load_average": list(os.getloadavg()),
           "dtb": dtb.__version__, **body}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"twin_size-{stage}-{tag}-{now.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=("measure", "filter", "report"))
    ap.add_argument("files", nargs="*", help="report: results files")
    ap.add_argument("--neurons", default="4000,16000")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--trs", type=int, default=None,
                    help="measure: TRs per branch (24); filter: assimilated TRs (18)")
    ap.add_argument("--obs-sd", default="0.004", help="filter: comma-separated SDs")
    ap.add_argument("--members", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--raw", default=None, help="folder for (and of) the runs' arrays")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args()
    if a.stage == "report":
        print(report(a.files))
        return
    raw = Path(a.raw) if a.raw else None
    if raw is not None:
        raw.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sizes = _ints(a.neurons)
    if a.stage == "measure":
        trs = a.trs or 24
        body: dict[str, Any] = {"sizes": {}}
        for n in sizes:
            runs = {}
            for s in _ints(a.seeds):
                runs[s] = measure_runs(n, s, trs, a.threads, raw)
                print(f"measure: {n} neurons, realisation {s}: "
                      f"{float(runs[s]['wall_s']):.0f} s", flush=True)
            body["sizes"][str(n)] = analyse_size(runs)
    else:
        trs = a.trs or 18
        body = {"runs": []}
        for sd in [float(x) for x in a.obs_sd.split(",")]:
            for n in sizes:
                for s in _ints(a.seeds):
                    r = run_twin(n, s, sd, a.threads, raw, trs, a.members)
                    body["runs"].append(r)
                    print(f"filter: {n} neurons seed {s} obs-sd {sd:g}: rel RMSE "
                          f"{r['relative_rmse']:.3f} (prior {r['relative_rmse_prior_mean']:.3f})"
                          f", corr {r['correlation_with_truth']:.2f}, info "
                          f"{r['info_corr_late']:.2f}, move~resid "
                          f"{r['corr_move_with_truth_resid']:.2f}, {r['wall_s']:.0f} s",
                          flush=True)
    body["total_s"] = time.perf_counter() - start
    body["threads"] = a.threads
    tag = "n" + "+".join(map(str, sizes)) + "-s" + a.seeds.replace(",", "+")
    if a.stage == "filter":
        tag += "-obs" + a.obs_sd.replace(",", "+")
    print(_write(a.stage, tag, body, Path(a.out)))


if __name__ == "__main__":
    main()
