"""The assimilation loop: an ensemble of spiking brains fitted to BOLD, one TR at a time.

Estimated: per-unit hyperparameters (``ParamSpec``: a family's neuron parameter, e.g.
``("E", "g_AMPA")``, with bounds), held on a logit scale
``u = logit((theta - low) / (high - low))`` so that every member stays inside the bounds,
and every unit's hemodynamic state (state augmentation).  Every TR:

1. random walk: ``u += rw_sd * N(0, 1)`` per member, unit and parameter (keeps the ensemble
   from collapsing onto a parameter value that the dynamics later contradict);
2. forecast: each member gets its parameters (``Engine.set_unit_param``) and runs one TR in
   ``substeps`` pieces; the spike counts of each piece give each unit's population rate
   (Hz), which drives the member's own Balloon–Windkessel model (``drive_from_rate``,
   baseline = the prior's mean rate per unit, measured in a spin-up);
3. predicted observation: the BOLD of the observed regions (mean over a region's units);
4. analysis (``enkf.analysis``, ETKF by default, localised by region membership): updates
   u and the hemodynamic states, which are then put back into the physiological box
   (``Hemodynamics.clamp_physiological``: a linear update knows no physiology, and states
   far outside it, such as q near 0, make the Balloon model too stiff to integrate).
   Spiking state is never averaged, moved or copied between members: each member keeps
   its own network state and only receives new parameters.

Members are ``Member`` objects: ``EngineMember`` wraps a ``dtb.Engine`` (one process, or a
distributed engine on a member communicator whose ranks sum their counts); several run in
turn on one process.  ``split_members`` splits ``MPI.COMM_WORLD`` into M member
communicators of P ranks and ``member_gather`` gathers, for the analysis, only the rates
(observation space, O(M U)) of each member's rank 0; every rank then runs the same
(deterministic) analysis and keeps its own member's rows.  Those live in
``dtb.assimilation.members``, ``ParamSpec`` and the logit scale in
``dtb.assimilation.parameters``; this module re-exports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from dtb.assimilation.enkf import Diagnostics, Localization, analysis
from dtb.assimilation.members import EngineMember, Member, member_gather, split_members
from dtb.assimilation.parameters import ParamSpec, expit, logit
from dtb.errors import ArgumentError, ModelError
from dtb.model.hemodynamics import Hemodynamics, drive_from_rate

__all__ = ["split_members", "member_gather", "ParamSpec", "Member", "EngineMember",
           "AssimilationConfig", "AssimilationResult", "LoopState", "FreeRunState", "assimilate",
           "free_run", "logit", "expit", "region_means"]


def region_means(x: np.ndarray, obs_index: np.ndarray, n_obs: int) -> np.ndarray:
    """Mean over each observed region's units: ``x`` (..., U), ``obs_index`` (U,) the
    observed column of each unit (-1 for none) -> (..., n_obs)."""
    keep = obs_index >= 0
    M = np.zeros((x.shape[-1], n_obs))
    M[np.flatnonzero(keep), obs_index[keep]] = 1.0
    cnt = M.sum(axis=0)
    return (x @ M) / np.where(cnt > 0, cnt, 1.0)


@dataclass(frozen=True)
class AssimilationConfig:
    """Knobs of the loop: ``tr_s`` (s); ``substeps`` rate/hemodynamics pieces per TR;
    ``obs_var`` observation-error variance (BOLD units squared); ``rw_sd`` random-walk step on
    the logit scale per TR; ``inflation``, ``rtps`` as in ``enkf.analysis``; ``method``
    ``"etkf"`` or ``"enkf"``; ``localize`` by region membership; ``hemo`` the parameter set;
    ``flow_gain`` of ``drive_from_rate``; ``spinup_s`` model time before the first TR (s) to
    settle the networks and measure the baseline rates; ``seed``."""

    tr_s: float
    substeps: int = 4
    obs_var: float = 1e-6
    rw_sd: float = 0.05
    inflation: float = 1.0
    rtps: float = 0.5
    method: str = "etkf"
    localize: bool = True
    hemo: str = "friston2000"
    flow_gain: float = 0.4
    spinup_s: float = 2.0
    seed: int = 1


@dataclass
class AssimilationResult:
    """Trajectories: ``theta`` (T, M, U, P) analysed parameters after each TR;
    ``theta_prior`` (T, M, U, P) before the analysis; ``bold_forecast`` (T, M, R) predicted
    BOLD before each analysis (one step ahead); ``bold_analysis`` (T, M, R) after;
    ``rates`` (T, M, U) Hz; ``diagnostics`` one dict per analysed TR; timings in seconds;
    ``hemo_state`` (4, M, U) the members' hemodynamic state after the last TR (to continue a
    free run from); ``n_assimilated`` the TRs that had an analysis (the later ones, if any,
    are free-running forecasts with frozen parameters)."""

    params: list[ParamSpec]
    theta: np.ndarray
    theta_prior: np.ndarray
    bold_forecast: np.ndarray
    bold_analysis: np.ndarray
    rates: np.ndarray
    baseline_hz: np.ndarray
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    hemo_state: np.ndarray | None = None
    n_assimilated: int | None = None

    @property
    def posterior_mean(self) -> np.ndarray:
        """(U, P) ensemble mean of the final parameters."""
        return self.theta[-1].mean(axis=0)

    @property
    def posterior_sd(self) -> np.ndarray:
        """(U, P) ensemble standard deviation (ddof 1) of the final parameters."""
        return self.theta[-1].std(axis=0, ddof=1)


@dataclass
class LoopState:
    """Everything ``assimilate`` carries from one TR to the next, at the boundary before TR
    ``t`` (TRs ``0..t-1`` done): with the members' own (engine) states, what a checkpoint
    holds to continue bitwise identically.  ``u`` (M, U, P) logit parameters;
    ``hemo_state`` (4, M, U); ``rng_state`` the filter generator's
    ``bit_generator.state``; ``base`` the zero-drive rates; ``theta``, ``theta_prior``
    (t, M, U, P), ``bold_forecast``, ``bold_analysis`` (t, M, R), ``rates`` (t, M, U) the
    trajectories so far; ``diagnostics`` of the analysed TRs so far; ``timings`` so far."""

    t: int
    u: np.ndarray
    hemo_state: np.ndarray
    rng_state: dict[str, Any]
    base: np.ndarray
    theta: np.ndarray
    theta_prior: np.ndarray
    bold_forecast: np.ndarray
    bold_analysis: np.ndarray
    rates: np.ndarray
    diagnostics: list[dict[str, Any]]
    timings: dict[str, float]

    ARRAYS = ("u", "hemo_state", "base", "theta", "theta_prior", "bold_forecast",
              "bold_analysis", "rates")

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields by name (for a checkpoint file)."""
        return {k: np.asarray(getattr(self, k)) for k in self.ARRAYS}

    def meta(self) -> dict[str, Any]:
        """The other fields, JSON-serialisable (floats round-trip exactly)."""
        return {"t": self.t, "rng_state": self.rng_state, "diagnostics": self.diagnostics,
                "timings": self.timings}

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> LoopState:
        """The inverse of ``arrays`` and ``meta``."""
        return cls(t=int(meta["t"]), rng_state=meta["rng_state"],
                   diagnostics=list(meta["diagnostics"]), timings=dict(meta["timings"]),
                   **{k: np.asarray(arrays[k]) for k in cls.ARRAYS})


