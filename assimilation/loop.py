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
(deterministic) analysis and keeps its own member's rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dtb.assimilation.enkf import Localization, analysis
from dtb.errors import ModelError
from dtb.model.hemodynamics import Hemodynamics, drive_from_rate

__all__ = ["split_members", "member_gather", "ParamSpec", "Member", "EngineMember",
           "AssimilationConfig", "AssimilationResult", "LoopState", "FreeRunState", "assimilate",
           "free_run", "logit", "expit", "region_means"]


@dataclass(frozen=True)
class ParamSpec:
    """One estimated hyperparameter: ``population.name`` per unit, bounded in
    ``(low, high)`` (the parameter's units, e.g. g_AMPA a dimensionless scale)."""

    population: str
    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{self.population}.{self.name}: bounds ({self.low}, "
                             f"{self.high}) -- expected finite low < high")

    @property
    def key(self) -> str:
        return f"{self.population}.{self.name}"

    def to_unit(self, theta: np.ndarray) -> np.ndarray:
        return logit((np.asarray(theta, float) - self.low) / (self.high - self.low))

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * expit(u)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def expit(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, float)))


class Member(Protocol):
    """What the loop needs of an ensemble member."""

    n_units: int

    def set_params(self, params: Sequence[ParamSpec], theta: np.ndarray) -> None:
        """Give the member parameter values ``theta`` (P, n_units)."""

    def run_rates(self, t_ms: float) -> np.ndarray:
        """Advance ``t_ms`` ms; the population rate of every unit (n_units,) in Hz."""


class EngineMember:
    """A ``dtb.Engine`` as an ensemble member: rates from its spikes per unit (all families of
    a unit together).  On a member communicator of several ranks, every rank of the member
    calls ``run_rates`` and the counts are summed over the member's ranks.

    ``poll``: called after every ``slice_ms`` of model time (rounded up to whole exchange
    windows, so the engine's windows are those of one long run and the results the same),
    so that a stop request is seen within a TR; it may raise."""

    def __init__(self, engine: Any, poll: Callable[[], None] | None = None,
                 slice_ms: float = 25.0):
        self.engine = engine
        self.poll = poll
        window = max(int(getattr(engine, "min_delay_steps", 1)),
                     int(getattr(getattr(engine, "exchange", None), "window", 1)), 1)
        self._slice_steps = window * max(1, math.ceil(slice_ms / engine.dt / window))
        self.n_units = int(engine.n_units)
        uo = np.asarray(engine.unit_of)
        n = np.bincount(uo[uo >= 0], minlength=self.n_units).astype(float)
        self._unit_of = uo
        self.neurons = self._sum(n)
        if np.any(self.neurons == 0):
            raise ValueError("engine: units without neurons -- expected every unit populated")

    def _sum(self, x: np.ndarray) -> np.ndarray:
        comm = getattr(self.engine, "comm", None)
        if comm is not None and getattr(self.engine, "ranks", 1) > 1:
            out = np.empty_like(x)
            comm.Allreduce(x, out)
            return out
        return x

    def set_params(self, params: Sequence[ParamSpec], theta: np.ndarray) -> None:
        for k, p in enumerate(params):
            self.engine.set_unit_param(p.population, p.name, theta[k])

    def run_rates(self, t_ms: float) -> np.ndarray:
        counts = np.zeros(self.n_units)
        uo = self._unit_of

        def on_window(steps: np.ndarray, idx: np.ndarray) -> None:
            u = uo[idx]
            counts[:] += np.bincount(u[u >= 0], minlength=self.n_units)

        if self.poll is None:
            self.engine.run(t_ms, on_window=on_window)
        else:
            dt = self.engine.dt
            n, done = int(round(t_ms / dt)), 0
            while done < n:
                k = min(self._slice_steps, n - done)
                self.engine.run(k * dt, on_window=on_window)
                done += k
                self.poll()
        return self._sum(counts) / (self.neurons * t_ms * 1e-3)


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


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def split_members(comm: Any, ranks_per_member: int) -> tuple[Any, int, int]:
    """Split ``comm`` (size M * P) into M member communicators of P consecutive ranks:
    returns ``(member_comm, member_index, M)``.  Build each member's Engine with
    ``comm=member_comm``."""
    size = comm.Get_size()
    if ranks_per_member < 1 or size % ranks_per_member:
        raise ValueError(f"ranks per member: {ranks_per_member} -- expected a divisor of the "
                         f"{size} ranks")
    index = comm.Get_rank() // ranks_per_member
    return comm.Split(color=index, key=comm.Get_rank()), index, size // ranks_per_member


