"""Recording benchmark: what writing every spike of the microcircuit costs.

One microcircuit engine (iaf_psc_exp, dt 0.1 ms, full in-degrees) is presimulated, then
advanced in segments of ``--t`` ms that alternate between

- ``none``: ``Engine.run`` with nothing kept or recorded (``keep_spikes = False``);
- ``spikes``: a Recording of every spike (``record: {spikes: all, rates: false}``),
  including the end of the segment: per-rank part file sorted by (id, time) and spikes.h5;
- ``spikes+rates``: every spike and population rates in 1 ms bins (series.zarr);
- ``spikes-spilled``: every spike through a buffer of ``--spill-mb`` (default 0.05 MB,
  about 3,300 spikes): appended to the spill file about ten times per segment at scale
  0.1, then written by the external sort.

Alternating on one engine (stationary activity after the presimulation) puts every variant
on the same cores under the same load.  On a shared machine other jobs slow some segments
by large factors, so the cost is quoted as the ratio of the *fastest* segments (the least
disturbed), with the medians alongside.

    python benchmarks/recording.py --scale 0.1 --t 1000 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from microcircuit import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--t", type=float, default=1000.0, help="model ms per segment")
    ap.add_argument("--presim", type=float, default=500.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--spill-mb", type=float, default=0.05,
                    help="spike buffer of the spikes-spilled variant, MB")
    a = ap.parse_args()

    import dtb
    from dtb.engine.recording import Recording
    from dtb.io.rundir import write_atomic
    from dtb.model.record_spec import RecordSpec
    from dtb.models import microcircuit

    eng = dtb.Engine(microcircuit(a.scale), dt=0.1, seed=a.seed, threads=a.threads)
    eng.keep_spikes = False
    eng.run(a.presim)
    specs = {"spikes": RecordSpec(spikes="all", rates_ms=None, units_ms=None),
             "spikes+rates": RecordSpec(spikes="all", rates_ms=1.0, units_ms=None),
             "spikes-spilled": RecordSpec(spikes="all", rates_ms=None, units_ms=None,
                                          spike_buffer_mb=a.spill_mb)}
    times: dict[str, list[float]] = {"none": [], **{k: [] for k in specs}}
    spikes: dict[str, list[int]] = {k: [] for k in specs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            t0 = time.perf_counter()
            eng.run(a.t)
            times["none"].append(time.perf_counter() - t0)
            for name, spec in specs.items():
                d = Path(tmp) / f"{name}-{r}"
                d.mkdir()
                t0 = time.perf_counter()
                rec = Recording(eng, d, spec, a.t)
                rec.run()
                res = rec.finish(write_atomic)
                times[name].append(time.perf_counter() - t0)
                spikes[name].append(sum(res["pop_counts"].values()))
            print(f"repeat {r}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    result = {
        "benchmark": "recording", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(), "dtb": dtb.__version__, "threads": eng.threads,
        "scale": a.scale, "neurons": eng.n_neurons, "synapses": eng.n_synapses,
        "segment_ms": a.t, "presim_ms": a.presim, "repeats": a.repeats,
        "spill_mb": a.spill_mb,
        "seconds": times, "median_s": med, "min_s": best,
        "ratio_vs_none": {k: best[k] / best["none"] for k in specs},
        "ratio_vs_none_median": {k: med[k] / med["none"] for k in specs},
        "spikes_per_segment": spikes,
        "spikes_per_s_model": statistics.mean(spikes["spikes"]) / (a.t * 1e-3),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("min_s", "median_s", "ratio_vs_none",
                                             "ratio_vs_none_median")}, indent=2))
    print(path)


if __name__ == "__main__":
    main()
