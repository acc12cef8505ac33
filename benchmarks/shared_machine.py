"""Threads on a shared machine: the microcircuit with one competing busy process on the
cores, against the same run without it, for several thread settings.

    python benchmarks/shared_machine.py --out benchmarks/results [--scale 0.05] [--t 300]

numba's OpenMP threads (libgomp) spin while they wait for work: with 2 threads on 2 cores
and another process busy on one of them, a waiting thread keeps its core and the thread it
waits for gets half of the other, at every exchange window.  Each configuration runs in its
own process (libgomp reads its environment once): it builds the model, runs ``--presim``
ms, then ``--t`` ms without the competitor ("quiet") and ``--t`` ms with one busy process
(a Python loop) started beside it ("busy").  Recorded: real-time factors, the load average
before each case, the machine; the spikes of every run must be identical (their count and
a hash are compared).  Configurations:

- ``1 thread``: ``--threads 1``;
- ``N threads, spin (OpenMP default)``: libgomp's default waiting (GOMP_SPINCOUNT=300000,
  its default spin before sleeping; set, it also keeps dtb from choosing a policy);
- ``N threads, passive``: OMP_WAIT_POLICY=PASSIVE;
- ``dtb default``: no setting at all (what a user of dtb simulate gets: idle threads
  sleep, and as many threads as cores are idle when the run starts, dtb.engine.threads).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSY = "import time\nt = time.time() + 600\nwhile time.time() < t:\n    pass\n"


def worker(scale: float, t_ms: float, presim_ms: float, threads: int | None) -> dict:
    """One configuration, in this process (its environment already set)."""
    import numba
    import numpy as np

    import dtb
    from dtb.models import microcircuit

    if threads is None:  # what dtb simulate does without --threads
        from dtb.engine.threads import choose_threads

        threads = choose_threads(None)
    eng = dtb.Engine(microcircuit(scale), dt=0.1, seed=1, threads=threads)
    eng.run(presim_ms)
    out: dict = {"threads": eng.threads, "layer": None}
    for case in ("quiet", "busy"):
        busy = (subprocess.Popen([sys.executable, "-c", BUSY]) if case == "busy" else None)
        try:
            if busy is not None:
                time.sleep(0.5)  # let it take its core
            s0, n0 = eng.simulate_s, len(eng.kept_spikes()[0])
            eng.run(t_ms)
            st = eng.kept_spikes()[0][n0:]
            out[case] = {"rtf": (eng.simulate_s - s0) / (t_ms * 1e-3),
                         "spikes": int(len(st))}
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    out["layer"] = numba.threading_layer()
    times, gids = eng.spikes()
    out["spikes_sha256"] = hashlib.sha256(np.asarray(times).tobytes()
                                          + np.asarray(gids).tobytes()).hexdigest()
    out["env"] = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                  "NUMBA_NUM_THREADS")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--t", type=float, default=300.0, help="model time per case, ms")
    ap.add_argument("--presim", type=float, default=50.0, help="ms before timing")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads of the multi-threaded cases (default: the cores)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker is not None:
        threads = None if a.worker == "default" else int(a.worker)
        print(json.dumps(worker(a.scale, a.t, a.presim, threads)))
        return 0
    sys.path.insert(0, str(HERE))
    from microcircuit import machine

    n = a.threads
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS",
                         "PMI_SIZE", "PMI_RANK")}
    cases = {
        "1 thread": ({}, "1"),
        f"{n} threads, spin (OpenMP default)": ({"GOMP_SPINCOUNT": "300000"}, str(n)),
        f"{n} threads, passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, str(n)),
        "dtb default": ({}, "default"),
    }
    res = {"benchmark": "shared_machine", "machine": machine(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "scale": a.scale, "t_ms": a.t, "cases": {}}
    for name, (env, threads) in cases.items():
        load = os.getloadavg()
        cmd = [sys.executable, __file__, "--worker", threads, "--scale", str(a.scale),
               "--t", str(a.t), "--presim", str(a.presim)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True,
                           check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(load_before=load, wall_s=time.perf_counter() - t0)
        res["cases"][name] = r
        print(f"{name:34s} threads {r['threads']}  RTF quiet {r['quiet']['rtf']:7.2f}  "
              f"busy {r['busy']['rtf']:7.2f}  (load before {load[0]:.1f})", flush=True)
    res["identical_spikes"] = len({r["spikes_sha256"] for r in res["cases"].values()}) == 1
    print(f"identical spikes in every case: {res['identical_spikes']}")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"shared_machine-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
