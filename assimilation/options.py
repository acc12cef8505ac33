"""The ``dtb assimilate`` command line: the parser (``add_assimilate_parser``), its checked
form (``Options``, made by ``check_args``) and ``UsageError``.

Every value is checked before anything is built or read (``dtb: error: --flag: value --
expected ...``, exit status 2).  Units as on the command line: ``--tr`` and ``--spinup`` in
seconds (``Options.tr_s``, ``Options.spinup_s``), ``--dt`` and ``--checkpoint-every`` in ms
(the engine's unit), ``--bounds`` in the parameter's own units, ``--prior-sd`` and ``--rw-sd``
on the logit scale.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numba

from dtb.errors import ConfigError, UsageError
from dtb.io.manifest import jsonable
from dtb.model.hemodynamics import PARAMETER_SETS

__all__ = ["HYPER", "UsageError", "add_assimilate_parser", "Options", "check_args",
           "assimilate_parser", "check_tr", "check_run_flags"]

HYPER = ("g_AMPA", "g_NMDA", "g_GABA_A", "g_GABA_B", "I_e")


# --- the command line -----------------------------------------------------------------------

def add_assimilate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dtb assimilate`` on ``subparsers`` (the ``dtb`` parser's)."""
    a = subparsers.add_parser(
        "assimilate", help="fit per-unit hyperparameters to recorded BOLD (ensemble Kalman "
                           "filter over simulated brains)",
        description="Fit a brain's per-unit hyperparameters to recorded BOLD with an "
                    "ensemble Kalman filter over M simulated brains, then judge the fit "
                    "against persistence and AR(1) baselines, on held-out data and by "
                    "functional connectivity. --demo runs a twin experiment on the embedded "
                    "default subject (synthetic BOLD from known hyperparameters).")
    _add_data_args(a.add_argument_group("data"))
    _add_estimation_args(a.add_argument_group("estimation"))
    _add_simulation_args(a.add_argument_group("simulation"))
    _add_run_args(a)
    return a


def _add_data_args(d: argparse._ArgumentGroup) -> None:
    """The observations: files, regions, preprocessing, the demo's twin."""
    d.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    d.add_argument("--bold", metavar="FILE",
                   help="observed BOLD: CSV/TSV (header of region labels or names, e.g. "
                        "XCP-D's *_timeseries.tsv), .npy (with --labels), HDF5 (dataset "
                        "'bold' with a labels attribute) or 4D NIfTI (with --atlas); a BIDS "
                        "JSON sidecar beside it gives the TR")
    d.add_argument("--tr", type=float, metavar="SECONDS",
                   help="repetition time, s (default: RepetitionTime of the JSON sidecar "
                        "beside --bold, or the file's own)")
    d.add_argument("--labels", metavar="FILE",
                   help="region labels (or names) of a .npy table, one a line")
    d.add_argument("--atlas", metavar="NIFTI",
                   help="label volume of a 4D NIfTI BOLD image (another grid needs the "
                        "nilearn extra)")
    d.add_argument("--confounds", metavar="TSV",
                   help="confounds table (fMRIPrep's *_desc-confounds_timeseries.tsv) whose "
                        "--confound-columns are regressed out (least squares) before "
                        "--preprocess")
    d.add_argument("--confound-columns", default="", metavar="C1,C2",
                   help="columns of --confounds, names or patterns (e.g. trans_*,rot_*,"
                        "csf,white_matter)")
    d.add_argument("--dataset", default="bold", help="HDF5 dataset name (bold)")
    d.add_argument("--preprocess", default="", metavar="STEPS",
                   help="comma-separated: psc (fractional signal change, x/mean - 1), "
                        "detrend[=DEGREE] (default linear), band=LOW-HIGH (Hz), zscore, "
                        "scale=X (multiply); applied in that order. The model's BOLD is a "
                        "fractional signal change (0.01 = 1 %%)")
    d.add_argument("--allow-unobserved", action="store_true",
                   help="let brain regions without an observed series go on (unconstrained)")
    d.add_argument("--allow-extra", action="store_true",
                   help="ignore observed regions the brain lacks")
    d.add_argument("--demo", action="store_true",
                   help="twin experiment on the embedded default subject (no --brain/--bold)")
    d.add_argument("--neurons", type=int, metavar="N",
                   help="--demo: neurons of the default brain (default 4000)")
    d.add_argument("--trs", type=int, metavar="T",
                   help="--demo: length of the synthetic BOLD in TRs (default 24)")


