"""Parallel efficiency on this machine: the same run on 1 rank (1 and all threads) and on
2 MPI ranks, for the microcircuit (spikes exchanged every 0.1 ms step, its minimum delay)
and for the default subject's brain (exchanged every 1 ms, its minimum delay).

    python benchmarks/parallel.py --out benchmarks/results

Efficiency = T(1 rank, 1 thread) / (P * T(P ranks, 1 thread each)); the spikes of every
configuration must be identical (checked on the content of spikes.h5).  The brain also runs
on a 2-rank METIS plan of its units (--partition metis).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run(args: list[str], ranks: int, threads: int | None, out: Path) -> dict:
    cmd = [str(BIN / "dtb"), "simulate", *args, "--out", str(out), "--quiet"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=str(BIN)) or "mpiexec"
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK")}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    m = json.loads((out / "manifest.json").read_text())
    d = m.get("distribution") or {}
    # spikes.h5 is a virtual file over per-rank parts: compare what it reads, not its bytes
    import hashlib

    import h5py

    h = hashlib.sha256()
    with h5py.File(out / "spikes.h5") as f:
        for pop in sorted(f["spikes"]):
            for ds in ("timestamps", "node_ids"):
                h.update(f["spikes"][pop][ds][()].tobytes())
    return {"ranks": ranks, "threads": m["threads"], "rtf": m["timings"]["rtf"],
            "simulate_s": m["timings"]["simulate_s"], "spikes": m["counts"]["spikes"],
            "spikes_sha256": h.hexdigest(),
            "exchange": d.get("exchange"), "imbalance": d.get("imbalance")}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from microcircuit import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", type=float, default=500.0, help="model time, ms")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    res = {"benchmark": "parallel", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "t_ms": a.t, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        brain = d / "brain.h5"
        subprocess.run([str(BIN / "dtb"), "build", "--demo", "--neurons", "40000", "-o",
                        str(brain)], check=True, capture_output=True)
        cases = {"microcircuit_0.05": ["--model", "microcircuit", "--scale", "0.05"],
                 "default_subject_40k": ["--brain", str(brain)]}
        for name, args in cases.items():
            args = [*args, "--t", str(a.t)]
            rows = [run(args, 1, 1, d / f"{name}-1x1"), run(args, 1, None, d / f"{name}-1xN"),
                    run(args, 2, None, d / f"{name}-2x1")]
            if name.startswith("default_subject"):  # the same on a METIS plan of its units
                rows.append(run([*args, "--partition", "metis"], 2, None, d / f"{name}-2x1m"))
                rows[-1]["partition"] = "metis"
            same = len({r["spikes_sha256"] for r in rows}) == 1
            t1 = rows[0]["simulate_s"]
            for r in rows:
                r["efficiency"] = t1 / (r["ranks"] * (r["threads"] or 1) * r["simulate_s"])
            res["cases"][name] = {"runs": rows, "identical_spikes": same}
            for r in rows:
                ex = r["exchange"] or {}
                print(f"{name:22s} ranks {r['ranks']} threads {r['threads']} "
                      f"{r.get('partition', '')}: rtf "
                      f"{r['rtf']:7.2f}  efficiency {r['efficiency']:.2f}  exchange "
                      f"{ex.get('exchange_fraction', 0):.0%}  identical spikes {same}",
                      flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"parallel-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
