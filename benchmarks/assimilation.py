"""The cost of the analysis next to the forecast in ``dtb assimilate``.

Two measurements, written to ``results/assimilation-<date>.json`` with the machine:

1. ``loop``: the real loop (``assimilate`` with Engine members, one process, members in
   turn) on the default subject, timed by the loop itself: ``forecast_s`` (every member
   runs a TR, rates, hemodynamics) and ``analysis_s`` (the LETKF over parameters and
   hemodynamic states).  Region level (the demo's size) and voxel level (12,502 voxel units,
   the analysis state 5 x larger per unit count).
2. ``analysis``: the analysis alone, with the loop's exact state layout (P parameters + 4
   hemodynamic variables per unit) and localisation (by region), for larger ensembles and
   unit counts, with region-mean observations (R = 82) and with one observation per unit
   (voxel-level data), median of repeats.  Its ratio to the forecast is then a matter of
   neurons per member: ``break_even_neurons`` is the member size at which the analysis
   costs 10 % of the forecast, from the loop's measured cost per neuron and model second.

    .venv/bin/python benchmarks/assimilation.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from microcircuit import machine  # noqa: E402


def loop_case(level: str, neurons: int, members: int, trs: int, dt: float,
              threads: int) -> dict:
    from dtb.assimilation.loop import AssimilationConfig, EngineMember, ParamSpec, assimilate
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs
    from dtb.engine.simulation import Engine

    spec = build(**demo_inputs(), options=BuildOptions(level=level, neurons=neurons))
    net = spec.to_network()
    t0 = time.perf_counter()
    mems = [EngineMember(Engine(net, dt=dt, seed=2 + i, threads=threads))
            for i in range(members)]
    build_s = time.perf_counter() - t0
    for m in mems:
        m.engine.keep_spikes = False
    labels = np.unique(spec.unit_labels)
    obs_index = np.searchsorted(labels, spec.unit_labels)
    g0 = 0.00743
    ps = [ParamSpec("E", "g_AMPA", 0.5 * g0, 2 * g0)]
    rng = np.random.default_rng(1)
    theta0 = ps[0].from_unit(ps[0].to_unit(g0) + 0.8 * rng.standard_normal(
        (members, spec.n_units, 1)))
    obs = 0.002 * rng.standard_normal((trs, labels.size))
    cfg = AssimilationConfig(tr_s=0.8, spinup_s=0.3, obs_var=0.004 ** 2, seed=1)
    res = assimilate(mems, obs, obs_index, ps, theta0, cfg)
    tm = res.timings
    model_s = members * trs * 0.8
    return {"level": level, "units": spec.n_units, "regions": int(labels.size),
            "neurons_per_member": net.n_neurons, "members": members, "trs": trs, "dt_ms": dt,
            "threads": threads, "build_s": build_s, "forecast_s": tm["forecast_s"],
            "analysis_s": tm["analysis_s"],
            "analysis_fraction": tm["analysis_s"] / tm["forecast_s"],
            "forecast_s_per_neuron_model_s": tm["forecast_s"] / (net.n_neurons * model_s),
            "state_elements": spec.n_units * 5}


def analysis_case(members: int, units: int, regions: int, obs_per_unit: bool,
                  repeats: int) -> dict:
    from dtb.assimilation.enkf import Localization, analysis

    rng = np.random.default_rng(0)
    P = 1
    unit_region = np.sort(rng.integers(0, regions, units))
    unit_region[:regions] = np.arange(regions)
    unit_region.sort()
    n = units * (P + 4)
    E = rng.standard_normal((members, n))
    unit_of_el = np.concatenate([np.repeat(np.arange(units), P), np.tile(np.arange(units), 4)])
    if obs_per_unit:
        m = units
        obs_region = unit_region
    else:
        m = regions
        obs_region = np.arange(regions)
    HE = rng.standard_normal((members, m))
    y = rng.standard_normal(m)
    loc = Localization.by_membership(unit_region[unit_of_el], obs_region)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        analysis(E, HE, y, np.ones(m), rtps_alpha=0.5, localization=loc)
        times.append(time.perf_counter() - t0)
    return {"members": members, "units": units, "regions": regions, "observations": m,
            "state_elements": n, "analysis_s_median": statistics.median(times),
            "analysis_s_min": min(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller cases (a check)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args()
    import dtb

    loops = [loop_case("region", 4000, 6, 3 if a.quick else 6, 0.5, a.threads)]
    if not a.quick:
        loops.append(loop_case("region", 4000, 6, 3, 0.1, a.threads))
        loops.append(loop_case("voxel", 60000, 4, 2, 0.5, a.threads))
    for r in loops:
        print(f"loop {r['level']:6s} U={r['units']:6d} N={r['neurons_per_member']:6d} "
              f"M={r['members']} dt={r['dt_ms']}: forecast {r['forecast_s']:.2f} s, analysis "
              f"{r['analysis_s']:.4f} s ({100 * r['analysis_fraction']:.3f} %)", flush=True)
    per_neuron = min(r["forecast_s_per_neuron_model_s"] for r in loops if r["dt_ms"] == 0.5)
    grid = [(6, 82, 82, False), (32, 82, 82, False), (128, 82, 82, False),
            (16, 12502, 82, False), (64, 12502, 82, False), (16, 100_000, 82, False),
            (16, 1000, 82, True), (16, 3000, 82, True)]
    if a.quick:
        grid = grid[:2]
    cases = []
    for M, U, R, per_unit in grid:
        c = analysis_case(M, U, R, per_unit, 3 if a.quick else 5)
        # forecast of one TR (0.8 s) for M members at N neurons each costs
        # M * N * 0.8 * per_neuron seconds: the analysis is 10 % of it at
        c["break_even_neurons"] = c["analysis_s_median"] / (0.1 * M * 0.8 * per_neuron)
        cases.append(c)
        print(f"analysis M={M:4d} U={U:7d} m={c['observations']:6d}: "
              f"{1e3 * c['analysis_s_median']:.2f} ms; <= 10 % of the forecast from "
              f"{c['break_even_neurons']:.0f} neurons per member", flush=True)
    now = _dt.datetime.now(_dt.UTC)
    res = {"benchmark": "assimilation", "date": now.isoformat(timespec="seconds"),
           "machine": machine(), "dtb": dtb.__version__, "threads": a.threads,
           "loop": loops, "forecast_s_per_neuron_model_s_dt0.5": per_neuron,
           "analysis": cases}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"assimilation-{now.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
