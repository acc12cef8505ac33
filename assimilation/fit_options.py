"""``dtb fit``: the parser and every value checked before anything is simulated.

``add_fit_parser(subparsers)`` defines the command; ``check_args(args)`` turns the parsed
arguments into a ``FitOptions`` or raises ``ConfigError`` (exit status 2) naming the option,
its value and what was expected.  The files are read and checked by ``fit_run.load_inputs``
(``InputError``: file, field, value, expected).  Units: TR and spin-up in seconds, the
engine's time step in ms.

Parameters (``--param``, repeatable, or ``--params FILE.yaml``)::

    --param coupling=0.25:3            # NAME=LOW:HIGH, prior centred in the middle
    --param coupling.I=0:1@0.25        # NAME=LOW:HIGH@CENTRE
    --param E.I_e=-0.2:0.2@0/shift     # a uniform shift (mode "shift") instead of a scale
    --param E.I_e=-0.1:0.1@0/shift:t1t2   # a shift along a map: I_e + x * map (per region)

    # FILE.yaml
    parameters:
      - {name: coupling, low: 0.25, high: 3, centre: 1}
      - {name: E.I_e, low: -0.2, high: 0.2, centre: 0, mode: shift}
      - {name: E.g_AMPA, low: -0.1, high: 0.1, mode: shift, map: sc_strength}

A map is a column of the region table ``--maps FILE`` (dtb.brain.maps: a ``label`` or
``name`` column and one column per map), or the built-in ``sc_strength`` (log SC
in-strength); either is standardised over regions (mean 0, SD 1), so a shift's bounds are
per SD of the map.  Each hyperparameter is fitted once: it follows one map (or none).

Without either: ``DEFAULT_PARAMS``, the three long-range parameters of the regime study
(``benchmarks/README.md``): coupling 0.25-3 (centre 1), coupling.I 0-1 (0.25),
sc_exponent 0-1 (0.5); for a brain built with E-cell adaptation (``dtb build
--adaptation``, read from the brain file's header) ``ADAPTED_PARAMS``, the same three around
the adaptation study's steady point: coupling 0.15-1.5 (0.5), coupling.I 0-1 (0.25),
sc_exponent 0.25-1.75 (1).  Both are relative to the brain as built.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation.fit import FitParameter, parameter_keys
from dtb.assimilation.fit_esmda import NOISE_ESTIMATES, PRIOR_SAMPLING
from dtb.brain.maps import SC_STRENGTH
from dtb.brain.spec import peek_build_options
from dtb.errors import ConfigError
from dtb.model.config import read_yaml

__all__ = ["FitOptions", "DEFAULT_PARAMS", "ADAPTED_PARAMS", "default_params",
           "add_fit_parser", "check_args", "parse_range", "parse_param"]

#: (name, low, high, centre): the regime study's long-range parameters
DEFAULT_PARAMS = (("coupling", 0.25, 3.0, 1.0), ("coupling.I", 0.0, 1.0, 0.25),
                  ("sc_exponent", 0.0, 1.0, 0.5))
#: the same around the steady point of brains with E-cell adaptation ("Adaptation: steady
#: regions" in benchmarks/README.md: G 0.5, coupling.I 0.25, k ~ s^1), room on both sides
ADAPTED_PARAMS = (("coupling", 0.15, 1.5, 0.5), ("coupling.I", 0.0, 1.0, 0.25),
                  ("sc_exponent", 0.25, 1.75, 1.0))
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
    pa.add_argument("--ratio", type=float, default=1.0, help="ES-MDA inflation ratio (1: "
                    "equal steps)")
    pa.add_argument("--fc-components", type=int, default=4, help="fit FC as its projection "
                    "on this many principal axes of the prior ensemble's FC (0: the whole "
                    "triangle; 4)")
    pa.add_argument("--fcd-quantiles", type=int, default=0, help="also fit this many FCD "
                    "quantiles (0)")
    pa.add_argument("--fit-variance", action="store_true", help="also fit log regional "
                    "variances")
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
    ratio: float = 1.0
    fc_components: int = 4
    fcd_quantiles: int = 0
    fit_variance: bool = False
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
        kw = {"noise": "centre"} | dict(d)     # runs recorded before --noise used the centre
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
_PARAM = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)=([^:@/]+):([^:@/]+)"
                    r"(?:@([^:@/]+))?(?:/(scale|shift)(?::([A-Za-z_][\w.-]*))?)?$")


def parse_range(text: str, flag: str) -> tuple[int | None, int | None]:
    """``"A:B"`` -> (A, B), either may be empty (None)."""
    m = _RANGE.match(text or "")
    if not m:
        raise ConfigError([f"{flag}: {text!r} -- expected TR indices A:B (0-based, B "
                           "excluded, e.g. 0:600)"], "dtb fit")
    a, b = (int(x) if x else None for x in m.groups())
    return a, b


def _num(text: str, flag: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError([f"{flag}: {what} {text!r} -- expected a number"], "dtb fit") from None
    if not np.isfinite(v):
        raise ConfigError([f"{flag}: {what} {text!r} -- expected a finite number"], "dtb fit")
    return v


def parse_param(text: str) -> tuple[FitParameter, float]:
    """``NAME=LOW:HIGH[@CENTRE][/shift[:MAP]]`` -> (FitParameter, prior centre)."""
    m = _PARAM.match(text.strip())
    if not m:
        raise ConfigError([f"--param: {text!r} -- expected NAME=LOW:HIGH[@CENTRE][/shift"
                           "[:MAP]] (e.g. coupling=0.25:3@1, E.I_e=-0.2:0.2/shift, "
                           "E.I_e=-0.1:0.1/shift:sc_strength)"], "dtb fit")
    name, lo, hi, c, mode, map_name = m.groups()
    if map_name is not None and mode != "shift":
        raise ConfigError([f"--param: {text!r} -- a map follows /shift only (a map shifts: "
                           f"{name}=LOW:HIGH/shift:{map_name})"], "dtb fit")
    return _param(name, _num(lo, "--param", f"{name} low"), _num(hi, "--param", f"{name} high"),
                  None if c is None else _num(c, "--param", f"{name} centre"), mode or "scale",
                  "--param", map_name)


def _param(name: str, lo: float, hi: float, c: float | None, mode: str,
           where: str, map_name: str | None = None) -> tuple[FitParameter, float]:
    p = FitParameter(name, lo, hi, mode=mode,
                     map_name=None if map_name is None else map_name.lower())
    centre = (lo + hi) / 2 if c is None else c
    if not lo < centre < hi:
        raise ConfigError([f"{where}: {name} centre {centre:g} -- expected a value strictly "
                           f"between its bounds ({lo:g}, {hi:g})"], "dtb fit")
    return p, float(centre)


def _params_yaml(path: str) -> list[tuple[FitParameter, float]]:
    d = read_yaml(path, "parameter file")
    items = d.get("parameters") if isinstance(d, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(["parameters: expected a list of {name, low, high[, centre, "
                           "mode, map]} mappings"], path)
    out = []
    for i, it in enumerate(items):
        where = f"parameters[{i}]"
        if not isinstance(it, dict) or not {"name", "low", "high"} <= set(it):
            raise ConfigError([f"{where}: {it!r} -- expected a mapping with name, low, high "
                               "(and optionally centre, mode, map)"], path)
        extra = set(it) - {"name", "low", "high", "centre", "mode", "map"}
        if extra:
            raise ConfigError([f"{where}: unknown key(s) {sorted(extra)} -- expected name, "
                               "low, high, centre, mode, map"], path)
        vals: list[float | None] = []
        for k in ("low", "high", "centre"):
            v = it.get(k)
            if v is None and k == "centre":
                vals.append(None)
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise ConfigError([f"{where}.{k}: {v!r} -- expected a finite number"], path)
            vals.append(float(v))
        mode = it.get("mode", "scale")
        if mode not in ("scale", "shift"):
            raise ConfigError([f"{where}.mode: {mode!r} -- expected scale or shift"], path)
        map_name = it.get("map")
        if map_name is not None and (not isinstance(map_name, str) or mode != "shift"):
            raise ConfigError([f"{where}.map: {map_name!r} -- expected the name of a map "
                               "(a column of --maps, or sc_strength) with mode: shift"], path)
        low, high = vals[0], vals[1]
        assert low is not None and high is not None  # required above; only centre may be None
        try:
            out.append(_param(str(it["name"]), low, high, vals[2], mode, where, map_name))
        except ConfigError as e:
            raise ConfigError(e.problems, path) from None
    return out


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
    pairs = _check_params(a, bad)
    truth = _check_truth(a, parameter_keys([p for p, _ in pairs]), bad)
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
        fc_components=a.fc_components, noise=a.noise,
        fcd_quantiles=a.fcd_quantiles, fit_variance=a.fit_variance, fit_mean=a.fit_mean,
        window=a.window,
        step=a.step, n_tr=a.n_tr, free_trs=a.free_trs, free_runs=a.free_runs,
        dt_ms=a.dt, spinup_s=a.spinup_s,
        substeps=a.substeps, observable=a.observable, procs=a.procs,
        ranks_per_member=a.ranks_per_member, threads=a.threads,
        seed=a.seed, overwrite=a.overwrite, stop_after=a.stop_after, quiet=a.quiet)


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
    if a.fit_mean and (a.observable != "rates" or a.detrend != "none"):
        bad.append(f"--fit-mean: with --observable {a.observable} --detrend {a.detrend} -- "
                   "expected --observable rates --detrend none (BOLD and detrended series "
                   "have mean 0)")
    return bad


def default_params(brain: str | Path | None) -> tuple[tuple[str, float, float, float], ...]:
    """The prior without --param/--params: ``ADAPTED_PARAMS`` for a brain whose header
    records E-cell adaptation (``adaptation`` g_adapt > 0), else ``DEFAULT_PARAMS`` (also
    where the file cannot be read: loading it later says why)."""
    opts = peek_build_options(brain) if brain is not None else None
    try:
        adapted = opts is not None and float(opts.get("adaptation", [0.0])[0]) > 0
    except (TypeError, ValueError, IndexError):
        adapted = False
    return ADAPTED_PARAMS if adapted else DEFAULT_PARAMS


def _check_params(a: argparse.Namespace, bad: list[str]) -> list[tuple[FitParameter, float]]:
    """The fitted parameters and their prior centres (--param, --params or the default);
    problems appended to ``bad`` (a --params file's are raised at once)."""
    if a.param and a.params:
        bad.append("--param and --params: both given -- expected one of them")
    pairs: list[tuple[FitParameter, float]] = []
    try:
        if a.params:
            pairs = _params_yaml(a.params)
        elif a.param:
            pairs = [parse_param(t) for t in a.param]
        else:
            pairs = [_param(n, lo, hi, c, "scale", "default")
                     for n, lo, hi, c in default_params(a.brain)]
    except ConfigError as e:
        if a.params:
            raise
        bad.extend(e.problems)
    need = sorted({p.map_name for p, _ in pairs
                   if p.map_name is not None and p.map_name != SC_STRENGTH})
    if need and not a.maps:
        bad.append(f"--param: map(s) {need} -- expected --maps FILE, a region table with "
                   f"those columns (or the built-in map {SC_STRENGTH})")
    keys = parameter_keys([p for p, _ in pairs])      # E.I_e along two maps: two keys
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        bad.append(f"--param: {dup} given more than once -- expected each parameter (or "
                   "hyperparameter and map) once")
    return pairs


def _check_truth(a: argparse.Namespace, names: list[str], bad: list[str]) -> dict[str, float]:
    """A twin experiment's true values (--truth), one for every fitted parameter."""
    truth: dict[str, float] = {}
    for t in a.truth:
        name, eq, val = t.partition("=")
        if not eq:
            bad.append(f"--truth: {t!r} -- expected NAME=VALUE")
            continue
        try:
            truth[name] = _num(val, "--truth", name)
        except ConfigError as e:
            bad.extend(e.problems)
            continue
        if name not in names:
            bad.append(f"--truth: {name!r} -- expected one of the fitted parameters {names}")
    if truth and set(truth) != set(names):
        bad.append(f"--truth: values for {sorted(truth)} -- expected one for every fitted "
                   f"parameter {names}")
    return truth


def _utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
