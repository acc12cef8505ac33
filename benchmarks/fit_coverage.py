"""Why are the fit's 90 % intervals too narrow?  The ES-MDA fitter on a toy with a known answer
(issue 13, item 4: "coverage within 0.05 of its calibrated value").

The twin experiments at HCP size (``fit_twin_hcp.py``) held the truth in 1 of 6 intervals at
the adapted point.  This study runs the same fitter (``fit_esmda.Fitter``: same members,
iterations, noise runs, FC components and Gamma rule) on a stochastic toy forward map in
the shape of ``Forward`` whose exact answer is known, so that every ingredient can be
switched on alone:

- ``P`` = 3 parameters u on the unbounded scale, prior N(0, I) (truth drawn from it);
- statistics s(u) = A f(u) + noise, R = 20 "regions" (190 FC numbers).  f(u) = u
  (``linear``) or f(u) = tanh(u) + 0.3 u^2 (``nonlinear``: a saturating and a curved
  response, as FC answers coupling near its edge); the noise has a few shared components
  (FC numbers share the fluctuations of their regions) and an independent part, its
  covariance C the same at every u (``homoscedastic``) or growing with |u| (``hetero``);
- the data y = A f(u*) + one more noise draw (the truth's own realisation, as long as a
  forward run: ``data_noise`` 1).

Per variant, over ``--seeds`` truths: the coverage of the members' 5-95 percentile interval
(as ``fit_score.twin_scores``) against the coverage a calibrated ensemble of that size
reaches (``metrics.calibrated_coverage``), the mean |posterior mean - truth|
and the ratio of the posterior SD to that error (about 1 when calibrated).  For the linear
toy the exact posterior of the whole FC triangle is computed too: its 90 % interval must
hold the truth 90 % of the time (a check of the set-up itself).

    .venv/bin/python benchmarks/fit_coverage.py                  # ~3 min, numpy only
    .venv/bin/python benchmarks/fit_coverage.py --seeds 40       # a quick look

Results: ``benchmarks/results/fit_coverage-<UTC>.json`` and a table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from microcircuit import machine  # noqa: E402

from dtb.assimilation.fit import FitParameter  # noqa: E402
from dtb.assimilation.fit_esmda import Fitter  # noqa: E402
from dtb.assimilation.fit_statistics import StatisticsConfig  # noqa: E402
from dtb.assimilation.metrics import calibrated_coverage  # noqa: E402

HERE = Path(__file__).resolve().parent
R, P, SHARED = 20, 3, 3
M_STATS = R * (R - 1) // 2


class ToyForward:
    """s(u) = A f(u) + B xi + sigma(u) eps in the shape of ``Forward`` (values = the
    unbounded u itself).  ``A`` (m, P), ``B`` (m, SHARED); xi, eps standard normal, drawn
    from (seed, iteration, call) so that every call is a fresh realisation."""

    def __init__(self, A: np.ndarray, B: np.ndarray, sigma: float, shape: str, noise: str,
                 seed: int, components: int):
        self.params = [FitParameter(f"E.p{k}", -50.0, 50.0, mode="shift") for k in range(P)]
        self.stats = StatisticsConfig(fc=True, fc_components=components)
        self.spec = SimpleNamespace(region_labels=np.arange(R))
        self.A, self.B, self.sigma, self.shape, self.noise = A, B, sigma, shape, noise
        self.seed, self.calls = seed, 0

    def values(self, U: np.ndarray) -> np.ndarray:
        return np.atleast_2d(U)

    def mean(self, U: np.ndarray) -> np.ndarray:
        U = np.atleast_2d(U)
        f = U if self.shape == "linear" else np.tanh(U) + 0.3 * U ** 2
        return f @ self.A.T

    def draw(self, U: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        U = np.atleast_2d(U)
        scale = (np.ones((U.shape[0], 1)) if self.noise == "homoscedastic"
                 else (0.6 + 0.4 * np.linalg.norm(U, axis=1, keepdims=True)))
        xi = rng.standard_normal((U.shape[0], SHARED))
        eps = rng.standard_normal((U.shape[0], M_STATS))
        return self.mean(U) + scale * (xi @ self.B.T + self.sigma * eps)

    def __call__(self, U: np.ndarray, iteration: int) -> np.ndarray:
        self.calls += 1
        return self.draw(U, np.random.default_rng([self.seed, iteration, self.calls, 11]))


def problem(seed: int, snr: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The toy's A (m, P), B (m, SHARED) and sigma; ``snr`` scales A: the information one
    statistic vector carries about u."""
    rng = np.random.default_rng([seed, 3])
    A = snr * rng.normal(0, 0.1, (M_STATS, P))
    B = rng.normal(0, 0.5, (M_STATS, SHARED))
    return A, B, 0.5


def exact_linear(A: np.ndarray, B: np.ndarray, sigma: float, y: np.ndarray) -> tuple[
        np.ndarray, np.ndarray]:
    """The exact posterior mean (P,) and SD (P,) of the linear homoscedastic toy given the
    whole statistic vector y (prior N(0, I), noise covariance B B' + sigma^2 I)."""
    C = B @ B.T + sigma ** 2 * np.eye(A.shape[0])
    CiA = np.linalg.solve(C, A)
    post = np.linalg.inv(np.eye(A.shape[1]) + A.T @ CiA)
    return post @ (CiA.T @ y), np.sqrt(np.diag(post))


