"""Fitting a brain to summary statistics of BOLD (FC, FCD, regional variance) by ES-MDA.

The inversion mode of the twin (``inversion.py`` holds the method): parameters that the data
can identify, a forward map from them to statistics of a simulated BOLD series, and the
noise of that map.

Parameters (``FitParameter``), each a bounded number ``x`` estimated on the logit scale:

- ``coupling``: the global long-range coupling ``G``, a factor on the weight of every
  ``long_range`` rule of the brain (every whole-brain model's first parameter: functional
  connectivity depends on it most).  It changes synapse weights, so each forward run builds
  its own network (members have their own realisations anyway);
- ``"coupling.<family>"``: a further factor on the long-range weights onto one family
  (``"coupling.I"``: how much of the long-range drive reaches inhibitory cells; the regime
  study found the builder's equal drive onto E and I cells cancels inter-regional
  correlation by feed-forward inhibition);
- ``"sc_exponent"``: a, each unit's long-range in-degree times (SC in-strength / mean)^a;
- ``"homotopic"``: h, h x the SC's largest weight added between the left and right parts of
  each region (``dtb.brain.recipe``: tractography misses most interhemispheric fibres);
- ``"regional_coupling"`` (``mode="shift"`` along a map): b, each unit's long-range
  in-degree times exp(b x map_u), normalised to keep the total (``dtb.brain.recipe``): a
  regional gain on long-range input along a spatial map; several maps add in the exponent;
- ``"<family>.<hyperparameter>"`` (``"E.I_e"``, ``"E.g_AMPA"``): a per-unit hyperparameter of
  the brain, either scaled everywhere (``mode="scale"``: ``value_u = x * nominal_u``) or
  shifted along a spatial map (``mode="shift"``: ``value_u = nominal_u + x * map_u``; map
  (U,) per unit, e.g. z-scored SC strength or a gradient; the default map of ones is a
  uniform shift).  A few map coefficients instead of one number per region keep 80-200
  regions from meaning 80-200 free parameters (pMFM's approach).  Several parameters may
  act on one hyperparameter (``E.I_e`` along two maps): ``value_u = nominal_u * (product
  of its scales) + sum of x_k * map_k,u``; records then call each ``NAME:MAP``
  (``parameter_keys``).

Forward map (``simulate_bold``): build the brain with ``G``, set the hyperparameters, drop
the network's start, run ``spinup_s`` of hemodynamic warm-up and ``n_tr`` TRs; each unit's
population rate (relative to its mean over the run) drives a Balloon–Windkessel model
(``hemodynamics``) and the region BOLD is the mean over its units.  Statistics
(``StatisticsConfig``): the Fisher-z FC upper triangle, optionally quantiles of the FCD
distribution and log regional variances.  ``observable="rates"`` fits the same statistics of
the region rates per TR instead of BOLD (the neural FC, with far more independent samples
per second: what a short twin experiment, or a test, can afford).

With thousands of FC statistics and a handful of members the ensemble collapses (the gain
reads sampling noise as information; ``benchmarks/fit_reduction.py``):
``StatisticsConfig(fc_components=k)`` fits the FC triangle's projection on the k leading
principal axes of the prior ensemble's FC (``FcBasis``, found after the first forward
runs; dtb.assimilation.fit_statistics).  The ES-MDA loop over this forward map is
dtb.assimilation.fit_esmda (``Fitter``, one step at a time with a checkpointable state, as
``dtb fit`` runs it; ``fit`` all at once).

Units: ms inside the engine (``dt_ms``), seconds for TRs, spin-up and BOLD time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtb.assimilation.fit_statistics import (  # noqa: F401 - part of this module's API
    BlockBasis,
    FcBasis,
    StatisticsConfig,
    bases,
    fc_basis,
    n_fc,
    statistics,
)
from dtb.assimilation.loop import EngineMember, expit, logit, region_means
from dtb.brain.recipe import scale_long_range
from dtb.engine.simulation import Engine
from dtb.errors import ConfigError
from dtb.model.hemodynamics import Hemodynamics, drive_from_rate

__all__ = ["COUPLING", "SC_EXPONENT", "HOMOTOPIC", "REGIONAL_COUPLING", "FitParameter",
           "parameter_keys",
           "ForwardConfig", "hyper_values",
           "StatisticsConfig", "fitted_spec",
           "BlockBasis", "FcBasis", "bases", "fc_basis", "n_fc", "with_coupling",
           "simulate_bold", "bold_from_rates",
           "statistics", "member_seed", "Forward"]

COUPLING = "coupling"
SC_EXPONENT = "sc_exponent"
HOMOTOPIC = "homotopic"
REGIONAL_COUPLING = "regional_coupling"
GLOBAL = (COUPLING, SC_EXPONENT, HOMOTOPIC)  # the long-range recipe's global numbers
_LONG_RANGE = (*GLOBAL, REGIONAL_COUPLING)     # and with the regional gain
NETWORK_TRANSIENT_MS = 300.0   # ms of the network's start dropped before rates count


@dataclass(frozen=True)
class FitParameter:
    """One estimated number in ``(low, high)``: ``name`` = ``"coupling"`` or
    ``"<family>.<hyperparameter>"``; ``mode`` ``"scale"`` or ``"shift"`` (see the module
    docstring); ``map`` (U,) per unit for a shift (None: ones); ``map_name`` the map's
    name where it came from a map table or is built in (dtb.brain.maps; resolved into
    ``map`` once the brain is known)."""

    name: str
    low: float
    high: float
    mode: str = "scale"
    map: np.ndarray | None = field(default=None, compare=False)
    map_name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        bad = []
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            bad.append(f"{self.name}: bounds ({self.low}, {self.high}) -- expected finite "
                       "low < high")
        if self.name not in _LONG_RANGE and self.name.count(".") != 1:
            bad.append(f"{self.name}: name -- expected 'coupling', 'coupling.FAMILY', "
                       "'sc_exponent', 'homotopic', 'regional_coupling' or "
                       "FAMILY.PARAMETER (E.I_e, E.g_AMPA)")
        if self.mode not in ("scale", "shift"):
            bad.append(f"{self.name}: mode {self.mode!r} -- expected 'scale' or 'shift'")
        if self.name == REGIONAL_COUPLING:
            if self.mode != "shift" or (self.map is None and self.map_name is None):
                bad.append(f"{self.name}: mode {self.mode!r}, map {self.map_name!r} -- "
                           "expected mode 'shift' along a map (regional_coupling=LOW:HIGH"
                           "/shift:MAP)")
        elif self.structural and (self.mode != "scale" or self.map is not None):
            bad.append(f"{self.name}: mode {self.mode!r} -- a global number, no map")
        if self.mode == "scale" and (self.map is not None or self.map_name is not None):
            bad.append(f"{self.name}: a map with mode 'scale' -- maps shift (mode 'shift')")
        if bad:
            raise ConfigError(bad, "fit parameters")

    @property
    def structural(self) -> bool:
        """A parameter of the long-range projections (coupling, coupling.FAMILY,
        sc_exponent, homotopic, regional_coupling): each forward run builds its network
        with it."""
        return self.name in _LONG_RANGE or self.name.startswith(COUPLING + ".")

    def to_unbounded(self, x: Any) -> np.ndarray:
        return logit((np.asarray(x, float) - self.low) / (self.high - self.low))

    def from_unbounded(self, u: Any) -> np.ndarray:
        return self.low + (self.high - self.low) * expit(u)

    def unit_values(self, x: float, nominal: np.ndarray) -> np.ndarray:
        """The per-unit values (U,) this parameter gives at ``x``."""
        if self.mode == "scale":
            return x * nominal
        m = np.ones_like(nominal) if self.map is None else np.asarray(self.map, float)
        if m.shape != nominal.shape:
            raise ConfigError([f"{self.name}: map of shape {m.shape} -- expected "
                               f"{nominal.shape} (one value per unit)"], "fit parameters")
        return nominal + x * m


def parameter_keys(params: Sequence[FitParameter]) -> list[str]:
    """What each parameter is called in records (``--truth``, ``posterior_mean``, fit.h5,
    figures): its name, or ``NAME:MAP`` where several parameters act on one hyperparameter
    (``E.I_e:sc_strength``, ``E.I_e:grad``; ``NAME:scale`` / ``NAME:shift`` for one without
    a map).  Two parameters with one key would be one number twice: callers refuse them."""
    names = [p.name for p in params]
    return [p.name if names.count(p.name) == 1 else f"{p.name}:{p.map_name or p.mode}"
            for p in params]


@dataclass(frozen=True)
class ForwardConfig:
    """One forward run: ``n_tr`` TRs of ``tr_s`` seconds after ``spinup_s`` seconds, at
    ``dt_ms``; ``substeps`` rate samples per TR drive the hemodynamics; ``threads`` numba
    threads per run.  ``network_seed``: None, each run's seed draws its own network
    realisation and noise; an integer, every run builds this one network realisation (its
    synapses and drawn parameters) and its seed draws the noise alone: a twin that is one
    network, not a population of them."""

    tr_s: float
    n_tr: int
    dt_ms: float = 0.5
    spinup_s: float = 10.0
    substeps: int = 4
    hemo: str = "friston2000"
    flow_gain: float = 0.4
    threads: int = 1
    observable: str = "bold"
    network_seed: int | None = None

    def __post_init__(self) -> None:
        bad = []
        if self.network_seed is not None and not (
                isinstance(self.network_seed, int | np.integer)
                and 0 <= self.network_seed < 2**32):
            bad.append(f"network_seed: {self.network_seed!r} -- expected an integer in "
                       "[0, 2**32) or None")
        steps = self.tr_s * 1e3 / self.substeps / self.dt_ms
        if not (self.tr_s > 0 and self.dt_ms > 0 and self.substeps >= 1
                and abs(steps - round(steps)) < 1e-9 and round(steps) >= 1):
            bad.append(f"tr_s: {self.tr_s} -- expected a TR of whole steps of "
                       f"{self.dt_ms} ms per substep ({self.substeps} substeps)")
        if not (isinstance(self.n_tr, int | np.integer) and self.n_tr >= 3):
            bad.append(f"n_tr: {self.n_tr!r} -- expected at least 3 TRs")
        if self.observable not in ("bold", "rates"):
            bad.append(f"observable: {self.observable!r} -- expected 'bold' or 'rates'")
        if not self.spinup_s >= 0:
            bad.append(f"spinup_s: {self.spinup_s} -- expected seconds >= 0 of hemodynamic "
                       "warm-up")
        if bad:
            raise ConfigError(bad, "forward run")


#: the seeds' iteration index of the repeated runs at the prior centre behind Gamma
NOISE_ITERATION = 1_000_000
#: what the noise runs behind Gamma vary (``Forward.model_error``)
MODEL_ERRORS = ("none", "networks")


def with_coupling(spec: Any, G: float, targets: dict[str, float] | None = None,
                  sc_exponent: float = 0.0, homotopic: float = 0.0,
                  unit_log_gain: np.ndarray | None = None) -> Any:
    """A copy of the BrainSpec ``spec`` with its long-range projections changed: weights
    times ``G`` (and ``targets[family]`` onto that family), ``homotopic`` x the largest SC
    weight added between homotopic regions, in-degrees times (SC strength /
    mean)^``sc_exponent`` and times exp(``unit_log_gain``) (U,), normalised
    (``dtb.brain.recipe.scale_long_range``)."""
    return scale_long_range(spec, G, targets, sc_exponent, where="fit", homotopic=homotopic,
                            unit_log_gain=unit_log_gain)


def member_seed(seed: int, iteration: int, member: int) -> int:
    """A distinct, reproducible engine seed per (fit seed, iteration, member): every
    forward run gets a fresh network realisation and noise."""
    return int(np.random.SeedSequence([seed, iteration, member]).generate_state(1)[0])


def _nominal(spec: Any, name: str) -> np.ndarray:
    fam, par = name.split(".")
    for f in spec.families:
        if f.name == fam:
            if par not in f.hyper:
                raise ConfigError([f"{name}: no hyperparameter {par!r} in family {fam!r} -- "
                                   f"expected one of {sorted(f.hyper)}"], "fit parameters")
            return np.asarray(f.hyper[par], float)
    raise ConfigError([f"{name}: no family {fam!r} -- expected one of "
                       f"{[f.name for f in spec.families]}"], "fit parameters")


def _split(spec: Any, params: Sequence[FitParameter], x: np.ndarray
           ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parameter values ``x`` (P,) as the recipe takes them: (``with_coupling``'s keyword
    arguments G, targets, sc_exponent, homotopic, unit_log_gain; per-unit values (U,) of
    each FAMILY.hyper parameter)."""
    recipe: dict[str, Any] = {"G": 1.0, "targets": {}, "sc_exponent": 0.0, "homotopic": 0.0,
                              "unit_log_gain": None}
    per_hyper: dict[str, list[tuple[FitParameter, float]]] = {}
    for p, v in zip(params, np.asarray(x, float), strict=True):
        if p.name == REGIONAL_COUPLING:
            if p.map is None:
                raise ConfigError([f"{p.name}: map {p.map_name!r} not resolved -- expected "
                                   "its per-unit values (fit_inputs.with_maps)"],
                                  "fit parameters")
            lg = float(v) * np.asarray(p.map, float)
            recipe["unit_log_gain"] = (lg if recipe["unit_log_gain"] is None
                                       else recipe["unit_log_gain"] + lg)
        elif p.name == COUPLING:
            recipe["G"] = float(v)
        elif p.name.startswith(COUPLING + "."):
            recipe["targets"][p.name.split(".", 1)[1]] = float(v)
        elif p.name in GLOBAL:
            recipe[p.name] = float(v)
        else:
            per_hyper.setdefault(p.name, []).append((p, float(v)))
    unit_values: dict[str, np.ndarray] = {}
    for name, group in per_hyper.items():
        value = _nominal(spec, name)
        for p, v in sorted(group, key=lambda pv: pv[0].mode != "scale"):   # scales first
            value = p.unit_values(v, value)
        unit_values[name] = value
    return recipe, unit_values


