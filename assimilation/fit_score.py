"""``dtb fit``: scores on the held-out TRs beside their baselines, and the figures.

Every score compares a series with the **test** TRs (never seen by the fit):

- ``fc_r``: Pearson correlation of the FC upper triangles (``summary.fc_fit``);
- ``fcd_ks``: the KS distance between the FCD distributions (``summary.fcd_values``,
  windows ``--window`` TRs, ``--step`` apart);
- ``log_variance_r``: the correlation across regions of the log regional variances (the
  pattern; the model's BOLD is a fractional signal change, the data's in its own units);
- ``mean_fc``.

Models: the free run at the posterior mean (``fitted``) and the brain as built, with every
fitted parameter at its identity (coupling 1, coupling.X 1, sc_exponent 0, homotopic 0,
scale 1, shift 0: ``unfitted``), the same seed and length.  Baselines that need no
simulation: log-SC (zeros at the smallest positive weight), the split-half of the subject's
own FC (fit TRs vs test TRs: the ceiling; FCD KS likewise), a group FC (``--group-fc``)
and ``linear_sc``: the FC of a linear noise-driven network on the SC, its in-degree
exponent and gain chosen on the fit TRs (``linear_fc``: what a structural recipe reaches
with a linear response).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation import summary as S
from dtb.assimilation.figures import fc_figure
from dtb.assimilation.fit import (
    HOMOTOPIC,
    SC_EXPONENT,
    FitParameter,
    hyper_values,
    parameter_keys,
)
from dtb.assimilation.linear_fc import MAX_REGIONS, best_linear_fc
from dtb.assimilation.loop import region_means
from dtb.assimilation.metrics import calibrated_coverage

__all__ = ["identity_values", "score", "segments", "realisation_scores", "baselines", "twin_scores",
           "regional_scores", "figures"]


def identity_values(params: list[FitParameter]) -> np.ndarray:
    """The values (P,) at which every parameter leaves the brain as built."""
    return np.array([0.0 if p.name in (SC_EXPONENT, HOMOTOPIC) or p.mode == "shift" else 1.0
                     for p in params])


def _log_var(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(S.regional_variance(x), 1e-300))


def segments(model: np.ndarray, test: np.ndarray, detrend: str = "linear"
             ) -> dict[str, Any] | None:
    """Is a long free run stationary?  ``model`` (T, R) cut into consecutive segments as
    long as the test TRs ``test`` (T', R), each detrended again (``detrend``): per segment
    the FC fit r against the test FC and the mean FC, and ``self_r``, the mean FC fit
    between segments (the model's own reliability at the data's length, beside the
    subject's split half).  A twin whose segments drift (the HCP brains: mean FC 0.32 in
    the first 600 TRs, 0.12 after 1,200) scores by its whole run what no single
    stretch of it shows.  None when T < 2 T'."""
    n = test.shape[0]
    k = model.shape[0] // n
    if k < 2:
        return None
    fcs = [S.fc(S.detrend(model[i * n:(i + 1) * n], detrend)) for i in range(k)]
    ft = S.fc(test)
    return {"trs": int(n), "fc_r": [S.fc_fit(f, ft) for f in fcs],
            "mean_fc": [float(np.nanmean(S.upper(f))) for f in fcs],
            "self_r": float(np.mean([S.fc_fit(fcs[i], fcs[j]) for i in range(k)
                                     for j in range(i + 1, k)]))}


def score(model: np.ndarray, test: np.ndarray, window: int, step: int,
          detrend: str = "linear") -> dict[str, Any]:
    """Scores of a model series ``model`` (T, R) against the test TRs ``test`` (T', R)
    (both already detrended, as ``detrend`` says; ``segments`` when T >= 2 T')."""
    m = S.fc(model)
    fv = S.fcd_values(model, window, step)
    lv = _log_var(model)
    return {"fc_r": S.fc_fit(m, S.fc(test)), "mean_fc": float(np.nanmean(S.upper(m))),
            "fcd_ks": S.ks_distance(fv, S.fcd_values(test, window, step)),
            "fcd_mean": float(np.mean(fv)),
            "log_variance_r": float(np.corrcoef(lv, _log_var(test))[0, 1]),
            "mean_sd": float(np.mean(np.sqrt(S.regional_variance(model)))),
            "trs": int(model.shape[0]), "segments": segments(model, test, detrend)}


def realisation_scores(runs: list[np.ndarray], test: np.ndarray) -> dict[str, Any]:
    """Several free runs (network realisations) of one brain, each (T, R) detrended,
    against the test TRs: each run's FC fit r, and the FC fit r and mean FC of their
    Fisher-z mean FC (the model's expected FC, which a single finite realisation only
    samples)."""
    ft = S.fc(test)
    z = np.mean([S.fc(b, fisher_z=True) for b in runs], axis=0)
    mean_fc = np.tanh(z)
    return {"fc_r_runs": [S.fc_fit(S.fc(b), ft) for b in runs],
            "fc_r_of_mean_fc": S.fc_fit(mean_fc, ft),
            "mean_fc_of_mean_fc": float(np.nanmean(S.upper(mean_fc)))}


def baselines(fit: np.ndarray, test: np.ndarray, sc: np.ndarray, group: np.ndarray | None,
              window: int, step: int) -> dict[str, Any]:
    """The scores that need no simulation (see the module docstring)."""
    sc = np.asarray(sc, float)
    pos = sc[sc > 0]
    logsc = np.log(np.where(sc > 0, sc, pos.min() if pos.size else 1.0))
    ft = S.fc(test)
    out: dict[str, Any] = {
        "log_sc": {"fc_r": S.fc_fit(logsc, ft)},
        "split_half": {"fc_r": S.fc_fit(S.fc(fit), ft),
                       "fcd_ks": S.ks_distance(S.fcd_values(fit, window, step),
                                               S.fcd_values(test, window, step)),
                       "log_variance_r": float(np.corrcoef(_log_var(fit),
                                                           _log_var(test))[0, 1])}}
    if group is not None:
        out["group_fc"] = {"fc_r": S.fc_fit(group, ft)}
    if sc.shape[0] <= MAX_REGIONS:
        lin = best_linear_fc(sc, S.fc(fit))
        out["linear_sc"] = {"fc_r": S.fc_fit(lin["fc"], ft),
                            "mean_fc": float(np.mean(S.upper(lin["fc"]))),
                            "a": lin["a"], "g": lin["g"], "chosen_on": "fit TRs"}
    return out


def twin_scores(params: list[FitParameter], truth: dict[str, float], prior: np.ndarray,
                posterior: np.ndarray, centre: list[float]) -> dict[str, Any]:
    """Per parameter, a twin experiment's posterior against the truth: the logit-scale
    posterior mean mapped back, its error (absolute, relative to the truth, and the prior
    centre's), the 90 % interval (5th-95th percentile of the members), whether it holds
    the truth, and how often a calibrated ensemble of this size would
    (``metrics.calibrated_coverage``: about 0.72 for 8 members, not 0.9)."""
    out = {}
    calibrated = calibrated_coverage(posterior.shape[0], 0.9)
    for k, (p, key) in enumerate(zip(params, parameter_keys(params), strict=True)):
        t = truth[key]
        u = p.to_unbounded(posterior[:, k])
        mean = float(p.from_unbounded(np.mean(u)))
        lo, hi = np.quantile(posterior[:, k], [0.05, 0.95])
        out[key] = {"truth": t, "posterior_mean": mean, "error": mean - t,
                    "relative_error": abs(mean - t) / abs(t) if t else None,
                    "prior_centre_error": centre[k] - t,
                    "prior_mean": float(np.mean(prior[:, k])),
                    "interval_90": [float(lo), float(hi)],
                    "covered_90": bool(lo <= t <= hi),
                    "coverage_90_if_calibrated": calibrated,
                    "posterior_sd_logit": float(np.std(u, ddof=1)),
                    "prior_sd_logit": float(np.std(p.to_unbounded(prior[:, k]), ddof=1))}
    return out


def regional_scores(spec: Any, params: list[FitParameter], truth: np.ndarray,
                    posterior_mean: np.ndarray, centre: list[float]) -> dict[str, Any]:
    """A twin experiment's regional parameters: for every fitted FAMILY.hyper parameter
    whose true values differ between regions (shifts along maps), the correlation across
    regions of the posterior mean's regional values (mean over each region's units) with
    the truth's, their RMS error, and the prior centre's RMS error.  ``truth``,
    ``posterior_mean``: parameter values (P,)."""
    region = np.asarray(spec.unit_region, np.int64)
    n_regions = len(spec.region_labels)

    def per_region(x: Any) -> dict[str, np.ndarray]:
        return {k: region_means(v, region, n_regions)
                for k, v in hyper_values(spec, params, np.asarray(x, float)).items()}

    t, m, c = per_region(truth), per_region(posterior_mean), per_region(centre)
    out = {}
    for name, tv in t.items():
        if np.ptp(tv) <= 1e-12 * max(1.0, float(np.max(np.abs(tv)))):
            continue                               # uniform in the truth: no pattern
        out[name] = {"regions": int(tv.size),
                     "corr_with_truth": (float(np.corrcoef(m[name], tv)[0, 1])
                                         if np.ptp(m[name]) > 0 else None),
                     "rmse": float(np.sqrt(np.mean((m[name] - tv) ** 2))),
                     "rmse_prior_centre": float(np.sqrt(np.mean((c[name] - tv) ** 2))),
                     "truth_sd": float(np.std(tv))}
    return out


def figures(fig_dir: Path, *, test: np.ndarray, fitted: np.ndarray, unfitted: np.ndarray,
            params: list[FitParameter], history: list[np.ndarray], truth: dict[str, float],
            window: int, step: int) -> list[str]:
    """``fc.png`` (observed test FC, the fitted and the unfitted brain's), ``fcd.png`` (the
    FCD distributions), ``parameters.png`` (the ensemble per iteration, prior first; the
    truth dashed in a twin experiment).  ``history``: parameter values (N, P) per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    out = []
    mats = ((S.fc(test), "observed (test TRs)"),
            (S.fc(fitted), f"fitted (r {S.fc_fit(S.fc(fitted), S.fc(test)):.2f})"),
            (S.fc(unfitted), f"unfitted (r {S.fc_fit(S.fc(unfitted), S.fc(test)):.2f})"))
    fc_figure(plt, fig_dir / "fc.png", mats, 14)
    out.append("fc.png")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(-1, 1, 41).tolist()
    for x, lab, c in ((test, "observed (test TRs)", "k"), (fitted, "fitted", "C3"),
                      (unfitted, "unfitted", "C0")):
        ax.hist(S.fcd_values(x, window, step), bins=bins, density=True, histtype="step",
                color=c, lw=1.5, label=lab)
    ax.set_xlabel(f"FCD value (windows of {window} TRs, step {step})")
    ax.set_ylabel("density")
    ax.set_title("FCD distributions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / "fcd.png", dpi=90)
    plt.close(fig)
    out.append("fcd.png")
    P = len(params)
    fig, axes = plt.subplots(1, P, figsize=(4 * P, 3.6), squeeze=False)
    for k, (p, key) in enumerate(zip(params, parameter_keys(params), strict=True)):
        ax = axes[0, k]
        for i, X in enumerate(history):
            ax.plot(np.full(X.shape[0], i) + np.linspace(-0.15, 0.15, X.shape[0]), X[:, k],
                    "o", color="C0" if i == 0 else "C3", ms=3, alpha=0.7)
        ax.plot(range(len(history)), [np.mean(X[:, k]) for X in history], "k-", lw=1)
        if key in truth:
            ax.axhline(truth[key], color="k", ls="--", lw=1, label="truth")
            ax.legend(fontsize=7)
        ax.set_ylim(p.low, p.high)
        ax.set_xticks(range(len(history)), ["prior"] + [str(i) for i in
                                                        range(1, len(history))])
        ax.set_xlabel("iteration")
        ax.set_title(key)
    axes[0, 0].set_ylabel("value (members)")
    fig.suptitle("Parameters: the ensemble per iteration" + (" (dashed: truth)" if truth
                                                               else ""))
    fig.tight_layout()
    fig.savefig(fig_dir / "parameters.png", dpi=90)
    plt.close(fig)
    out.append("parameters.png")
    return out