@dataclass
class FreeRunState:
    """Where ``free_run`` stands after ``f`` free TRs: ``bold`` (f, M_loc, R) the rows so
    far and ``hemo_state`` (4, M_loc, U); with the members' engine states (which hold their
    parameters), what a checkpoint holds to continue bitwise identically."""

    f: int
    bold: np.ndarray
    hemo_state: np.ndarray


def _free_run_state(f: int, bold: np.ndarray, hemo: Hemodynamics) -> FreeRunState:
    """The ``FreeRunState`` after ``f`` free TRs of ``bold`` (n_tr, M_loc, R) (copies)."""
    return FreeRunState(f, bold[:f].copy(), hemo.state)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _step_at(hemo: Hemodynamics, z: np.ndarray, dt_s: float, poll: Callable[[], None] | None,
             t: int) -> None:
    """``hemo.step``, a ModelError it raises marked with the TR ``t`` it happened in."""
    try:
        hemo.step(z, dt_s, poll=poll)
    except ModelError as e:
        e.tr = t
        raise


def _run_members(members: Sequence[Member], t_ms: float, parts: int) -> np.ndarray:
    """(parts, M, U) rates of every member over ``parts`` equal pieces of ``t_ms``."""
    out = np.empty((parts, len(members), members[0].n_units))
    for i, mem in enumerate(members):
        for k in range(parts):
            out[k, i] = mem.run_rates(t_ms / parts)
    return out


