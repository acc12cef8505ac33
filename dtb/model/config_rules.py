"""Projections and their connection rules in a configuration: pairwise Bernoulli, fixed
in-degree, fixed total number, and the unit-structured rules (``unit_local``,
``long_range``), each checked against the populations it joins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtb.model.config_fields import (
    MAX_DELAY_STEPS,
    check_keys,
    check_weight_sign,
    is_int,
    is_number,
    parse_dist,
    resolve_receptor,
    short_list,
)
from dtb.model.network import (
    FixedInDegree,
    FixedTotalNumber,
    LongRange,
    PairwiseBernoulli,
    Population,
    Projection,
    UnitLocal,
)
from dtb.model.neurons import MODELS
from dtb.model.problems import Problems


def _parse_unit_rule(d: Any, path: str, pr: Problems):
    """unit_local {k} or long_range {k, probs, conduction_ms}; k one int or one per unit."""
    kind = d["kind"] if isinstance(d, dict) else d.kind
    get = d.get if isinstance(d, dict) else (lambda key: getattr(d, key, None))
    if isinstance(d, dict):
        allowed = {"kind", "k"} | ({"probs", "conduction_ms"} if kind == "long_range" else set())
        if not check_keys(d, path, allowed, allowed, pr):
            return None
    k: Any = get("k")
    if is_int(k):
        if k < 0:
            pr.add(f"{path}.k", k, "an in-degree >= 0")
            return None
    else:
        try:
            arr = np.asarray(k)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or np.any(arr < 0):
            pr.add(f"{path}.k", short_list(k), "an in-degree >= 0, or one per target unit")
            return None
        k = tuple(int(x) for x in arr)
    if kind == "unit_local":
        return UnitLocal(k)
    mats = []
    for name in ("probs", "conduction_ms"):
        try:
            m = np.asarray(get(name), dtype=float)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.size == 0:
            pr.add(f"{path}.{name}", short_list(get(name)), "a square (groups x groups) matrix")
            return None
        bad = ~np.isfinite(m) | (m < 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            pr.add(f"{path}.{name}[{i}][{j}]", float(m[i, j]), "a finite value >= 0")
            return None
        mats.append(m)
    if mats[0].shape != mats[1].shape:
        pr.add(f"{path}.conduction_ms", f"shape {mats[1].shape}",
               f"the shape of probs {mats[0].shape}")
        return None
    return LongRange(k, mats[0], mats[1])


def _parse_rule(d: Any, path: str, pr: Problems):
    kind = d.get("kind") if isinstance(d, dict) else getattr(d, "kind", None)
    if kind in ("unit_local", "long_range"):
        return _parse_unit_rule(d, path, pr)
    if hasattr(d, "to_dict"):
        d = d.to_dict()
    kinds = {"fixed_indegree": "k", "fixed_total_number": "n", "pairwise_bernoulli": "p",
             "unit_local": "k", "long_range": "k"}
    if (not isinstance(d, dict) or not isinstance(d.get("kind"), str)
            or d.get("kind") not in kinds):
        pr.add(f"{path}.kind", d.get("kind") if isinstance(d, dict) else d,
               f"one of {', '.join(kinds)}")
        return None
    arg = kinds[d["kind"]]
    if not check_keys(d, path, {"kind", arg}, {arg}, pr):
        return None
    v = d[arg]
    if arg == "p":
        if not (is_number(v) and 0.0 <= v <= 1.0):
            pr.add(f"{path}.p", v, "a probability in [0, 1]")
            return None
        return PairwiseBernoulli(float(v))
    if not (is_int(v) and v >= 0):
        pr.add(f"{path}.{arg}", v, "an integer >= 0")
        return None
    return FixedInDegree(v) if arg == "k" else FixedTotalNumber(v)


def parse_projection(d: Any, path: str, pops: dict[str, Population], declared: set,
                      dt: float, pr: Problems) -> Projection | None:
    if isinstance(d, Projection):
        d = {**d.to_dict(), "rule": d.rule}  # keep rule arrays as they are
    if not check_keys(d, path, {"source", "target", "rule", "weight", "delay", "receptor",
                                "autapses", "multapses"},
                      {"source", "target", "rule", "weight", "delay"}, pr):
        return None
    src, tgt = d["source"], d["target"]
    ok = True
    for k, v in (("source", src), ("target", tgt)):
        if not isinstance(v, str) or v not in declared:
            names = ", ".join(sorted(str(x) for x in declared)) or "none defined"
            pr.add(f"{path}.{k}", v, f"the name of a population ({names})")
            ok = False
        elif v not in pops:
            ok = False  # that population is invalid and already reported
    rule = _parse_rule(d["rule"], f"{path}.rule", pr)
    weight = parse_dist(d["weight"], f"{path}.weight", pr)
    delay = parse_dist(d["delay"], f"{path}.delay", pr)
    autapses, multapses = d.get("autapses", True), d.get("multapses", True)
    for k, v in (("autapses", autapses), ("multapses", multapses)):
        if not isinstance(v, bool):
            pr.add(f"{path}.{k}", v, "true or false")
            ok = False
    if not ok or rule is None or weight is None or delay is None:
        return None
    pre, post = pops[src], pops[tgt]
    model = MODELS[post.model]
    receptor = resolve_receptor(d.get("receptor"), model, pre.type, weight.mean(),
                                f"{path}.receptor", pr)
    if receptor is None:
        return None
    check_weight_sign(model, receptor, weight.bounds(), f"{path}.weight", pr)
    lo, hi = delay.bounds()
    if isinstance(rule, (UnitLocal, LongRange)):
        _check_unit_rule(rule, pre, post, src == tgt and not autapses, path, pr)
    if isinstance(rule, LongRange):
        # conduction delay + this draw, at least one step
        if lo < 0:
            pr.add(f"{path}.delay", delay.to_dict(), "a synaptic delay >= 0 ms added to the "
                                                     "conduction delay")
        elif (hi + float(rule.conduction_ms.max())) / dt > MAX_DELAY_STEPS + 0.5:
            pr.add(f"{path}.rule.conduction_ms", float(rule.conduction_ms.max()),
                   f"delays <= {MAX_DELAY_STEPS} steps of dt")
    elif lo < dt * (1 - 1e-9):
        pr.add(f"{path}.delay", delay.to_dict(),
               f"delays >= dt ({dt} ms); bound a distribution with low: {dt}")
    elif hi / dt > MAX_DELAY_STEPS + 0.5:
        pr.add(f"{path}.delay", delay.to_dict(), f"delays <= {MAX_DELAY_STEPS} steps of dt")
    self_conn = src == tgt
    n_pre = pre.size - (1 if self_conn and not autapses else 0)
    if isinstance(rule, FixedInDegree) and not multapses and rule.k > n_pre:
        pr.add(f"{path}.rule.k", rule.k,
               f"at most {n_pre} distinct sources without multapses")
    if isinstance(rule, FixedInDegree) and rule.k > 0 and n_pre <= 0:
        pr.add(f"{path}.rule.k", rule.k, "0: the source has no neuron other than the target")
    if isinstance(rule, FixedTotalNumber) and not multapses:
        pr.add(f"{path}.multapses", False, "true for fixed_total_number (as in NEST)")
    if isinstance(rule, (FixedInDegree, FixedTotalNumber)):
        count: Any = rule.to_dict().get("k", rule.to_dict().get("n"))
        if count >= 2**31:
            pr.add(f"{path}.rule", rule.to_dict(), "fewer than 2**31 synapses per target")
    return Projection(src, tgt, rule, weight, delay, receptor, autapses, multapses)


def _check_unit_rule(rule, pre: Population, post: Population, no_self: bool, path: str,
                     pr: Problems) -> None:
    """Unit rules need units on both sides, per-unit k of the right length, and inputs
    for every target unit that asks for some."""
    if pre.units is None or post.units is None:
        pr.add(f"{path}.rule.kind", rule.kind, "source and target populations with units")
        return
    n_t = len(post.units)
    k = np.full(n_t, rule.k) if isinstance(rule.k, int) else np.asarray(rule.k)
    if len(k) != n_t:
        pr.add(f"{path}.rule.k", f"{len(k)} values", f"one in-degree per target unit ({n_t})")
        return
    t_sizes = np.asarray(post.units)
    wanted = (k > 0) & (t_sizes > 0)
    if isinstance(rule, UnitLocal):
        if len(pre.units) != n_t:
            pr.add(f"{path}.rule.kind", "unit_local",
                   f"source and target with the same units ({len(pre.units)} vs {n_t})")
            return
        avail = np.asarray(pre.units) - (1 if no_self else 0)
        bad = np.flatnonzero(wanted & (avail <= 0))
        if bad.size:
            pr.add(f"{path}.rule", f"units {short_list(bad.tolist())}",
                   "source neurons in every target unit that has inputs (units with no inputs)")
        return
    g_pre = np.asarray(pre.groups if pre.groups is not None else range(len(pre.units)))
    g_post = np.asarray(post.groups if post.groups is not None else range(n_t))
    n_g = rule.probs.shape[0]
    if max(g_pre.max(), g_post.max()) >= n_g:
        pr.add(f"{path}.rule.probs", f"{n_g} x {n_g}",
               f"a matrix covering group {max(g_pre.max(), g_post.max())}")
        return
    src_neurons = np.bincount(g_pre, weights=np.asarray(pre.units), minlength=n_g) > 0
    reach = (rule.probs[:, src_neurons]).sum(axis=1) > 0
    need = np.unique(g_post[wanted])
    bad = need[~reach[need]]
    if bad.size:
        pr.add(f"{path}.rule.probs", f"groups {short_list(bad.tolist())}",
               "a connectome row with weight on some source group that has neurons "
               "(these units would have no long-range inputs)")