def member_gather(comm: Any, member_comm: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A ``gather`` for ``assimilate`` under MPI: the rows of every member's rank 0, in member
    order, on every rank of ``comm`` (only observation-space values and parameters, O(M U))."""

    def gather(x: np.ndarray) -> np.ndarray:
        parts = comm.allgather(np.asarray(x) if member_comm.Get_rank() == 0 else None)
        return np.concatenate([q for q in parts if q is not None], axis=0)

    return gather


def _step_at(hemo: Hemodynamics, z: np.ndarray, dt_s: float, poll: Any, t: int) -> None:
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
    T, R = obs.shape
    P = len(params)
    M_loc = len(members)
    U = members[0].n_units
    theta0 = np.asarray(theta0, float)
    if theta0.shape[1:] != (U, P):
        raise ValueError(f"theta0: shape {theta0.shape} -- expected (M, {U}, {P})")
    if gather is None:
        gather = _identity
        if theta0.shape[0] != M_loc:
            raise ValueError(f"theta0: {theta0.shape[0]} members -- expected {M_loc}")
    M = theta0.shape[0]
    lo = np.array([p.low for p in params])
    hi = np.array([p.high for p in params])
    if np.any(theta0 <= lo) or np.any(theta0 >= hi):
        raise ValueError("theta0: values on or outside the bounds -- expected low < theta < "
                         "high for every parameter")
    n_assim = T if forecast_from is None else int(forecast_from)
    if not 0 <= n_assim <= T:
        raise ValueError(f"forecast_from: {forecast_from!r} -- expected a TR index in [0, {T}]")
    assimilated = np.ones(R, bool) if assimilated is None else np.asarray(assimilated, bool)
    used = np.flatnonzero(assimilated)
    rng = np.random.default_rng(cfg.seed)
    local = list(range(M_loc)) if member_ids is None else [int(i) for i in member_ids]
    if len(local) != M_loc:
        raise ValueError(f"member_ids: {len(local)} ids -- expected {M_loc}, one per member")

    rec = {k: np.empty((T, M, U, P)) for k in ("theta", "theta_prior")}
    bold_f = np.empty((T, M, R))
    bold_a = np.empty((T, M, R))
    rates_all = np.empty((T, M, U))
    hemo = Hemodynamics((M, U), cfg.hemo)
    if resume is None:
        t0 = time.perf_counter()
        u = np.stack([p.to_unit(theta0[..., k]) for k, p in enumerate(params)], -1)  # (M,U,P)
        for i, mem in zip(local, members, strict=True):
            mem.set_params(params, theta0[i].T)
        spin = _run_members(members, cfg.spinup_s * 1e3, 1)[0] if cfg.spinup_s > 0 else None
        if spin is None:
            spin = _run_members(members, cfg.tr_s * 1e3, 1)[0]
        base = (gather(spin).mean(axis=0) if baseline_hz is None
                else np.asarray(baseline_hz, float))
        base = np.where(base > 0, base, max(float(base[base > 0].min(initial=1.0)), 1e-3))
        t_spin = time.perf_counter() - t0
        diags: list[dict[str, Any]] = []
        t_fc = t_an = 0.0
        t_first = 0
    else:
        t_first = resume.t
        if not 0 <= t_first <= T or resume.u.shape != (M, U, P):
            raise ValueError(f"resume: TR {t_first}, parameters {resume.u.shape} -- expected "
                             f"a TR in [0, {T}] and ({M}, {U}, {P})")
        u = np.array(resume.u, float)
        hemo.set_state(resume.hemo_state)
        rng.bit_generator.state = resume.rng_state
        base = np.array(resume.base, float)
        for name, dst, src in (("theta", rec["theta"], resume.theta),
                               ("theta_prior", rec["theta_prior"], resume.theta_prior),
                               ("bold_forecast", bold_f, resume.bold_forecast),
                               ("bold_analysis", bold_a, resume.bold_analysis),
                               ("rates", rates_all, resume.rates)):
            if src.shape != (t_first, *dst.shape[1:]):
                raise ValueError(f"resume.{name}: shape {src.shape} -- expected "
                                 f"{(t_first, *dst.shape[1:])}")
            dst[:t_first] = src
        diags = [dict(d) for d in resume.diagnostics]
        t_spin = float(resume.timings.get("spinup_s", 0.0))
        t_fc = float(resume.timings.get("forecast_s", 0.0))
        t_an = float(resume.timings.get("analysis_s", 0.0))

    def snapshot(t: int) -> LoopState:
        return LoopState(t, u.copy(), hemo.state, rng.bit_generator.state, base.copy(),
                         rec["theta"][:t].copy(), rec["theta_prior"][:t].copy(),
                         bold_f[:t].copy(), bold_a[:t].copy(), rates_all[:t].copy(),
                         [dict(d) for d in diags],
                         {"spinup_s": t_spin, "forecast_s": t_fc, "analysis_s": t_an})

    unit_of_el = np.concatenate([np.repeat(np.arange(U), P), np.tile(np.arange(U), 4)])
    loc = None
    if cfg.localize:
        el_region = obs_index[unit_of_el]
        loc = Localization.by_membership(el_region, used)
    for t in range(t_first, T + 1):
        if boundary is not None and (resume is None or t > t_first):
            boundary(t, lambda t=t: snapshot(t))
        if t == T:
            break
        if t < n_assim:
            u = u + cfg.rw_sd * rng.standard_normal(u.shape)
        theta = np.stack([p.from_unit(u[..., k]) for k, p in enumerate(params)], -1)
        rec["theta_prior"][t] = theta
        ta = time.perf_counter()
        for i, mem in zip(local, members, strict=True):
            mem.set_params(params, theta[i].T)
        r_loc = _run_members(members, cfg.tr_s * 1e3, cfg.substeps)      # (S, M_loc, U)
        r = np.stack([gather(r_loc[k]) for k in range(cfg.substeps)])
        for k in range(cfg.substeps):
            _step_at(hemo, drive_from_rate(r[k], base, cfg.flow_gain, cfg.hemo),
                     cfg.tr_s / cfg.substeps, poll, t)
        rates_all[t] = r.mean(axis=0)
        HE_all = region_means(hemo.bold(), obs_index, R)                  # (M, R)
        bold_f[t] = HE_all
        tb = time.perf_counter()
        t_fc += tb - ta
        if t >= n_assim:                     # held out in time: no analysis, frozen theta
            rec["theta"][t] = theta
            bold_a[t] = HE_all
            continue
        E = np.concatenate([u.reshape(M, U * P),
                            np.moveaxis(hemo.state, 0, 1).reshape(M, 4 * U)], axis=1)
        Ea, d = analysis(E, HE_all[:, used], obs[t, used], np.full(used.size, cfg.obs_var),
                         method=cfg.method, rng=rng, inflation=cfg.inflation,
                         rtps_alpha=cfg.rtps, localization=loc)
        u = Ea[:, :U * P].reshape(M, U, P)
        hemo.set_state(np.moveaxis(Ea[:, U * P:].reshape(M, 4, U), 1, 0))
        clamped = hemo.clamp_physiological()
        tc = time.perf_counter()
        t_an += tc - tb
        theta = np.stack([p.from_unit(u[..., k]) for k, p in enumerate(params)], -1)
        rec["theta"][t] = theta
        bold_a[t] = region_means(hemo.bold(), obs_index, R)
        diags.append({"tr": t, "innovation_mean": d.innovation_mean,
                      "innovation_var": d.innovation_var, "expected_var": d.expected_var,
                      "normalized_innovation": d.normalized_innovation,
                      "prior_spread_obs": d.prior_spread_obs,
                      "param_spread_logit": float(u.std(axis=0, ddof=1).mean()),
                      "hemo_clamped": clamped})
    return AssimilationResult(list(params), rec["theta"], rec["theta_prior"], bold_f, bold_a,
                              rates_all, base, diags,
                              {"spinup_s": t_spin, "forecast_s": t_fc, "analysis_s": t_an},
                              hemo.state, n_assim)


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
            raise ValueError(f"resume: free TR {f0}, BOLD {resume.bold.shape} -- expected a "
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
            boundary(f, lambda f=f: FreeRunState(f, out[:f].copy(), h.state))
    return out
