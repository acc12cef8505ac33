"""``dtb fit``: the parser and every value checked before anything is simulated.

``add_fit_parser(subparsers)`` defines the command; ``check_args(args)`` turns the parsed
arguments into a ``FitOptions`` or raises ``ConfigError`` (exit status 2) naming the option,
its value and what was expected.  The files are read and checked by ``fit_run.load_inputs``
(``InputError``: file, field, value, expected).  Units: TR and spin-up in seconds, the
engine's time step in ms.

The fitted parameters (``--param``, ``--params``, the defaults and ``--truth``) are
parsed by dtb.assimilation.fit_priors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation.fit import MODEL_ERRORS, FitParameter, parameter_keys
from dtb.assimilation.fit_esmda import NOISE_ESTIMATES, PRIOR_SAMPLING
from dtb.assimilation.fit_priors import (
    ADAPTED_PARAMS,
    DEFAULT_PARAMS,
    check_params,
    check_truth,
    default_params,
    parse_param,
)
from dtb.errors import ConfigError

__all__ = ["FitOptions", "DEFAULT_PARAMS", "ADAPTED_PARAMS", "default_params",
           "add_fit_parser", "check_args", "parse_range", "parse_param"]

#: options --resume may give anew (the rest come from the run's manifest)
RESUME_FREE = ("resume", "stop_after", "threads", "quiet", "procs", "ranks_per_member")


def add_fit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dtb fit`` to ``subparsers`` (an ``argparse`` subparsers action)."""
    p = subparsers.add_parser(
        "fit", help="fit a brain's long-range and regional parameters to the FC/FCD of "
                    "recorded BOLD (ES-MDA), scored on held-out TRs",
        description="Fit a brain (dtb build) to summary statistics of a BOLD recording "
                    "(Fisher-z FC, optionally FCD quantiles and regional variances) by an "
                    "ensemble smoother with multiple data assimilation (ES-MDA), then "
                    "free-run the posterior mean and score it on held-out TRs beside the "
                    "baselines (log-SC, the unfitted brain, split-half FC, a group FC).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("inputs")
    io.add_argument("--brain", metavar="BRAIN.h5", help="a brain written by dtb build")
    io.add_argument("--bold", metavar="FILE", help="recorded BOLD: a region table "
                    "(.csv/.tsv headed by region labels or names), .npy with --labels, .h5, "
                    "as dtb assimilate reads it")
    io.add_argument("--labels", metavar="FILE", help="region labels or names of a .npy BOLD")
    io.add_argument("--dataset", default="bold", help="HDF5 dataset of the BOLD (bold)")
    io.add_argument("--tr", type=float, metavar="S", help="repetition time in seconds "
                    "(or from the file or its JSON sidecar)")
    io.add_argument("--fit-trs", metavar="A:B", help="TRs the fit sees, 0-based, B "
                    "excluded (default: the first half)")
    io.add_argument("--test-trs", metavar="A:B", help="held-out TRs it is scored on "
                    "(default: the TRs after --fit-trs); must not overlap --fit-trs")
    io.add_argument("--detrend", choices=("none", "constant", "linear"), default="linear",
                    help="per region, on the fit and test TRs separately (linear)")
    io.add_argument("--group-fc", metavar="FILE", help="a group-mean FC (R x R CSV/TSV "
                    "headed by region labels or names) scored as a baseline")
    io.add_argument("--maps", metavar="FILE", help="a region table of spatial maps (a label "
                    "or name column, one column per map) that shift parameters follow "
                    "(--param NAME=LOW:HIGH/shift:MAP)")
    io.add_argument("--truth", action="append", default=[], metavar="NAME=VALUE",
                    help="a twin experiment's true parameter value (repeatable): scores "
                         "and a figure of the posterior against it")
    pa = p.add_argument_group("parameters and fit")
    pa.add_argument("--param", action="append", default=[], metavar="NAME=LOW:HIGH[@C][/shift]",
                    help="a fitted parameter (repeatable; default: coupling, coupling.I, "
                         "sc_exponent around the steady point of the brain's kind, with or "
                         "without adaptation)")
    pa.add_argument("--params", metavar="FILE.yaml", help="the fitted parameters as YAML")
    pa.add_argument("--members", type=int, default=8, help="ensemble members (8)")
    pa.add_argument("--iterations", type=int, default=3, help="ES-MDA iterations (3)")
    pa.add_argument("--noise-runs", type=int, default=6, help="repeated runs at the prior "
                    "centre that measure the model's own noise (6)")
    pa.add_argument("--prior-sd", type=float, default=1.0, help="prior SD on the logit "
                    "scale (1)")
    pa.add_argument("--prior-sampling", choices=PRIOR_SAMPLING, default="exact",
                    help="prior ensemble: 'exact' (its sample mean and covariance are the "
                    "prior's; the default) or 'random' (plain draws)")
    pa.add_argument("--noise", choices=NOISE_ESTIMATES, default="pooled", help="Gamma from "
                    "the noise runs pooled with the ensemble's residuals before each update "
                    "('pooled', the default) or from the noise runs alone ('centre')")
    pa.add_argument("--model-error", choices=MODEL_ERRORS, help="with --network-seed: "
                    "'networks' (its default) lets the noise runs draw their own networks, "
                    "so Gamma holds the network-to-network spread as a model-error term; "
                    "'none' leaves Gamma the one network's noise (without --network-seed "
                    "every run draws its own network and 'none' is the only choice)")
    pa.add_argument("--ratio", type=float, default=1.0, help="ES-MDA inflation ratio (1: "
                    "equal steps)")
    pa.add_argument("--fc-components", type=int, default=4, help="fit FC as its projection "
                    "on this many principal axes of the prior ensemble's FC (0: the whole "
                    "triangle; 4)")
    pa.add_argument("--fcd-quantiles", type=int, default=0, help="also fit this many FCD "
                    "quantiles (0)")
    pa.add_argument("--fit-variance", action="store_true", help="also fit log regional "
                    "variances")
    pa.add_argument("--variance-components", type=int, help="with --fit-variance: fit the "
                    "log variances as their projection on this many principal axes of the "
                    "prior ensemble's (0: all regions; 4)")
    pa.add_argument("--fit-mean", action="store_true", help="also fit log regional "
                    "means (with --observable rates and --detrend none: the rates in Hz)")
    pa.add_argument("--window", type=int, default=30, help="FCD window, TRs (30)")
    pa.add_argument("--step", type=int, default=2, help="FCD window step, TRs (2)")
    _add_run_flags(p)
    return p


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """``dtb fit``'s forward-run and run-directory flags."""
    sim = p.add_argument_group("forward runs")
    sim.add_argument("--n-tr", type=int, metavar="TRS", help="TRs of each forward run "
                     "(default: the fit TRs' number)")
    sim.add_argument("--free-trs", type=int, metavar="TRS", help="TRs of the scored free "
                     "runs (default: the test TRs' number)")
    sim.add_argument("--free-runs", type=int, default=1, metavar="K", help="network "
                     "realisations (seeds) of each scored free run (1); with K > 1 the "
                     "scores of their mean FC are added: the model's FC, not one "
                     "realisation's")
    sim.add_argument("--dt", type=float, default=0.5, metavar="MS", help="time step (0.5)")
    sim.add_argument("--spinup-s", type=float, default=10.0, metavar="S",
                     help="hemodynamic warm-up before the first TR (10)")
    sim.add_argument("--substeps", type=int, default=4, help="rate samples per TR (4)")
    sim.add_argument("--observable", choices=("bold", "rates"), default="bold",
                     help="what the model's forward runs give: BOLD, or region rates per TR "
                          "(twin experiments with short runs)")
    sim.add_argument("--procs", type=int, default=1, help="worker processes, one forward "
                     "run each (1); results do not depend on it")
    sim.add_argument("--ranks-per-member", type=int, default=1, metavar="P",
                     help="under mpiexec: ranks of each member communicator, one forward "
                          "run at a time distributed over them (1: a whole run per rank); "
                          "results do not depend on it or on the number of ranks")
    sim.add_argument("--threads", type=int, default=1, help="numba threads per run (1)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (1)")
    sim.add_argument("--network-seed", type=int, metavar="N", help="build every forward "
                     "and free run on this one network realisation (synapses, drawn "
                     "parameters), runs differing in noise alone: the twin is one network "
                     "and the fit tunes it (default: each run draws its own network)")
    run = p.add_argument_group("run directory")
    run.add_argument("--out", metavar="DIR", help="run directory (default runs/fit-<UTC>)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier run there")
    run.add_argument("--resume", metavar="DIR", help="continue an interrupted fit from its "
                     "last checkpoint (the other options come from its manifest)")
    run.add_argument("--stop-after", type=int, metavar="K", help="stop after K iterations "
                     "(checkpointed, exit 75; --resume continues)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the run "
                     "directory")


@dataclass
class FitOptions:
    """The checked options of ``dtb fit`` (see ``add_fit_parser`` for each)."""

    brain: Path
    bold: Path
    out: Path
    params: list[FitParameter]
    centre: list[float]
    tr_s: float | None = None
    labels: str | None = None
    dataset: str = "bold"
    fit_trs: tuple[int | None, int | None] | None = None  # A:B, either end open
    test_trs: tuple[int | None, int | None] | None = None
    detrend: str = "linear"
    group_fc: Path | None = None
    maps: Path | None = None
    truth: dict[str, float] = field(default_factory=dict)
    members: int = 8
    iterations: int = 3
    noise_runs: int = 6
    prior_sd: float = 1.0
    prior_sampling: str = "exact"
    noise: str = "pooled"
    model_error: str = "none"
    ratio: float = 1.0
    fc_components: int = 4
    fcd_quantiles: int = 0
    fit_variance: bool = False
    variance_components: int = 0
    fit_mean: bool = False
    window: int = 30
    step: int = 2
    n_tr: int | None = None
    free_trs: int | None = None
    free_runs: int = 1
    dt_ms: float = 0.5
    spinup_s: float = 10.0
    substeps: int = 4
    observable: str = "bold"
    procs: int = 1
    ranks_per_member: int = 1
    threads: int = 1
    seed: int = 1
    network_seed: int | None = None
    overwrite: bool = False
    stop_after: int | None = None
    quiet: bool = False
    resume: bool = False

    def record(self) -> dict[str, Any]:
        """The options as JSON values (the manifest's ``options``)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k == "params":
                v = [{"name": p.name, "low": p.low, "high": p.high, "mode": p.mode,
                      "map": p.map_name} for p in v]
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[k] = v
        return out

    @classmethod
    def from_record(cls, d: dict[str, Any], cwd: str | Path = ".") -> FitOptions:
        """The options of a ``record()`` (a run's manifest), as the run resolved them:
        paths relative to ``cwd`` (where the run started) made absolute.  Raises
        ConfigError naming the field when the record holds keys these options lack (a
        run of another dtb version) or a value of the wrong shape.  Fields the record
        lacks take their defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError([f"options: {unknown} -- not options of this dtb fit (a run "
                               "of another dtb version?)"], "manifest.json")
        # runs recorded before --noise used the centre, before --model-error none
        kw = {"noise": "centre", "model_error": "none"} | dict(d)
        try:
            for k in ("brain", "bold", "out", "group_fc", "maps"):
                if kw.get(k) is not None:
                    kw[k] = Path(cwd) / kw[k]
            for k in ("fit_trs", "test_trs"):
                if kw.get(k) is not None:
                    a, b = kw[k]
                    kw[k] = (a, b)
            kw["params"] = [FitParameter(p["name"], float(p["low"]), float(p["high"]),
                                         mode=p.get("mode", "scale"), map_name=p.get("map"))
                            for p in d["params"]]
            kw["centre"] = [float(c) for c in d["centre"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError([f"options: {e!r} -- expected the options dtb fit records"],
                              "manifest.json") from None
        return cls(**kw)


_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def parse_range(text: str, flag: str) -> tuple[int | None, int | None]:
    """``"A:B"`` -> (A, B), either may be empty (None)."""
    m = _RANGE.match(text or "")
    if not m:
        raise ConfigError([f"{flag}: {text!r} -- expected TR indices A:B (0-based, B "
                           "excluded, e.g. 0:600)"], "dtb fit")
    a, b = (int(x) if x else None for x in m.groups())
    return a, b


def check_args(a: argparse.Namespace) -> FitOptions:
    """Every option checked (no file is read but the --params YAML and, for the default
    prior, the brain file's header); raises ConfigError listing every problem."""
    bad = _check_numbers(a)
    ranges: dict[str, tuple[int | None, int | None]] = {}
    for k in ("fit_trs", "test_trs"):
        v = getattr(a, k)
        if v is not None:
            try:
                ranges[k] = parse_range(v, f"--{k.replace('_', '-')}")
            except ConfigError as e:
                bad.extend(e.problems)
    pairs = check_params(a, bad)
    truth = check_truth(a, parameter_keys([p for p, _ in pairs]), bad)
    if bad:
        raise ConfigError(bad, "dtb fit")
    out = Path(a.out) if a.out else Path("runs") / ("fit-" + _utc_stamp())
    return FitOptions(
        brain=Path(a.brain), bold=Path(a.bold), out=out, params=[p for p, _ in pairs],
        centre=[c for _, c in pairs], tr_s=a.tr, labels=a.labels, dataset=a.dataset,
        fit_trs=ranges.get("fit_trs"), test_trs=ranges.get("test_trs"), detrend=a.detrend,
        group_fc=Path(a.group_fc) if a.group_fc else None, truth=truth,
        maps=Path(a.maps) if a.maps else None,
        members=a.members, iterations=a.iterations, noise_runs=a.noise_runs,
        prior_sd=a.prior_sd, prior_sampling=a.prior_sampling, ratio=a.ratio,
        fc_components=a.fc_components, noise=a.noise, model_error=_model_error(a),
        fcd_quantiles=a.fcd_quantiles, fit_variance=a.fit_variance, fit_mean=a.fit_mean,
        variance_components=_variance_components(a),
        window=a.window,
        step=a.step, n_tr=a.n_tr, free_trs=a.free_trs, free_runs=a.free_runs,
        dt_ms=a.dt, spinup_s=a.spinup_s,
        substeps=a.substeps, observable=a.observable, procs=a.procs,
        ranks_per_member=a.ranks_per_member, threads=a.threads,
        seed=a.seed, network_seed=a.network_seed, overwrite=a.overwrite,
        stop_after=a.stop_after, quiet=a.quiet)


def _check_numbers(a: argparse.Namespace) -> list[str]:
    """Problems with the inputs' presence and the numeric options."""
    bad: list[str] = []
    for flag in ("brain", "bold"):
        if getattr(a, flag) is None:
            bad.append(f"--{flag}: missing -- expected a file (or --resume RUN)")
    ints = (("members", 2), ("iterations", 1), ("noise_runs", 3), ("fc_components", 0),
            ("fcd_quantiles", 0), ("window", 3), ("step", 1), ("substeps", 1), ("procs", 1),
            ("ranks_per_member", 1), ("free_runs", 1),
            ("threads", 1))
    for k, least in ints:
        v = getattr(a, k)
        if v < least:
            bad.append(f"--{k.replace('_', '-')}: {v} -- expected an integer >= {least}")
    for k in ("n_tr", "free_trs"):
        v = getattr(a, k)
        if v is not None and v < max(a.window + 2, 10):
            bad.append(f"--{k.replace('_', '-')}: {v} -- expected at least "
                       f"{max(a.window + 2, 10)} TRs (an FCD window of {a.window} + 2)")
    for k in ("seed", "network_seed"):
        v = getattr(a, k)
        if v is not None and not 0 <= v < 2**32:
            bad.append(f"--{k.replace('_', '-')}: {v} -- expected an integer in [0, 2**32)")
    if a.stop_after is not None and not 1 <= a.stop_after:
        bad.append(f"--stop-after: {a.stop_after} -- expected an integer >= 1")
    for k, v in (("prior_sd", a.prior_sd), ("dt", a.dt)):
        if not (np.isfinite(v) and v > 0):
            bad.append(f"--{k.replace('_', '-')}: {v} -- expected a number > 0")
    if not (np.isfinite(a.ratio) and a.ratio >= 1):
        bad.append(f"--ratio: {a.ratio} -- expected a number >= 1")
    if not (np.isfinite(a.spinup_s) and a.spinup_s >= 0):
        bad.append(f"--spinup-s: {a.spinup_s} -- expected seconds >= 0")
    if a.tr is not None and not (np.isfinite(a.tr) and 0 < a.tr <= 60):
        bad.append(f"--tr: {a.tr} -- expected a repetition time in seconds, in (0, 60]")
    if a.fc_components >= a.members and a.fc_components > 0:
        bad.append(f"--fc-components: {a.fc_components} -- expected fewer than --members "
                   f"({a.members}): N members span at most N - 1 principal axes")
    vc = a.variance_components
    if vc is not None and (vc < 0 or not a.fit_variance):
        bad.append(f"--variance-components: {vc} -- expected an integer >= 0 with "
                   "--fit-variance")
    elif a.fit_variance and 0 < _variance_components(a) >= a.members:
        bad.append(f"--variance-components: {_variance_components(a)} -- expected fewer "
                   f"than --members ({a.members}): N members span at most N - 1 axes")
    if a.model_error == "networks" and a.network_seed is None:
        bad.append("--model-error: networks -- without --network-seed every run already "
                   "draws its own network; expected --network-seed N, or no --model-error")
    if a.fit_mean and (a.observable != "rates" or a.detrend != "none"):
        bad.append(f"--fit-mean: with --observable {a.observable} --detrend {a.detrend} -- "
                   "expected --observable rates --detrend none (BOLD and detrended series "
                   "have mean 0)")
    return bad


def _model_error(a: argparse.Namespace) -> str:
    """--model-error, or its default: 'networks' with --network-seed, else 'none'."""
    if a.model_error is not None:
        return str(a.model_error)
    return "networks" if a.network_seed is not None else "none"


def _variance_components(a: argparse.Namespace) -> int:
    """--variance-components, or its default: 4 with --fit-variance, else 0."""
    if a.variance_components is not None:
        return int(a.variance_components)
    return 4 if a.fit_variance else 0


def _utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
