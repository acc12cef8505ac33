"""How much of a fitted twin's held-out FC is its parameters and how much its network
realisation?  (issue 13)

For each subject of a ``fit_hcp.py`` result: the same brain (that run's ``--neurons`` unless
given), free-run ``--seeds`` realisations (fresh seeds: other synapses, other noise) of
``--free-tr`` TRs at the fit's posterior mean and at the prior centre (the regime study's
working point), each scored on the held-out TRs 600-1199 as ``fit_hcp.score`` does, and the
FC of their Fisher-z mean (the model's expected FC over realisations, the prediction a twin
that averages its realisations makes).  With ``--noise-seeds M`` (> 1) each of the
``--seeds`` network realisations is run under M noise seeds (``dtb.Engine``'s
``noise_seed``): the spread within a network against the spread between networks says
whether a realisation's FC is set by its synapses or by its noise.  A fit run with
``--network-seed`` is one network: its ``--seeds`` realisations are noise seeds of it.

    .venv/bin/python benchmarks/fit_realisations.py results/fit_hcp-<stamp>.json \\
        --work /tmp/dtb-fit-hcp --seeds 4 --procs 2

Results: ``benchmarks/results/fit_realisations-<UTC>.json`` and a table.
"""

from __future__ import annotations

import os

if __name__ in ("__main__", "__mp_main__"):
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
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
from dtb.assimilation import summary as S  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED_STREAM = 3_000_000   # member_seed's iteration slot: apart from the fit's and free runs'


def mean_fc_score(bolds: list[np.ndarray], d: dict[str, Any]) -> dict[str, float]:
    """FC fit r and mean FC of the Fisher-z mean FC of several runs (T, R)."""
    z = np.mean([S.fc(FH.detrend(b), fisher_z=True) for b in bolds], axis=0)
    m = np.tanh(z)
    return {"fc_r": S.fc_fit(m, d["fc_held"]), "mean_fc": float(np.nanmean(S.upper(m)))}


def subject(rec: dict[str, Any], run: dict[str, Any], a: argparse.Namespace,
            pool: Any) -> dict[str, Any]:
    sid = rec["subject"]
    sub = hcp.load_subject(sid)
    others = [hcp.load_subject(s) for s in hcp.DEV_SUBJECTS if s != sid]
    files = hcp.write_subject(sub, a.work / sid)
    d = FH.subject_data(sub, others)
    spec, params, centre, _ = FH.model(
        files, {**run["args"], "neurons": a.neurons or run["args"]["neurons"]}, d)
    names = [p.name for p in params]
    every = {"posterior_mean": np.array([rec["posterior_mean"][n] for n in names]),
             "prior_centre": np.array(centre)}
    points = {k: v for k, v in every.items() if k in a.points}
    seeds = [F.member_seed(run["args"]["seed"], SEED_STREAM, k) for k in range(a.seeds)]
    net = run["args"].get("network_seed")
    if net is not None:     # a one-network fit: its realisations are noises of its network
        runs = [(net, s) for s in seeds]
    elif a.noise_seeds == 1:    # one seed draws both network and noise
        runs = [(None, s) for s in seeds]
    else:
        runs = [(s, F.member_seed(run["args"]["seed"], SEED_STREAM + 1, k * a.noise_seeds + j))
                for k, s in enumerate(seeds) for j in range(a.noise_seeds)]
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=a.free_tr, dt_ms=run["args"]["dt"],
                          spinup_s=run["args"]["spinup_s"], threads=1)
    jobs = [(spec, params, x, z, dataclasses.replace(cfg, network_seed=n))
            for x in points.values() for n, z in runs]   # runs: (network seed, engine seed)
    t0 = time.perf_counter()
    out = pool.map(FH._free, jobs, chunksize=1) if pool is not None else map(FH._free, jobs)
    bolds = [b for b, _ in out]
    res: dict[str, Any] = {"subject": sid, "seeds": seeds, "runs": runs,
                           "wall_s": time.perf_counter() - t0,
                           "neurons": int(np.sum(spec.neurons_per_unit())),
                           "baselines": d["baselines"], "data": d["scores"]}
    for k, (name, x) in enumerate(points.items()):
        mine = bolds[k * len(runs):(k + 1) * len(runs)]
        single = [FH.score(b, d) for b in mine]
        res[name] = {"values": dict(zip(names, x.tolist(), strict=True)), "runs": single,
                     "fc_r_runs": [s["fc_r"] for s in single],
                     "mean_of_runs": mean_fc_score(mine, d)}
        if a.noise_seeds > 1 and net is None:
            res[name]["by_network"] = by_network(single, a.seeds, a.noise_seeds)
    return res