def hyper_values(spec: Any, params: Sequence[FitParameter], x: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """The per-unit values (U,) of every fitted FAMILY.hyper parameter of the BrainSpec
    ``spec`` at parameter values ``x`` (P,), as a forward run sets them."""
    return _split(spec, params, x)[1]


def fitted_spec(spec: Any, params: Sequence[FitParameter], x: np.ndarray,
                note: dict[str, Any] | None = None) -> Any:
    """A copy of the BrainSpec ``spec`` at parameter values ``x`` (P,): its long-range
    rules rescaled (``with_coupling``) and each fitted FAMILY.hyper parameter replaced by
    its per-unit values; ``spec`` is left as it is.  The brain a fit hands on: simulated or
    tracked (``dtb simulate/assimilate --brain``) it is the brain ``simulate_bold`` ran at
    ``x``.  ``note`` is appended to the provenance."""
    recipe, unit_values = _split(spec, params, x)
    out = with_coupling(spec, **recipe)
    fams = []
    for f in spec.families:
        hyper = dict(f.hyper)
        for name, v in unit_values.items():
            fam, par = name.split(".")
            if fam == f.name:
                hyper[par] = np.asarray(v, float).copy()
        fams.append(dataclasses.replace(f, hyper=hyper))
    out.families = fams
    out.provenance = [*spec.provenance,
                      {"step": "fit", **(note or {}),
                       "parameters": {k: float(v) for k, v in
                                      zip(parameter_keys(params), np.asarray(x, float),
                                          strict=True)}}]
    return out


def simulate_bold(spec: Any, params: Sequence[FitParameter], x: np.ndarray, seed: int,
                  cfg: ForwardConfig, comm: Any = None) -> np.ndarray:
    """BOLD per region (n_tr, R) (fractional signal change; regions in the order of
    ``spec.region_labels``) of the brain ``spec`` at parameter values ``x`` (P,); with
    ``cfg.observable == "rates"`` the region rates (Hz) per TR instead.  ``seed`` draws the
    network realisation and the noise, or the noise alone where ``cfg.network_seed`` is
    set.  ``comm``: the
    member communicator the engine is distributed over (None: this process alone); every
    rank of it returns the same series."""

    recipe, unit_values = _split(spec, params, x)
    net = with_coupling(spec, **recipe).to_network()
    net_seed, noise_seed = ((seed, None) if cfg.network_seed is None
                            else (int(cfg.network_seed), seed))
    eng = Engine(net, dt=cfg.dt_ms, seed=net_seed, noise_seed=noise_seed, threads=cfg.threads,
                 comm=comm)
    eng.keep_spikes = False
    mem = EngineMember(eng)
    for name, v in unit_values.items():
        fam, par = name.split(".")
        eng.set_unit_param(fam, par, v)
    piece_ms = cfg.tr_s * 1e3 / cfg.substeps
    mem.run_rates(NETWORK_TRANSIENT_MS)                 # the start from uniform V: dropped
    n_warm = int(round(cfg.spinup_s * 1e3 / piece_ms))
    rates = np.stack([mem.run_rates(piece_ms)
                      for _ in range(n_warm + cfg.n_tr * cfg.substeps)])   # (pieces, U) Hz
    if cfg.observable == "rates":
        rec = rates[n_warm:].reshape(cfg.n_tr, cfg.substeps, -1).mean(axis=1)   # (T, U)
        return region_means(rec, np.asarray(spec.unit_region, np.int64),
                            len(spec.region_labels))
    return bold_from_rates(rates, n_warm, spec.unit_region, len(spec.region_labels), cfg)


def bold_from_rates(rates: np.ndarray, n_warm: int, unit_region: np.ndarray, n_regions: int,
                    cfg: ForwardConfig) -> np.ndarray:
    """Region BOLD (n_tr, R) from unit rates ``rates`` (pieces, U) in Hz, one row per
    ``tr_s / substeps`` seconds: the first ``n_warm`` rows warm the hemodynamics up and are
    not returned.  The baseline of the drive is each unit's mean rate over all rows, so the
    BOLD fluctuates around rest instead of answering the start (what a recording of a
    resting brain sees), and the warm-up lets the hemodynamic state forget its initial
    condition (``dtb.cli.report.bold_transient_ms``: 5.1 s to 5 % for friston2000)."""
    base = np.maximum(rates.mean(axis=0), 1e-3)
    h = Hemodynamics((1, rates.shape[1]), cfg.hemo)
    obs_index = np.asarray(unit_region, np.int64)
    out = np.empty((cfg.n_tr, n_regions))
    dt_s = cfg.tr_s / cfg.substeps
    for i in range(rates.shape[0]):
        h.step(drive_from_rate(rates[i][None], base[None], cfg.flow_gain, cfg.hemo), dt_s)
        k = i - n_warm + 1
        if k > 0 and k % cfg.substeps == 0:
            out[k // cfg.substeps - 1] = region_means(h.bold(), obs_index, n_regions)[0]
    return out


@dataclass
class Forward:
    """The forward map of an inversion: ``Forward(...)(U, iteration)`` runs one brain per row
    of ``U`` (N, P) on the unbounded scale and returns their statistics (N, m).

    ``run_map(fn, items)``: how the runs are distributed (the builtin ``map`` by default;
    a process pool passes its own, MPI member communicators ``fit_members.MemberMap``,
    which calls ``fn(item, comm=member_comm)``).  ``bolds`` keeps the last
    iteration's BOLD series (N, n_tr, R) for scoring.

    ``model_error="networks"`` (only with ``cfg.network_seed``): the noise runs behind
    Gamma (``iteration == NOISE_ITERATION``) draw their own networks while every other run
    is the one network, so Gamma holds the network-to-network spread of the statistics
    besides the noise: the model-error term of a one-network twin (without it Gamma is its
    noise alone, far below its mismatch with a subject, and the update trusts the data
    too much: benchmarks/README.md, "A fit of one network")."""

    spec: Any
    params: Sequence[FitParameter]
    cfg: ForwardConfig
    stats: StatisticsConfig = StatisticsConfig()
    seed: int = 0
    run_map: Callable[[Callable[..., Any], Iterable[Any]], Iterable[Any]] = map
    bolds: np.ndarray | None = None
    model_error: str = "none"

    def __post_init__(self) -> None:
        if self.model_error not in MODEL_ERRORS:
            raise ConfigError([f"model_error: {self.model_error!r} -- expected one of "
                               f"{list(MODEL_ERRORS)}"], "fit")
        if self.model_error == "networks" and self.cfg.network_seed is None:
            raise ConfigError(["model_error: 'networks' without a network seed -- every "
                               "run already draws its own network; expected "
                               "cfg.network_seed"], "fit")

    def values(self, U: np.ndarray) -> np.ndarray:
        """Parameter values (N, P) of unbounded rows ``U`` (N, P)."""
        U = np.atleast_2d(np.asarray(U, float))
        return np.stack([p.from_unbounded(U[:, k]) for k, p in enumerate(self.params)], -1)

    def unbounded(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, float))
        return np.stack([p.to_unbounded(X[:, k]) for k, p in enumerate(self.params)], -1)

    def run(self, X: np.ndarray, iteration: int) -> np.ndarray:
        """BOLD (N, n_tr, R) of parameter values ``X`` (N, P)."""
        cfg = self.cfg
        if iteration == NOISE_ITERATION and self.model_error == "networks":
            cfg = dataclasses.replace(cfg, network_seed=None)
        jobs = [(self.spec, self.params, X[i], member_seed(self.seed, iteration, i), cfg)
                for i in range(X.shape[0])]
        return np.stack(list(self.run_map(_run_job, jobs)))

    def __call__(self, U: np.ndarray, iteration: int) -> np.ndarray:
        self.bolds = self.run(self.values(U), iteration)
        return np.stack([statistics(b, self.stats) for b in self.bolds])


def _run_job(job: tuple[Any, ...], comm: Any = None) -> np.ndarray:
    spec, params, x, seed, cfg = job
    return simulate_bold(spec, params, x, seed, cfg, comm)