class _Run:
    """What ``assimilate`` carries from one TR to the next: the sizes (T TRs, R observed
    regions, U units, P parameters, M members of which M_loc here), the logit parameters
    ``u`` (M, U, P), the members' hemodynamics ``hemo``, the filter's generator ``rng``,
    the zero-drive rates ``base`` (U,) or (M, U), the trajectories being filled
    (``theta``, ``theta_prior`` (T, M, U, P), ``bold_forecast``, ``bold_analysis``
    (T, M, R), ``rates`` (T, M, U)), the diagnostics of the analysed TRs and the timings
    (s).  The arguments are checked here, before anything runs, in ``assimilate``'s terms;
    ``u`` and ``base`` are set by ``spin_up`` or ``restore``."""

    u: np.ndarray
    base: np.ndarray

    def __init__(self, members: Sequence[Member], obs: np.ndarray, obs_index: np.ndarray,
                 params: Sequence[ParamSpec], theta0: np.ndarray, cfg: AssimilationConfig,
                 assimilated: np.ndarray | None,
                 gather: Callable[[np.ndarray], np.ndarray] | None,
                 member_ids: Sequence[int] | None, forecast_from: int | None) -> None:
        T, R = obs.shape
        P = len(params)
        M_loc = len(members)
        U = members[0].n_units
        theta0 = np.asarray(theta0, float)
        if theta0.shape[1:] != (U, P):
            raise ArgumentError(f"theta0: shape {theta0.shape} -- expected (M, {U}, {P})")
        if gather is None:
            gather = _identity
            if theta0.shape[0] != M_loc:
                raise ArgumentError(f"theta0: {theta0.shape[0]} members -- expected {M_loc}")
        M = theta0.shape[0]
        lo = np.array([p.low for p in params])
        hi = np.array([p.high for p in params])
        if np.any(theta0 <= lo) or np.any(theta0 >= hi):
            raise ArgumentError("theta0: values on or outside the bounds -- expected low < theta "
                                "< high for every parameter")
        n_assim = T if forecast_from is None else int(forecast_from)
        if not 0 <= n_assim <= T:
            raise ArgumentError(f"forecast_from: {forecast_from!r} -- expected a TR index in "
                                f"[0, {T}]")
        assimilated = np.ones(R, bool) if assimilated is None else np.asarray(assimilated, bool)
        self.used = np.flatnonzero(assimilated)
        self.rng = np.random.default_rng(cfg.seed)
        local = list(range(M_loc)) if member_ids is None else [int(i) for i in member_ids]
        if len(local) != M_loc:
            raise ArgumentError(f"member_ids: {len(local)} ids -- expected {M_loc}, one per "
                                "member")
        self.members, self.obs, self.obs_index, self.params = members, obs, obs_index, params
        self.theta0, self.cfg, self.gather, self.local = theta0, cfg, gather, local
        self.T, self.R, self.P, self.M, self.U, self.n_assim = T, R, P, M, U, n_assim
        self.theta = np.empty((T, M, U, P))
        self.theta_prior = np.empty((T, M, U, P))
        self.bold_forecast = np.empty((T, M, R))
        self.bold_analysis = np.empty((T, M, R))
        self.rates = np.empty((T, M, U))
        self.hemo = Hemodynamics((M, U), cfg.hemo)
        self.t_first = 0
        self.diagnostics: list[dict[str, Any]] = []
        self.timings = {"spinup_s": 0.0, "forecast_s": 0.0, "analysis_s": 0.0}

    def spin_up(self, baseline_hz: np.ndarray | None) -> None:
        """Give the members the prior draws, run the spin-up (one TR when ``spinup_s`` is 0)
        and fix the zero-drive rates: ``baseline_hz``, or the ensemble's mean rate per unit;
        a rate <= 0 is replaced by the smallest positive one (at least 1e-3 Hz)."""
        t0 = time.perf_counter()
        params, theta0, cfg = self.params, self.theta0, self.cfg
        self.u = np.stack([p.to_unit(theta0[..., k]) for k, p in enumerate(params)], -1)
        for i, mem in zip(self.local, self.members, strict=True):
            mem.set_params(params, theta0[i].T)
        spin = (_run_members(self.members, cfg.spinup_s * 1e3, 1)[0] if cfg.spinup_s > 0
                else None)
        if spin is None:
            spin = _run_members(self.members, cfg.tr_s * 1e3, 1)[0]
        base = (self.gather(spin).mean(axis=0) if baseline_hz is None
                else np.asarray(baseline_hz, float))
        self.base = np.where(base > 0, base, max(float(base[base > 0].min(initial=1.0)), 1e-3))
        self.timings["spinup_s"] = time.perf_counter() - t0

    def restore(self, resume: LoopState) -> None:
        """Continue from a checkpoint's ``LoopState`` instead of the spin-up."""
        T, M, U, P = self.T, self.M, self.U, self.P
        self.t_first = t_first = resume.t
        if not 0 <= t_first <= T or resume.u.shape != (M, U, P):
            raise ArgumentError(f"resume: TR {t_first}, parameters {resume.u.shape} -- expected "
                                f"a TR in [0, {T}] and ({M}, {U}, {P})")
        self.u = np.array(resume.u, float)
        self.hemo.set_state(resume.hemo_state)
        self.rng.bit_generator.state = resume.rng_state
        self.base = np.array(resume.base, float)
        for name, dst, src in (("theta", self.theta, resume.theta),
                               ("theta_prior", self.theta_prior, resume.theta_prior),
                               ("bold_forecast", self.bold_forecast, resume.bold_forecast),
                               ("bold_analysis", self.bold_analysis, resume.bold_analysis),
                               ("rates", self.rates, resume.rates)):
            if src.shape != (t_first, *dst.shape[1:]):
                raise ArgumentError(f"resume.{name}: shape {src.shape} -- expected "
                                    f"{(t_first, *dst.shape[1:])}")
            dst[:t_first] = src
        self.diagnostics = [dict(d) for d in resume.diagnostics]
        self.timings = {k: float(resume.timings.get(k, 0.0)) for k in self.timings}

    def snapshot(self, t: int) -> LoopState:
        """The ``LoopState`` at the boundary before TR ``t`` (copies)."""
        return LoopState(t, self.u.copy(), self.hemo.state, dict(self.rng.bit_generator.state),
                         self.base.copy(), self.theta[:t].copy(), self.theta_prior[:t].copy(),
                         self.bold_forecast[:t].copy(), self.bold_analysis[:t].copy(),
                         self.rates[:t].copy(), [dict(d) for d in self.diagnostics],
                         dict(self.timings))

    def localization(self) -> Localization:
        """By region membership over the state (U P parameters, then 4 U hemodynamic
        states): a unit's elements see its region's observation if assimilated."""
        U, P = self.U, self.P
        unit_of_el = np.concatenate([np.repeat(np.arange(U), P), np.tile(np.arange(U), 4)])
        return Localization.by_membership(self.obs_index[unit_of_el], self.used)

    def theta_of_u(self) -> np.ndarray:
        """(M, U, P) the parameters of the logit values ``u``."""
        return np.stack([p.from_unit(self.u[..., k]) for k, p in enumerate(self.params)], -1)

    def tr(self, t: int, loc: Localization | None, poll: Callable[[], None] | None) -> None:
        """TR ``t``: random walk (assimilated TRs only), forecast, and the analysis, or
        for a TR from ``forecast_from`` on the frozen parameters."""
        cfg = self.cfg
        if t < self.n_assim:
            self.u = self.u + cfg.rw_sd * self.rng.standard_normal(self.u.shape)
        theta = self.theta_of_u()
        self.theta_prior[t] = theta
        ta = time.perf_counter()
        HE_all = self.forecast(t, theta, poll)
        tb = time.perf_counter()
        self.timings["forecast_s"] += tb - ta
        if t >= self.n_assim:                # held out in time: no analysis, frozen theta
            self.theta[t] = theta
            self.bold_analysis[t] = HE_all
            return
        d, clamped = self.analyse(t, HE_all, loc)
        self.timings["analysis_s"] += time.perf_counter() - tb
        self.theta[t] = self.theta_of_u()
        self.bold_analysis[t] = region_means(self.hemo.bold(), self.obs_index, self.R)
        self.diagnostics.append({
            "tr": t, "innovation_mean": d.innovation_mean,
            "innovation_var": d.innovation_var, "expected_var": d.expected_var,
            "normalized_innovation": d.normalized_innovation,
            "prior_spread_obs": d.prior_spread_obs,
            "param_spread_logit": float(self.u.std(axis=0, ddof=1).mean()),
            "hemo_clamped": clamped})

    def forecast(self, t: int, theta: np.ndarray, poll: Callable[[], None] | None
                 ) -> np.ndarray:
        """Run every member through TR ``t`` with parameters ``theta`` (M, U, P), drive
        the hemodynamics with its rates; the predicted BOLD (M, R) of the observed
        regions."""
        cfg = self.cfg
        for i, mem in zip(self.local, self.members, strict=True):
            mem.set_params(self.params, theta[i].T)
        r_loc = _run_members(self.members, cfg.tr_s * 1e3, cfg.substeps)  # (S, M_loc, U)
        r = np.stack([self.gather(r_loc[k]) for k in range(cfg.substeps)])
        for k in range(cfg.substeps):
            _step_at(self.hemo, drive_from_rate(r[k], self.base, cfg.flow_gain, cfg.hemo),
                     cfg.tr_s / cfg.substeps, poll, t)
        self.rates[t] = r.mean(axis=0)
        HE_all = region_means(self.hemo.bold(), self.obs_index, self.R)  # (M, R)
        self.bold_forecast[t] = HE_all
        return HE_all

    def analyse(self, t: int, HE_all: np.ndarray, loc: Localization | None
                ) -> tuple[Diagnostics, int]:
        """The analysis of TR ``t`` over the state (u, hemodynamic states), then the states
        put back into the physiological box: the analysis's diagnostics and the number of
        states clamped."""
        cfg, M, U, P, used = self.cfg, self.M, self.U, self.P, self.used
        E = np.concatenate([self.u.reshape(M, U * P),
                            np.moveaxis(self.hemo.state, 0, 1).reshape(M, 4 * U)], axis=1)
        Ea, d = analysis(E, HE_all[:, used], self.obs[t, used],
                         np.full(used.size, cfg.obs_var), method=cfg.method, rng=self.rng,
                         inflation=cfg.inflation, rtps_alpha=cfg.rtps, localization=loc)
        self.u = Ea[:, :U * P].reshape(M, U, P)
        self.hemo.set_state(np.moveaxis(Ea[:, U * P:].reshape(M, 4, U), 1, 0))
        return d, self.hemo.clamp_physiological()

    def result(self) -> AssimilationResult:
        return AssimilationResult(list(self.params), self.theta, self.theta_prior,
                                  self.bold_forecast, self.bold_analysis, self.rates,
                                  self.base, self.diagnostics, dict(self.timings),
                                  self.hemo.state, self.n_assim)


