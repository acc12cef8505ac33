"""The ``dtb`` argument parser: every command's flags, registered from its module."""

from __future__ import annotations

import argparse
from typing import Any

from dtb.cli.assimilate import add_assimilate_parser
from dtb.cli.build import add_build_parser
from dtb.cli.fit import add_fit_parser
from dtb.cli.jobs import add_job_parser
from dtb.cli.partition import add_partition_parser
from dtb.cli.report import add_report_parser
from dtb.cli.warmup import add_warmup_parser
from dtb.io.export import add_export_parser
from dtb.log import add_log_flags
from dtb.version import __version__


def _parser() -> argparse.ArgumentParser:
    """The ``dtb`` parser: one subcommand per command, each with the logging flags."""
    p = argparse.ArgumentParser(
        prog="dtb", description="dtb: a distributed whole-brain digital-twin simulator.")
    p.add_argument("--version", action="version", version=f"dtb {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_simulate_parser(sub)
    add_build_parser(sub)
    add_partition_parser(sub)
    _add_demo_parser(sub)
    add_report_parser(sub)
    add_export_parser(sub)
    add_assimilate_parser(sub)
    add_fit_parser(sub)
    add_job_parser(sub)
    add_warmup_parser(sub)
    i = sub.add_parser("info", help="versions, MPI, GPUs and available backends",
                       description="Report versions, MPI library, GPUs and backends.")
    i.add_argument("--json", action="store_true", help="machine-readable output")

    for command in sub.choices.values():
        add_log_flags(command)
    return p


def _add_simulate_parser(sub: Any) -> None:
    """``dtb simulate``'s flags."""
    s = sub.add_parser(
        "simulate", help="build and run a network, write a run directory",
        description="Build and run a network from a YAML config or a built-in model and "
                    "write a run directory (manifest.json, spikes.h5). Values given here "
                    "override the config's simulation section.")
    s.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                   help="network and simulation configuration (YAML)")
    s.add_argument("--model", help="a built-in model instead of a config (microcircuit)")
    s.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    s.add_argument("--scale", type=float, metavar="S",
                   help="fraction of the full-scale model's neurons, in (0, 1] (--model "
                        "only; default 0.1)")
    s.add_argument("--t", type=float, metavar="MS", help="model time to simulate, ms")
    s.add_argument("--dt", type=float, metavar="MS", help="time step, ms")
    s.add_argument("--seed", type=int, metavar="N", help="random seed, 0 <= N < 2**32")
    s.add_argument("--noise-seed", type=int, metavar="N",
                   help="seed of the initial state and background noise alone (default: "
                        "--seed): the network of --seed under another noise, e.g. the "
                        "network of a `dtb fit --network-seed` twin")
    s.add_argument("--out", metavar="DIR",
                   help="run directory (default runs/<model-or-config-name>-<UTC time>)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run directory at --out")
    s.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all)")
    s.add_argument("--routing", choices=("direct", "two-level"), default="direct",
                   help="spike exchange between MPI ranks: to each peer directly, or "
                        "through one relay per group of ranks (large jobs)")
    s.add_argument("--backend", choices=("cpu", "gpu"), default="cpu",
                   help="where neurons and synapses live: CPU (numba) or one GPU per rank "
                        "(CuPy; the rank's node-local index picks the GPU)")
    s.add_argument("--partition", choices=("slices", "metis", "contiguous"),
                   default="slices",
                   help="which neurons each MPI rank owns: a cost-balanced slice of every "
                        "population (default), or a plan of a brain's units (--brain only): "
                        "METIS (fewest tracts cut; see dtb partition) or contiguous units")
    s.add_argument("--ranks-per-node", type=int, metavar="G",
                   help="group size for two-level routing (default: round(sqrt(ranks)))")
    s.add_argument("-q", "--quiet", action="store_true",
                   help="print only the run directory (no progress, no summary; warnings "
                        "and errors still)")
    s.add_argument("--checkpoint-every", type=float, metavar="MS",
                   help="write a checkpoint into RUN/checkpoints/ every MS of model time "
                        "(SIGTERM or SIGUSR1 writes one anyway, then exits with status 75)")
    s.add_argument("--resume", metavar="RUN",
                   help="continue the interrupted run directory RUN from its newest usable "
                        "checkpoint, with the network, settings and rank count it was "
                        "started with (allowed besides: --checkpoint-every, --threads, "
                        "--quiet)")
    _add_record_flag(s)


def _add_demo_parser(sub: Any) -> None:
    """``dtb demo``'s flags."""
    m = sub.add_parser(
        "demo", help="build the embedded default subject, simulate it, write a run directory",
        description="The main job on the embedded (synthetic) default subject: build its "
                    "brain, simulate it and write a run directory (brain.h5, manifest.json, "
                    "spikes.h5).")
    m.add_argument("--out", metavar="DIR", help="run directory (default runs/demo-<UTC time>)")
    m.add_argument("--overwrite", action="store_true", help="replace an earlier run there")
    m.add_argument("--t", type=float, default=1000.0, metavar="MS", help="model time (1000)")
    m.add_argument("--dt", type=float, default=0.1, metavar="MS", help="time step (0.1)")
    m.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (1)")
    m.add_argument("--neurons", type=int, default=20_000, help="total neurons (20000)")
    m.add_argument("--level", choices=("region", "voxel"), default="region")
    m.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all)")
    m.add_argument("-q", "--quiet", action="store_true",
                   help="print only the run directory (warnings and errors still)")
    _add_record_flag(m)


def _add_record_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--record", action="append", metavar="KIND[:ARGS]",
                   help="what to record, over the config's record section (repeatable): "
                        "spikes:all|none|sample=N, rates:BIN_MS|off, units:BIN_MS|off, "
                        "samples:n=N,every=K,variables=V+syn, bold:TR|off with the TR's "
                        "unit (bold:0.72s or bold:720ms; a bare number is ms, as the other "
                        "kinds' bins), hdf5, chunks:COLUMNS, spike_buffer:MB")
