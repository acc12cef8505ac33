"""``dtb assimilate``: fit a brain's per-unit hyperparameters to recorded BOLD.

::

    dtb assimilate --brain brain.h5 --bold bold.csv --tr 0.8 --members 8 --out runs/fit
    mpiexec -n 16 dtb assimilate ... --members 8 --ranks-per-member 2
    dtb assimilate --demo --out runs/twin           # a twin experiment on the default subject

Every value is checked before anything is built (``dtb: error: ...``, exit status 2); bad
observation files are refused with ``observations.read_bold``'s messages.  The run directory
(``RUN``) holds, when complete:

- ``manifest.json``: written with status ``"running"`` first and replaced atomically, as the
  last act, with ``"complete"`` (or ``"failed"``); options, layout, timings, checksums;
- ``assimilation.zarr``: Zarr v3 with dimension names (``xarray.open_zarr(...,
  consolidated=False)``), see ``DIMENSIONS`` below;
- ``metrics.json``: the honest scores (``evaluate``): in-sample tracking next to persistence
  and AR(1), the held-out later segment and held-out regions, FC of a free run with the
  posterior-mean hyperparameters, filter health, and in a twin experiment the recovery of the
  known parameters;
- ``figures/``: ``parameters.png``, ``bold.png``, ``fc.png``;
- with ``--demo``: ``brain.h5`` and ``observed_bold.csv`` (the synthetic data, reusable with
  ``--brain RUN/brain.h5 --bold RUN/observed_bold.csv --tr 0.8``).

Checkpoint and restart (as ``dtb simulate``): ``--checkpoint-every MS`` writes a checkpoint
(``RUN/checkpoints/step-<TR>/``, one file per world rank: every local member's engine state,
the loop's ``LoopState``, the observations and baselines) at the first TR boundary at or after
each multiple of MS ms of model time (every ``ceil(MS / TR)`` TRs); on SIGTERM or SIGUSR1 the
ranks agree (an allreduce at every TR boundary), write one at the next boundary, mark the run
``"interrupted"`` and exit 75.  ``dtb assimilate --resume RUN`` rebuilds the run from its
manifest and continues bitwise identically (``assimilation.zarr``, ``metrics.json`` but its
timings).  Not checkpointed: the twin truth, baselines and spin-up before the first boundary,
and the posterior-mean free run after the last (a stop requested there is honoured at TR 0,
or not at all: the run completes).

Layout under MPI: the world's W ranks are cut into W / P member communicators of P ranks
(``--ranks-per-member P``, ``loop.split_members``); each runs M P / W members in turn, each a
distributed Engine on its communicator.  Only observation-space values and parameters are
gathered (``loop.member_gather``); every rank runs the same deterministic analysis, so the
trajectories do not depend on the layout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import ConfigError, DtbError, InputError, OutputError

__all__ = ["add_assimilate_parser", "run_assimilate", "main", "DIMENSIONS", "Options",
           "evaluate"]

HYPER = ("g_AMPA", "g_NMDA", "g_GABA_A", "g_GABA_B", "I_e")
STORE = "assimilation.zarr"
METRICS = "metrics.json"
FIGURES = "figures"
OBSERVED_CSV = "observed_bold.csv"
OUTPUTS = (STORE, METRICS, FIGURES, OBSERVED_CSV)
MANIFEST_FORMAT = "dtb-assimilation"

#: Variables of ``assimilation.zarr`` and their dimensions (``tr`` TRs of the observed
#: series, ``tr_free`` TRs of the free run, ``member``, ``unit``, ``parameter``, ``region``).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "theta": ("tr", "member", "unit", "parameter"),        # analysed, after each TR
    "theta_forecast": ("tr", "member", "unit", "parameter"),  # before each analysis
    "prior": ("member", "unit", "parameter"),              # the initial draws
    "posterior_mean": ("unit", "parameter"),               # last assimilated TR
    "posterior_sd": ("unit", "parameter"),
    "bold_observed": ("tr", "region"),                     # after preprocessing
    "bold_forecast": ("tr", "member", "region"),           # one step ahead; free after
    "bold_analysis": ("tr", "member", "region"),
    "rates": ("tr", "member", "unit"),                     # Hz
    "bold_free": ("tr_free", "member", "region"),          # posterior-mean free run
    "innovation": ("tr", "region"),                        # obs - forecast mean
    "normalized_innovation": ("tr",),
    "baseline_hz": ("member", "unit"),                     # zero-drive rates
    "truth": ("unit", "parameter"),                        # twin experiments only
}


class UsageError(ConfigError):
    """An invalid command-line value (exit status 2), worded ``--flag: value -- expected``."""

    def __init__(self, message: str):
        self.problems, self.source = [message], None
        Exception.__init__(self, message)


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
    d = a.add_argument_group("data")
    d.add_argument("--brain", metavar="BRAIN.h5", help="a brain file written by dtb build")
    d.add_argument("--bold", metavar="FILE",
                   help="observed BOLD: CSV/TSV (header of region labels), .npy (with "
                        "--labels), HDF5 (dataset 'bold' with a labels attribute) or 4D NIfTI "
                        "(with --atlas)")
    d.add_argument("--tr", type=float, metavar="SECONDS", help="repetition time, s")
    d.add_argument("--labels", metavar="FILE", help="region labels of a .npy table")
    d.add_argument("--atlas", metavar="NIFTI", help="label volume of a 4D NIfTI BOLD image")
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
    e = a.add_argument_group("estimation")
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
                   help="region labels left out of the assimilation (scored only)")
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
    s = a.add_argument_group("simulation")
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
    a.add_argument("--quiet", action="store_true", help="print only the run directory")
    return a


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
    holdout_regions: tuple[int, ...]
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
    extra: dict[str, Any] = field(default_factory=dict)


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


def check_args(a: argparse.Namespace) -> Options:
    """Every command-line value checked (raises ``UsageError``), before any file is read."""
    import numba

    if a.demo:
        given = [f for f, v in (("--brain", a.brain), ("--bold", a.bold),
                                ("--labels", a.labels), ("--atlas", a.atlas)) if v is not None]
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
    tr = 0.8 if a.demo and a.tr is None else a.tr
    if tr is not None and not (_finite(tr) and 0 < tr <= 60):
        raise UsageError(f"--tr: {a.tr!r} -- expected a repetition time in seconds, in (0, 60]")
    members = a.members if a.members is not None else (6 if a.demo else 8)
    if not 2 <= members <= 100_000:
        raise UsageError(f"--members: {members!r} -- expected at least 2 ensemble members")
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
    try:
        held = tuple(int(x) for x in _split_list(a.holdout_regions))
    except ValueError:
        raise UsageError(f"--holdout-regions: {a.holdout_regions!r} -- expected integer "
                         "region labels, e.g. 3,17") from None
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
    dt = a.dt if a.dt is not None else (0.5 if a.demo else 0.1)
    if not (_finite(dt) and 0 < dt <= 1.0):
        raise UsageError(f"--dt: {a.dt!r} -- expected a time step in ms, in (0, 1]")
    if not 1 <= a.substeps <= 1000:
        raise UsageError(f"--substeps: {a.substeps!r} -- expected 1 to 1000 pieces per TR")
    if not (_finite(a.spinup) and 0 <= a.spinup <= 3600):
        raise UsageError(f"--spinup: {a.spinup!r} -- expected a model time in s, in [0, 3600]")
    if a.free_run_trs is not None and not 3 <= a.free_run_trs <= 1_000_000:
        raise UsageError(f"--free-run-trs: {a.free_run_trs!r} -- expected at least 3 TRs")
    from dtb.assimilation.hemodynamics import PARAMETER_SETS

    if a.hemo not in PARAMETER_SETS:
        raise UsageError(f"--hemo: {a.hemo!r} -- expected one of {', '.join(PARAMETER_SETS)}")
    if not 0 <= a.seed < 2**32 - members - 1:
        raise UsageError(f"--seed: {a.seed!r} -- expected an integer in [0, 2**32 - M - 1) "
                         "(member m uses seed + 1 + m)")
    if a.threads is not None:
        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= a.threads <= top:
            raise UsageError(f"--threads: {a.threads!r} -- expected 1 to {top} "
                             "(NUMBA_NUM_THREADS)")
    ce = getattr(a, "checkpoint_every", None)
    if ce is not None and not (_finite(ce) and ce > 0):
        raise UsageError(f"--checkpoint-every: {ce!r} -- expected a model time in ms > 0")
    if a.ranks_per_member < 1:
        raise UsageError(f"--ranks-per-member: {a.ranks_per_member!r} -- expected P >= 1")
    neurons = 4000 if a.neurons is None else a.neurons
    if not 1000 <= neurons <= 10_000_000:
        raise UsageError(f"--neurons: {neurons!r} -- expected 1000 to 10000000")
    trs = 24 if a.trs is None else a.trs
    if not 12 <= trs <= 100_000:
        raise UsageError(f"--trs: {trs!r} -- expected at least 12 TRs")
    if a.out is not None:
        out = Path(a.out)
    else:
        import datetime as _dt

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
                   checkpoint_every=ce)


# --- the problem: brain, observations, parameters --------------------------------------------

@dataclass
class Problem:
    """What the filter is given: the brain, the observations matched to its units, the
    estimated parameters with their bounds, the prior draws and, in a twin experiment, the
    truth."""

    spec: Any
    net: Any
    obs: np.ndarray                 # (T, R) after preprocessing
    labels: np.ndarray              # (R,) region labels of the observed columns
    obs_index: np.ndarray           # (U,) observed column of each unit, -1 none
    assimilated: np.ndarray         # (R,) bool
    params: list[Any]               # ParamSpec
    center: np.ndarray              # (U, P) the brain's values (prior centre)
    theta0: np.ndarray              # (M, U, P)
    n_assim: int
    obs_var: float
    source: dict[str, Any]
    truth: np.ndarray | None = None  # (U, P)
    obs_clean: np.ndarray | None = None


def _preprocess(bold: Any, steps: list[tuple[str, Any]]) -> Any:
    from dataclasses import replace

    from dtb.assimilation.observations import preprocess

    kw: dict[str, Any] = {}
    scale = None
    for name, v in steps:
        if name == "psc":
            mean = bold.data.mean(axis=0)
            if np.any(mean <= 0):
                bad = int(bold.labels[int(np.argmax(mean <= 0))])
                raise InputError(bold.source, f"label {bad}", float(mean[mean <= 0][0]),
                                 "a positive mean signal for psc (raw scanner intensities)")
            bold = replace(bold, data=bold.data / mean - 1.0)
        elif name == "detrend":
            kw["detrend"] = v
        elif name == "band":
            kw["band"] = v
        elif name == "zscore":
            kw["zscore"] = True
        else:
            scale = v
    if kw:
        try:
            bold = preprocess(bold, **kw)
        except ValueError as e:
            if isinstance(e, DtbError):
                raise
            raise UsageError(f"--preprocess: {e}") from None
    if scale is not None:
        bold = replace(bold, data=bold.data * scale)
    return bold


def _param_specs(o: Options, spec: Any, where: str) -> tuple[list[Any], np.ndarray]:
    from dtb.assimilation.loop import ParamSpec

    fam = {f.name: f for f in spec.families}
    if o.population not in fam:
        raise UsageError(f"--population: {o.population!r} -- expected a family of {where} "
                         f"({', '.join(fam)})")
    f = fam[o.population]
    out, center = [], []
    for name in o.params:
        if name not in f.hyper:
            raise UsageError(f"--params: {name!r} -- {where} has no per-unit {name} for "
                             f"family {o.population} (it has {', '.join(f.hyper)})")
        v = np.asarray(f.hyper[name], float)
        if name in o.bounds:
            lo, hi = o.bounds[name]
        else:
            m = float(v[f.sizes > 0].mean()) if np.any(f.sizes > 0) else float(v.mean())
            if not m > 0:
                raise UsageError(f"--bounds: {name} is {m:g} in {where} -- expected explicit "
                                 f"bounds (--bounds {name}=LOW:HIGH)")
            lo, hi = 0.5 * m, 2.0 * m
        if np.any(v <= lo) or np.any(v >= hi):
            raise UsageError(f"--bounds: {name}={lo:g}:{hi:g} -- expected to contain the "
                             f"brain's values ({v.min():g} to {v.max():g}), the prior's centre")
        out.append(ParamSpec(o.population, name, float(lo), float(hi)))
        center.append(v)
    return out, np.stack(center, axis=-1)


def _draw(params: Sequence[Any], center: np.ndarray, sd: float, shape: tuple[int, ...],
          rng: np.random.Generator) -> np.ndarray:
    """Draws (*shape, U, P) of ``to_unit(center) + sd N(0, 1)`` mapped back into the bounds."""
    u = np.stack([p.to_unit(center[:, k]) for k, p in enumerate(params)], -1)
    u = u + sd * rng.standard_normal((*shape, *u.shape))
    return np.stack([p.from_unit(u[..., k]) for k, p in enumerate(params)], -1)


def load_problem(o: Options) -> Problem:
    """Read the brain and the observations (or make the demo's brain) and check that they
    fit together; raises UsageError / InputError.  Cheap: nothing is simulated."""
    from dtb.assimilation.observations import match_labels, read_bold
    from dtb.rundir import sha256_file

    if o.demo:
        from dtb.brain.build import BuildOptions, build
        from dtb.brain.commands import demo_inputs

        spec = build(**demo_inputs(), options=BuildOptions(neurons=o.neurons))
        where = "the default subject"
        source: dict[str, Any] = {"kind": "demo", "neurons": spec.n_neurons,
                                  "units": spec.n_units, "trs": o.trs}
    else:
        from dtb.brain.spec import BrainSpec

        spec = BrainSpec.load(o.brain)
        where = str(o.brain)
        source = {"kind": "brain", "brain": str(Path(o.brain).resolve()),
                  "brain_sha256": sha256_file(o.brain), "units": spec.n_units}
    params, center = _param_specs(o, spec, where)
    unit_labels = np.asarray(spec.unit_labels)
    if o.demo:
        labels = np.unique(unit_labels)
        obs = np.zeros((o.trs, labels.size))          # filled by the truth run
        obs_index = np.searchsorted(labels, unit_labels)
    else:
        bold = read_bold(o.bold, o.tr_s, labels=o.labels, dataset=o.dataset, atlas=o.atlas)
        bold = _preprocess(bold, o.preprocess)
        obs_index, used = match_labels(bold, unit_labels, o.allow_unobserved, o.allow_extra)
        labels = bold.labels
        obs = bold.data
        source.update({"bold": str(Path(o.bold).resolve()), "bold_sha256": sha256_file(o.bold),
                       "tr_s": bold.tr_s, "time_points": bold.n_samples,
                       "regions": int(labels.size)})
        o.extra["tr_s"] = bold.tr_s
    T, R = obs.shape
    assimilated = np.zeros(R, bool)
    assimilated[np.unique(obs_index[obs_index >= 0])] = True
    for lab in o.holdout_regions:
        hits = np.flatnonzero(labels == lab)
        if hits.size == 0 or not assimilated[hits[0]]:
            raise UsageError(f"--holdout-regions: {lab} -- expected labels of observed regions "
                             f"of the brain ({int(labels[assimilated][0])}, ...)")
        assimilated[hits[0]] = False
    if not assimilated.any():
        raise UsageError("--holdout-regions: every observed region held out -- expected at "
                         "least one region to assimilate")
    n_hold = int(round(o.holdout_fraction * T))
    n_assim = T - n_hold
    if n_assim < 8:
        raise UsageError(f"--holdout-fraction: {o.holdout_fraction!r} leaves {n_assim} of "
                         f"{T} TRs to assimilate -- expected at least 8")
    if o.holdout_fraction > 0 and n_hold < 2:
        raise UsageError(f"--holdout-fraction: {o.holdout_fraction!r} holds out {n_hold} of "
                         f"{T} TRs -- expected at least 2 (or 0 for none)")
    obs_sd = o.obs_sd if o.obs_sd is not None else (0.004 if o.demo else 0.002)
    rng = np.random.default_rng([o.seed, 1])
    theta0 = _draw(params, center, o.prior_sd, (o.members,), rng)
    prob = Problem(spec, spec.to_network(name="default_subject" if o.demo else spec_name(o)),
                   obs, labels, obs_index, assimilated, params, center, theta0, n_assim,
                   obs_sd ** 2, source)
    if o.demo:
        prob.truth = _draw(params, center, o.prior_sd, (), np.random.default_rng([o.seed, 2]))
    return prob


def spec_name(o: Options) -> str:
    return Path(o.brain).stem if o.brain is not None else "brain"


# --- running ---------------------------------------------------------------------------------

@dataclass
class Layout:
    """Who runs which members: ``groups`` member communicators of ``ranks_per_member`` ranks
    each; this rank is in group ``group`` and runs members ``local`` (global numbers)."""

    comm: Any
    member_comm: Any
    groups: int
    group: int
    ranks_per_member: int
    local: list[int]
    threads: int | None = None

    @property
    def rank0(self) -> bool:
        return self.comm is None or self.comm.Get_rank() == 0

    @property
    def ranks(self) -> int:
        return 1 if self.comm is None else self.comm.Get_size()


def make_layout(comm: Any, members: int, ranks_per_member: int) -> Layout:
    """Split ``comm`` (None: one process) into member communicators; raises UsageError."""
    from dtb.assimilation.loop import split_members

    size = 1 if comm is None else comm.Get_size()
    if size % ranks_per_member:
        raise UsageError(f"--ranks-per-member: {ranks_per_member} -- expected a divisor of "
                         f"the {size} MPI ranks")
    groups = size // ranks_per_member
    if members % groups:
        raise UsageError(f"--members: {members} -- expected a multiple of the {groups} member "
                         f"communicators ({size} ranks / {ranks_per_member} per member)")
    if comm is None:
        return Layout(None, None, 1, 0, 1, list(range(members)))
    mcomm, group, groups = split_members(comm, ranks_per_member)
    k = members // groups
    # ranks on one node share its cores (oversubscribed numba threads spin-wait); a
    # collective, so here, where every rank takes part
    from dtb.distributed import threads_per_rank

    return Layout(comm, mcomm, groups, group, ranks_per_member,
                  list(range(group * k, (group + 1) * k)), threads_per_rank(comm))


def _engine(net: Any, o: Options, seed: int, lay: Layout) -> Any:
    from dtb.engine import Engine

    comm = lay.member_comm if lay.ranks_per_member > 1 else None
    eng = Engine(net, dt=o.dt_ms, seed=seed, threads=lay.threads, comm=comm)
    eng.keep_spikes = False
    return eng


def _gather_rows(lay: Layout, x: np.ndarray) -> np.ndarray:
    """Rows (M_loc, ...) of this rank's members -> (M, ...) on every rank."""
    if lay.comm is None:
        return x
    from dtb.assimilation.loop import member_gather

    flat = member_gather(lay.comm, lay.member_comm)(x.reshape(x.shape[0], -1))
    return flat.reshape(-1, *x.shape[1:])


TRANSIENT_S = 0.3   # s discarded after a (re)start before rates count
SETTLE_S = 0.5      # s with the prior draws before the first TR
DEMO_NOISE_SD = 0.001  # synthetic observation noise of the twin experiment (fraction)


def nominal_baseline(mem: Any, prob: Problem, o: Options) -> np.ndarray:
    """A member's own per-unit rates (Hz) at the brain's nominal parameters, after a
    transient, over ``--spinup`` s: its zero-drive baseline (so the BOLD of every member, and
    of the truth, is the activity relative to its own network at nominal parameters)."""
    mem.set_params(prob.params, prob.center.T)
    mem.run_rates(TRANSIENT_S * 1e3)
    base = mem.run_rates(max(o.spinup_s, o.tr_s) * 1e3)
    return np.where(base > 0, base, max(float(base[base > 0].min(initial=1.0)), 1e-3))


def twin_truth(prob: Problem, o: Options, lay: Layout, log: Any) -> None:
    """The twin experiment's data: one more brain (seed ``o.seed``, a network realisation of
    its own) measures its baseline at the nominal values (``nominal_baseline``), settles
    with the true parameters and runs the TRs; its BOLD plus Gaussian noise of SD
    ``DEMO_NOISE_SD`` is the observation.  Run by the first member communicator, sent to
    every rank."""
    from dtb.assimilation.loop import EngineMember, free_run

    T, R = prob.obs.shape
    payload = None
    if lay.group == 0:
        t0 = time.perf_counter()
        mem = EngineMember(_engine(prob.net, o, o.seed, lay))
        base = nominal_baseline(mem, prob, o)
        clean = free_run([mem], prob.params, prob.truth.T, T, o.tr_s, base, prob.obs_index,
                         R, o.hemo, substeps=o.substeps, spinup_s=SETTLE_S)[:, 0]
        payload = (clean, time.perf_counter() - t0)
    if lay.comm is not None:
        payload = lay.comm.bcast(payload, root=0)
    clean, secs = payload
    noise = DEMO_NOISE_SD * np.random.default_rng([o.seed, 3]).standard_normal(clean.shape)
    prob.obs = clean + noise
    prob.obs_clean = clean
    o.extra["truth_s"] = secs
    if log:
        print(f"dtb assimilate: twin truth simulated ({T} TRs, {secs:.1f} s)", file=log,
              flush=True)


class Stopped(Exception):
    """Raised at a TR boundary after the checkpoint a stop signal asked for (all ranks)."""

    def __init__(self, tr: int, path: Path, signum: int):
        import signal

        self.tr, self.path, self.signum = tr, path, signum
        self.reason = signal.Signals(signum).name
        super().__init__(f"stopped by {self.reason} at TR {tr}")


@dataclass
class Resume:
    """What ``--resume`` continues from: the checkpoint's TR, directory, this rank's
    arrays and the metadata."""

    tr: int
    path: Path
    state: dict[str, np.ndarray]
    meta: dict[str, Any]


def checkpoint_trs(ms: float | None, tr_s: float) -> int | None:
    """``--checkpoint-every`` MS ms in whole TRs: the first TR boundary at or after MS ms of
    model time, i.e. every ``ceil(MS / TR)`` TRs (None: no periodic checkpoints)."""
    if ms is None:
        return None
    return max(1, math.ceil(ms / (tr_s * 1e3) - 1e-9))


_RESUME_KEEPS = ("resume", "checkpoint_every", "threads", "quiet", "command", "command_line",
                 "run_dir")


def _assimilate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtb")
    add_assimilate_parser(p.add_subparsers(dest="command", required=True))
    return p


def _resume_args(a: argparse.Namespace, comm: Any) -> tuple[argparse.Namespace, list[str]]:
    """The arguments of the run ``--resume RUN`` continues (rebuilt from its manifest, with
    its input files checked) and its recorded command line; raises UsageError (exit 2)."""
    plain = _assimilate_parser().parse_args(["assimilate", "--resume", a.resume])
    for k, v in vars(plain).items():
        if k not in _RESUME_KEEPS and getattr(a, k, v) != v:
            raise UsageError(f"--resume {a.resume}: --{k.replace('_', '-')} cannot be given "
                             "-- a resumed run continues with the data, options and outputs "
                             "it was started with (only --checkpoint-every, --threads and "
                             "--quiet may be given)")
    run = Path(a.resume)
    plan: Any = None
    if comm is None or comm.Get_rank() == 0:
        try:
            plan = _read_resume_manifest(run, 1 if comm is None else comm.Get_size())
        except DtbError as e:
            plan = e
    if comm is not None:
        plan = comm.bcast(plan, root=0)
    if isinstance(plan, BaseException):
        raise plan
    command, manifest = plan
    b = _assimilate_parser().parse_args(["assimilate", *command[2:]])
    src = manifest.get("source") or {}
    if src.get("kind") == "brain":
        b.brain, b.bold = src["brain"], src["bold"]
    cwd = Path(manifest.get("cwd") or ".")
    for k in ("labels", "atlas"):
        v = getattr(b, k)
        if v is not None and not Path(v).is_absolute():
            setattr(b, k, str(cwd / v))
    b.out, b.overwrite, b.resume = str(run), False, str(run)
    b.quiet = a.quiet
    if a.threads is not None:
        b.threads = a.threads
    b.checkpoint_every = (a.checkpoint_every if a.checkpoint_every is not None
                          else (manifest.get("options") or {}).get("checkpoint_every"))
    return b, list(command)


def _read_resume_manifest(run: Path, ranks: int) -> tuple[list[str], dict[str, Any]]:
    """(command line, manifest) of the run at ``run`` after checking that it can be resumed
    by ``ranks`` ranks: a dtb assimilate run, not complete, its input files unchanged, a
    checkpoint written by as many ranks (rank 0; raises UsageError)."""
    from dtb import checkpoint
    from dtb.rundir import sha256_file

    try:
        m = json.loads((run / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume {run}: no readable manifest.json ({e}) -- expected the "
                         "run directory of an interrupted dtb assimilate") from None
    command = m.get("command")
    if (m.get("format") != MANIFEST_FORMAT or not isinstance(command, list)
            or len(command) < 2 or command[1] != "assimilate"):
        raise UsageError(f"--resume {run}: not a dtb assimilate run -- resume it with the "
                         "command that made it")
    if m.get("status") == "complete":
        raise UsageError(f"--resume {run}: the run is complete -- nothing to resume")
    src = m.get("source") or {}
    for key in ("brain", "bold"):
        if src.get("kind") != "brain":
            break
        path = Path(src.get(key, ""))
        if not path.is_file():
            raise UsageError(f"--resume {run}: the run's {key} file {path} is missing -- "
                             f"expected it unchanged (sha256 {src.get(key + '_sha256')})")
        digest = sha256_file(path)
        if digest != src.get(key + "_sha256"):
            raise UsageError(f"--resume {run}: the run's {key} file {path} has changed since "
                             f"the run started (sha256 {digest}, the run recorded "
                             f"{src.get(key + '_sha256')}) -- a resumed run must read the "
                             "same files")
    cands = checkpoint.candidates(run)
    if not cands:
        raise UsageError(f"--resume {run}: no checkpoint in {run / checkpoint.CHECKPOINTS} -- "
                         "the run stopped before writing one; start it again with --overwrite")
    counts = set()
    for d in cands:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            counts.add(int(json.loads((d / checkpoint.COMPLETE).read_text())["ranks"]))
    if counts and ranks not in counts:
        raise UsageError(f"--resume {run}: its checkpoints were written by "
                         f"{' or '.join(map(str, sorted(counts)))} rank(s), this job has "
                         f"{ranks} -- resume with the same number of ranks (mpiexec -n "
                         f"{max(counts)})")
    return command, m


def _load_resume(run: Path, comm: Any) -> Resume:
    from dtb import checkpoint

    got = checkpoint.load_latest(run, comm)
    if got is None:
        raise UsageError(f"--resume {run}: no usable checkpoint in {run / 'checkpoints'} "
                         "(each one is missing a rank's file, damaged or written by another "
                         "number of ranks) -- start the run again with --overwrite")
    tr, state, meta = got
    return Resume(tr, checkpoint.step_dir(run, tr), state, meta)


def run_assimilate(args: argparse.Namespace, stop: Any = None) -> int:
    """``dtb assimilate``: returns the exit status (0; 75 after a checkpoint on a stop
    signal, ``stop`` being ``dtb.simulate.StopRequest``); errors are raised
    (``UsageError``, ``InputError``: status 2; ``OutputError`` and others: 1), as
    ``dtb.cli.main`` expects."""
    from dtb.cli import EXIT_TEMPFAIL
    from dtb.distributed import world

    comm = world()
    rank0 = comm is None or comm.Get_rank() == 0
    resume: Resume | None = None
    command = getattr(args, "command_line", None)
    if getattr(args, "resume", None) is not None:
        args, command = _resume_args(args, comm)
    o = check_args(args)
    o.extra["command"] = command
    if comm is not None:
        o.out = Path(comm.bcast(str(o.out), root=0))
    lay = make_layout(comm, o.members, o.ranks_per_member)
    if o.threads is not None:
        lay.threads = o.threads
    prob = load_problem(o)
    tr_s = o.extra.get("tr_s", o.tr_s)
    if tr_s is None:
        raise UsageError("--tr: missing -- expected the repetition time in seconds")
    o.tr_s = float(tr_s)
    if getattr(args, "resume", None) is not None:
        resume = _load_resume(o.out, comm)
    log = None if (o.quiet or not rank0) else sys.stderr
    if not rank0:
        run: Any = contextlib.nullcontext()
    elif resume is not None:
        run = AssimilationRun.reopen(o.out)
    else:
        run = AssimilationRun(o.out, o.overwrite)
    with run as rd:
        if rank0:
            args.run_dir = o.out
            if resume is None:
                rd.begin(o, prob, lay)
            else:
                rd.restart(resume.tr, resume.path.name, o.threads)
        if log:
            what = (f"resuming {o.out} from {resume.path.name}" if resume is not None
                    else f"run directory {o.out}")
            print(f"dtb assimilate: {prob.spec.n_units} units, {prob.net.n_neurons:,} neurons "
                  f"per member, {o.members} members on {lay.ranks} rank(s), "
                  f"{prob.obs.shape[0]} TRs of {o.tr_s:g} s ({what})",
                  file=log, flush=True)
        if resume is not None:
            prob.obs = np.asarray(resume.state["problem/obs"], float)
            if "problem/obs_clean" in resume.state:
                prob.obs_clean = np.asarray(resume.state["problem/obs_clean"], float)
            o.extra["truth_s"] = float(resume.meta.get("truth_s", 0.0))
        elif o.demo:
            twin_truth(prob, o, lay, log)
        try:
            res, free, secs = _fit(prob, o, lay, log, stop, resume)
        except Stopped as e:
            if rank0:
                rd.interrupt(e.tr, e.path.name, e.reason)
                print(f"dtb: {e.reason}: stopped at TR {e.tr} of {prob.obs.shape[0]} after "
                      f"writing {e.path} -- resume with: dtb assimilate --resume {o.out}",
                      file=sys.stderr, flush=True)
            return EXIT_TEMPFAIL
        if not rank0:
            return 0
        metrics = evaluate(prob, res, free, o)
        metrics["timings"] = secs
        manifest = rd.complete(o, prob, res, free, metrics, lay)
    if o.quiet:
        print(o.out)
    else:
        print(summary(manifest, metrics, o.out))
    return 0


def _checkpointer(prob: Problem, o: Options, lay: Layout, members: list[Any],
                  base: np.ndarray, times: dict[str, float], stop: Any, log: Any
                  ) -> Any:
    """The loop's ``boundary`` hook: a checkpoint every ``--checkpoint-every`` (in TRs) and,
    when some rank got a stop signal (``stop.agreed``, a collective at every boundary), one
    more and ``Stopped``.  Every rank writes its members' engine states and the (identical)
    loop state; ``dtb.checkpoint.save`` is a collective on the world communicator."""
    from dtb import checkpoint

    every = checkpoint_trs(o.checkpoint_every, o.tr_s)
    T = prob.obs.shape[0]

    def boundary(t: int, snapshot: Any) -> None:
        signum = stop.agreed(lay.comm) if stop is not None else 0
        if not signum and not (every is not None and 0 < t < T and t % every == 0):
            return
        t0 = time.perf_counter()
        st = snapshot()
        state: dict[str, np.ndarray] = {f"loop/{k}": v for k, v in st.arrays().items()}
        for i, mem in zip(lay.local, members, strict=True):
            for k, v in mem.engine.get_state().items():
                state[f"member{i:05d}/engine/{k}"] = v
        state["problem/obs"] = prob.obs
        state["problem/base"] = base
        if prob.obs_clean is not None:
            state["problem/obs_clean"] = prob.obs_clean
        import signal

        meta = {"tr": t, "trs": T, "tr_s": o.tr_s, "members": o.members,
                "ranks_per_member": lay.ranks_per_member, "loop": st.meta(),
                "truth_s": o.extra.get("truth_s", 0.0), "times": times,
                "signal": signal.Signals(signum).name if signum else None}
        path = checkpoint.save(o.out, t, state, meta, comm=lay.comm)
        if log:
            nbytes = sum(f.stat().st_size for f in path.glob("rank-*.h5"))
            print(f"dtb: checkpoint at TR {t}: {path} ({nbytes / 1e6:.1f} MB, "
                  f"{time.perf_counter() - t0:.2f} s)", file=log, flush=True)
        if signum:
            raise Stopped(t, path, signum)

    return boundary


def _fit(prob: Problem, o: Options, lay: Layout, log: Any, stop: Any = None,
         resume: Resume | None = None) -> tuple[Any, np.ndarray, dict]:
    """The assimilation (first ``n_assim`` TRs analysed, the rest a frozen forecast) and the
    posterior-mean free run; ``(AssimilationResult, bold_free (T_free, M, R), timings)``.
    Checkpoints at TR boundaries (``_checkpointer``); ``resume`` continues from one."""
    from dtb.assimilation.loop import (
        AssimilationConfig,
        EngineMember,
        LoopState,
        assimilate,
        free_run,
    )

    t0 = time.perf_counter()
    members = [EngineMember(_engine(prob.net, o, o.seed + 1 + i, lay)) for i in lay.local]
    t_build = time.perf_counter() - t0
    loop_state = None
    if resume is None:
        base_loc = np.stack([nominal_baseline(m, prob, o) for m in members])
        base = _gather_rows(lay, base_loc)                               # (M, U)
        t_base = time.perf_counter() - t0 - t_build
    else:
        st = resume.state
        for i, mem in zip(lay.local, members, strict=True):
            pre = f"member{i:05d}/engine/"
            mem.engine.set_state({k[len(pre):]: v for k, v in st.items() if k.startswith(pre)})
        base = np.asarray(st["problem/base"], float)
        base_loc = base[lay.local]
        t_base = float(resume.meta.get("times", {}).get("baseline_s", 0.0))
        loop_state = LoopState.from_parts(
            {k[len("loop/"):]: v for k, v in st.items() if k.startswith("loop/")},
            resume.meta["loop"])
    cfg = AssimilationConfig(tr_s=o.tr_s, substeps=o.substeps, obs_var=prob.obs_var,
                             rw_sd=o.rw_sd, inflation=o.inflation, rtps=o.rtps,
                             method=o.method, localize=o.localize, hemo=o.hemo,
                             spinup_s=SETTLE_S, seed=o.seed)
    gather = None
    if lay.comm is not None:
        from dtb.assimilation.loop import member_gather

        gather = member_gather(lay.comm, lay.member_comm)
    boundary = _checkpointer(prob, o, lay, members, base, {"baseline_s": t_base}, stop, log)
    t1 = time.perf_counter()
    res = assimilate(members, prob.obs, prob.obs_index, prob.params, prob.theta0, cfg,
                     assimilated=prob.assimilated, gather=gather, member_ids=lay.local,
                     baseline_hz=base, forecast_from=prob.n_assim, boundary=boundary,
                     resume=loop_state)
    t_assim = time.perf_counter() - t1
    if log:
        tm = res.timings
        print(f"dtb assimilate: {prob.n_assim} TRs assimilated, "
              f"{prob.obs.shape[0] - prob.n_assim} forecast ({t_assim:.1f} s: forecast "
              f"{tm['forecast_s']:.1f} s, analysis {tm['analysis_s']:.3f} s)", file=log,
              flush=True)
    # free run with the posterior mean (the last assimilated TR's ensemble mean)
    n_free = o.free_run_trs or prob.obs.shape[0]
    post = res.theta[prob.n_assim - 1].mean(axis=0)                      # (U, P)
    t2 = time.perf_counter()
    hs = res.hemo_state[:, lay.local]
    free_loc = free_run(members, prob.params, post.T, n_free, o.tr_s, base_loc,
                        prob.obs_index, prob.obs.shape[1], o.hemo, substeps=o.substeps,
                        hemo_state=hs)
    free = np.moveaxis(_gather_rows(lay, np.moveaxis(free_loc, 1, 0)), 0, 1)
    t_free = time.perf_counter() - t2
    if log:
        print(f"dtb assimilate: free run with the posterior mean, {n_free} TRs "
              f"({t_free:.1f} s)", file=log, flush=True)
    secs = {"build_s": t_build, "baseline_s": t_base, "spinup_s": res.timings["spinup_s"],
            "forecast_s": res.timings["forecast_s"], "analysis_s": res.timings["analysis_s"],
            "assimilate_s": t_assim, "free_run_s": t_free,
            "truth_s": o.extra.get("truth_s", 0.0),
            "analysis_fraction_of_forecast": res.timings["analysis_s"]
            / max(res.timings["forecast_s"], 1e-12)}
    return res, free, secs


# --- evaluation ------------------------------------------------------------------------------

def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _multistep(obs: np.ndarray, pred: np.ndarray, train: np.ndarray) -> dict[str, Any]:
    """Scores of a free-running forecast ``pred`` (H, R) of ``obs`` (H, R), next to the
    forecasts that use only the data before the segment (``train``): persistence (the last
    value held), AR(1) iterated from it, and the training mean."""
    from dtb.assimilation.metrics import fit_ar1, overall_correlation, pearson, rmse

    H = obs.shape[0]
    coef = fit_ar1(train)
    last = train[-1]
    ar = np.empty_like(obs)
    x = last
    for h in range(H):
        x = coef[0] + coef[1] * x
        ar[h] = x
    out: dict[str, Any] = {"horizon_trs": int(H)}
    for name, p in (("model", pred), ("persistence", np.broadcast_to(last, obs.shape)),
                    ("ar1", ar), ("train_mean", np.broadcast_to(train.mean(0), obs.shape))):
        r = pearson(p, obs)
        out[name] = {"rmse": rmse(p, obs),
                     "correlation_mean": _f(np.nanmean(r)) if np.isfinite(r).any() else None,
                     "overall_correlation": _f(overall_correlation(p, obs))
                     if np.ptp(p) > 0 else None}
    return out


def _verdict(rep: dict[str, Any], key: str = "correlation") -> dict[str, Any]:
    m = rep["model"]
    out = {}
    for b in ("persistence", "ar1"):
        if key == "correlation":
            mc, bc = m["correlation"]["mean"], rep[b]["correlation"]["mean"]
            out[f"beats_{b}_correlation"] = bool(mc is not None and bc is not None and mc > bc)
        out[f"beats_{b}_rmse"] = bool(m["rmse"] < rep[b]["rmse"])
    return out


def _sc_fc(spec: Any, labels: np.ndarray) -> np.ndarray:
    """The structural connectome between the observed regions (log(1 + w), symmetrised)."""
    pos = {int(v): i for i, v in enumerate(spec.region_labels)}
    idx = np.array([pos.get(int(v), -1) for v in labels])
    ok = idx >= 0
    W = np.full((labels.size, labels.size), np.nan)
    w = np.log1p(np.asarray(spec.weights, float))
    w = 0.5 * (w + w.T)
    W[np.ix_(ok, ok)] = w[np.ix_(idx[ok], idx[ok])]
    return W


def evaluate(prob: Problem, res: Any, free: np.ndarray, o: Options) -> dict[str, Any]:
    """metrics.json: every score next to its baselines, on the same samples (see README)."""
    from dtb.assimilation.metrics import fc, fc_correlation, interval_coverage, tracking_report

    obs, na = prob.obs, prob.n_assim
    used = np.flatnonzero(prob.assimilated)
    held = np.flatnonzero(~prob.assimilated)
    fmean = res.bold_forecast.mean(axis=1)                                  # (T, R)
    m: dict[str, Any] = {"format": "dtb-assimilation-metrics", "version": 1,
                         "tr_s": o.tr_s, "trs": int(obs.shape[0]), "trs_assimilated": na,
                         "members": o.members, "units": int(prob.obs_index.size),
                         "regions": int(obs.shape[1]), "regions_assimilated": int(used.size),
                         "parameters": [p.key for p in prob.params]}
    rep = tracking_report(fmean[:na, used], obs[:na, used])
    rep.update(_verdict(rep))
    rep["note"] = ("one-step-ahead forecast (ensemble mean before each analysis) of the "
                   "assimilated regions over the assimilated TRs; persistence and AR(1) "
                   "score the same rows; the AR(1) is fitted on these rows (in-sample, in "
                   "its favour)")
    m["in_sample"] = rep
    if na < obs.shape[0]:
        seg = _multistep(obs[na:, used], fmean[na:, used], obs[:na, used])
        seg["beats_persistence_rmse"] = seg["model"]["rmse"] < seg["persistence"]["rmse"]
        seg["beats_ar1_rmse"] = seg["model"]["rmse"] < seg["ar1"]["rmse"]
        seg["beats_train_mean_rmse"] = seg["model"]["rmse"] < seg["train_mean"]["rmse"]
        seg["note"] = ("the last TRs, never assimilated: members run freely with their "
                       "parameters frozen; baselines use only the data before the segment")
        m["held_out_segment"] = seg
    else:
        m["held_out_segment"] = None
    if held.size:
        rh = tracking_report(fmean[:na, held], obs[:na, held])
        rh.update(_verdict(rh))
        rh["labels"] = [int(v) for v in prob.labels[held]]
        rh["note"] = ("regions never assimilated (their parameters only random-walk); the "
                      "baselines use those regions' own data, the model does not")
        m["held_out_regions"] = rh
    else:
        m["held_out_regions"] = None
    # FC: the free run with the posterior mean, each member's FC averaged
    fcs = [fc(free[:, i]) for i in range(free.shape[1])]
    fc_free = np.nanmean(np.stack(fcs), axis=0)
    fc_obs = fc(obs)
    W = _sc_fc(prob.spec, prob.labels)
    iu = np.triu_indices(obs.shape[1], 1)
    ok = np.isfinite(W[iu]) & np.isfinite(fc_obs[iu]) & np.isfinite(fc_free[iu])
    m["fc"] = {"free_run_trs": int(free.shape[0]),
               "fc_correlation": _f(fc_correlation(np.where(np.isfinite(fc_free), fc_free, 0),
                                                   fc_obs)),
               "per_member": [_f(fc_correlation(np.nan_to_num(f), fc_obs)) for f in fcs],
               "baseline_structural": _f(np.corrcoef(W[iu][ok], fc_obs[iu][ok])[0, 1])
               if ok.sum() > 2 else None,
               "note": "Pearson correlation of upper triangles; the free run uses the "
                       "posterior mean of every member, FC averaged over members; "
                       "baseline_structural: log(1 + SC weights) vs the observed FC; "
                       "about 0.5 counts as good for neural-mass fits to HCP data"}
    m["filter"] = _health(prob, res)
    if prob.truth is not None:
        m["twin"] = _twin(prob, res, interval_coverage)
    return m


def _health(prob: Problem, res: Any) -> dict[str, Any]:
    na = prob.n_assim
    used = np.flatnonzero(prob.assimilated)
    F = res.bold_forecast[:na][:, :, used]                      # (T, M, R)
    err = F.mean(axis=1) - prob.obs[:na, used]
    spread2 = F.var(axis=1, ddof=1).mean()
    rmse = float(np.sqrt(np.mean(err ** 2)))
    ni = np.array([d["normalized_innovation"] for d in res.diagnostics])
    ps = np.array([d["param_spread_logit"] for d in res.diagnostics])
    skip = min(5, max(na - 3, 0))                 # the first TRs start from rest
    ratio = math.sqrt(spread2 + prob.obs_var) / rmse if rmse > 0 else None
    collapsed = bool(ps[-1] < 0.02)
    diverged = bool(not np.all(np.isfinite(ni)) or np.mean(ni[skip:]) > 25)
    return {"bold_rmse": rmse, "bold_spread": math.sqrt(spread2),
            "obs_sd": math.sqrt(prob.obs_var),
            "spread_error_ratio": ratio,
            "normalized_innovation_mean": _f(np.mean(ni[skip:])),
            "normalized_innovation_per_tr": [_f(v) for v in ni],
            "param_spread_logit_first": _f(ps[0]), "param_spread_logit_last": _f(ps[-1]),
            "param_spread_logit_min": _f(ps.min()), "param_spread_logit_max": _f(ps.max()),
            "collapsed": collapsed, "diverged": diverged,
            "note": "spread_error_ratio = sqrt(forecast spread^2 + obs error variance) / RMSE "
                    "of the ensemble-mean forecast (about 1 when consistent; << 1 "
                    "overconfident); normalized_innovation about 1 when consistent (first "
                    f"{skip} TRs skipped); collapsed: parameter spread < 0.02 on the logit "
                    "scale; diverged: non-finite or mean normalized innovation > 25"}


def _twin(prob: Problem, res: Any, coverage: Any) -> dict[str, Any]:
    na = prob.n_assim
    final = res.theta[na - 1]                                  # (M, U, P)
    post = final.mean(axis=0)
    truth = prob.truth
    prior_mean = prob.theta0.mean(axis=0)
    out: dict[str, Any] = {}
    for k, p in enumerate(prob.params):
        scale = float(prob.center[:, k].mean())
        rel_err = (post[:, k] - truth[:, k]) / truth[:, k]
        rel_prior = (prior_mean[:, k] - truth[:, k]) / truth[:, k]
        sd = final[..., k].std(axis=0, ddof=1)
        out[p.key] = {
            "rmse": float(np.sqrt(np.mean((post[:, k] - truth[:, k]) ** 2))),
            "rmse_prior_mean": float(np.sqrt(np.mean((prior_mean[:, k] - truth[:, k]) ** 2))),
            "rmse_prior_centre": float(np.sqrt(np.mean((prob.center[:, k] - truth[:, k]) ** 2))),
            "relative_rmse": float(np.sqrt(np.mean(rel_err ** 2))),
            "relative_rmse_prior_mean": float(np.sqrt(np.mean(rel_prior ** 2))),
            "mean_abs_relative_error": float(np.mean(np.abs(rel_err))),
            "correlation_with_truth": _f(np.corrcoef(post[:, k], truth[:, k])[0, 1]),
            "coverage_50": coverage(final[..., k], truth[:, k], 0.5),
            "coverage_90": coverage(final[..., k], truth[:, k], 0.9),
            "posterior_sd_mean": float(sd.mean()),
            "spread_error_ratio": float(sd.mean() / max(np.sqrt(np.mean(
                (post[:, k] - truth[:, k]) ** 2)), 1e-300)),
            "nominal_value": scale}
    c = prob.obs_clean
    out["truth_bold_sd"] = float(c.std(axis=0).mean()) if c is not None else None
    out["note"] = ("posterior = ensemble after the last assimilated TR; the truth is drawn "
                   "from the prior; coverage_X: fraction of units whose true value lies in "
                   "the ensemble's central X interval")
    return out


# --- outputs ---------------------------------------------------------------------------------

def _tree_digest(path: Path) -> tuple[str, int, int]:
    import hashlib

    from dtb.rundir import sha256_file

    h = hashlib.sha256()
    n = size = 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        h.update(f"{rel}\0{sha256_file(f)}\n".encode())
        n += 1
        size += f.stat().st_size
    return h.hexdigest(), n, size


def dataset(prob: Problem, res: Any, free: np.ndarray, o: Options) -> Any:
    """The results as an xarray Dataset with the dimensions of ``DIMENSIONS``."""
    import xarray as xr

    T = prob.obs.shape[0]
    na = prob.n_assim
    v: dict[str, Any] = {}

    def put(name: str, x: Any, units: str, what: str) -> None:
        v[name] = xr.Variable(DIMENSIONS[name], np.asarray(x), {"units": units,
                                                                "description": what})

    put("theta", res.theta, "parameter units", "analysed parameters after each TR (frozen "
        "after the assimilated TRs)")
    put("theta_forecast", res.theta_prior, "parameter units",
        "parameters before each analysis (after the random walk)")
    put("prior", prob.theta0, "parameter units", "initial draws")
    put("posterior_mean", res.theta[na - 1].mean(axis=0), "parameter units",
        "ensemble mean after the last assimilated TR")
    put("posterior_sd", res.theta[na - 1].std(axis=0, ddof=1), "parameter units",
        "ensemble SD (ddof 1) after the last assimilated TR")
    put("bold_observed", prob.obs, "fractional signal change", "observations used")
    put("bold_forecast", res.bold_forecast, "fractional signal change",
        "predicted BOLD before each analysis: one step ahead while assimilating, "
        "free-running after")
    put("bold_analysis", res.bold_analysis, "fractional signal change", "after each analysis")
    put("rates", res.rates, "Hz", "mean population rate of each unit over the TR")
    put("bold_free", free, "fractional signal change",
        "free run with the posterior-mean parameters (FC)")
    innov = np.full(T, np.nan)
    innov[:len(res.diagnostics)] = [d["normalized_innovation"] for d in res.diagnostics]
    put("innovation", prob.obs - res.bold_forecast.mean(axis=1), "fractional signal change",
        "observation minus ensemble-mean forecast")
    put("normalized_innovation", innov, "1", "chi-square per observation (NaN: not analysed)")
    put("baseline_hz", res.baseline_hz, "Hz", "each member's rates at nominal parameters "
        "(zero neural drive)")
    if prob.truth is not None:
        put("truth", prob.truth, "parameter units", "the twin experiment's true parameters")
    coords = {
        "tr": xr.Variable("tr", np.arange(T)),
        "time_s": xr.Variable("tr", (np.arange(T) + 1) * o.tr_s, {"units": "s"}),
        "assimilated_tr": xr.Variable("tr", np.arange(T) < na),
        "member": xr.Variable("member", np.arange(o.members)),
        "unit": xr.Variable("unit", np.arange(prob.obs_index.size)),
        "unit_label": xr.Variable("unit", np.asarray(prob.spec.unit_labels, np.int64)),
        "parameter": xr.Variable("parameter", np.array([p.key for p in prob.params], object)),
        "low": xr.Variable("parameter", np.array([p.low for p in prob.params])),
        "high": xr.Variable("parameter", np.array([p.high for p in prob.params])),
        "region": xr.Variable("region", np.asarray(prob.labels, np.int64)),
        "assimilated_region": xr.Variable("region", prob.assimilated.copy()),
        "tr_free": xr.Variable("tr_free", np.arange(free.shape[0])),
    }
    return xr.Dataset(v, coords, attrs={"format": "dtb-assimilation", "tr_s": o.tr_s,
                                         "time_units": "s", "method": o.method,
                                         "trs_assimilated": na})


def _figures(prob: Problem, res: Any, free: np.ndarray, fig_dir: Path, o: Options) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dtb.assimilation.metrics import fc

    fig_dir.mkdir(parents=True, exist_ok=True)
    T, R = prob.obs.shape
    t = (np.arange(T) + 1) * o.tr_s
    na = prob.n_assim
    names = []
    # parameters: ensemble mean +- sd for a few units (truth dashed in a twin experiment)
    U = prob.obs_index.size
    show = np.unique(np.linspace(0, U - 1, min(6, U)).astype(int))
    fig, axes = plt.subplots(len(prob.params), 1, figsize=(9, 3.2 * len(prob.params)),
                             squeeze=False)
    for k, p in enumerate(prob.params):
        ax = axes[k, 0]
        for j, uu in enumerate(show):
            mu = res.theta[:, :, uu, k].mean(axis=1)
            sd = res.theta[:, :, uu, k].std(axis=1, ddof=1)
            ax.plot(t, mu, color=f"C{j}", lw=1.2, label=f"unit {uu}")
            ax.fill_between(t, mu - sd, mu + sd, color=f"C{j}", alpha=0.2, lw=0)
            if prob.truth is not None:
                ax.axhline(prob.truth[uu, k], color=f"C{j}", ls="--", lw=0.8)
        if na < T:
            ax.axvspan(t[na - 1], t[-1], color="0.9", zorder=-1)
        ax.set_ylabel(p.key)
        ax.set_xlabel("time (s)")
        ax.legend(ncol=6, fontsize=7)
    axes[0, 0].set_title("Hyperparameters: ensemble mean ± SD"
                         + (" (dashed: truth)" if prob.truth is not None else "")
                         + (" ; grey: frozen, not assimilated" if na < T else ""))
    fig.tight_layout()
    fig.savefig(fig_dir / "parameters.png", dpi=90)
    plt.close(fig)
    names.append("parameters.png")
    # observed vs predicted BOLD, a few regions
    regs = np.unique(np.linspace(0, R - 1, min(4, R)).astype(int))
    fig, axes = plt.subplots(len(regs), 1, figsize=(9, 2.2 * len(regs)), sharex=True,
                             squeeze=False)
    for j, r in enumerate(regs):
        ax = axes[j, 0]
        mu = res.bold_forecast[:, :, r].mean(axis=1) * 100
        sd = res.bold_forecast[:, :, r].std(axis=1, ddof=1) * 100
        ax.plot(t, prob.obs[:, r] * 100, "k.-", lw=0.8, ms=3, label="observed")
        ax.plot(t, mu, color="C3", lw=1.2, label="forecast (ensemble mean)")
        ax.fill_between(t, mu - sd, mu + sd, color="C3", alpha=0.2, lw=0)
        if na < T:
            ax.axvspan(t[na - 1], t[-1], color="0.9", zorder=-1)
        held = "" if prob.assimilated[r] else " (held out)"
        ax.set_ylabel(f"region {int(prob.labels[r])}{held}\n% signal", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title("BOLD: observed and one-step forecast (grey: free-running forecast, "
                         "not assimilated)")
    fig.tight_layout()
    fig.savefig(fig_dir / "bold.png", dpi=90)
    plt.close(fig)
    names.append("bold.png")
    # FC
    fo = fc(prob.obs)
    ff = np.nanmean(np.stack([fc(free[:, i]) for i in range(free.shape[1])]), axis=0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, mat, title in ((axes[0], fo, "observed"), (axes[1], ff, "free run, posterior mean")):
        img = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(f"FC, {title}")
        ax.set_xlabel("region")
    axes[0].set_ylabel("region")
    fig.colorbar(img, ax=axes, label="Pearson r", shrink=0.8)
    fig.savefig(fig_dir / "fc.png", dpi=90)
    plt.close(fig)
    names.append("fc.png")
    return names


def _write_csv(path: Path, labels: np.ndarray, data: np.ndarray) -> tuple[str, int]:
    from dtb.rundir import write_atomic

    buf = io.StringIO()
    buf.write(",".join(str(int(v)) for v in labels) + "\n")
    np.savetxt(buf, data, delimiter=",", fmt="%.10g")
    return write_atomic(path, buf.getvalue().encode(), "observed BOLD")


class AssimilationRun:
    """The run directory of ``dtb assimilate`` (``dtb.rundir.RunDirectory`` checks and
    clears it): manifest ``running`` first, outputs through temporary names, manifest
    ``complete`` last; on an exception the outputs are removed and the manifest says
    ``failed``."""

    def __init__(self, path: Path, overwrite: bool):
        from dtb.rundir import RunDirectory

        self.rd: Any = RunDirectory(path, overwrite=overwrite)
        self.path = Path(path)
        self.manifest: dict[str, Any] = {}

    @classmethod
    def reopen(cls, path: Path) -> AssimilationRun:
        """The run directory of an interrupted run (``--resume``), manifest read back and
        nothing removed (``_read_resume_manifest`` checked it)."""
        self = cls.__new__(cls)
        self.rd = None
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text())
        self.started = True
        return self

    def restart(self, tr: int, checkpoint: str, threads: int | None) -> None:
        """Mark a reopened run ``"running"`` again, appending the restart (time, TR and
        checkpoint directory name) to ``restarts``."""
        from dtb.rundir import utc_now

        m = self.manifest
        m.update(status="running", error=None, end_time=None)
        if threads is not None:
            m["threads"] = threads
        m.pop("interrupted", None)
        m.setdefault("restarts", []).append({"time": utc_now(), "tr": int(tr),
                                             "checkpoint": checkpoint})
        self._write()

    def interrupt(self, tr: int, checkpoint: str, reason: str) -> None:
        """Mark the run ``"interrupted"``: resumable from ``checkpoint`` (a directory name
        under ``checkpoints/``) at TR ``tr``; ``reason`` the signal's name."""
        from dtb.rundir import utc_now

        self.manifest["status"] = "interrupted"
        self.manifest["end_time"] = utc_now()
        self.manifest["interrupted"] = {"time": utc_now(), "tr": int(tr),
                                        "checkpoint": checkpoint, "reason": reason}
        self._write()

    def _write(self) -> None:
        from dtb.rundir import _jsonable, write_atomic

        text = json.dumps(_jsonable(self.manifest), indent=2, allow_nan=False) + "\n"
        write_atomic(self.path / "manifest.json", text.encode(), "manifest")

    def begin(self, o: Options, prob: Problem, lay: Layout) -> None:
        import platform
        import socket

        import numba

        from dtb.rundir import utc_now, versions

        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(o).items()
                if k not in ("extra", "out", "overwrite", "quiet")}
        self.manifest = {
            "format": MANIFEST_FORMAT, "format_version": 1, "status": "running",
            "error": None, "dtb_version": versions()["dtb"], "versions": versions(),
            "command": list(o.extra.get("command") or ["dtb", *sys.argv[1:]]),
            "cwd": os.getcwd(), "hostname": socket.gethostname(),
            "platform": platform.platform(), "source": prob.source, "options": opts,
            "seed": o.seed, "ranks": lay.ranks,
            "layout": {"members": o.members, "ranks_per_member": lay.ranks_per_member,
                       "member_communicators": lay.groups,
                       "members_per_communicator": o.members // lay.groups},
            "threads": o.threads or numba.get_num_threads(),
            "neurons_per_member": prob.net.n_neurons, "units": int(prob.obs_index.size),
            "start_time": utc_now(), "end_time": None, "timings": None, "outputs": {}}
        if o.demo:
            from dtb.rundir import sha256_file

            brain = self.path / "brain.h5"
            prob.spec.save(brain)
            self.manifest["source"]["brain"] = str(brain.resolve())
            self.manifest["source"]["brain_sha256"] = sha256_file(brain)
        self._write()
        self.started = True

    def complete(self, o: Options, prob: Problem, res: Any, free: np.ndarray,
                 metrics: dict[str, Any], lay: Layout) -> dict[str, Any]:
        from dtb.rundir import _TMP_PREFIX, _jsonable, utc_now, write_atomic

        outputs: dict[str, Any] = {}
        ds = dataset(prob, res, free, o)
        tmp = self.path / f"{_TMP_PREFIX}{os.getpid()}-{STORE}"
        shutil.rmtree(tmp, ignore_errors=True)
        ds.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=False)
        os.replace(tmp, self.path / STORE)
        digest, n, size = _tree_digest(self.path / STORE)
        outputs[STORE] = {"path": STORE, "format": "zarr-v3", "sha256_tree": digest,
                          "files": n, "bytes": size,
                          "variables": {k: list(DIMENSIONS[k]) for k in ds.data_vars}}
        text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
        d, s = write_atomic(self.path / METRICS, text.encode(), "metrics")
        outputs[METRICS] = {"path": METRICS, "sha256": d, "bytes": s}
        if o.demo:
            d, s = _write_csv(self.path / OBSERVED_CSV, prob.labels, prob.obs)
            outputs[OBSERVED_CSV] = {"path": OBSERVED_CSV, "sha256": d, "bytes": s,
                                     "tr_s": o.tr_s}
        tmpf = self.path / f"{_TMP_PREFIX}{os.getpid()}-{FIGURES}"
        shutil.rmtree(tmpf, ignore_errors=True)
        names = _figures(prob, res, free, tmpf, o)
        os.replace(tmpf, self.path / FIGURES)
        from dtb.rundir import sha256_file

        outputs[FIGURES] = {n: {"path": f"{FIGURES}/{n}",
                                "sha256": sha256_file(self.path / FIGURES / n)} for n in names}
        m = self.manifest
        m["outputs"] = outputs
        m["timings"] = metrics["timings"]
        m["summary"] = summary_numbers(metrics)
        m["status"] = "complete"
        m["end_time"] = utc_now()
        self._write()
        if self.rd is not None:
            self.rd._finished = True
        from dtb.checkpoint import CHECKPOINTS

        shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)  # complete: not needed
        return m

    def fail(self, exc: BaseException) -> None:
        from dtb.rundir import _TMP_PREFIX, utc_now

        for q in self.path.glob(f"{_TMP_PREFIX}*"):
            if q.is_dir():
                shutil.rmtree(q, ignore_errors=True)
            else:
                q.unlink(missing_ok=True)
        for name in OUTPUTS:
            q = self.path / name
            if q.is_dir():
                shutil.rmtree(q, ignore_errors=True)
            elif q.exists():
                q.unlink()
        if not getattr(self, "started", False):
            return
        self.manifest["status"] = "failed"
        self.manifest["error"] = (f"{type(exc).__name__}: {exc}" if str(exc)
                                  else type(exc).__name__)
        self.manifest["end_time"] = utc_now()
        with contextlib.suppress(OutputError):
            self._write()

    def __enter__(self) -> AssimilationRun:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self.manifest.get("status") != "complete":
            self.fail(exc)


def summary_numbers(m: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of metrics.json (for the manifest and the printed summary)."""
    ins = m["in_sample"]
    out = {"in_sample_correlation": {k: ins[k]["correlation"]["mean"]
                                     for k in ("model", "persistence", "ar1")},
           "fc_correlation": m["fc"]["fc_correlation"],
           "spread_error_ratio": m["filter"]["spread_error_ratio"],
           "normalized_innovation": m["filter"]["normalized_innovation_mean"]}
    seg = m.get("held_out_segment")
    if seg:
        out["held_out_segment_rmse"] = {k: seg[k]["rmse"] for k in
                                        ("model", "persistence", "ar1", "train_mean")}
    if "twin" in m:
        out["twin"] = {k: {"relative_rmse": v["relative_rmse"],
                           "relative_rmse_prior_mean": v["relative_rmse_prior_mean"],
                           "coverage_90": v["coverage_90"]}
                       for k, v in m["twin"].items() if isinstance(v, dict)}
    return out


def summary(manifest: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: the scores next to their baselines."""
    def g(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    ins = m["in_sample"]
    lines = [f"dtb assimilate: {out} (complete)",
             f"  in-sample one-step correlation: model {g(ins['model']['correlation']['mean'])}"
             f", persistence {g(ins['persistence']['correlation']['mean'])}, AR(1) "
             f"{g(ins['ar1']['correlation']['mean'])}"]
    seg = m.get("held_out_segment")
    if seg:
        lines.append(f"  held-out last {seg['horizon_trs']} TRs, RMSE: model "
                     f"{seg['model']['rmse']:.3g}, persistence {seg['persistence']['rmse']:.3g}"
                     f", AR(1) {seg['ar1']['rmse']:.3g}, training mean "
                     f"{seg['train_mean']['rmse']:.3g}")
    f = m["fc"]
    lines.append(f"  FC correlation (free run, posterior mean): {g(f['fc_correlation'])} "
                 f"(structural connectome: {g(f['baseline_structural'])})")
    h = m["filter"]
    lines.append(f"  filter: spread/error {g(h['spread_error_ratio'])}, normalized innovation "
                 f"{g(h['normalized_innovation_mean'])}, parameter spread (logit) "
                 f"{g(h['param_spread_logit_first'])} -> {g(h['param_spread_logit_last'])}")
    for k, v in m.get("twin", {}).items():
        if isinstance(v, dict):
            lines.append(f"  twin {k}: relative RMSE {v['relative_rmse']:.3f} (prior mean "
                         f"{v['relative_rmse_prior_mean']:.3f}), 90 % coverage "
                         f"{v['coverage_90']:.2f}, correlation with truth "
                         f"{g(v['correlation_with_truth'])}")
    lines.append(f"  {out / METRICS}, {out / STORE}, {out / FIGURES}/")
    return "\n".join(lines)


# --- stand-alone entry point (until dtb.cli registers the command) ----------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dtb.assimilation.cli ARGS``: as ``dtb assimilate ARGS``, with dtb's error
    handling (``dtb: error: ...``; exit 2 for bad values and inputs, 1 otherwise)."""
    p = argparse.ArgumentParser(prog="dtb")
    sub = p.add_subparsers(dest="command", required=True)
    add_assimilate_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "assimilate":
        argv = ["assimilate", *argv]
    a = p.parse_args(argv)
    a.command_line = ["dtb", *argv]
    from dtb.cli import EXIT_ERROR, EXIT_USAGE, _mpi_abort, _report_failed_run

    try:
        return run_assimilate(a)
    except (ConfigError, InputError) as e:
        _mpi_abort(e, EXIT_USAGE)
        print(f"dtb: error: {e}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_USAGE
    except (DtbError, ValueError, OSError) as e:
        _mpi_abort(e, EXIT_ERROR)
        print(f"dtb: error: {e}", file=sys.stderr)
        _report_failed_run(a)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