def assimilate(members: Sequence[Member], obs: np.ndarray, obs_index: np.ndarray,
               params: Sequence[ParamSpec], theta0: np.ndarray, cfg: AssimilationConfig,
               assimilated: np.ndarray | None = None,
               gather: Callable[[np.ndarray], np.ndarray] | None = None,
               member_ids: Sequence[int] | None = None,
               baseline_hz: np.ndarray | None = None,
               forecast_from: int | None = None,
               boundary: Callable[[int, Callable[[], LoopState]], None] | None = None,
               resume: LoopState | None = None,
               poll: Callable[[], None] | None = None) -> AssimilationResult:
    """Fit ``params`` to ``obs`` (T, R) BOLD (same units as the model's, fractional change).

    ``members``: the M local ensemble members (all of them on one process); ``obs_index``
    (U,) the observed column of every unit (-1: none); ``theta0`` (M, U, P) the prior draws
    (inside the bounds); ``assimilated`` (R,) bool: the regions the analysis uses (the others
    are predicted but held out); ``gather``: for MPI ensembles, a function that makes the
    (M_local, k) rows of the local members into the (M, k) rows of all members on every rank
    (``member_gather``), and ``member_ids`` the global numbers of the local
    members (rows of ``theta0``).  Units of unobserved regions see every assimilated region;
    units of held-out regions see none (their parameters only random-walk).
    ``baseline_hz`` (U,), or (M, U) one row per member: the rates that give zero neural
    drive (default: the ensemble's mean rate per unit at the end of the spin-up); a twin
    experiment passes the truth's so that the model and the synthetic data use the same
    drive, or each member's own rates at nominal parameters (``dtb assimilate`` does).
    ``forecast_from``: TRs from this index on get neither random walk nor analysis: the
    members run freely with their parameters frozen at the last analysed values, so
    ``bold_forecast`` there is a multi-step free-running forecast (a held-out later segment;
    its observations are never used).  Default: every TR is assimilated.
    ``boundary(t, snapshot)``: called at every TR boundary (t = 0 after the spin-up, ...,
    t = T after the last TR) but the one resumed from, on every rank; ``snapshot()`` gives
    the ``LoopState`` there (for a checkpoint); an exception it raises ends the run.
    ``resume``: a ``LoopState`` to continue from instead of the spin-up (the members must
    have been given their engine states of the same boundary).
    ``poll``: called often inside the hemodynamic integration (a stop request raises from
    it).  A hemodynamic state that cannot be integrated raises ``ModelError`` naming the TR
    (``.tr``) and the unit (``.unit``, (member, unit)).
    """
    obs = np.asarray(obs, float)
    run = _Run(members, obs, obs_index, params, theta0, cfg, assimilated, gather, member_ids,
               forecast_from)
    if resume is None:
        run.spin_up(baseline_hz)
    else:
        run.restore(resume)
    loc = run.localization() if cfg.localize else None
    for t in range(run.t_first, run.T + 1):
        if boundary is not None and (resume is None or t > run.t_first):
            boundary(t, partial(run.snapshot, t))
        if t == run.T:
            break
        run.tr(t, loc, poll)
    return run.result()


