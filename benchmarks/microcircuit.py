"""Microcircuit benchmark: dtb against NEST on the same model, scale, seed and machine.

Each simulator runs in its own subprocess (clean peak memory, no thread interference),
one after the other, on the same cores.  Follows the community recipe in spirit: a
presimulation that is discarded, then timed model time without writing outputs (spikes
are kept in memory to compute rates).  Records build time, real-time factor
(wall time / model time), bytes per synapse, peak memory and rates, plus the machine.

    python benchmarks/microcircuit.py --scales 0.1 0.2 0.3 0.5 --t 1000 --out benchmarks/results

dtb's build time is reported with numba's compile cache warm (``build_s``); the first
build in a fresh environment also compiles the kernels (``compile_s``, measured once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_dtb(scale: float, t_ms: float, presim_ms: float, threads: int, seed: int) -> dict:
    import numba

    import dtb
    from dtb.models import microcircuit

    t0 = time.perf_counter()
    eng = dtb.Engine(microcircuit(scale), dt=0.1, seed=seed, threads=threads)
    build_s = time.perf_counter() - t0
    eng.run(presim_ms)
    presim_s = eng.simulate_s
    eng.run(t_ms)
    sim_s = eng.simulate_s - presim_s
    return {"simulator": "dtb", "version": dtb.__version__, "numba": numba.__version__,
            "threads": eng.threads, "scale": scale, "n_neurons": eng.n_neurons,
            "n_synapses": eng.n_synapses, "bytes_per_synapse": eng.bytes_per_synapse,
            "build_s": build_s, "presim_s": presim_s, "simulate_s": sim_s,
            "rtf": sim_s / (t_ms / 1000.0), "rates_hz": eng.rates(presim_ms),
            "peak_rss_mb": _peak_rss_mb()}


def worker_nest(scale: float, t_ms: float, presim_ms: float, threads: int, seed: int) -> dict:
    sys.path.insert(0, str(HERE))
    from nest_microcircuit import run_nest_microcircuit

    r = run_nest_microcircuit(scale, t_ms, t_presim_ms=presim_ms, threads=threads, seed=seed)
    r["simulator"] = "nest"
    r["bytes_per_synapse_rss"] = _peak_rss_mb() * 2**20 / max(1, r["n_synapses"])
    r["peak_rss_mb"] = _peak_rss_mb()
    return r


def run_worker(kind: str, scale: float, args) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", kind, "--scales", str(scale), "--t", str(args.t),
           "--presim", str(args.presim), "--threads", str(args.threads), "--seed", str(args.seed)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"{kind} scale {scale} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def compile_time() -> float:
    """Seconds for a first dtb build+run with an empty numba cache (a fresh install)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        code = ("import dtb; from dtb.models import microcircuit; "
                "e = dtb.Engine(microcircuit(0.01)); e.run(1.0)")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--t", type=float, default=1000.0, help="timed model time, ms")
    ap.add_argument("--presim", type=float, default=500.0, help="discarded model time, ms")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-nest", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", choices=["dtb", "nest"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        fn = worker_dtb if args.worker == "dtb" else worker_nest
        print(json.dumps(fn(args.scales[0], args.t, args.presim, args.threads, args.seed)))
        return 0
    sys.path.insert(0, str(HERE))
    from nest_microcircuit import nest_available

    have_nest = not args.no_nest and nest_available()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = {"benchmark": "microcircuit", "date": now,
              "machine": machine(), "t_ms": args.t, "presim_ms": args.presim,
              "threads": args.threads, "seed": args.seed, "compile_s": compile_time(), "runs": []}
    run_worker("dtb", min(args.scales), args)  # warm the compile cache
    print(f"{'scale':>6} {'sim':>5} {'build_s':>8} {'rtf':>7} {'B/syn':>6} {'RSS MB':>8}")
    for scale in args.scales:
        row = {"scale": scale}
        for kind in ("dtb", "nest") if have_nest else ("dtb",):
            r = run_worker(kind, scale, args)
            row[kind] = r
            if r:
                bps = r.get("bytes_per_synapse", float("nan"))
                print(f"{scale:6.2f} {kind:>5} {r['build_s']:8.2f} {r['rtf']:7.3f} {bps:6.2f} "
                      f"{r['peak_rss_mb']:8.0f}", flush=True)
        if row.get("dtb") and row.get("nest"):
            row["nest_over_dtb_build"] = row["nest"]["build_s"] / row["dtb"]["build_s"]
            row["nest_over_dtb_rtf"] = row["nest"]["rtf"] / row["dtb"]["rtf"]
            row["nest_over_dtb_rss"] = row["nest"]["peak_rss_mb"] / row["dtb"]["peak_rss_mb"]
            print(f"{'':6} ratio NEST/dtb: build {row['nest_over_dtb_build']:.2f}x, "
                  f"simulation {row['nest_over_dtb_rtf']:.2f}x, memory "
                  f"{row['nest_over_dtb_rss']:.2f}x", flush=True)
        result["runs"].append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"microcircuit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
