"""Regional parameters in a twin experiment at HCP size (issue 13: "regional parameters,
correlation with truth, >= 100 neurons per region").

A subject's adapted brain (``fit_hcp.py --recipe adapt``) at ``--neurons`` (8,000: 100 a
region), its long-range recipe fixed at the adapted prior's centre (baked into the brain
file with ``fitted_spec``, so the fit's ``coupling`` is a factor on it).  Per seed the truth
draws, from the fit's prior (logit SD ``--prior-sd`` around the centre):

- ``coupling`` c in (0.3, 3), centre 1: the global coupling relative to the centre;
- the E cells' excitability ``I_e`` as two map coefficients, a x sc_strength + b x grad
  (``dtb fit --param E.I_e=-0.1:0.1@0/shift:MAP`` twice; a, b in (-0.1, 0.1), centre 0):
  ``sc_strength`` is the built-in log SC in-strength, ``grad`` the principal gradient
  (second eigenvector) of the other development subjects' mean FC, the kind of map pMFM
  pairs with T1w/T2w.  Both standardised over the 80 regions.

The truth's BOLD (its own network realisation, ``--fit-trs`` + ``--test-trs`` TRs) goes to
``dtb fit --truth`` with the same prior, FC as ``--fc-components`` principal axes and
``--fit-variance`` (log regional variances: a regional I_e changes its region's BOLD
variance: ``--probe`` measures how much), themselves on ``--variance-components``
principal axes (4; 0: all 80).  Reported per seed: each parameter's
posterior against the truth, and ``twin_regional``: the correlation across regions of the
posterior mean's regional I_e with the truth's (the goal: >= 0.8) and its RMS error beside
the prior centre's.

    .venv/bin/python benchmarks/fit_twin_regional.py --work /tmp/dtb-twin-regional --seeds 1 2

Only derived scores go to ``benchmarks/results/fit_twin_regional-<UTC>.json``.
"""

from __future__ import annotations

import os

if __name__ in ("__main__", "__mp_main__"):
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import csv  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_hcp as FH  # noqa: E402
import fit_twin_hcp as TW  # noqa: E402
import hcp  # noqa: E402
from microcircuit import machine  # noqa: E402

from dtb.assimilation import fit as F  # noqa: E402
from dtb.assimilation import summary as S  # noqa: E402
from dtb.brain.maps import sc_strength_map, standardise  # noqa: E402

HERE = Path(__file__).resolve().parent
PRIOR = (("coupling", 0.3, 3.0, 1.0, None),
         ("E.I_e", -0.1, 0.1, 0.0, "sc_strength"),
         ("E.I_e", -0.1, 0.1, 0.0, "grad"))


def gradient_map(others: list[hcp.Subject]) -> np.ndarray:
    """The principal gradient (R,) of the subjects' mean FC: the eigenvector of its second
    largest eigenvalue (the first is the global mode), standardised."""
    g = FH.group_fc(others)
    np.fill_diagonal(g, 0.0)
    _, v = np.linalg.eigh(g)
    return standardise(v[:, -2], "the FC gradient")


def parameters(spec: Any, grad: np.ndarray) -> list[F.FitParameter]:
    """The fit's parameters with their maps resolved per unit (as ``dtb fit`` does)."""
    ur = np.asarray(spec.unit_region, np.int64)
    maps = {"sc_strength": sc_strength_map(spec.weights), "grad": grad}
    return [F.FitParameter(n, lo, hi) if m is None else
            F.FitParameter(n, lo, hi, mode="shift", map=maps[m][ur], map_name=m)
            for n, lo, hi, _, m in PRIOR]


