"""Twin experiments at HCP size through ``dtb fit --truth``  (issue 13, item 4).

A subject's brain (``hcp.py``: its own SC and tract lengths, 80 regions, ``--neurons``;
with ``--recipe adapt``, the default, E-cell adaptation as in ``fit_hcp.py``) plays the
truth: per seed, the truth's three long-range parameters (``fit_hcp.RECIPES[recipe]``:
coupling, coupling.I, sc_exponent) are drawn from the fit's prior (independent normals of
SD ``--prior-sd`` on the logit scale around the prior centre), and the truth's BOLD is
simulated with its own network realisation (another seed than any member's), ``--fit-trs``
+ ``--test-trs`` TRs at TR 0.72 s.  Then the command a user runs:

    dtb fit --brain BRAIN --bold truth.csv --truth coupling=... --truth coupling.I=...
        --truth sc_exponent=... --param ... (the same bounds and centre) ...

and its ``metrics.json`` gives, per parameter, the posterior mean's error, whether the 90 %
interval holds the truth, and the prior centre's error.  Over seeds: mean absolute error
against the prior's, coverage, correlation of posterior means with the truths.

    .venv/bin/python benchmarks/fit_twin_hcp.py --work /tmp/dtb-twin-hcp --seeds 1 2 3

Only derived scores go to ``benchmarks/results/fit_twin_hcp-<UTC>.json``; the brain, the
truth's BOLD and the run directories stay under ``--work`` (HCP terms: outside git).
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
import hcp  # noqa: E402
from microcircuit import machine  # noqa: E402

from dtb.assimilation import fit as F  # noqa: E402
from dtb.assimilation.fit_esmda import NOISE_ESTIMATES  # noqa: E402

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TRUTH_STREAM = 7_000_000  # member_seed's iteration slot for truth networks


def draw_truth(params: list[F.FitParameter], centre: list[float], prior_sd: float,
               seed: int) -> np.ndarray:
    """Truth values (P,): logit-scale centre + prior_sd * N(0, 1), mapped back."""
    rng = np.random.default_rng([seed, 13])
    return np.array([float(p.from_unbounded(p.to_unbounded(np.float64(c))
                                            + prior_sd * rng.standard_normal()))
                     for p, c in zip(params, centre, strict=True)])


def write_bold(bold: np.ndarray, labels: np.ndarray, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([str(int(x)) for x in labels])
        w.writerows([[repr(float(v)) for v in row] for row in bold])


def fit_arguments(ap: argparse.ArgumentParser) -> None:
    """The options ``fit_command`` reads: the run's length and the ensemble's settings."""
    ap.add_argument("--fit-trs", type=int, default=300)
    ap.add_argument("--test-trs", type=int, default=300)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--noise-runs", type=int, default=3)
    ap.add_argument("--fc-components", type=int, default=4)
    ap.add_argument("--prior-sd", type=float, default=1.0, help="on the logit scale")
    ap.add_argument("--dt", type=float, default=0.5, help="ms")
    ap.add_argument("--spinup-s", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--fit-seed", type=int, default=1)


def fit_command(brain: Path, d: Path, a: argparse.Namespace) -> list[str]:
    """``dtb fit`` on ``d/truth_bold.csv`` (``a.fit_trs`` fit TRs, then ``a.test_trs``
    test TRs) into ``d/run`` with the ensemble settings of ``a``; parameters not yet."""
    n_tr = a.fit_trs + a.test_trs
    return [str(BIN / "dtb"), "fit", "--brain", str(brain), "--bold", str(d / "truth_bold.csv"),
            "--tr", str(hcp.TR_S), "--fit-trs", f"0:{a.fit_trs}",
            "--test-trs", f"{a.fit_trs}:{n_tr}", "--members", str(a.members),
            "--iterations", str(a.iterations), "--noise-runs", str(a.noise_runs),
            "--prior-sd", str(a.prior_sd), "--fc-components", str(a.fc_components),
            "--dt", str(a.dt), "--spinup-s", str(a.spinup_s), "--procs", str(a.procs),
            "--seed", str(a.fit_seed), "--out", str(d / "run"), "--overwrite", "-q"]


def one_seed(seed: int, spec: Any, brain: Path, labels: np.ndarray,
             a: argparse.Namespace) -> dict[str, Any]:
    recipe = FH.RECIPES[a.recipe][0]
    params = [F.FitParameter(n, lo, hi) for n, lo, hi, _ in recipe]
    centre = [c for *_, c in recipe]
    truth = draw_truth(params, centre, a.prior_sd, seed)
    n_tr = a.fit_trs + a.test_trs
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=n_tr, dt_ms=a.dt, spinup_s=a.spinup_s,
                          threads=1)
    t0 = time.perf_counter()
    bold = F.simulate_bold(spec, params, truth, F.member_seed(seed, TRUTH_STREAM, 0), cfg)
    truth_s = time.perf_counter() - t0
    d = a.work / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    write_bold(bold, labels, d / "truth_bold.csv")
    cmd = fit_command(brain, d, a) + ["--noise", a.noise]
    for (name, lo, hi, c), v in zip(recipe, truth, strict=True):
        cmd += ["--param", f"{name}={lo}:{hi}@{c}", "--truth", f"{name}={float(v)!r}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    fit_s = time.perf_counter() - t0
    m = json.loads((d / "run" / "metrics.json").read_text())
    return {"seed": seed, "truth": dict(zip([p.name for p in params], truth.tolist(),
                                            strict=True)),
            "twin": m["twin"], "heldout_fc_r": {
                k: m["heldout"][k]["fc_r"] for k in ("fitted", "unfitted")},
            "truth_s": truth_s, "fit_s": fit_s}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per parameter over seeds: mean |error| of the posterior mean and of the prior
    centre, 90 % coverage, correlation of posterior means with the truths."""
    out: dict[str, Any] = {}
    for name in rows[0]["twin"]:
        t = [r["twin"][name] for r in rows]
        post = np.array([x["posterior_mean"] for x in t])
        truth = np.array([x["truth"] for x in t])
        out[name] = {
            "mean_abs_error": float(np.mean(np.abs(post - truth))),
            "mean_abs_error_prior": float(np.mean([abs(x["prior_centre_error"])
                                                   for x in t])),
            "mean_rel_error": float(np.mean([x["relative_error"] for x in t
                                             if x["relative_error"] is not None])),
            "coverage_90": float(np.mean([x["covered_90"] for x in t])),
            "coverage_90_if_calibrated": t[0].get("coverage_90_if_calibrated"),
            "corr_with_truth": (float(np.corrcoef(post, truth)[0, 1])
                                if len(t) > 2 and np.std(truth) > 0 else None)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--subject", default="101309", choices=hcp.DEV_SUBJECTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--in-degree", type=int, default=100)
    ap.add_argument("--recipe", choices=sorted(FH.RECIPES), default="adapt",
                    help="the brain and prior (fit_hcp.py): 'adapt' (E-cell adaptation, "
                         "the steady point) or 'centre' (no adaptation)")
    fit_arguments(ap)
    ap.add_argument("--noise", choices=NOISE_ESTIMATES, default="pooled",
                    help="dtb fit --noise: Gamma pooled with the ensemble's residuals, or "
                    "from the noise runs alone (the rule before 2026-12-07)")
    a = ap.parse_args(argv)
    sub = hcp.load_subject(a.subject)
    files = hcp.write_subject(sub, a.work / a.subject)
    spec = FH.build_spec(files, a.neurons, a.in_degree, FH.RECIPES[a.recipe][1])
    brain = a.work / a.subject / f"brain{a.neurons}-{a.recipe}.h5"
    spec.save(str(brain))
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = HERE / "results" / f"fit_twin_hcp-{stamp}.json"
    rows: list[dict[str, Any]] = []
    for s in a.seeds:
        rows.append(one_seed(s, spec, brain, sub.labels, a))
        r = rows[-1]
        print(f"seed {s}: " + ", ".join(
            f"{k} truth {v['truth']:.3f} posterior {v['posterior_mean']:.3f} "
            f"in 90 % {v['covered_90']}" for k, v in r["twin"].items())
            + f" ({r['fit_s']:.0f} s)", flush=True)
        # rewritten after every seed: a long run stopped early keeps what it measured
        path.write_text(json.dumps({"benchmark": "fit_twin_hcp", "utc": stamp,
                                    "machine": machine(), "args": {
                                        k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(a).items()},
                                    "seeds": rows, "summary": summary(rows)}, indent=1))
    for k, v in summary(rows).items():
        print(f"{k}: |error| {v['mean_abs_error']:.3f} (prior {v['mean_abs_error_prior']:.3f}), "
              f"coverage {v['coverage_90']:.2f}, corr {v['corr_with_truth']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