def by_network(single: list[dict[str, Any]], n_net: int, n_noise: int) -> dict[str, Any]:
    """FC r and mean FC of runs grouped by network (n_net, n_noise): the SD of the runs
    within a network (pooled) and of the network means between networks."""
    out: dict[str, Any] = {}
    for key in ("fc_r", "mean_fc"):
        v = np.array([s[key] for s in single]).reshape(n_net, n_noise)
        out[key] = {"runs": v.tolist(),
                    "sd_within": float(np.sqrt(np.mean(np.var(v, axis=1, ddof=1)))),
                    "sd_between_means": float(np.std(v.mean(axis=1), ddof=1))}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ("subject", "point", "FC r per realisation", "mean ± SD", "FC r of mean FC",
            "mean FC (data)", "log-SC r")
    lines = [head]
    for r in rows:
        for name in ("posterior_mean", "prior_centre"):
            if name not in r:
                continue
            p = r[name]
            v = np.array(p["fc_r_runs"])
            lines.append((r["subject"], name, " ".join(f"{x:.2f}" for x in v),
                          f"{v.mean():.3f} ± {v.std(ddof=1):.3f}",
                          f"{p['mean_of_runs']['fc_r']:.3f}",
                          f"{p['mean_of_runs']['mean_fc']:.3f} "
                          f"({r['data']['mean_fc_heldout']:.3f})",
                          f"{r['baselines']['log_sc_r']:.3f}"))
    w = [max(len(x[k]) for x in lines) for k in range(len(head))]
    return "\n".join(" | ".join(c.ljust(w[k]) for k, c in enumerate(x)) for x in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fit_json", type=Path, help="a benchmarks/results/fit_hcp-*.json")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=4, help="network realisations")
    ap.add_argument("--noise-seeds", type=int, default=1,
                    help="noise seeds per network realisation (1: one seed draws both)")
    ap.add_argument("--free-tr", type=int, default=600)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--subjects", nargs="+")
    ap.add_argument("--neurons", type=int, help="brain size (default: the fit's)")
    ap.add_argument("--points", nargs="+", choices=("posterior_mean", "prior_centre"),
                    default=["posterior_mean", "prior_centre"])
    a = ap.parse_args(argv)
    if a.seeds < 2 or a.noise_seeds < 1:
        print(f"fit_realisations: --seeds {a.seeds}, --noise-seeds {a.noise_seeds}: "
              "expected at least 2 and 1", file=sys.stderr)
        return 2
    run = json.loads(a.fit_json.read_text())
    recs = [s for s in run["subjects"] if not a.subjects or s["subject"] in a.subjects]
    pool = mp.get_context("spawn").Pool(a.procs) if a.procs > 1 else None
    try:
        rows = [subject(r, run, a, pool) for r in recs]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    print(table(rows))
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    path = HERE / "results" / f"fit_realisations-{stamp}.json"
    path.write_text(json.dumps({"benchmark": "fit_realisations", "utc": stamp,
                                "machine": machine(), "fit": a.fit_json.name,
                                "args": {"seeds": a.seeds, "noise_seeds": a.noise_seeds,
                                         "free_tr": a.free_tr,
                                         "procs": a.procs, "neurons": a.neurons,
                                         "points": a.points}, "subjects": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