def one(v: dict[str, Any], seed: int) -> dict[str, Any]:
    A, B, sigma = problem(seed, v["snr"])
    fw = ToyForward(A, B, sigma, v["shape"], v["noise"], seed, v["components"])
    rng = np.random.default_rng([seed, 5])
    u_true = rng.standard_normal(P)
    y = fw.draw(u_true[None], rng)[0]
    f = Fitter(fw, y, members=v["members"], iterations=v["iterations"], seed=seed,
               noise_runs=v["noise_runs"], data_noise=v["data_noise"], prior_sd=1.0,
               centre=[0.0] * P, noise=v["noise_estimate"])
    f.start()
    while not f.done:
        f.step()
    U = f.U
    lo, hi = np.quantile(U, 0.05, axis=0), np.quantile(U, 0.95, axis=0)
    out = {"covered": ((lo <= u_true) & (u_true <= hi)).tolist(),
           "error": np.abs(U.mean(axis=0) - u_true).tolist(),
           "sd": U.std(axis=0, ddof=1).tolist()}
    if v["shape"] == "linear" and v["noise"] == "homoscedastic":
        m, s = exact_linear(A, B, sigma, y)
        out["exact_covered"] = (np.abs(m - u_true) <= 1.645 * s).tolist()
        out["exact_sd"] = s.tolist()
    return out


BASE = {"shape": "linear", "noise": "homoscedastic", "snr": 10.0, "members": 8,
        "iterations": 2, "noise_runs": 3, "data_noise": 1.0, "components": 4,
        "noise_estimate": "centre"}
POOLED = {"noise_estimate": "pooled"}
VARIANTS = [
    ("as the HCP twin: linear, 3 noise runs", {}),
    ("  pooled noise", POOLED),
    ("8 noise runs", {"noise_runs": 8}),
    ("30 noise runs", {"noise_runs": 30}),
    ("4 iterations", {"iterations": 4}),
    ("16 members", {"members": 16}),
    ("nonlinear", {"shape": "nonlinear"}),
    ("  pooled noise", {"shape": "nonlinear"} | POOLED),
    ("nonlinear, heteroscedastic", {"shape": "nonlinear", "noise": "hetero"}),
    ("  pooled noise", {"shape": "nonlinear", "noise": "hetero"} | POOLED),
    ("  pooled noise, 8 noise runs", {"shape": "nonlinear", "noise": "hetero",
                                      "noise_runs": 8} | POOLED),
    ("nonlinear, hetero, 8 noise runs, 4 iterations",
     {"shape": "nonlinear", "noise": "hetero", "noise_runs": 8, "iterations": 4}),
    ("  pooled noise", {"shape": "nonlinear", "noise": "hetero", "noise_runs": 8,
                        "iterations": 4} | POOLED),
]


def summarise(v: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    cov = np.array([r["covered"] for r in runs], float)
    err = np.array([r["error"] for r in runs])
    sd = np.array([r["sd"] for r in runs])
    s = {"coverage_90": float(cov.mean()),
         "coverage_90_per_param": cov.mean(axis=0).round(3).tolist(),
         "coverage_90_calibrated": calibrated_coverage(v["members"], 0.9),
         "mean_abs_error": float(err.mean()),
         "rms_error": float(np.sqrt((err ** 2).mean())),
         "mean_posterior_sd": float(sd.mean()),
         "sd_over_rms_error": float(np.sqrt((sd ** 2).mean()) / np.sqrt((err ** 2).mean()))}
    if "exact_covered" in runs[0]:
        s["exact_coverage_90"] = float(np.mean([r["exact_covered"] for r in runs]))
        s["exact_mean_sd"] = float(np.mean([r["exact_sd"] for r in runs]))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--snr", type=float, nargs="+", default=[3.0, 10.0],
                    help="scales of A: 10 gives posterior SDs near the HCP twin's (0.2-0.4)")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for snr, (name, over) in ((x, y) for x in a.snr for y in VARIANTS):
        v = BASE | over | {"snr": snr}
        runs = [one(v, s) for s in range(a.seeds)]
        rows.append({"variant": name, "settings": v, **summarise(v, runs)})
        r = rows[-1]
        print(f"snr {snr:<4g} {name:48s} cov90 {r['coverage_90']:.2f} (calibrated "
              f"{r['coverage_90_calibrated']:.2f})  |err| {r['mean_abs_error']:.3f}  "
              f"SD {r['mean_posterior_sd']:.3f}  SD/rmse {r['sd_over_rms_error']:.2f}"
              + (f"  exact cov90 {r['exact_coverage_90']:.2f} SD {r['exact_mean_sd']:.3f}"
                 if "exact_coverage_90" in r else ""), flush=True)
    wall = time.perf_counter() - t0
    if not a.no_save:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        path = HERE / "results" / f"fit_coverage-{stamp}.json"
        path.write_text(json.dumps({"benchmark": "fit_coverage", "utc": stamp,
                                    "machine": machine(), "seeds": a.seeds, "wall_s": wall,
                                    "rows": rows}, indent=1))
        print(f"wrote {path} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
