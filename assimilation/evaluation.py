"""metrics.json of ``dtb assimilate`` (``evaluate``): every score next to its baselines, on
the same samples.  In-sample one-step-ahead tracking next to persistence and AR(1)
(``_verdict``), the held-out later segment as a free-running forecast (``_multistep``) and
held-out regions, FC of the free run with the posterior-mean hyperparameters next to the
structural connectome (``_sc_fc``), filter health (``_health``) and, in a twin experiment, the
recovery of the known parameters (``_twin``); ``summary_numbers`` the headline numbers.

Shapes: ``obs`` (T, R), ``res.bold_forecast`` (T, M, R), ``res.theta`` (T, M, U, P), the free
run (T_free, M, R); ``tr_s`` in seconds, BOLD a fractional signal change.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dtb.assimilation.metrics import (
    calibrated_coverage,
    fc,
    fc_correlation,
    fit_ar1,
    interval_coverage,
    overall_correlation,
    pearson,
    rmse,
    tracking_report,
)
from dtb.assimilation.options import Options
from dtb.assimilation.problem import Problem
from dtb.model.hemodynamics import bold_range

__all__ = ["evaluate", "summary_numbers", "observations_vs_model", "outside_model_range",
           "FAR_NORMALIZED_INNOVATION"]

# a normalised innovation (chi-square per observation, about 1 for a consistent filter) above
# this at a TR means innovations of 5 predicted SDs RMS: the observations are far outside what
# the ensemble can produce there (the same threshold as ``diverged``, there on the mean)
FAR_NORMALIZED_INNOVATION = 25.0


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _multistep(obs: np.ndarray, pred: np.ndarray, train: np.ndarray) -> dict[str, Any]:
    """Scores of a free-running forecast ``pred`` (H, R) of ``obs`` (H, R), next to the
    forecasts that use only the data before the segment (``train``): persistence (the last
    value held), AR(1) iterated from it, and the training mean."""

    H = obs.shape[0]
    coef = fit_ar1(train)
    last = train[-1]
    ar = np.empty_like(obs)
    x = last
    for h in range(H):
        x = coef[0] + coef[1] * x
        ar[h] = x
    out: dict[str, Any] = {"horizon_trs": int(H)}
    for name, p in (("model", pred), ("persistence", np.broadcast_to(last, obs.shape)),
                    ("ar1", ar), ("train_mean", np.broadcast_to(train.mean(0), obs.shape))):
        r = pearson(p, obs)
        out[name] = {"rmse": rmse(p, obs),
                     "correlation_mean": _f(np.nanmean(r)) if np.isfinite(r).any() else None,
                     "overall_correlation": _f(overall_correlation(p, obs))
                     if np.ptp(p) > 0 else None}
    return out


def _verdict(rep: dict[str, Any], key: str = "correlation") -> dict[str, Any]:
    m = rep["model"]
    out = {}
    for b in ("persistence", "ar1"):
        if key == "correlation":
            mc, bc = m["correlation"]["mean"], rep[b]["correlation"]["mean"]
            out[f"beats_{b}_correlation"] = bool(mc is not None and bc is not None and mc > bc)
        out[f"beats_{b}_rmse"] = bool(m["rmse"] < rep[b]["rmse"])
    return out


def _sc_fc(spec: Any, labels: np.ndarray) -> np.ndarray:
    """The structural connectome between the observed regions (log(1 + w), symmetrised)."""
    pos = {int(v): i for i, v in enumerate(spec.region_labels)}
    idx = np.array([pos.get(int(v), -1) for v in labels])
    ok = idx >= 0
    W = np.full((labels.size, labels.size), np.nan)
    w = np.log1p(np.asarray(spec.weights, float))
    w = 0.5 * (w + w.T)
    W[np.ix_(ok, ok)] = w[np.ix_(idx[ok], idx[ok])]
    return W


def evaluate(prob: Problem, res: Any, free: np.ndarray, o: Options) -> dict[str, Any]:
    """metrics.json: every score next to its baselines, on the same samples (see README)."""

    obs, na = prob.obs, prob.n_assim
    used = np.flatnonzero(prob.assimilated)
    held = np.flatnonzero(~prob.assimilated)
    fmean = res.bold_forecast.mean(axis=1)                                  # (T, R)
    m: dict[str, Any] = {"format": "dtb-assimilation-metrics", "version": 1,
                         "tr_s": o.tr_s, "trs": int(obs.shape[0]), "trs_assimilated": na,
                         "members": o.members, "units": int(prob.obs_index.size),
                         "regions": int(obs.shape[1]), "regions_assimilated": int(used.size),
                         "parameters": [p.key for p in prob.params]}
    rep = tracking_report(fmean[:na, used], obs[:na, used])
    rep.update(_verdict(rep))
    rep["note"] = ("one-step-ahead forecast (ensemble mean before each analysis) of the "
                   "assimilated regions over the assimilated TRs; persistence and AR(1) "
                   "score the same rows; the AR(1) is fitted on these rows (in-sample, in "
                   "its favour)")
    m["in_sample"] = rep
    if na < obs.shape[0]:
        seg = _multistep(obs[na:, used], fmean[na:, used], obs[:na, used])
        seg["beats_persistence_rmse"] = seg["model"]["rmse"] < seg["persistence"]["rmse"]
        seg["beats_ar1_rmse"] = seg["model"]["rmse"] < seg["ar1"]["rmse"]
        seg["beats_train_mean_rmse"] = seg["model"]["rmse"] < seg["train_mean"]["rmse"]
        seg["note"] = ("the last TRs, never assimilated: members run freely with their "
                       "parameters frozen; baselines use only the data before the segment")
        m["held_out_segment"] = seg
    else:
        m["held_out_segment"] = None
    if held.size:
        rh = tracking_report(fmean[:na, held], obs[:na, held])
        rh.update(_verdict(rh))
        rh["labels"] = [int(v) for v in prob.labels[held]]
        rh["note"] = ("regions never assimilated (their parameters only random-walk); the "
                      "baselines use those regions' own data, the model does not")
        m["held_out_regions"] = rh
    else:
        m["held_out_regions"] = None
    # FC: the free run with the posterior mean, each member's FC averaged
    fcs = [fc(free[:, i]) for i in range(free.shape[1])]
    fc_free = np.nanmean(np.stack(fcs), axis=0)
    fc_obs = fc(obs)
    W = _sc_fc(prob.spec, prob.labels)
    iu = np.triu_indices(obs.shape[1], 1)
    ok = np.isfinite(W[iu]) & np.isfinite(fc_obs[iu]) & np.isfinite(fc_free[iu])
    m["fc"] = {"free_run_trs": int(free.shape[0]),
               "fc_correlation": _f(fc_correlation(np.where(np.isfinite(fc_free), fc_free, 0),
                                                   fc_obs)),
               "per_member": [_f(fc_correlation(np.nan_to_num(f), fc_obs)) for f in fcs],
               "baseline_structural": _f(np.corrcoef(W[iu][ok], fc_obs[iu][ok])[0, 1])
               if ok.sum() > 2 else None,
               "note": "Pearson correlation of upper triangles; the free run uses the "
                       "posterior mean of every member, FC averaged over members; "
                       "baseline_structural: log(1 + SC weights) vs the observed FC; "
                       "about 0.5 counts as good for neural-mass fits to HCP data"}
    m["filter"] = _health(prob, res)
    m["filter"]["observations_vs_model"] = observations_vs_model(prob, res, o.hemo)
    if prob.truth is not None:
        m["twin"] = _twin(prob, res, interval_coverage)
    return m


def _health(prob: Problem, res: Any) -> dict[str, Any]:
    na = prob.n_assim
    used = np.flatnonzero(prob.assimilated)
    F = res.bold_forecast[:na][:, :, used]                      # (T, M, R)
    err = F.mean(axis=1) - prob.obs[:na, used]
    spread2 = F.var(axis=1, ddof=1).mean()
    rmse = float(np.sqrt(np.mean(err ** 2)))
    ni = np.array([d["normalized_innovation"] for d in res.diagnostics])
    ps = np.array([d["param_spread_logit"] for d in res.diagnostics])
    skip = min(5, max(na - 3, 0))                 # the first TRs start from rest
    ratio = math.sqrt(spread2 + prob.obs_var) / rmse if rmse > 0 else None
    collapsed = bool(ps[-1] < 0.02)
    diverged = bool(not np.all(np.isfinite(ni)) or np.mean(ni[skip:]) > 25)
    return {"bold_rmse": rmse, "bold_spread": math.sqrt(spread2),
            "obs_sd": math.sqrt(prob.obs_var),
            "spread_error_ratio": ratio,
            "normalized_innovation_mean": _f(np.mean(ni[skip:])),
            "normalized_innovation_per_tr": [_f(v) for v in ni],
            "param_spread_logit_first": _f(ps[0]), "param_spread_logit_last": _f(ps[-1]),
            "param_spread_logit_min": _f(ps.min()), "param_spread_logit_max": _f(ps.max()),
            "collapsed": collapsed, "diverged": diverged,
            "note": "spread_error_ratio = sqrt(forecast spread^2 + obs error variance) / RMSE "
                    "of the ensemble-mean forecast (about 1 when consistent; << 1 "
                    "overconfident); normalized_innovation about 1 when consistent (first "
                    f"{skip} TRs skipped); collapsed: parameter spread < 0.02 on the logit "
                    "scale; diverged: non-finite or mean normalized innovation > 25"}


def outside_model_range(obs: np.ndarray, hemo: str) -> dict[str, Any]:
    """How many observed values (fractional signal change) lie outside the BOLD range of any
    physiological hemodynamic state (``hemodynamics.bold_range``): values the model cannot
    produce whatever its parameters (raw intensities, drifts, z-scores without scale=)."""

    lo, hi = bold_range(hemo)
    x = np.asarray(obs, float)
    out = (x < lo) | (x > hi)
    return {"model_bold_range": [lo, hi], "values_outside": int(out.sum()),
            "values": int(x.size), "observed_min": _f(x.min()) if x.size else None,
            "observed_max": _f(x.max()) if x.size else None}


def observations_vs_model(prob: Problem, res: Any, hemo: str) -> dict[str, Any]:
    """Where the observations were far outside what the model produced: the assimilated TRs
    whose normalised innovation exceeded ``FAR_NORMALIZED_INNOVATION``, the observed values
    outside the model's BOLD range, and how many analysed hemodynamic values had to be put
    back into the physiological box (``Hemodynamics.clamp_physiological``)."""
    ni = [(int(d["tr"]), float(d["normalized_innovation"])) for d in res.diagnostics]
    far = [t for t, v in ni if not v <= FAR_NORMALIZED_INNOVATION]
    clamped = [int(d.get("hemo_clamped", 0)) for d in res.diagnostics]
    out = {"far_trs": far, "far_threshold": FAR_NORMALIZED_INNOVATION,
           "normalized_innovation_max": _f(max((v for _, v in ni), default=float("nan"))),
           "hemo_values_clamped": int(sum(clamped)),
           "hemo_clamped_trs": [int(d["tr"]) for d, c in zip(res.diagnostics, clamped,
                                                              strict=True) if c],
           **outside_model_range(prob.obs[:prob.n_assim], hemo)}
    out["far_outside"] = bool(far or out["values_outside"])
    out["note"] = ("far_trs: assimilated TRs whose normalised innovation exceeded "
                   "far_threshold; values_outside: observed values outside the BOLD range of "
                   "any physiological state (model_bold_range); far_outside: either, check the "
                   "data's preprocessing (psc, detrend, scale=).  hemo_values_clamped: "
                   "analysed hemodynamic values put back into the physiological box (data far "
                   "from the model, or a small ensemble's analysis extrapolating)")
    return out


def _twin(prob: Problem, res: Any, coverage: Any) -> dict[str, Any]:
    na = prob.n_assim
    final = res.theta[na - 1]                                  # (M, U, P)
    post = final.mean(axis=0)
    truth = prob.truth
    prior_mean = prob.theta0.mean(axis=0)
    out: dict[str, Any] = {}
    for k, p in enumerate(prob.params):
        scale = float(prob.center[:, k].mean())
        rel_err = (post[:, k] - truth[:, k]) / truth[:, k]
        rel_prior = (prior_mean[:, k] - truth[:, k]) / truth[:, k]
        sd = final[..., k].std(axis=0, ddof=1)
        out[p.key] = {
            "rmse": float(np.sqrt(np.mean((post[:, k] - truth[:, k]) ** 2))),
            "rmse_prior_mean": float(np.sqrt(np.mean((prior_mean[:, k] - truth[:, k]) ** 2))),
            "rmse_prior_centre": float(np.sqrt(np.mean((prob.center[:, k] - truth[:, k]) ** 2))),
            "relative_rmse": float(np.sqrt(np.mean(rel_err ** 2))),
            "relative_rmse_prior_mean": float(np.sqrt(np.mean(rel_prior ** 2))),
            "mean_abs_relative_error": float(np.mean(np.abs(rel_err))),
            "correlation_with_truth": _f(np.corrcoef(post[:, k], truth[:, k])[0, 1]),
            "coverage_50": coverage(final[..., k], truth[:, k], 0.5),
            "coverage_90": coverage(final[..., k], truth[:, k], 0.9),
            "coverage_50_if_calibrated": calibrated_coverage(final.shape[0], 0.5),
            "coverage_90_if_calibrated": calibrated_coverage(final.shape[0], 0.9),
            "posterior_sd_mean": float(sd.mean()),
            "spread_error_ratio": float(sd.mean() / max(np.sqrt(np.mean(
                (post[:, k] - truth[:, k]) ** 2)), 1e-300)),
            "nominal_value": scale}
    c = prob.obs_clean
    out["truth_bold_sd"] = float(c.std(axis=0).mean()) if c is not None else None
    out["note"] = ("posterior = ensemble after the last assimilated TR; the truth is drawn "
                   "from the prior; coverage_X: fraction of units whose true value lies in "
                   "the ensemble's central X interval; coverage_X_if_calibrated: its "
                   "expectation for a calibrated ensemble of this size (below X for few "
                   "members: compare with this, not with X)")
    return out


def summary_numbers(m: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of metrics.json (for the manifest and the printed summary)."""
    ins = m["in_sample"]
    out = {"in_sample_correlation": {k: ins[k]["correlation"]["mean"]
                                     for k in ("model", "persistence", "ar1")},
           "fc_correlation": m["fc"]["fc_correlation"],
           "spread_error_ratio": m["filter"]["spread_error_ratio"],
           "normalized_innovation": m["filter"]["normalized_innovation_mean"]}
    seg = m.get("held_out_segment")
    if seg:
        out["held_out_segment_rmse"] = {k: seg[k]["rmse"] for k in
                                        ("model", "persistence", "ar1", "train_mean")}
    if "twin" in m:
        out["twin"] = {k: {"relative_rmse": v["relative_rmse"],
                           "relative_rmse_prior_mean": v["relative_rmse_prior_mean"],
                           "coverage_90": v["coverage_90"]}
                       for k, v in m["twin"].items() if isinstance(v, dict)}
    return out

