"""What ``dtb assimilate`` fits and who runs it: the ``Problem`` (the brain, the
observations matched to its units, the estimated parameters with their bounds, the prior
draws and, in a twin experiment, the truth) made by ``load_problem``; the MPI ``Layout`` of
member communicators (``make_layout``); the members' engines (``make_engine``), their
zero-drive baselines (``nominal_baseline``) and the twin experiment's data (``twin_truth``).
Bad observation files are refused with ``observations.read_bold``'s messages, a brain and
observations that do not fit together with ``UsageError`` (exit status 2).

Units: TRs and BOLD time in seconds (``Options.tr_s``, ``TRANSIENT_S``, ``SETTLE_S``), the
engine's time in ms (``Options.dt_ms``, ``run_rates(ms)``), rates in Hz, BOLD a fractional
signal change.  Shapes: T TRs, R observed regions, U units, P estimated parameters, M members.

Layout under MPI: the world's W ranks are cut into W / P member communicators of P ranks
(``--ranks-per-member P``, ``loop.split_members``); each runs M P / W members in turn, each a
distributed Engine on its communicator.  Only observation-space values and parameters are
gathered (``loop.member_gather``, ``gather_rows``); every rank runs the same deterministic
analysis, so the trajectories do not depend on the layout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation.confounds import read_confounds, regress_confounds
from dtb.assimilation.loop import free_run
from dtb.assimilation.members import EngineMember, member_gather, split_members
from dtb.assimilation.observations import match_labels, preprocess, read_bold, resolve_regions
from dtb.assimilation.options import Options
from dtb.assimilation.parameters import ParamSpec
from dtb.brain.build import BuildOptions, build
from dtb.brain.spec import BrainSpec
from dtb.data import demo_inputs
from dtb.engine.context import threads_per_rank
from dtb.engine.simulation import Engine
from dtb.errors import DtbError, InputError, UsageError
from dtb.io.fileio import sha256_file
from dtb.log import ONCE

log = logging.getLogger(__name__)

__all__ = ["Problem", "load_problem", "spec_name", "Layout", "make_layout", "make_engine",
           "gather_rows", "nominal_baseline", "twin_truth", "TRANSIENT_S", "SETTLE_S",
           "DEMO_NOISE_SD"]

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
    kw: dict[str, Any] = {}
    scale = None
    for name, v in steps:
        if name == "psc":
            mean = bold.data.mean(axis=0)
            if np.any(mean <= 0):
                bad = bold.column(int(np.argmax(mean <= 0)))
                raise InputError(bold.source, bad, float(mean[mean <= 0][0]),
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


def _load_brain(o: Options) -> tuple[BrainSpec, str, dict[str, Any]]:
    """The brain (``--brain``, or the default subject built for ``--demo``), how messages
    name it, and the run's record of its source."""
    if o.demo:
        spec = build(**demo_inputs(), options=BuildOptions(neurons=o.neurons))
        where = "the default subject"
        source: dict[str, Any] = {"kind": "demo", "neurons": spec.n_neurons,
                                  "units": spec.n_units, "trs": o.trs}
    else:
        spec = BrainSpec.load(o.brain)
        where = str(o.brain)
        source = {"kind": "brain", "brain": str(Path(o.brain).resolve()),
                  "brain_sha256": sha256_file(o.brain), "units": spec.n_units}
    return spec, where, source


