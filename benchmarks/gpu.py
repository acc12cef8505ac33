"""GPU benchmarks (issue 7), all in one short call on a GPU machine:

* ``launch``: wall time per step of a model too small to cost anything else (1,000 neurons,
  one-step windows, no spikes): the launch overhead per step, with plain launches and with
  CUDA graphs of 32 and 128 windows;
* ``microcircuit``: the full-scale Potjans-Diesmann microcircuit (77,169 neurons, ~0.3
  billion synapses): build time (CPU engine, then upload), device memory and bytes per
  synapse and neuron, real-time factor over ``--t`` ms after a 100 ms presimulation, rates;
* ``dtb10m``: a DTB-sized partition, 10 million neurons with in-degree 100 (1e9 synapses,
  80 % E / 20 % I, delays 1-2 ms, Poisson background giving ~4 Hz): build, memory,
  real-time factor and synaptic events per second in the run, and delivery alone (a batch
  of a million spikes through deliver_remote).

    python benchmarks/gpu.py OUTDIR [--t 1000] [--skip dtb10m]
    python benchmarks/gpu.py /tmp/x --emulate --scale 0.01 --neurons 20000 --t 20   # no GPU

Writes OUTDIR/gpu-<UTC date>.json after every part (an interrupted run keeps what was
measured), with the card, driver, CUDA and CuPy versions and the date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import dtb  # noqa: E402
from dtb.engine.gpu.backend import GpuBackend  # noqa: E402

EMULATE = False  # --emulate: the kernels' host build, to check this script without a GPU


def card() -> dict:
    """The GPU, its driver and the CUDA/CuPy versions."""
    if EMULATE:
        return {"name": "host emulation (no GPU)", "host": platform.node()}
    import cupy

    from dtb.engine.gpu.device import device_name

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    out = {"name": device_name(props), "sms": props["multiProcessorCount"],
           "memory_bytes": cupy.cuda.Device().mem_info[1],
           "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "cupy": cupy.__version__,
           "host": platform.node(), "python": platform.python_version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20).stdout.strip().splitlines()
        out["driver"] = smi[0].split(",")[1].strip() if smi else None
    except (OSError, subprocess.SubprocessError):
        out["driver"] = None
    return out


def _sync() -> None:
    if EMULATE:
        return
    import cupy

    cupy.cuda.Device().synchronize()


def _pool_bytes() -> int:
    if EMULATE:
        return 0
    import cupy

    return int(cupy.get_default_memory_pool().used_bytes())


def _backend(eng, **kw) -> GpuBackend:
    return GpuBackend(eng, emulate=EMULATE, **kw)


def _run(be: GpuBackend, n_steps: int, m: int) -> tuple[float, np.ndarray, np.ndarray]:
    _sync()
    t0 = time.perf_counter()
    st, ix = be.advance_local(n_steps, m)
    _sync()
    return time.perf_counter() - t0, st, ix


def _events(eng, ix: np.ndarray) -> int:
    """Synaptic events of the spikes of engine indices ix (their rows' lengths)."""
    out_deg = np.zeros(eng.n_local, np.int64)
    for lay in eng.layout:
        for q in range(eng.tables.pop_proj_ptr[lay.index], eng.tables.pop_proj_ptr[lay.index + 1]):
            p = eng.tables.pop_proj[q]
            r0 = eng.synapse_arrays.row0[p] + lay.first
            out_deg[lay.lo:lay.hi] += np.diff(eng.synapse_arrays.indptr[r0:r0 + lay.size + 1])
    return int(out_deg[ix].sum())


def bench_launch(args) -> dict:
    net = dtb.Network(
        (dtb.Population("A", 1000, model="iaf_psc_exp"),),
        (dtb.Projection("A", "A", dtb.FixedInDegree(1), 0.0, 0.1),))
    eng = dtb.Engine(net, dt=0.1, seed=1)
    assert eng.min_delay_steps == 1
    out = {}
    for g in (0, 32, 128):
        be = _backend(dtb.Engine(net, dt=0.1, seed=1), graph_windows=g)
        _run(be, 2 * max(g, 1), 1)  # compile, capture
        n = 2000 if EMULATE else 20_000
        wall, st, _ = _run(be, n, 1)
        out[f"graph_{g}"] = {"us_per_step": wall / n * 1e6, "launch_calls": be.launches,
                             "spikes": len(st), "graph_error": be.graph_error}
    return out


def bench_microcircuit(args) -> dict:
    from dtb.models.microcircuit import microcircuit

    t0 = time.perf_counter()
    eng = dtb.Engine(microcircuit(scale=args.scale), dt=0.1, seed=1)
    build_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    be = _backend(eng)
    _sync()
    upload = time.perf_counter() - t0
    m = eng.min_delay_steps
    presim_s, _, _ = _run(be, 1000, m)
    n_steps = int(round(args.t / 0.1))
    wall, st, ix = _run(be, n_steps, m)
    counts = np.bincount([eng.layout[k].index for k in
                          np.searchsorted(eng.pieces.lo, ix, side="right") - 1],
                         minlength=len(eng.network.populations))
    rates = {p.name: float(c / (p.size * args.t * 1e-3))
             for p, c in zip(eng.network.populations, counts, strict=True)}
    ev = _events(eng, ix)
    return {"scale": args.scale, "neurons": eng.n_local, "synapses": int(eng.n_synapses),
            "build_cpu_s": build_cpu, "upload_s": upload, "build_s": build_cpu + upload,
            "presim_100ms_s": presim_s, "t_ms": args.t, "simulate_s": wall,
            "rtf": wall / (args.t * 1e-3), "spikes": len(st), "rates_hz": rates,
            "synaptic_events": ev, "events_per_s": ev / wall,
            "memory": be.memory.to_dict(), "pool_used_bytes": _pool_bytes(),
            "launch_calls": be.launches, "graph_windows": be.graph_windows,
            "graph_error": be.graph_error}


def ten_million(n: int = 10_000_000) -> dtb.Network:
    """80 % E / 20 % I iaf_psc_exp, in-degree 80 E + 20 I, delays U(1, 2) ms, Poisson
    background 900 x 8 Hz (about 4 Hz, measured at 100,000 neurons on the CPU)."""
    ne = int(n * 0.8)
    w = 87.8
    d = dtb.Dist.uniform(1.0, 2.0)
    pops = (dtb.Population("E", ne, model="iaf_psc_exp", type="E",
                           initial={"V": dtb.Dist.uniform(-65.0, -50.0)},
                           inputs=(dtb.PoissonInput(8.0, w, 900),)),
            dtb.Population("I", n - ne, model="iaf_psc_exp", type="I",
                           initial={"V": dtb.Dist.uniform(-65.0, -50.0)},
                           inputs=(dtb.PoissonInput(8.0, w, 900),)))
    projs = tuple(dtb.Projection(s, t, dtb.FixedInDegree(80 if s == "E" else 20),
                                 w if s == "E" else -4.0 * w, d) for s in "EI" for t in "EI")
    return dtb.Network(pops, projs)


def bench_dtb10m(args) -> dict:
    t0 = time.perf_counter()
    eng = dtb.Engine(ten_million(args.neurons), dt=0.1, seed=1)
    build_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    be = _backend(eng, record_capacity=1 << 24)
    _sync()
    upload = time.perf_counter() - t0
    m = eng.min_delay_steps
    presim_s, _, _ = _run(be, 500, m)
    t_ms = min(args.t, 200.0)
    wall, st, ix = _run(be, int(round(t_ms / 0.1)), m)
    ev = _events(eng, ix)
    # delivery alone: a million E spikes at once (as if received from other ranks)
    rng = np.random.default_rng(0)
    k = 10_000 if EMULATE else 1_000_000
    src = rng.integers(0, eng.network.populations[0].size, k)
    steps = np.full(k, be.step, np.int64)
    pop = np.zeros(k, np.int64)
    be.deliver_remote(steps[:1000], pop[:1000], src[:1000])
    _sync()
    t0 = time.perf_counter()
    be.deliver_remote(steps, pop, src)
    _sync()
    t_del = time.perf_counter() - t0
    lay0 = eng.layout[0]
    ev_del = _events(eng, lay0.lo + src - lay0.first)
    return {"neurons": eng.n_local, "synapses": int(eng.n_synapses),
            "build_cpu_s": build_cpu, "upload_s": upload, "presim_50ms_s": presim_s,
            "t_ms": t_ms, "simulate_s": wall, "rtf": wall / (t_ms * 1e-3), "spikes": len(st),
            "rate_hz": len(st) / (eng.n_local * t_ms * 1e-3), "synaptic_events": ev,
            "events_per_s_in_run": ev / wall, "delivery_only": {
                "spikes": k, "synaptic_events": ev_del, "s": t_del,
                "events_per_s": ev_del / t_del},
            "memory": be.memory.to_dict(), "pool_used_bytes": _pool_bytes(),
            "window_steps": m}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--t", type=float, default=1000.0, help="timed model time, ms")
    ap.add_argument("--neurons", type=int, default=10_000_000, help="size of dtb10m")
    ap.add_argument("--scale", type=float, default=1.0, help="microcircuit scale")
    ap.add_argument("--emulate", action="store_true",
                    help="no GPU: the kernels' host build (slow; small sizes only)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["launch", "microcircuit",
                                                              "dtb10m"])
    args = ap.parse_args(argv)
    global EMULATE
    EMULATE = args.emulate
    out_dir = Path(args.outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    path = out_dir / f"gpu-{now:%Y%m%d-%H%M%S}.json"
    res = {"benchmark": "gpu", "date": now.isoformat(timespec="seconds"), "card": card(),
           "dtb": dtb.__version__, "parts": {}}
    for name, fn in (("launch", bench_launch), ("microcircuit", bench_microcircuit),
                     ("dtb10m", bench_dtb10m)):
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            res["parts"][name] = fn(args)
        except Exception as e:  # noqa: BLE001 - record it, go on with the next part
            res["parts"][name] = {"error": f"{type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc()[-3000:]}
        res["parts"][name]["wall_s"] = time.perf_counter() - t0
        path.write_text(json.dumps(res, indent=1))
        print(name, json.dumps(res["parts"][name])[:600], flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