def free_run(members: Sequence[Member], params: Sequence[ParamSpec], theta: np.ndarray,
             n_tr: int, tr_s: float, baseline_hz: np.ndarray, obs_index: np.ndarray, R: int,
             hemo: str = "friston2000", flow_gain: float = 0.4, substeps: int = 4,
             spinup_s: float = 0.0, hemo_state: np.ndarray | None = None,
             boundary: Callable[[int, Callable[[], FreeRunState]], None] | None = None,
             resume: FreeRunState | None = None,
             poll: Callable[[], None] | None = None) -> np.ndarray:
    """BOLD (n_tr, M_loc, R) of members running freely with fixed parameters ``theta``
    (P, U) for all members (e.g. the posterior mean) or (M_loc, P, U) one set per member:
    held-out forecasts and FC of the fitted model.  ``hemo_state`` (4, M_loc, U): the
    members' hemodynamic state to start from (default: rest).
    ``boundary(f, snapshot)``: called after every free TR ``f = 1..n_tr`` (f TRs done) but
    the one resumed from, on every rank; ``snapshot()`` gives the ``FreeRunState`` there
    (for a checkpoint); an exception it raises ends the run.  ``resume``: a
    ``FreeRunState`` to continue from (the members must have been given their engine states
    of the same point; ``spinup_s`` and ``hemo_state`` are then not used).  ``poll`` as in
    ``assimilate``."""
    theta = np.asarray(theta, float)
    for i, mem in enumerate(members):
        mem.set_params(params, theta[i] if theta.ndim == 3 else theta)
    h = Hemodynamics((len(members), members[0].n_units), hemo)
    out = np.empty((n_tr, len(members), R))
    f0 = 0
    if resume is None:
        if spinup_s > 0:
            _run_members(members, spinup_s * 1e3, 1)
        if hemo_state is not None:
            h.set_state(hemo_state)
    else:
        f0 = int(resume.f)
        if not 0 <= f0 <= n_tr or resume.bold.shape != (f0, len(members), R):
            raise ArgumentError(f"resume: free TR {f0}, BOLD {resume.bold.shape} -- expected a "
                                f"TR in [0, {n_tr}] and {(f0, len(members), R)}")
        h.set_state(resume.hemo_state)
        out[:f0] = resume.bold
    for t in range(f0, n_tr):
        r = _run_members(members, tr_s * 1e3, substeps)
        for k in range(substeps):
            _step_at(h, drive_from_rate(r[k], baseline_hz, flow_gain, hemo), tr_s / substeps,
                     poll, t)
        out[t] = region_means(h.bold(), obs_index, R)
        if boundary is not None:
            f = t + 1
            boundary(f, partial(_free_run_state, f, out, h))
    return out
