"""``dtb partition``: the argument parser, the command and the text report."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from dtb.brain.build import build
from dtb.brain.spec import BrainSpec
from dtb.data import demo_inputs
from dtb.errors import ConfigError
from dtb.partition.model import BYTES_PER_SPIKE, DEFAULT_RATE_HZ, MAX_RANKS, METHODS, ROUTINGS
from dtb.partition.planner import Plan, _stats, plan

# --- command line ------------------------------------------------------------------------

def add_partition_parser(sub: Any) -> None:
    """Add ``dtb partition`` to an argparse subparsers object."""
    p = sub.add_parser(
        "partition", help="plan how a brain is split over P ranks (no simulation)",
        description="Split a brain over P ranks without simulating it: per-rank neurons, "
                    "synapses, cost and estimated spike traffic, the load imbalance, the "
                    "traffic cut and messages per rank per exchange window (direct and "
                    "two-level routing). Use it to size a cluster job.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    src.add_argument("--demo", action="store_true",
                     help="the embedded default subject (region level, default options)")
    p.add_argument("--ranks", type=int, required=True, metavar="P",
                   help=f"number of ranks, 1 to {MAX_RANKS:,}")
    p.add_argument("--routing", default="direct", metavar="|".join(ROUTINGS),
                   help="spike routing whose messages are reported first (direct)")
    p.add_argument("--method", default="metis", metavar="|".join(METHODS),
                   help="metis (graph partitioner, default) or contiguous (baseline)")
    p.add_argument("--ranks-per-node", type=int, metavar="G",
                   help="ranks per group for two-level routing (default round(sqrt(P)))")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, metavar="HZ",
                   help=f"mean firing rate assumed for traffic (default {DEFAULT_RATE_HZ:g})")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="METIS seed (0)")
    p.add_argument("--json", metavar="OUT.json",
                   help="also write the summary and per-rank figures as JSON")


def run_partition(a: argparse.Namespace) -> int:
    """``dtb partition``: plan, print the figures, optionally write JSON."""
    if a.json is not None:
        parent = Path(a.json).parent
        if not (parent if str(parent) else Path(".")).is_dir():
            raise ConfigError([f"--json: {a.json!r} -- expected a file in an existing "
                               "folder"], "dtb partition")
    if a.demo:
        spec = build(**demo_inputs())
        name = "default subject (embedded)"
    else:
        spec = BrainSpec.load(a.brain)
        name = str(a.brain)
    pl = plan(spec, a.ranks, routing=a.routing, method=a.method, rate_hz=a.rate,
              ranks_per_node=a.ranks_per_node, seed=a.seed)
    print(render(pl, name))
    if a.json is not None:
        Path(a.json).write_text(json.dumps(pl.to_dict(), indent=1))
        print(f"  wrote {a.json}")
    return 0


def render(pl: Plan, name: str = "brain") -> str:
    """A concise text report: key figures and per-rank percentiles."""
    s = pl.summary
    win = s["window_ms"]
    lines = [
        f"dtb partition: {name}: {s['level']} level, {s['units']:,} units, "
        f"{s['neurons']:,} neurons, {s['synapses']:.3g} synapses",
        f"  {s['ranks']:,} ranks, method {s['method']}, {s['atoms']:,} atoms "
        f"({s['units_cut']:,} units cut into blocks), rate {s['rate_hz']:g} Hz, "
        f"planned in {s['wall_s']['total_s']:.1f} s",
        f"  imbalance (max/mean cost) {s['imbalance']:.3f}  (neurons "
        f"{s['imbalance_neurons']:.3f}, synapses {s['imbalance_synapses']:.3f})",
        f"  cut: {100 * s['cut']:.1f} % of spike deliveries cross ranks "
        f"({100 * s['cut_synapses']:.1f} % of synapses); "
        f"{s['traffic_spikes_per_s']:.3g} spikes/s = "
        f"{_bytes(s['traffic_bytes_per_s'])}/s between ranks",
        "  exchange window " + (f"{win:.2f} ms ({1000 / win:.0f} windows/s): messages per rank "
                                f"per second {s['messages_per_s']['direct']:.3g} direct, "
                                f"{s['messages_per_s']['two_level']:.3g} two-level" if win
                                else "none (nothing crosses ranks)"),
        "",
        f"  {'per rank':<26}{'min':>11}{'median':>11}{'p95':>11}{'max':>11}{'mean':>11}",
    ]
    rows = [("neurons", pl.neurons), ("synapses", pl.synapses), ("cost", pl.cost),
            ("spikes/s sent", pl.out_spikes_hz), ("spikes/s received", pl.in_spikes_hz),
            ("bytes/s sent", pl.out_spikes_hz * BYTES_PER_SPIKE),
            ("peers sent to", pl.out_peers), ("peers received from", pl.in_peers),
            ("messages/window direct", pl.messages_direct),
            (f"messages/window 2-level G={pl.ranks_per_node}", pl.messages_two_level)]
    for label, arr in rows:
        st = _stats(arr)
        lines.append(f"  {label:<26}" + "".join(f"{_num(st[k]):>11}" for k in (
            "min", "p50", "p95", "max", "mean")))
    md, mt = s["messages_direct"], s["messages_two_level"]
    lines += ["", f"  messages per rank per window ({pl.routing} routing): mean "
              f"{s['messages']['mean']:.1f}, max {s['messages']['max']:.1f}; "
              f"direct {md['mean']:.1f}/{md['max']:.1f}, two-level {mt['mean']:.1f}/"
              f"{mt['max']:.1f} (mean/max; sqrt(P) = {math.sqrt(pl.ranks):.1f})"]
    if s["neurons"] < 100 * s["ranks"]:
        lines.append(f"  note: {s['neurons'] / s['ranks']:.3g} neurons a rank on average: "
                     "balance is limited by whole neurons; plan with the neuron count you "
                     "will run (dtb build --neurons)")
    if s["peers_sampled_ranks"]:
        lines.append(f"  (direct peer counts estimated from {s['peers_sampled_ranks']} "
                     "sampled ranks)")
    return "\n".join(lines)


def _bytes(x: float) -> str:
    for unit, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= k:
            return f"{x / k:.3g} {unit}"
    return f"{x:.3g} B"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    if abs(x) >= 1e5:
        return f"{x:.3g}"
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.2f}"
