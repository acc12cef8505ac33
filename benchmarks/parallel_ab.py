"""Two-rank efficiency of the microcircuit (an exchange every 0.1 ms step), this checkout
against another one, alternating in one run: 1 rank x 1 thread and 2 ranks x 1 thread,
``--reps`` times each, spikes checked identical.

    python benchmarks/parallel_ab.py --before /path/to/old/checkout --t 2000 --reps 3

``--before`` is a checkout of dtb whose ``dtb/`` imports with this venv: its ``kernels``,
``assimilation`` and ``data`` must be reachable as ``dtb.kernels`` etc. (symlinks
``dtb/kernels -> ../kernels`` and so on, since the editable install maps those packages
to this checkout).  Efficiency = median T(1 rank) / (2 median T(2 ranks)), both pooled
over the two checkouts for the 1-rank case (the same single-process code path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def one(code: Path | None, ranks: int, t_ms: float, scale: float, out: Path) -> dict:
    cmd = [str(BIN / "dtb"), "simulate", "--model", "microcircuit", "--scale", str(scale),
           "--t", str(t_ms), "--threads", "1", "--out", str(out), "-q"]
    if ranks > 1:
        cmd = [shutil.which("mpiexec", path=str(BIN)) or "mpiexec", "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK")}
    env["OMP_WAIT_POLICY"] = "passive"
    if code is not None:
        env["PYTHONPATH"] = str(code)
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    m = json.loads((out / "manifest.json").read_text())
    d = m.get("distribution") or {}
    return {"ranks": ranks, "simulate_s": m["timings"]["simulate_s"],
            "spikes": m["counts"]["spikes"],
            "exchange_fraction": (d.get("exchange") or {}).get("exchange_fraction"),
            "imbalance": d.get("imbalance")}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from microcircuit import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout")
    ap.add_argument("--t", type=float, default=2000.0, help="model time, ms")
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            for ranks in (1, 2):
                for label, code in (("before", a.before), ("after", None)):
                    r = one(code, ranks, a.t, a.scale, Path(tmp) / f"{label}-{ranks}-{rep}")
                    runs[label].append(r)
                    print(label, ranks, "ranks", round(r["simulate_s"], 3), "s", flush=True)
    every = runs["before"] + runs["after"]
    if len({r["spikes"] for r in every}) != 1:
        raise SystemExit(f"spike counts differ: {sorted({r['spikes'] for r in every})}")
    t1 = statistics.median(r["simulate_s"] for r in every if r["ranks"] == 1)
    res = {"benchmark": "parallel_ab", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime()),
           "machine": machine(), "t_ms": a.t, "scale": a.scale, "before": str(a.before),
           "runs": runs, "t1_median_s": t1}
    for label in runs:
        t2 = statistics.median(r["simulate_s"] for r in runs[label] if r["ranks"] == 2)
        res[label] = {"t2_median_s": t2, "efficiency": t1 / (2 * t2),
                      "exchange_fraction_median": statistics.median(
                          r["exchange_fraction"] for r in runs[label] if r["ranks"] == 2)}
        print(f"{label}: 2-rank median {t2:.3f} s, efficiency {t1 / (2 * t2):.2f}")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"parallel_ab-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
