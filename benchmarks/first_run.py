"""The first run after installing: ``dtb demo`` with a cold kernel cache against a warm one,
and what ``dtb warmup`` costs and saves.

    python benchmarks/first_run.py --out benchmarks/results [--t 1000] [--threads 1]

Each case runs in a fresh process with ``NUMBA_CACHE_DIR`` pointing to its own empty
folder (a cold cache) or to one filled by the case before (warm), so the machine's own
cache is not touched.  Recorded per run: wall time of the command, and the manifest's
``build_s``, ``simulate_s`` and ``compile_s`` (first-use compilation, kept out of the other
two; dtb.engine.compiling).  The goal (issue 16): cold simulate_s / warm simulate_s <= 2, with the
compilation reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _dtb(args: list[str], cache: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK")}
    env["NUMBA_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN / "dtb"), *args], capture_output=True, text=True, env=env,
                       check=True)
    return time.perf_counter() - t0, p.stderr


def demo(out: Path, cache: Path, t_ms: float, threads: int | None) -> dict:
    args = ["demo", "--out", str(out), "--t", str(t_ms)]  # not -q: it would hide the message
    if threads:
        args += ["--threads", str(threads)]
    wall, err = _dtb(args, cache)
    t = json.loads((out / "manifest.json").read_text())["timings"]
    return {"wall_s": wall, "build_s": t["build_s"], "simulate_s": t["simulate_s"],
            "compile_s": t.get("compile_s"), "rtf": t["rtf"],
            "said_compiling": "compiling kernels (first run only" in err}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from microcircuit import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", type=float, default=1000.0, help="model time of the demo, ms")
    ap.add_argument("--threads", type=int, help="threads (default: dtb's default)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    res = {"benchmark": "first_run", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "load_before": os.getloadavg(), "t_ms": a.t,
           "threads": a.threads}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        res["demo_cold"] = demo(d / "cold", d / "cache-a", a.t, a.threads)
        res["demo_warm"] = demo(d / "warm", d / "cache-a", a.t, a.threads)
        wall, err = _dtb(["warmup", *(["--threads", str(a.threads)] if a.threads else [])],
                         d / "cache-b")
        res["warmup_cold_wall_s"] = wall
        res["demo_after_warmup"] = demo(d / "after", d / "cache-b", a.t, a.threads)
    c, w = res["demo_cold"], res["demo_warm"]
    res["cold_over_warm_simulate"] = c["simulate_s"] / w["simulate_s"]
    res["cold_over_warm_wall"] = c["wall_s"] / w["wall_s"]
    res["load_after"] = os.getloadavg()
    for k in ("demo_cold", "demo_warm", "demo_after_warmup"):
        r = res[k]
        print(f"{k:18s} wall {r['wall_s']:6.1f} s  build {r['build_s']:5.2f} s  simulate "
              f"{r['simulate_s']:6.2f} s  compile {r['compile_s']:5.1f} s  "
              f"said 'compiling': {r['said_compiling']}", flush=True)
    print(f"dtb warmup (cold cache) {res['warmup_cold_wall_s']:.1f} s; cold/warm simulate "
          f"{res['cold_over_warm_simulate']:.2f}, wall {res['cold_over_warm_wall']:.2f}")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"first_run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
