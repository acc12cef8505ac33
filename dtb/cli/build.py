"""``dtb build``: imaging files (or the embedded default subject) to a brain file."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from dtb.brain.build import DEFAULT_HYPER, BuildOptions, build
from dtb.data import demo_inputs
from dtb.errors import ConfigError, OutputError
from dtb.io.runfiles import RefusedOutput


def add_build_parser(sub: Any) -> None:
    b = sub.add_parser(
        "build", help="build a personalised brain file from imaging data",
        description="Build a brain specification (HDF5) from an atlas and grey-matter map "
                    "(or a region table), a structural connectome and tract lengths, and "
                    "optionally PET. Synapses are not stored: every run generates them.")
    src = b.add_argument_group("inputs")
    src.add_argument("--demo", action="store_true", help="the embedded default subject")
    src.add_argument("--atlas", metavar="NIFTI", help="parcellation label volume")
    src.add_argument("--gm", metavar="NIFTI", help="grey-matter probability map, same grid")
    src.add_argument("--regions", metavar="TABLE",
                     help="region table: label, volume (mm3), [name, x, y, z, cortical]")
    src.add_argument("--sc", metavar="MATRIX", help="structural connectivity (CSV/TSV/NPY)")
    src.add_argument("--lengths", metavar="MATRIX", help="tract lengths in mm (CSV/TSV/NPY)")
    src.add_argument("--labels", metavar="FILE",
                     help="region labels of header-less matrices (one per line or a LUT)")
    src.add_argument("--tvb", metavar="ZIP", help="a TVB connectivity zip instead of --sc")
    src.add_argument("--pet", metavar="FILE", help="PET map (NIfTI) or region table")
    src.add_argument("--symmetrize", action="store_true",
                     help="mirror one-triangle connectomes (MRtrix without -symmetric)")
    k = b.add_argument_group("model")
    k.add_argument("--level", choices=("region", "voxel"), default="region")
    k.add_argument("--neurons", type=int, default=20_000, help="total neurons (default 20000)")
    k.add_argument("--in-degree", type=int, default=100, help="synapses per neuron (100)")
    k.add_argument("--split", default="4:1:2", metavar="E:I:L",
                   help="local E : local I : long-range inputs (4:1:2, as the DTB)")
    k.add_argument("--e-fraction", type=float, default=0.8, help="excitatory share (0.8)")
    k.add_argument("--velocity", type=float, default=3.0,
                   help="conduction velocity, mm/ms = m/s (3.0)")
    k.add_argument("--local-delay", type=float, default=1.0, help="unit-local delay, ms (1.0)")
    k.add_argument("--layers", action="store_true",
                   help="layered columns (L2/3, L4, L5, L6) in cortical units")
    k.add_argument("--pet-mode", choices=("indegree", "conductance"), default="indegree",
                   help="what PET scales per unit (default: in-degree)")
    k.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a lif_cond neuron parameter for every unit (repeatable), e.g. V_th=-52")
    k.add_argument("--hyper", action="append", default=[], metavar="NAME=VALUE",
                   help="initial value of a per-unit hyperparameter (g_AMPA, g_NMDA, "
                        "g_GABA_A, g_GABA_B, I_e), repeatable")
    k.add_argument("--background", default="0.6,0.12,10", metavar="MEAN,SD,TAU",
                   help="Ornstein-Uhlenbeck background current: mean, sd, tau ms "
                        "(0.6,0.12,10)")
    lr = b.add_argument_group("long-range recipe (dtb.brain.recipe; the regime study in "
                              "benchmarks/README.md)")
    lr.add_argument("--coupling", type=float, default=1.0, metavar="G",
                    help="global coupling: every long-range weight times G (1.0)")
    lr.add_argument("--lr-inhibitory", type=float, default=1.0, metavar="F",
                    help="long-range weights onto inhibitory cells times F more (1.0; "
                         "0-0.25 let regions correlate on HCP subjects)")
    lr.add_argument("--lr-sc-exponent", type=float, default=0.0, metavar="A",
                    help="long-range in-degree times (SC in-strength / mean)^A (0.0; 0.5 "
                         "let FC follow the SC on HCP subjects)")
    lr.add_argument("--homotopic", type=float, default=0.0, metavar="H",
                    help="H x the SC's largest weight added between the left and right "
                         "parts of each region (names X_L/X_R, lh.X/rh.X): the callosal "
                         "fibres tractography misses (0.0; 0.5 raised FC fit on HCP)")
    k.add_argument("--adaptation", default="0,500", metavar="G,TAU",
                   help="spike-triggered adaptation of the excitatory cells: g_adapt per "
                        "spike (a.u.) and tau_adapt (ms); 0,500 = none, as published")
    b.add_argument("-o", "--out", required=True, metavar="BRAIN.h5", help="output file")
    b.add_argument("--overwrite", action="store_true", help="replace an existing file")


def options_from_args(a: argparse.Namespace):
    try:
        split = tuple(float(x) for x in a.split.split(":"))
    except ValueError:
        split = ()
    if len(split) != 3:
        raise ConfigError([f"--split: {a.split!r} -- expected three shares E:I:L, e.g. 4:1:2"],
                          "dtb build")

    params = _assignments(a.param, "--param")
    hyper = dict(DEFAULT_HYPER, **_assignments(a.hyper, "--hyper"))
    try:
        mean, sd, tau = (float(x) for x in a.background.split(","))
    except ValueError:
        raise ConfigError([f"--background: {a.background!r} -- expected MEAN,SD,TAU "
                           "(e.g. 0.6,0.12,10)"], "dtb build") from None
    try:
        g_adapt, tau_adapt = (float(x) for x in a.adaptation.split(","))
    except ValueError:
        raise ConfigError([f"--adaptation: {a.adaptation!r} -- expected G,TAU (e.g. "
                           "0.0006,500)"], "dtb build") from None
    opt = BuildOptions(level=a.level, neurons=a.neurons, in_degree=a.in_degree, split=split,
                       e_fraction=a.e_fraction, velocity=a.velocity,
                       local_delay=a.local_delay, layers=a.layers, pet_mode=a.pet_mode,
                       params=params, hyper=hyper,
                       background={"mean": mean, "sigma": sd, "tau": tau},
                       coupling=a.coupling, lr_inhibitory=a.lr_inhibitory,
                       lr_sc_exponent=a.lr_sc_exponent, homotopic=a.homotopic,
                       adaptation=(g_adapt, tau_adapt))
    opt.check()
    return opt


def _assignments(items: list[str], flag: str) -> dict[str, float]:
    out = {}
    for it in items:
        name, eq, value = it.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ConfigError([f"{flag}: {it!r} -- expected NAME=NUMBER"], "dtb build")
        if not math.isfinite(out[name.strip()]):
            raise ConfigError([f"{flag}: {name.strip()}: {value.strip()!r} -- expected a "
                               "finite number"], "dtb build")
    return out


def run_build(a: argparse.Namespace) -> int:
    opt = options_from_args(a)
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise OutputError(f"{out}: exists (use --overwrite to replace it)")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist")
    if a.demo:
        given = [n for n in ("atlas", "gm", "regions", "sc", "lengths", "tvb", "pet", "labels")
                 if getattr(a, n) is not None]
        if given:
            raise ConfigError([f"--demo: uses the embedded subject; drop --{given[0]}"],
                              "dtb build")
        inputs = demo_inputs()
    else:
        inputs = {n: getattr(a, n) for n in ("atlas", "gm", "regions", "sc", "lengths",
                                             "labels", "tvb", "pet")}
        _refuse_input_as_output(out, inputs)
    spec = build(**inputs, options=opt, symmetrize=True if a.symmetrize else None)
    spec.save(out)
    counts = ", ".join(f"{f.name} {int(f.sizes.sum()):,}" for f in spec.families)
    print(f"dtb build: {out}\n  {spec.level} level: {spec.n_units:,} units in "
          f"{len(spec.region_labels)} regions, {spec.n_neurons:,} neurons ({counts})\n"
          f"  {len(spec.rules)} projection rules, about "
          f"{sum(int((r.k * _sizes(spec, r.target)).sum()) for r in spec.rules):,} synapses "
          f"when run; conduction delays {spec.conduction_ms[spec.weights > 0].min():.2f}-"
          f"{spec.conduction_ms[spec.weights > 0].max():.1f} ms")
    return 0


def _refuse_input_as_output(out: Path, inputs: dict[str, str | None]) -> None:
    """Raise RefusedOutput (exit status 2) when ``-o`` names one of the inputs (the same
    file, through any path or link), whatever --overwrite says: the build would replace
    the data it reads."""

    for name, given in inputs.items():
        if given is None:
            continue
        same = os.path.realpath(given) == os.path.realpath(out)
        if not same and out.exists() and Path(given).exists():
            try:
                same = os.path.samefile(given, out)
            except OSError:
                same = False
        if same:
            raise RefusedOutput(f"-o {out}: is the --{name} input {given} -- the brain file "
                                "would replace the data it is built from; choose another "
                                "output file (nothing was written)")


def _sizes(spec, name: str):
    return next(f.sizes for f in spec.families if f.name == name)