def _add_estimation_args(e: argparse._ArgumentGroup) -> None:
    """What is estimated and the filter's settings."""
    e.add_argument("--members", type=int, metavar="M", help="ensemble members (default 8; "
                   "--demo 6)")
    e.add_argument("--params", default="g_AMPA", metavar="P1,P2",
                   help=f"per-unit hyperparameters to estimate, of {', '.join(HYPER)} "
                        "(g_AMPA)")
    e.add_argument("--population", default="E", metavar="FAMILY",
                   help="the neuron family whose parameters are estimated (E)")
    e.add_argument("--bounds", default="", metavar="NAME=LOW:HIGH,...",
                   help="bounds in the parameter's units (default 0.5x to 2x the brain's "
                        "mean value)")
    e.add_argument("--prior-sd", type=float, default=0.8, metavar="S",
                   help="prior spread on the logit scale around the brain's values (0.8)")
    e.add_argument("--holdout-regions", default="", metavar="L1,L2",
                   help="regions left out of the assimilation (scored only), by label or "
                        "by name")
    e.add_argument("--holdout-fraction", type=float, default=0.25, metavar="F",
                   help="the last fraction F of the TRs is not assimilated: a free-running "
                        "forecast with frozen parameters (0.25)")
    e.add_argument("--method", choices=("etkf", "enkf"), default="etkf",
                   help="square-root ETKF (localised: LETKF) or perturbed-observation EnKF")
    e.add_argument("--inflation", type=float, default=1.0, help="multiplicative (1.0)")
    e.add_argument("--rtps", type=float, default=0.5,
                   help="relaxation to prior spread, in [0, 1] (0.5)")
    e.add_argument("--rw-sd", type=float, default=0.05, metavar="S",
                   help="random-walk step per TR on the logit scale (0.05)")
    e.add_argument("--obs-sd", type=float, metavar="S",
                   help="observation error SD in the observations' units (default 0.002; "
                        "--demo 0.004: the synthetic noise 0.001 plus the BOLD differences "
                        "between network realisations)")
    e.add_argument("--no-localize", action="store_true",
                   help="global analysis (default: local by region membership, LETKF)")


def _add_simulation_args(s: argparse._ArgumentGroup) -> None:
    """The members' simulation: time step, spin-up, free run, hemodynamics, seed, ranks."""
    s.add_argument("--dt", type=float, metavar="MS", help="time step, ms (0.1; --demo 0.5)")
    s.add_argument("--substeps", type=int, default=4,
                   help="rate/hemodynamics pieces per TR (4)")
    s.add_argument("--spinup", type=float, default=2.0, metavar="SECONDS",
                   help="model time before the first TR, s (2.0)")
    s.add_argument("--free-run-trs", type=int, metavar="T",
                   help="TRs of the posterior-mean free run for FC (default: the data's)")
    s.add_argument("--hemo", default="friston2000",
                   help="Balloon-Windkessel parameter set (friston2000, friston2003, "
                        "stephan2007)")
    s.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (1)")
    s.add_argument("--threads", type=int, metavar="N", help="CPU threads per rank")
    s.add_argument("--ranks-per-member", type=int, default=1, metavar="P",
                   help="MPI ranks of each member's distributed engine (1)")


def _add_run_args(a: argparse.ArgumentParser) -> None:
    """The run directory, checkpoints and resuming."""
    a.add_argument("--out", metavar="DIR", help="run directory (default "
                   "runs/assimilate-<UTC time>)")
    a.add_argument("--checkpoint-every", type=float, metavar="MS",
                   help="write a checkpoint every MS ms of model time, at the next TR "
                        "boundary (every ceil(MS / TR) TRs); SIGTERM/SIGUSR1 write one and "
                        "stop (exit status 75)")
    a.add_argument("--resume", metavar="RUN",
                   help="continue the interrupted run RUN from its newest usable checkpoint "
                        "(only --checkpoint-every, --threads and --quiet may be given)")
    a.add_argument("--overwrite", action="store_true", help="replace an earlier run there")
    a.add_argument("-q", "--quiet", action="store_true",
                   help="print only the run directory (warnings and errors still)")