def _load_observations(o: Options, spec: BrainSpec, unit_labels: np.ndarray,
                       source: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observed BOLD (T, R) after confound regression and ``--preprocess``, its region
    labels (R,) and each unit's observed column (U,), -1 none; ``source`` gets the files'
    record and ``o.extra["tr_s"]`` the TR."""
    bold = read_bold(o.bold, o.tr_s, labels=o.labels, dataset=o.dataset, atlas=o.atlas)
    header = "names" if bold.labels is None else "labels"
    bold = resolve_regions(bold, spec.region_labels, spec.region_names, o.allow_extra)
    if o.confounds is not None:
        X, used_cols = read_confounds(o.confounds, o.confound_columns, bold.n_samples)
        bold = regress_confounds(bold, X)
        source.update({"confounds": str(Path(o.confounds).resolve()),
                       "confounds_sha256": sha256_file(o.confounds),
                       "confound_columns": used_cols})
    bold = _preprocess(bold, o.preprocess)
    obs_index, used = match_labels(bold, unit_labels, o.allow_unobserved, o.allow_extra)
    labels = bold.labels
    source.update({"bold": str(Path(o.bold).resolve()), "bold_sha256": sha256_file(o.bold),
                   "tr_s": bold.tr_s, "tr_source": bold.tr_source,
                   "time_points": bold.n_samples, "regions": int(labels.size),
                   "matched_by": header,
                   "no_coverage": [str(v) for v in bold.no_coverage]})
    o.extra["tr_s"] = bold.tr_s
    return bold.data, labels, obs_index


def _assimilated_regions(o: Options, spec: BrainSpec, labels: np.ndarray,
                         obs_index: np.ndarray, R: int) -> np.ndarray:
    """(R,) bool: the observed regions that some unit observes, less ``--holdout-regions``
    (labels or names); UsageError for a region that is not one of them, or when none is
    left."""
    assimilated = np.zeros(R, bool)
    assimilated[np.unique(obs_index[obs_index >= 0])] = True
    label_of = {str(n): int(v) for v, n in zip(spec.region_labels, spec.region_names,
                                                strict=True)}
    for key in o.holdout_regions:
        lab = key if isinstance(key, int) else label_of.get(key, -1)
        hits = np.flatnonzero(labels == lab)
        if hits.size == 0 or not assimilated[hits[0]]:
            shown = key if isinstance(key, int) else repr(key)
            raise UsageError(f"--holdout-regions: {shown} -- expected labels or names of "
                             f"observed regions of the brain, each once "
                             f"({int(labels[assimilated][0])}, ...)")
        assimilated[hits[0]] = False
    if not assimilated.any():
        raise UsageError("--holdout-regions: every observed region held out -- expected at "
                         "least one region to assimilate")
    return assimilated


def _n_assimilated(o: Options, T: int) -> int:
    """The TRs assimilated (the first ones) of T, ``--holdout-fraction`` held out after."""
    n_hold = int(round(o.holdout_fraction * T))
    n_assim = T - n_hold
    if n_assim < 8:
        raise UsageError(f"--holdout-fraction: {o.holdout_fraction!r} leaves {n_assim} of "
                         f"{T} TRs to assimilate -- expected at least 8")
    if o.holdout_fraction > 0 and n_hold < 2:
        raise UsageError(f"--holdout-fraction: {o.holdout_fraction!r} holds out {n_hold} of "
                         f"{T} TRs -- expected at least 2 (or 0 for none)")
    return n_assim


def load_problem(o: Options) -> Problem:
    """Read the brain and the observations (or make the demo's brain) and check that they
    fit together; raises UsageError / InputError.  Cheap: nothing is simulated."""
    spec, where, source = _load_brain(o)
    params, center = _param_specs(o, spec, where)
    unit_labels = np.asarray(spec.unit_labels)
    if o.demo:
        labels = np.unique(unit_labels)
        obs = np.zeros((o.trs, labels.size))          # filled by the truth run
        obs_index = np.searchsorted(labels, unit_labels)
    else:
        obs, labels, obs_index = _load_observations(o, spec, unit_labels, source)
    T, R = obs.shape
    assimilated = _assimilated_regions(o, spec, labels, obs_index, R)
    n_assim = _n_assimilated(o, T)
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
    return Layout(comm, mcomm, groups, group, ranks_per_member,
                  list(range(group * k, (group + 1) * k)), threads_per_rank(comm))


def make_engine(net: Any, o: Options, seed: int, lay: Layout) -> Any:
    comm = lay.member_comm if lay.ranks_per_member > 1 else None
    eng = Engine(net, dt=o.dt_ms, seed=seed, threads=lay.threads, comm=comm)
    eng.keep_spikes = False
    return eng


def gather_rows(lay: Layout, x: np.ndarray) -> np.ndarray:
    """Rows (M_loc, ...) of this rank's members -> (M, ...) on every rank."""
    if lay.comm is None:
        return x
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


def twin_truth(prob: Problem, o: Options, lay: Layout, progress: Any = None) -> None:
    """The twin experiment's data: one more brain (seed ``o.seed``, a network realisation of
    its own) measures its baseline at the nominal values (``nominal_baseline``), settles
    with the true parameters and runs the TRs; its BOLD plus Gaussian noise of SD
    ``DEMO_NOISE_SD`` is the observation.  Run by the first member communicator, sent to
    every rank.  ``progress`` (a dtb.cli.progress.Progress, or None) is updated after every TR
    of the truth."""
    T, R = prob.obs.shape
    payload = None
    if lay.group == 0:
        t0 = time.perf_counter()
        mem = EngineMember(make_engine(prob.net, o, o.seed, lay))
        base = nominal_baseline(mem, prob, o)
        def on_tr(f: int, snapshot: Any) -> None:
            if progress is not None:
                if f == 1:  # the settling came before it: the ETA counts from here
                    progress.begin(1)
                progress.update(f, T)

        clean = free_run([mem], prob.params, prob.truth.T, T, o.tr_s, base, prob.obs_index,
                         R, o.hemo, substeps=o.substeps, spinup_s=SETTLE_S,
                         boundary=on_tr)[:, 0]
        payload = (clean, time.perf_counter() - t0)
    if lay.comm is not None:
        payload = lay.comm.bcast(payload, root=0)
    clean, secs = payload
    noise = DEMO_NOISE_SD * np.random.default_rng([o.seed, 3]).standard_normal(clean.shape)
    prob.obs = clean + noise
    prob.obs_clean = clean
    o.extra["truth_s"] = secs
    log.info("assimilate: twin truth simulated (%d TRs, %.1f s)", T, secs, extra=ONCE)

