"""The long-range part of a brain's recipe, changed after the build.

One transform, used by ``dtb build`` (``--coupling``, ``--lr-inhibitory``,
``--lr-sc-exponent``) and by the inversion mode's forward runs (``dtb.assimilation.fit``),
which estimates the same three numbers per subject:

- ``coupling`` G: every long-range rule's weight times G (the global coupling of
  whole-brain models);
- ``targets``: a further factor on the long-range weights onto one family
  (``{"I": 0.25}``).  The builder matches every long-range input to an E cell with one to
  an I cell; that feed-forward inhibition cancels the drive that correlates regions
  (``benchmarks/README.md``, regime study);
- ``sc_exponent`` a: each unit's long-range in-degree times (s / <s>)^a, rounded per unit,
  s its region's SC in-strength (row sum) and <s> its neuron-weighted mean.  With a = 0
  every neuron gets the same long-range in-degree (row-normalised coupling), which
  amplifies one global mode; a = 0.5 let the free run's FC follow the subject's;
- ``homotopic`` h: h times the SC's largest weight added, both ways, between the left and
  right parts of each region (``homotopic_pairs``: names that differ only by a hemisphere
  marker, ``Precentral_L``/``Precentral_R``, ``lh.X``/``rh.X``, ``ctx-lh-X``/``ctx-rh-X``).
  Diffusion tractography under-counts the interhemispheric fibres through the corpus
  callosum, while homotopic regions are among the most correlated in resting FC; the term
  restores them (``benchmarks/README.md``, "How far can an SC-coupled model go?").  It
  changes the SC itself, before the in-strengths of ``sc_exponent`` are taken, so it
  moves both where long-range synapses come from and how many a region gets.  The pair
  must have a tract length (a conduction delay) in the brain;
- ``unit_log_gain`` (U,): each unit's long-range in-degree times exp(lg_u) / <exp(lg)>
  (the neuron-weighted mean), a regional gain on long-range input that moves synapses
  between regions and keeps their total: how strongly each region responds to the rest
  of the brain (``regional_coupling`` of the fit, a few coefficients of spatial maps).
  In a linear network such a gain along the group FC's regional strength raises the
  SC model's FC fit on the HCP development subjects from 0.58-0.73 to 0.76-0.81
  (``benchmarks/README.md``, "A regional gain on long-range input").

Weights are the builder's numbers (dimensionless factors on the receptor conductances);
nothing here touches the unit-local rules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from dtb.errors import ConfigError

__all__ = ["scale_long_range", "homotopic_pairs"]

_SIDE = {"l": 0, "lh": 0, "left": 0, "r": 1, "rh": 1, "right": 1}


def homotopic_pairs(names: Sequence[str]) -> np.ndarray:
    """(P, 2) region indices (left, right), ascending by the left one, of the regions whose
    names differ only by one hemisphere token (``L``/``R``, ``lh``/``rh``, ``left``/``right``,
    any case, between ``_ . - `` or space separators): ``Precentral_L`` pairs with
    ``Precentral_R``, ``ctx-lh-insula`` with ``ctx-rh-insula``.  A name with no such token,
    or with more than one, pairs with nothing; so does a stem found twice on one side."""
    sides: dict[str, list[list[int]]] = {}
    for i, name in enumerate(names):
        tokens = re.split(r"([_.\- ])", str(name))
        hits = [k for k, t in enumerate(tokens) if t.lower() in _SIDE]
        if len(hits) != 1:
            continue
        k = hits[0]
        stem = "".join(tokens[:k] + ["\0"] + tokens[k + 1:]).lower()
        sides.setdefault(stem, [[], []])[_SIDE[tokens[k].lower()]].append(i)
    pairs = sorted((lt[0], rt[0]) for lt, rt in sides.values() if len(lt) == 1 == len(rt))
    return np.array(pairs, np.int64).reshape(-1, 2)


def _with_homotopic(spec: Any, h: float, where: str) -> np.ndarray:
    """The SC weights (R, R) with h x their maximum added both ways between homotopic
    regions; ConfigError when no pair is found or a pair has no conduction delay."""
    pairs = homotopic_pairs(spec.region_names)
    if len(pairs) == 0:
        raise ConfigError([f"homotopic: {h!r} -- no left/right pairs among the region names "
                           f"({', '.join(map(str, spec.region_names[:3]))}, ...); expected "
                           "names that differ only by a hemisphere marker (X_L / X_R, "
                           "lh.X / rh.X)"], where)
    cond = np.asarray(spec.conduction_ms, float)
    none = [f"{spec.region_names[i]}-{spec.region_names[j]}" for i, j in pairs
            if not (cond[i, j] > 0 and cond[j, i] > 0)]
    if none:
        raise ConfigError([f"homotopic: pairs {', '.join(none[:5])} ({len(none)} in all) have "
                           "no tract length -- expected a length (conduction delay) for every "
                           "homotopic pair"], where)
    w = np.array(spec.weights, float)
    add = h * float(w.max())
    w[pairs[:, 0], pairs[:, 1]] += add
    w[pairs[:, 1], pairs[:, 0]] += add
    return w


def scale_long_range(spec: Any, coupling: float = 1.0, targets: dict[str, float] | None = None,
                     sc_exponent: float = 0.0, where: str = "long-range recipe",
                     homotopic: float = 0.0, unit_log_gain: np.ndarray | None = None) -> Any:
    """A copy of the BrainSpec ``spec`` with its long-range rules changed (see the module
    docstring); ``spec`` itself is left as it is."""
    targets = dict(targets or {})
    bad = [] if (np.isfinite(coupling) and coupling >= 0) else [
        f"coupling: {coupling!r} -- expected a finite factor >= 0"]
    fams = {f.name for f in spec.families}
    bad += [f"coupling.{k}: {v!r} -- expected a family ({', '.join(sorted(fams))}) and a "
            "finite factor >= 0" for k, v in targets.items()
            if k not in fams or not (np.isfinite(v) and v >= 0)]
    if not np.isfinite(sc_exponent):
        bad.append(f"sc_exponent: {sc_exponent!r} -- expected a finite number")
    if not (np.isfinite(homotopic) and homotopic >= 0):
        bad.append(f"homotopic: {homotopic!r} -- expected a finite number >= 0 (a fraction "
                   "of the SC's largest weight)")
    if unit_log_gain is not None:
        unit_log_gain = np.asarray(unit_log_gain, float)
        if unit_log_gain.shape != (len(spec.unit_region),) or not np.all(
                np.isfinite(unit_log_gain)):
            bad.append(f"unit_log_gain: shape {unit_log_gain.shape} -- expected finite "
                       f"numbers, one per unit ({len(spec.unit_region)},)")
    if bad:
        raise ConfigError(bad, where)
    out = copy.copy(spec)
    if homotopic > 0:
        out.weights = _with_homotopic(spec, float(homotopic), where)
    rel = None
    if sc_exponent != 0.0:
        strength = np.asarray(out.weights, float).sum(axis=1)[spec.unit_region]
        rel = strength / np.average(strength, weights=spec.neurons_per_unit())
        rel = rel ** sc_exponent
    if unit_log_gain is not None and np.any(unit_log_gain):
        gain = np.exp(unit_log_gain - unit_log_gain.max())   # overflow-safe; the mean divides
        gain /= np.average(gain, weights=spec.neurons_per_unit())
        rel = gain if rel is None else rel * gain
    rules = []
    for r in spec.rules:
        r2 = copy.copy(r)
        if r.kind == "long_range":
            if not isinstance(r.weight, int | float | np.integer | np.floating):
                raise ConfigError([f"rules: {r.source}->{r.target} long_range weight "
                                   f"{r.weight!r} -- expected a number to scale"], where)
            r2.weight = float(r.weight) * float(coupling) * float(targets.get(r.target, 1.0))
            if rel is not None:
                r2.k = np.floor(np.asarray(r.k) * rel + 0.5).astype(np.int64)
        rules.append(r2)
    out.rules = rules
    return out