@dataclass
class Options:
    """The validated command line (every value checked, nothing built yet)."""

    demo: bool
    brain: Path | None
    bold: Path | None
    tr_s: float
    members: int
    params: tuple[str, ...]
    population: str
    bounds: dict[str, tuple[float, float]]
    prior_sd: float
    holdout_regions: tuple[int | str, ...]      # region labels or names
    holdout_fraction: float
    preprocess: list[tuple[str, Any]]
    method: str
    inflation: float
    rtps: float
    rw_sd: float
    obs_sd: float | None
    localize: bool
    dt_ms: float
    substeps: int
    spinup_s: float
    free_run_trs: int | None
    hemo: str
    seed: int
    threads: int | None
    ranks_per_member: int
    out: Path
    overwrite: bool
    quiet: bool
    neurons: int
    trs: int
    labels: str | None = None
    atlas: str | None = None
    dataset: str = "bold"
    allow_unobserved: bool = False
    allow_extra: bool = False
    checkpoint_every: float | None = None
    confounds: str | None = None
    confound_columns: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Every option as JSON values (the manifest's ``options``, what ``--resume``
        rebuilds the run from): paths as strings, tuples as lists (the bounds' pairs, the
        preprocessing's steps and band too).  ``extra`` (what the run found out, not an
        option) is left out.  ``from_record`` gives the options back exactly."""
        return jsonable({f.name: str(v) if isinstance(v, Path) else v
                         for f in fields(self) if f.name != "extra"
                         for v in (getattr(self, f.name),)})

    @classmethod
    def from_record(cls, d: dict[str, Any], cwd: str | Path | None = None,
                    where: str = "manifest.json") -> Options:
        """The options of a ``to_record()`` (``extra`` empty).  With ``cwd`` (where the run
        started), relative paths of files (--brain, --bold, --labels, --atlas, --confounds)
        and --out are made absolute against it.  Fields the record lacks take their
        defaults; raises ConfigError (naming ``where`` and the fields) for a field that has
        none, keys these options lack (a run of another dtb version) or a value of the
        wrong shape."""
        names = {f.name: f for f in fields(cls) if f.name != "extra"}
        unknown = sorted(set(d) - set(names))
        missing = sorted(k for k, f in names.items() if k not in d and
                         f.default is MISSING and f.default_factory is MISSING)
        if unknown or missing:
            raise ConfigError([f"options: {what} {keys} -- expected the options dtb "
                               "assimilate records (a run of another dtb version?)"
                               for what, keys in (("unknown", unknown), ("missing", missing))
                               if keys], where)
        kw = dict(d)
        try:
            for k in _RECORD_PATHS:
                if kw.get(k) is not None:
                    v = kw[k] if cwd is None else str(Path(cwd) / kw[k])
                    kw[k] = Path(v) if k in ("brain", "bold", "out") else str(v)
            for k in ("params", "holdout_regions", "confound_columns"):
                if k in kw:
                    kw[k] = tuple(kw[k])
            if "bounds" in kw:
                kw["bounds"] = {k: (float(lo), float(hi)) for k, (lo, hi) in kw["bounds"].items()}
            if "preprocess" in kw:
                kw["preprocess"] = [(str(k), tuple(v) if isinstance(v, list) else v)
                                    for k, v in kw["preprocess"]]
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError([f"options: {e} -- expected the options dtb assimilate "
                               "records"], where) from None
        return cls(**kw)


#: the options that name files or directories (``Options.from_record``'s ``cwd``)
_RECORD_PATHS = ("brain", "bold", "out", "labels", "atlas", "confounds")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parse_preprocess(text: str) -> list[tuple[str, Any]]:
    order = {"psc": 0, "detrend": 1, "band": 2, "zscore": 3, "scale": 4}
    steps: dict[str, Any] = {}
    for tok in _split_list(text):
        name, eq, val = tok.partition("=")
        name = name.strip()
        bad = f"--preprocess: {tok!r} -- expected "
        if name not in order:
            raise UsageError(bad + "psc, detrend[=DEGREE], band=LOW-HIGH, zscore or scale=X")
        if name in steps:
            raise UsageError(f"--preprocess: {name} given twice -- expected each step once")
        if name in ("psc", "zscore"):
            if eq:
                raise UsageError(bad + f"{name} without a value")
            steps[name] = True
        elif name == "detrend":
            if not eq:
                steps[name] = "linear"
            elif val.strip().isdigit():
                steps[name] = int(val)
            elif val.strip() in ("constant", "linear"):
                steps[name] = val.strip()
            else:
                raise UsageError(bad + "detrend, detrend=constant|linear or detrend=DEGREE")
        elif name == "band":
            lo, dash, hi = val.partition("-")
            try:
                band = (float(lo), float(hi))
            except ValueError:
                band = None
            if not dash or band is None or not (
                    all(map(math.isfinite, band)) and 0 <= band[0] < band[1]):
                raise UsageError(bad + "band=LOW-HIGH in Hz with 0 <= LOW < HIGH, e.g. "
                                 "band=0.01-0.1")
            steps[name] = band
        else:
            try:
                x = float(val)
            except ValueError:
                x = float("nan")
            if not (eq and math.isfinite(x) and x > 0):
                raise UsageError(bad + "scale=X with a number X > 0")
            steps[name] = x
    return sorted(steps.items(), key=lambda kv: order[kv[0]])


def _parse_bounds(text: str, params: Sequence[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for tok in _split_list(text):
        name, eq, val = tok.partition("=")
        lo, colon, hi = val.partition(":")
        try:
            b = (float(lo), float(hi))
        except ValueError:
            b = None
        if not (eq and colon and b is not None):
            raise UsageError(f"--bounds: {tok!r} -- expected NAME=LOW:HIGH, e.g. "
                             "g_AMPA=0.004:0.015")
        name = name.strip()
        if name not in params:
            raise UsageError(f"--bounds: {name!r} -- expected one of the estimated "
                             f"parameters ({', '.join(params)})")
        if not (math.isfinite(b[0]) and math.isfinite(b[1]) and b[0] < b[1]):
            raise UsageError(f"--bounds: {tok!r} -- expected finite LOW < HIGH")
        out[name] = b
    return out


def check_tr(tr_s: float, dt_ms: float, substeps: int, flag: str = "--tr") -> None:
    """A TR must be ``substeps`` rate pieces of a whole number (>= 1) of engine steps: the
    engine advances whole steps, so any other TR would be silently rounded (a TR of 1e-9 s
    to no step at all, and a rate of 0/0).  Raises UsageError naming the nearest TRs."""
    piece = dt_ms * substeps                       # ms: the shortest TR, and its unit
    k = tr_s * 1e3 / piece
    if k >= 1 - 1e-9 and abs(k - round(k)) <= 1e-6 * max(1.0, k):
        return
    near = sorted({max(1, math.floor(k)), max(1, math.ceil(k))})
    raise UsageError(f"{flag}: {tr_s!r} s -- expected a whole number of {substeps} pieces of "
                     f"whole time steps of {dt_ms:g} ms, i.e. a multiple of "
                     f"{piece / 1e3:g} s (nearest: "
                     f"{', '.join(f'{n * piece / 1e3:g}' for n in near)} s)")


def check_args(a: argparse.Namespace) -> Options:
    """Every command-line value checked (raises ``UsageError``), before any file is read."""

    columns = _check_inputs(a)
    tr = 0.8 if a.demo and a.tr is None else a.tr
    if tr is not None and not (_finite(tr) and 0 < tr <= 60):
        raise UsageError(f"--tr: {a.tr!r} -- expected a repetition time in seconds, in (0, 60]")
    members = a.members if a.members is not None else (6 if a.demo else 8)
    if not 2 <= members <= 100_000:
        raise UsageError(f"--members: {members!r} -- expected at least 2 ensemble members")
    params, bounds, held = _check_filter(a)
    dt, ce = _check_simulation(a, tr, members)
    neurons = 4000 if a.neurons is None else a.neurons
    if not 1000 <= neurons <= 10_000_000:
        raise UsageError(f"--neurons: {neurons!r} -- expected 1000 to 10000000")
    trs = 24 if a.trs is None else a.trs
    if not 12 <= trs <= 100_000:
        raise UsageError(f"--trs: {trs!r} -- expected at least 12 TRs")
    if a.out is not None:
        out = Path(a.out)
    else:
        out = Path("runs") / ("assimilate-" + _dt.datetime.now(_dt.UTC).strftime(
            "%Y%m%dT%H%M%SZ"))
    return Options(demo=a.demo, brain=None if a.brain is None else Path(a.brain),
                   bold=None if a.bold is None else Path(a.bold), tr_s=tr,
                   members=members, params=params, population=a.population, bounds=bounds,
                   prior_sd=a.prior_sd, holdout_regions=held,
                   holdout_fraction=a.holdout_fraction,
                   preprocess=_parse_preprocess(a.preprocess), method=a.method,
                   inflation=a.inflation, rtps=a.rtps, rw_sd=a.rw_sd, obs_sd=a.obs_sd,
                   localize=not a.no_localize, dt_ms=dt, substeps=a.substeps,
                   spinup_s=a.spinup, free_run_trs=a.free_run_trs, hemo=a.hemo, seed=a.seed,
                   threads=a.threads, ranks_per_member=a.ranks_per_member, out=out,
                   overwrite=a.overwrite, quiet=a.quiet, neurons=neurons, trs=trs,
                   labels=a.labels, atlas=a.atlas, dataset=a.dataset,
                   allow_unobserved=a.allow_unobserved, allow_extra=a.allow_extra,
                   checkpoint_every=ce, confounds=a.confounds, confound_columns=columns)


def _check_inputs(a: argparse.Namespace) -> tuple[str, ...]:
    """The data flags: --demo or --brain with --bold, --confounds with its columns (the
    columns, as given)."""
    if a.demo:
        given = [f for f, v in (("--brain", a.brain), ("--bold", a.bold),
                                ("--labels", a.labels), ("--atlas", a.atlas),
                                ("--confounds", a.confounds)) if v is not None]
        if given:
            raise UsageError(f"--demo: makes its own brain and synthetic BOLD -- drop "
                             f"{given[0]}")
    else:
        for flag, v in (("--brain", a.brain), ("--bold", a.bold)):
            if v is None:
                raise UsageError(f"{flag}: missing -- expected {flag} FILE (or --demo)")
        for flag, v in (("--neurons", a.neurons), ("--trs", a.trs)):
            if v is not None:
                raise UsageError(f"{flag}: applies to --demo only -- drop it or add --demo")
    columns = tuple(_split_list(a.confound_columns))
    if a.confounds is not None and not columns:
        raise UsageError("--confounds: given without --confound-columns -- expected the "
                         "columns to regress out, e.g. --confound-columns 'trans_*,rot_*'")
    if columns and a.confounds is None:
        raise UsageError("--confound-columns: given without --confounds -- expected "
                         "--confounds TSV")
    return columns


def _check_filter(a: argparse.Namespace) -> tuple[tuple[str, ...],
                                                  dict[str, tuple[float, float]],
                                                  tuple[int | str, ...]]:
    """The estimation flags: (the parameters, their bounds, the held-out regions)."""
    params = tuple(_split_list(a.params))
    if not params:
        raise UsageError(f"--params: {a.params!r} -- expected one or more of "
                         f"{', '.join(HYPER)}")
    for p in params:
        if p not in HYPER:
            raise UsageError(f"--params: {p!r} -- expected per-unit hyperparameters, of "
                             f"{', '.join(HYPER)}")
    if len(set(params)) != len(params):
        raise UsageError(f"--params: {a.params!r} -- expected each parameter once")
    bounds = _parse_bounds(a.bounds, params)
    if not (_finite(a.prior_sd) and a.prior_sd > 0):
        raise UsageError(f"--prior-sd: {a.prior_sd!r} -- expected a spread > 0 (logit scale)")
    held = tuple(int(x) if x.lstrip("-").isdigit() else x
                 for x in _split_list(a.holdout_regions))
    if len(set(held)) != len(held):
        raise UsageError(f"--holdout-regions: {a.holdout_regions!r} -- expected distinct "
                         "labels")
    if not (_finite(a.holdout_fraction) and 0 <= a.holdout_fraction < 1):
        raise UsageError(f"--holdout-fraction: {a.holdout_fraction!r} -- expected a fraction "
                         "in [0, 1)")
    if not (_finite(a.inflation) and 1.0 <= a.inflation <= 10.0):
        raise UsageError(f"--inflation: {a.inflation!r} -- expected a factor in [1, 10]")
    if not (_finite(a.rtps) and 0 <= a.rtps <= 1):
        raise UsageError(f"--rtps: {a.rtps!r} -- expected a value in [0, 1]")
    if not (_finite(a.rw_sd) and 0 <= a.rw_sd <= 5):
        raise UsageError(f"--rw-sd: {a.rw_sd!r} -- expected a step in [0, 5] (logit scale)")
    if a.obs_sd is not None and not (_finite(a.obs_sd) and a.obs_sd > 0):
        raise UsageError(f"--obs-sd: {a.obs_sd!r} -- expected an error SD > 0")
    return params, bounds, held


def _check_simulation(a: argparse.Namespace, tr: float | None, members: int
                      ) -> tuple[float, float | None]:
    """The simulation flags, the TR against the time step: (dt in ms, --checkpoint-every
    in ms or None)."""
    dt = a.dt if a.dt is not None else (0.5 if a.demo else 0.1)
    if not (_finite(dt) and 0 < dt <= 1.0):
        raise UsageError(f"--dt: {a.dt!r} -- expected a time step in ms, in (0, 1]")
    if not 1 <= a.substeps <= 1000:
        raise UsageError(f"--substeps: {a.substeps!r} -- expected 1 to 1000 pieces per TR")
    if tr is not None:
        check_tr(tr, dt, a.substeps)
    if not (_finite(a.spinup) and 0 <= a.spinup <= 3600):
        raise UsageError(f"--spinup: {a.spinup!r} -- expected a model time in s, in [0, 3600]")
    if a.free_run_trs is not None and not 3 <= a.free_run_trs <= 1_000_000:
        raise UsageError(f"--free-run-trs: {a.free_run_trs!r} -- expected at least 3 TRs")
    if a.hemo not in PARAMETER_SETS:
        raise UsageError(f"--hemo: {a.hemo!r} -- expected one of {', '.join(PARAMETER_SETS)}")
    if not 0 <= a.seed < 2**32 - members - 1:
        raise UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32 - M - 1) "
                         "(member m uses seed + 1 + m)")
    ce = check_run_flags(a)
    if a.ranks_per_member < 1:
        raise UsageError(f"--ranks-per-member: {a.ranks_per_member!r} -- expected P >= 1")
    return dt, ce


def check_run_flags(a: argparse.Namespace) -> float | None:
    """--threads and --checkpoint-every (the flags ``--resume`` may give anew) checked;
    returns --checkpoint-every (ms, or None)."""
    if a.threads is not None:
        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= a.threads <= top:
            raise UsageError(f"--threads: {a.threads!r} -- expected 1 to {top} "
                             "(NUMBA_NUM_THREADS)")
    ce: float | None = getattr(a, "checkpoint_every", None)
    if ce is not None and not (_finite(ce) and ce > 0):
        raise UsageError(f"--checkpoint-every: {ce!r} -- expected a model time in ms > 0")
    return ce


def assimilate_parser() -> argparse.ArgumentParser:
    """A ``dtb`` parser with only ``assimilate`` (its defaults tell which options a
    ``--resume`` gives)."""
    p = argparse.ArgumentParser(prog="dtb")
    add_assimilate_parser(p.add_subparsers(dest="command", required=True))
    return p

