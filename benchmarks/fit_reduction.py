"""Does reducing the FC statistics keep the ensemble from collapsing?  (issue 13)

Twin experiments on a synthetic brain (``--regions`` regions, ``--neurons`` neurons, a random
symmetric connectome; region rates per TR as the observable, as tests/test_fit.py does, so
that short runs have enough samples).  Per truth seed: the truth is drawn from the prior
(independent normals of SD ``--prior-sd`` on the logit scale around the centre) and run with
its own network realisation; then the same ES-MDA fit (same members, iterations, noise runs,
fit seed) is made twice on the Fisher-z FC of the rates (with ``--mean`` also the log mean
rate of every region, never reduced):

- ``full``: the whole FC upper triangle (R(R-1)/2 statistics);
- ``pca``: its projection on ``--components`` leading principal axes of the prior
  ensemble's FC (``StatisticsConfig.fc_components``).

Per fit and parameter: the posterior mean's error on the logit scale (|u_post - u_true|,
against the prior's |u_centre - u_true|), the posterior SD on the logit scale (collapse: SD
far below the error), and whether the truth lies within the ensemble's central 90 % normal
interval (mean +- 1.645 SD).  Results: ``benchmarks/results/fit_reduction-<UTC>.json`` and a
table.

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/fit_reduction.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from microcircuit import machine  # noqa: E402

import dtb  # noqa: E402
from dtb.assimilation import fit as F  # noqa: E402
from dtb.assimilation import fit_esmda as E  # noqa: E402

HERE = Path(__file__).resolve().parent
PARAMS = (("coupling", 0.25, 8.0, 2.0), ("coupling.I", 0.0, 2.0, 1.0))


def synthetic_brain(regions: int, neurons: int, seed: int = 0) -> Any:
    """A brain on a random symmetric connectome (weights U(0, 1) below 0.4 cut, lengths
    20-80 mm), no atlas."""
    from dtb.brain.build import BuildOptions, build

    d = Path(tempfile.mkdtemp(prefix="dtb-fit-reduction-"))
    rng = np.random.default_rng(seed)
    w = rng.uniform(0, 1, (regions, regions))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    w[w < 0.4] = 0
    ln = rng.uniform(20, 80, (regions, regions))
    ln = (ln + ln.T) / 2
    np.fill_diagonal(ln, 0)
    head = ",".join(str(i) for i in range(1, regions + 1))
    for name, m in (("sc.csv", w), ("len.csv", ln)):
        (d / name).write_text(head + "\n" + "\n".join(",".join(f"{x:g}" for x in r)
                                                      for r in m) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build(sc=str(d / "sc.csv"), lengths=str(d / "len.csv"),
                     options=BuildOptions(neurons=neurons))


def one(spec: Any, truth: np.ndarray, a: argparse.Namespace, k: int) -> dict[str, Any]:
    params = [F.FitParameter(n, lo, hi) for n, lo, hi, _ in PARAMS]
    centre = [c for *_, c in PARAMS]
    cfg = F.ForwardConfig(tr_s=0.05, n_tr=a.n_tr, spinup_s=0.0, substeps=1,
                          observable="rates")
    st = F.StatisticsConfig(fc=True, fc_components=k, mean=a.mean)
    y = F.statistics(F.simulate_bold(spec, params, truth, 424242 + a.truth_seed_base, cfg), st)
    t0 = time.perf_counter()
    res = E.fit(F.Forward(spec, params, cfg, st, seed=a.fit_seed), y, members=a.members,
                iterations=a.iterations, seed=a.fit_seed, noise_runs=a.noise_runs,
                prior_sd=a.prior_sd, centre=centre)
    wall = time.perf_counter() - t0
    U = res.inversion.U
    out: dict[str, Any] = {"components": k, "m": int(res.y.size), "wall_s": wall,
                           "misfit": [float(np.median(it.misfit))
                                      for it in res.inversion.iterations]}
    if res.basis is not None:
        out["explained"] = res.basis.explained.tolist()
    for j, p in enumerate(params):
        ut = float(p.to_unbounded(truth[j]))
        uc = float(p.to_unbounded(centre[j]))
        mu, sd = float(U[:, j].mean()), float(U[:, j].std(ddof=1))
        out[p.name] = {"truth": float(truth[j]),
                       "posterior_mean": float(p.from_unbounded(mu)),
                       "error_logit": abs(mu - ut), "prior_error_logit": abs(uc - ut),
                       "sd_logit": sd, "covered_90": bool(abs(mu - ut) <= 1.645 * sd)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--neurons", type=int, default=1600)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--noise-runs", type=int, default=6)
    ap.add_argument("--n-tr", type=int, default=200, help="TRs of 50 ms per run")
    ap.add_argument("--components", type=int, default=4)
    ap.add_argument("--prior-sd", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                    help="truth seeds (each: a truth drawn from the prior)")
    ap.add_argument("--fit-seed", type=int, default=1)
    ap.add_argument("--mean", action="store_true",
                    help="also fit the log mean rate of every region (unreduced)")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    spec = synthetic_brain(a.regions, a.neurons)
    params = [F.FitParameter(n, lo, hi) for n, lo, hi, _ in PARAMS]
    rows = []
    t0 = time.perf_counter()
    for s in a.seeds:
        rng = np.random.default_rng([s, 99])
        u = [p.to_unbounded(c) + a.prior_sd * rng.standard_normal()
             for p, (*_, c) in zip(params, PARAMS, strict=True)]
        truth = np.array([float(p.from_unbounded(v)) for p, v in zip(params, u, strict=True)])
        a.truth_seed_base = s
        for k in (0, a.components):
            r = one(spec, truth, a, k)
            r["seed"] = s
            rows.append(r)
            cells = "  ".join(f"{p.name}: err {r[p.name]['error_logit']:.2f} (prior "
                              f"{r[p.name]['prior_error_logit']:.2f}) sd "
                              f"{r[p.name]['sd_logit']:.3f} cov {int(r[p.name]['covered_90'])}"
                              for p in params)
            print(f"seed {s} {'full' if k == 0 else f'pca{k}'} m={r['m']}: {cells}  "
                  f"({r['wall_s']:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    summ = {}
    for k in (0, a.components):
        sel = [r for r in rows if r["components"] == k]
        summ["full" if k == 0 else f"pca{k}"] = {
            p.name: {"mean_error_logit": float(np.mean([r[p.name]["error_logit"] for r in sel])),
                     "mean_prior_error_logit": float(np.mean([r[p.name]["prior_error_logit"]
                                                              for r in sel])),
                     "mean_sd_logit": float(np.mean([r[p.name]["sd_logit"] for r in sel])),
                     "coverage_90": float(np.mean([r[p.name]["covered_90"] for r in sel]))}
            for p in params}
    print(json.dumps(summ, indent=1))
    print(f"wall {wall:.0f} s")
    if not a.no_save:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        path = HERE / "results" / f"fit_reduction-{stamp}.json"
        rec = {"benchmark": "fit_reduction", "utc": stamp, "machine": machine(),
               "dtb": dtb.__version__, "args": vars(a), "params": PARAMS, "wall_s": wall,
               "summary": summ, "runs": rows}
        path.write_text(json.dumps(rec, indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
