"""Partition planning at P = 16, 256 and 14,012 ranks: balance, cut, messages, time, memory.

Brains (planning only, nothing is simulated):

* ``subject``: the embedded default subject at region level as shipped (20,000 neurons);
* ``subject-86e9``: the same regions with 8.6e10 neurons (the DTB's scale);
* ``voxel-2mm``: the whole-brain 2 mm grey-matter grid of brain_build.py (192,234 voxels
  in 82 regions) at voxel level with 8.6e10 neurons.

For every brain, rank count and method (METIS and the contiguous baseline) a fresh
process plans the partition, so that its peak RSS is the planner's own (the brain is
built or loaded first, and the worker's baseline RSS is recorded too):

    python benchmarks/partition.py --ranks 16 256 14012 --out benchmarks/results

Records per run: atoms, cut units, imbalance (cost, neurons, synapses), cut (share of spike
deliveries that cross ranks) and synapse cut, exchange window, messages per rank per
window (direct and two-level, mean and max), planning wall time by stage, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FULL = 86_000_000_000
BRAINS = {"subject": "region level, 20,000 neurons (as shipped)",
          "subject-86e9": "region level, 8.6e10 neurons",
          "voxel-2mm": "192,234 voxels (2 mm), 8.6e10 neurons"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_brains(d: Path) -> dict[str, Path]:
    """Build the three brains into d; returns their files."""
    from brain_build import make_grid

    from dtb.brain.build import BuildOptions, build
    from dtb.data import DEFAULT_SUBJECT as s
    from dtb.data import demo_inputs

    out = {"subject": d / "subject.h5", "subject-86e9": d / "subject-86e9.h5",
           "voxel-2mm": d / "voxel-2mm.h5"}
    build(**demo_inputs()).save(out["subject"])
    build(**demo_inputs(), options=BuildOptions(neurons=FULL)).save(out["subject-86e9"])
    make_grid(d)
    build(atlas=str(d / "atlas_2mm.nii.gz"), gm=str(d / "gm_2mm.nii.gz"),
          regions=str(s / "regions.tsv"), sc=str(s / "sc_weights.csv"),
          lengths=str(s / "tract_lengths.csv"), pet=str(s / "pet_sv2a.csv"),
          options=BuildOptions(level="voxel", neurons=FULL)).save(out["voxel-2mm"])
    return out


def worker(path: str, ranks: int, method: str) -> dict:
    """Plan one partition; the summary's key figures, timings and peak memory."""
    from dtb.brain.spec import BrainSpec
    from dtb.partition import plan

    spec = BrainSpec.load(path)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    pl = plan(spec, ranks, method=method)
    wall = time.perf_counter() - t0
    s = pl.summary
    keep = ("ranks", "method", "level", "units", "neurons", "synapses", "atoms", "units_cut",
            "imbalance", "imbalance_neurons", "imbalance_synapses", "cut", "cut_synapses",
            "traffic_bytes_per_s", "window_ms", "messages_direct", "messages_two_level",
            "messages_per_s", "ranks_per_node", "peers_sampled_ranks", "graph", "wall_s")
    r = {k: s[k] for k in keep if k in s}
    r.update({"plan_s": wall, "rss_before_mb": rss0, "peak_rss_mb": _rss_mb()})
    return r


def row(name: str, r: dict) -> str:
    md, mt = r["messages_direct"], r["messages_two_level"]
    win = f"{r['window_ms']:.2f}" if r["window_ms"] else "-"
    return (f"| {name} | {r['ranks']:,} | {r['method']} | {r['atoms']:,} ({r['units_cut']:,}) "
            f"| {r['imbalance']:.3f} / {r['imbalance_neurons']:.3f} / "
            f"{r['imbalance_synapses']:.3f} | {r['cut']:.3f} | {r['cut_synapses']:.3f} "
            f"| {win} | {md['mean']:,.0f} / {md['max']:,.0f} | {mt['mean']:,.0f} / "
            f"{mt['max']:,.0f} (G={r['ranks_per_node']}) | {r['plan_s']:.1f} "
            f"| {r['peak_rss_mb']:.0f} |")


HEADER = ("| brain | P | method | atoms (cut units) | imbalance cost / neurons / synapses "
          "| cut | synapse cut | window ms | direct msgs mean / max | two-level msgs mean / "
          "max | plan s | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    from microcircuit import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[16, 256, 14012])
    ap.add_argument("--brains", nargs="+", default=list(BRAINS), choices=list(BRAINS))
    ap.add_argument("--methods", nargs="+", default=["metis", "contiguous"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), a.worker[2])))
        return 0
    import pymetis

    res = {"benchmark": "partition", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "pymetis": pymetis.version, "brains": BRAINS, "runs": []}
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_brains(Path(tmp))
        for name in a.brains:
            for ranks in a.ranks:
                if name == "subject" and ranks > 1000:
                    continue  # 20,000 neurons: under 2 neurons a rank, nothing to learn
                for method in a.methods:
                    p = subprocess.run([sys.executable, __file__, "--worker",
                                        str(files[name]), str(ranks), method],
                                       capture_output=True, text=True)
                    if p.returncode:
                        print(p.stderr[-3000:], file=sys.stderr)
                        return 1
                    r = json.loads(p.stdout.strip().splitlines()[-1])
                    r["brain"] = name
                    res["runs"].append(r)
                    print(row(name, r), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"partition-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