def one_seed(seed: int, spec: Any, brain: Path, maps: Path, grad: np.ndarray,
             labels: np.ndarray, a: argparse.Namespace) -> dict[str, Any]:
    params = parameters(spec, grad)
    truth = TW.draw_truth(params, [c for *_, c, _ in PRIOR], a.prior_sd, seed)
    n_tr = a.fit_trs + a.test_trs
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=n_tr, dt_ms=a.dt, spinup_s=a.spinup_s,
                          threads=1)
    t0 = time.perf_counter()
    bold = F.simulate_bold(spec, params, truth, F.member_seed(seed, TW.TRUTH_STREAM, 0), cfg)
    truth_s = time.perf_counter() - t0
    d = a.work / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    TW.write_bold(bold, labels, d / "truth_bold.csv")
    cmd = TW.fit_command(brain, d, a) + ["--maps", str(maps)] + (
        ["--fit-variance", "--variance-components", str(a.variance_components)]
        if a.variance else [])
    for (name, lo, hi, c, m), key, v in zip(PRIOR, F.parameter_keys(params), truth,
                                            strict=True):
        cmd += ["--param", f"{name}={lo}:{hi}@{c}" + (f"/shift:{m}" if m else ""),
                "--truth", f"{key}={float(v)!r}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    fit_s = time.perf_counter() - t0
    met = json.loads((d / "run" / "metrics.json").read_text())
    return {"seed": seed, "truth": dict(zip(F.parameter_keys(params), truth.tolist(),
                                            strict=True)),
            "twin": met["twin"], "twin_regional": met.get("twin_regional"),
            "posterior_sd_logit": met["fit"]["posterior_sd_logit"],
            "misfit_median": met["fit"]["misfit_median"],
            "explained": {k: met["fit"]["statistics"].get(f"{k}_explained")
                          for k in ("fc", "variance")},
            "heldout_fc_r": {k: met["heldout"][k]["fc_r"] for k in ("fitted", "unfitted")},
            "split_half_fc_r": met["heldout"]["baselines"]["split_half"]["fc_r"],
            "mean_fc_test": met["data"]["mean_fc_test"], "truth_s": truth_s, "fit_s": fit_s}


def probe(spec: Any, grad: np.ndarray, a: argparse.Namespace) -> dict[str, Any]:
    """Does a regional I_e show in the statistics?  200-TR runs at the centre (two seeds)
    and with one map coefficient at +-0.1 (the first seed): mean FC and the correlation
    across regions of log BOLD variance with each map."""
    params = parameters(spec, grad)
    maps = {"sc_strength": sc_strength_map(spec.weights), "grad": grad}
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=200, dt_ms=a.dt, spinup_s=a.spinup_s, threads=1)
    runs = {"centre": ([1.0, 0, 0], 11), "centre, seed 2": ([1.0, 0, 0], 12),
            "sc_strength +0.1": ([1.0, 0.1, 0], 11), "grad +0.1": ([1.0, 0, 0.1], 11),
            "sc_strength -0.1": ([1.0, -0.1, 0], 11)}
    out = {}
    for name, (x, seed) in runs.items():
        t0 = time.perf_counter()
        b = FH.detrend(F.simulate_bold(spec, params, np.array(x), seed, cfg))
        lv = np.log(b.var(axis=0))
        out[name] = {"mean_fc": float(np.mean(S.upper(S.fc(b)))), "wall_s":
                     time.perf_counter() - t0} | {
            f"corr_logvar_{m}": float(np.corrcoef(lv, v)[0, 1]) for m, v in maps.items()}
        print(name, out[name], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--subject", default="101309", choices=hcp.DEV_SUBJECTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--neurons", type=int, default=8000)
    ap.add_argument("--in-degree", type=int, default=100)
    TW.fit_arguments(ap)
    ap.add_argument("--no-variance", dest="variance", action="store_false",
                    help="fit FC alone (default: FC and the 80 log regional variances)")
    ap.add_argument("--variance-components", type=int, default=4,
                    help="the log variances on this many principal axes of the prior "
                         "ensemble's (0: all 80, which collapsed 8 members; 4)")
    ap.add_argument("--probe", action="store_true",
                    help="only the sensitivity probe (five 200-TR runs), no twin")
    a = ap.parse_args(argv)
    sub = hcp.load_subject(a.subject)
    others = [hcp.load_subject(s) for s in hcp.DEV_SUBJECTS if s != a.subject]
    files = hcp.write_subject(sub, a.work / a.subject)
    recipe, adaptation = FH.RECIPES["adapt"]
    built = FH.build_spec(files, a.neurons, a.in_degree, adaptation)
    spec = F.fitted_spec(built, [F.FitParameter(n, lo, hi) for n, lo, hi, _ in recipe],
                         np.array([c for *_, c in recipe]), {"note": "the adapted centre"})
    brain = a.work / a.subject / f"brain{a.neurons}-adapt-centre.h5"
    spec.save(str(brain))
    grad = gradient_map(others)
    maps = a.work / a.subject / "maps.csv"
    with open(maps, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "grad"])
        w.writerows([[int(lab), repr(float(g))] for lab, g in zip(spec.region_labels, grad,
                                                                   strict=True)])
    corr_maps = float(np.corrcoef(sc_strength_map(spec.weights), grad)[0, 1])
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = HERE / "results" / f"fit_twin_regional-{stamp}.json"
    if a.probe:
        path.write_text(json.dumps({"benchmark": "fit_twin_regional --probe", "utc": stamp,
                                    "machine": machine(), "neurons": a.neurons,
                                    "corr_sc_strength_grad": corr_maps,
                                    "probe": probe(spec, grad, a)}, indent=1))
        print(f"wrote {path}")
        return 0
    rows: list[dict[str, Any]] = []
    for s in a.seeds:
        rows.append(one_seed(s, spec, brain, maps, grad, sub.labels, a))
        r = rows[-1]
        reg = (r["twin_regional"] or {}).get("E.I_e", {})
        print(f"seed {s}: " + ", ".join(
            f"{k} truth {v['truth']:.3f} posterior {v['posterior_mean']:.3f} "
            f"in 90 % {v['covered_90']}" for k, v in r["twin"].items())
            + f"; regional I_e corr {reg.get('corr_with_truth')} rmse {reg.get('rmse')} "
            f"(centre {reg.get('rmse_prior_centre')}) ({r['fit_s']:.0f} s)", flush=True)
        # rewritten after every seed: a long run stopped early keeps what it measured
        path.write_text(json.dumps({"benchmark": "fit_twin_regional", "utc": stamp,
                                    "machine": machine(), "args": {
                                        k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(a).items()},
                                    "corr_sc_strength_grad": corr_maps,
                                    "seeds": rows, "summary": TW.summary(rows)}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
