"""Synapse generation at build time: the kernels before issue 16 against the current ones.

    python benchmarks/build_speed.py [--scale 0.1] [--reps 3] [--out benchmarks/results]

Both versions run in this one process, 1 thread, alternating (old first in even
repetitions, new first in odd ones), after an untimed warm-up that compiles both:

* kernel stages over every projection of the PD microcircuit at ``--scale`` (one engine
  owning all targets): the fixed-total-number counts, the sources, and the weights and
  delays together with the source-row layout (old: draw in target order, then
  ``scatter_by_source``; new: ``source_rows``, then the draw writes into the slots);
* the whole ``dtb.Engine(microcircuit(scale), dt=0.1, seed=1, threads=1)`` build (its
  ``build_s``), the old path being dtb.engine.connectivity's ``fill`` and
  ``total_number_counts`` swapped for benchmarks/connect_reference.py's.

The old and new outputs are compared bit for bit (SHA-256 of the kernel outputs and of the
engines' synapse arrays) and the run stops if they differ.  Records the machine, the load
and every time to ``--out/build_speed-<UTC>.json``; reports medians and old/new ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import connect_reference as ref  # noqa: E402
from microcircuit import machine  # noqa: E402

import dtb  # noqa: E402
from dtb.engine import connectivity as conn  # noqa: E402
from dtb.engine import synapses as syn  # noqa: E402
from dtb.kernels import connect as kc  # noqa: E402
from dtb.model.network import as_dist  # noqa: E402
from dtb.models import microcircuit  # noqa: E402

DT = 0.1
SEED = 1


@contextmanager
def old_path():
    """The engine build with the pre-issue-16 fill() and total_number_counts()."""
    fill, tnc = syn.fill, conn.total_number_counts
    syn.fill, conn.total_number_counts = ref.fill, ref.total_number_counts
    try:
        yield
    finally:
        syn.fill, conn.total_number_counts = fill, tnc


def _projections(scale: float) -> list[dict]:
    """Arguments of every microcircuit projection, one engine owning all targets."""
    net = microcircuit(scale, DT)
    pops = {p.name: p for p in net.populations}
    gid0, g = {}, 0
    for p in net.populations:
        gid0[p.name] = g
        g += p.size
    out = []
    for pid, q in enumerate(net.projections):
        pre, post = pops[q.source], pops[q.target]
        w, d = as_dist(q.weight), as_dist(q.delay)
        out.append({"pid": pid, "n_pre": pre.size, "n_post": post.size, "n": q.rule.n,
                    "gid0": gid0[q.target], "same": q.source == q.target, "w": w, "d": d,
                    "autapses": q.autapses, "multapses": q.multapses,
                    "shift": kc.weight_shift(max(abs(x) for x in w.bounds()))})
    return out


def _counts(mod, projs):
    tnc = ref.total_number_counts if mod is ref else conn.total_number_counts
    return [tnc(SEED, p["pid"], p["n_post"], p["n"], 0, p["n_post"]) for p in projs]


def _ptrs(counts):
    out = []
    for c in counts:
        ptr = np.zeros(len(c) + 1, np.int64)
        np.cumsum(c, out=ptr[1:])
        out.append(ptr)
    return out


def _sources(mod, projs, ptrs):
    srcs = []
    for p, ptr in zip(projs, ptrs, strict=True):
        src = np.empty(int(ptr[-1]), np.uint32)
        mod.draw_sources(kc.RULE_TOTAL, SEED, p["pid"], p["gid0"], 0, p["n_post"], p["n_pre"],
                         0.0, p["same"], p["autapses"], p["multapses"], ptr, src, 256)
        srcs.append(src)
    return srcs


def _weights_layout(mod, projs, ptrs, srcs):
    """Weights, delays and source-row layout of every projection: (indptr, tgt, wq, dly)."""
    out = []
    none2, none_i, none_g = np.zeros((0, 0)), np.zeros(0, np.int64), np.zeros(0, np.int32)
    for p, ptr, src in zip(projs, ptrs, srcs, strict=True):
        n = int(ptr[-1])
        w, d = p["w"], p["d"]
        indptr = np.empty(p["n_pre"] + 1, np.int64)
        tgt, wq, dly = np.empty(n, np.uint32), np.empty(n, np.int16), np.empty(n, np.uint16)
        wargs = (SEED, p["pid"], p["gid0"], p["n_post"], ptr, w.code, w.a, w.b, w.low, w.high,
                 p["shift"], d.code, d.a, d.b, d.low, d.high, DT, none2, none_i, none_g)
        if mod is ref:
            wq_t, dly_t = np.empty(n, np.int16), np.empty(n, np.uint16)
            ref.draw_weights_delays(*wargs, wq_t, dly_t)
            ref.scatter_by_source(p["n_pre"], 0, ptr, src, wq_t, dly_t, indptr, tgt, wq, dly)
        else:
            slot = src.copy()  # the library overwrites src itself; here the input is reused
            kc.source_rows(p["n_pre"], 0, ptr, slot, indptr, tgt)
            kc.draw_weights_delays(*wargs, wq, dly, slot)
        out.append((indptr, tgt, wq, dly))
    return out


def _timed(f, *args):
    t0 = time.perf_counter()
    r = f(*args)
    return time.perf_counter() - t0, r


def _digest(x, h=None) -> str:
    """SHA-256 of arrays (nested lists/tuples), dtype and shape included."""
    h = h or hashlib.sha256()
    if isinstance(x, (list, tuple)):
        for y in x:
            _digest(y, h)
    else:
        h.update(f"{x.dtype}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _build(scale: float, old: bool):
    if old:
        with old_path():
            eng = dtb.Engine(microcircuit(scale, DT), dt=DT, seed=SEED, threads=1)
    else:
        eng = dtb.Engine(microcircuit(scale, DT), dt=DT, seed=SEED, threads=1)
    s = eng.synapse_arrays
    return eng.build_s, _digest([s.indptr, s.tgt, s.wq, s.dly])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1, help="microcircuit scale")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each (alternating)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    res = {"benchmark": "build_speed", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "load_before": os.getloadavg(), "scale": a.scale,
           "reps": a.reps, "threads": 1,
           "numba_num_threads": os.environ.get("NUMBA_NUM_THREADS")}
    # warm-up: compile both versions (a small model), untimed
    for old in (True, False):
        _build(0.01, old)
    projs = _projections(a.scale)
    res["synapses"] = int(sum(p["n"] for p in projs))
    stages = ("counts", "sources", "weights_delays_layout", "engine_build")
    times: dict[str, dict[str, list[float]]] = {s: {"old": [], "new": []} for s in stages}
    for r in range(a.reps):
        outs = {}
        for version in (("old", "new") if r % 2 == 0 else ("new", "old")):
            mod = ref if version == "old" else kc
            t, counts = _timed(_counts, mod, projs)
            times["counts"][version].append(t)
            ptrs = _ptrs(counts)
            t, srcs = _timed(_sources, mod, projs, ptrs)
            times["sources"][version].append(t)
            t, lay = _timed(_weights_layout, mod, projs, ptrs, srcs)
            times["weights_delays_layout"][version].append(t)
            outs[version] = [_digest([counts, srcs, lay])]
            del counts, srcs, lay
            build_s, digest = _build(a.scale, version == "old")
            times["engine_build"][version].append(build_s)
            outs[version].append(digest)
            print(f"rep {r} {version}: " + "  ".join(
                f"{s} {times[s][version][-1]:.2f} s" for s in stages), flush=True)
        if outs["old"] != outs["new"]:
            print(f"old and new outputs differ: {outs}", file=sys.stderr)
            return 1
        res["sha256"] = outs["new"]
    res["identical"] = True
    res["times_s"] = times
    res["median_s"] = {s: {v: statistics.median(times[s][v]) for v in ("old", "new")}
                       for s in stages}
    res["old_over_new"] = {s: res["median_s"][s]["old"] / res["median_s"][s]["new"]
                           for s in stages}
    res["load_after"] = os.getloadavg()
    res["wall_s"] = time.perf_counter() - t_start
    print(f"{'stage':24s} {'old s':>8s} {'new s':>8s} {'old/new':>8s}")
    for s in stages:
        m = res["median_s"][s]
        print(f"{s:24s} {m['old']:8.2f} {m['new']:8.2f} {res['old_over_new'][s]:8.2f}")
    print(f"load {res['load_before']} -> {res['load_after']}; {res['wall_s']:.0f} s in all")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"build_speed-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
