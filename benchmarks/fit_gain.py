"""Does a regional gain on long-range input raise the spiking twin's FC fit?  (issue 13)

The linear SC model (``fit_ceiling.py``, ``gain``) gains 0.06-0.18 of held-out FC r from
a regional gain along the group FC's regional strength.  This runs the spiking twin
itself: per development subject, the brain of ``fit_hcp.py --recipe adapt-h`` (4,000
neurons) at that recipe's prior centre (coupling 0.5, coupling.I 0.25, sc_exponent 1,
homotopic 0.5), plus ``regional_coupling`` b along ``group_fc_strength`` of the *other*
development subjects (``dtb fit``'s built-in map), for each ``--b``: one free run of
``--free-tr`` TRs, the same network (``--network-seed``) and noise seed for every b, scored
on the held-out TRs 600-1199 as ``fit_hcp.score`` does, and its FC r against the training
TRs 0-599 (what a fit could choose b by).

    .venv/bin/python benchmarks/fit_gain.py --work /tmp/dtb-fit-hcp --procs 2 \\
        --subjects 102311 102816 --b 0 0.4 0.8

Results: ``benchmarks/results/fit_gain-<UTC>.json`` and a table.
"""

from __future__ import annotations

import os

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
NOISE_SEED = 12345


def jobs_for(sid: str, a: argparse.Namespace) -> tuple[list[tuple], dict[str, Any]]:
    sub = hcp.load_subject(sid)
    others = [hcp.load_subject(s) for s in hcp.DEV_SUBJECTS if s != sid]
    d = FH.subject_data(sub, others)
    spec, params, centre, _ = FH.model(
        hcp.write_subject(sub, a.work / sid),
        {"recipe": "adapt-h", "neurons": a.neurons, "in_degree": 100,
         "regional_coupling": (-1.0, 2.0, 0.0)}, d)
    cfg = F.ForwardConfig(tr_s=hcp.TR_S, n_tr=a.free_tr, dt_ms=0.5, spinup_s=10.0,
                          threads=1, network_seed=a.network_seed)
    return [(spec, params, np.array([*centre[:-1], b]), NOISE_SEED, cfg) for b in a.b], d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--subjects", nargs="+", default=["102311", "102816"])
    ap.add_argument("--b", type=float, nargs="+", default=[0.0, 0.4, 0.8])
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--free-tr", type=int, default=600)
    ap.add_argument("--network-seed", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    jobs, data = [], {}
    for sid in a.subjects:
        j, data[sid] = jobs_for(sid, a)
        jobs += j
    t0 = time.perf_counter()
    if a.procs > 1:
        with mp.get_context("spawn").Pool(a.procs) as pool:
            out = pool.map(FH._free, jobs, chunksize=1)
    else:
        out = list(map(FH._free, jobs))
    rows = []
    for k, (bold, wall) in enumerate(out):
        sid, b = a.subjects[k // len(a.b)], a.b[k % len(a.b)]
        d = data[sid]
        sc = FH.score(bold, d)
        r_train = S.fc_fit(S.fc(FH.detrend(bold)), S.fc(d["train"]))
        rows.append({"subject": sid, "b": b, "fc_r_train": r_train, **sc, "wall_s": wall,
                     "baselines": d["baselines"], "data": d["scores"]})
        print(f"{sid} b {b:+.2f}: FC r training {r_train:.3f}, held-out {sc['fc_r']:.3f}, "
              f"mean FC {sc['mean_fc']:.3f} (data {d['scores']['mean_fc_heldout']:.3f}), "
              f"FCD KS {sc['fcd_ks']:.2f}, {wall:.0f} s", flush=True)
    if not a.no_save:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        path = HERE / "results" / f"fit_gain-{stamp}.json"
        path.write_text(json.dumps({"benchmark": "fit_gain", "utc": stamp,
                                    "machine": machine(), "args": {
                                        k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(a).items()},
                                    "noise_seed": NOISE_SEED,
                                    "wall_s": time.perf_counter() - t0, "runs": rows},
                                   indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
