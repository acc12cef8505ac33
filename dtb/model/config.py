"""Validation of network and simulation configurations (YAML files or Python objects).

One validator serves both: Python objects are turned into the mapping a YAML file holds
(``Network.to_dict``) and parsed back.  Every problem is collected and reported at once,
each naming the file, the field path, the offending value and what was expected, before
any neuron or synapse is made.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dtb.errors import ConfigError
from dtb.model.network import (
    DCInput,
    Dist,
    FixedInDegree,
    FixedTotalNumber,
    LongRange,
    Network,
    OUInput,
    PairwiseBernoulli,
    PerUnit,
    PoissonInput,
    Population,
    Projection,
    UnitLocal,
)
from dtb.model.neurons import MODELS, check_params
from dtb.model.problems import Problems, short_repr
from dtb.model.record_spec import RecordSpec, check_record, parse_record

MAX_DELAY_STEPS = 65535  # delays are stored as uint16 steps
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SimulationSettings:
    """Time step and duration in ms, the seed (0 <= seed < 2**32), and what to record
    (the config's ``record:`` section, dtb.model.record_spec.RecordSpec; None: the defaults)."""

    dt: float = 0.1
    t: float = 1000.0
    seed: int = 1
    record: RecordSpec | None = None


MAX_CONFIG_BYTES = 32 * 2**20   # a config file larger than this is refused unread
MAX_YAML_NODES = 2_000_000      # values after expanding aliases (billion laughs: 1e9)
MAX_YAML_DEPTH = 64             # nesting levels (a config needs about 6)

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(d: Any, path: str, allowed: set[str], required: set[str], pr: Problems) -> bool:
    if not isinstance(d, dict):
        pr.add(path, d, "a mapping")
        return False
    for k in d:
        if k not in allowed:
            name = k if isinstance(k, str) and len(k) <= 60 else short_repr(k, 60)
            pr.items.append(f"{path}.{name}: unknown key (value "
                            f"{short_repr(d[k])}) -- expected one of "
                            f"{', '.join(sorted(allowed))}")
    ok = True
    for k in sorted(required - set(d)):
        pr.add(f"{path}.{k}", None, "a value (required)")
        ok = False
    return ok


def parse_dist(v: Any, path: str, pr: Problems) -> Dist | None:
    """A number, or a mapping {dist: constant|uniform|normal|lognormal, ...}."""
    if isinstance(v, Dist):
        v = v.to_dict()
    if _is_number(v):
        return Dist.constant(float(v))
    if not isinstance(v, dict) or "dist" not in v:
        pr.add(path, v, "a number or a mapping with 'dist'")
        return None
    kind = v["dist"]
    spec = {"constant": ({"value"}, set()), "uniform": ({"low", "high"}, set()),
            "normal": ({"mean", "std"}, {"low", "high"}),
            "lognormal": ({"mu", "sigma"}, {"low", "high"})}
    if not isinstance(kind, str) or kind not in spec:
        pr.add(f"{path}.dist", kind, f"one of {', '.join(spec)}")
        return None
    req, opt = spec[kind]
    if not _keys(v, path, req | opt | {"dist"}, req, pr):
        return None
    bad = False
    for k in req | (opt & set(v)):
        x = v[k]
        if not (_is_number(x) or (k in ("low", "high") and isinstance(x, float) and math.isinf(x))):
            pr.add(f"{path}.{k}", x, "a finite number")
            bad = True
    if bad:
        return None
    if kind == "constant":
        return Dist.constant(v["value"])
    if kind == "uniform":
        if not v["low"] <= v["high"]:
            pr.add(f"{path}.high", v["high"], f"a value >= low ({v['low']})")
            return None
        return Dist.uniform(v["low"], v["high"])
    sd_name = "std" if kind == "normal" else "sigma"
    if not v[sd_name] >= 0:
        pr.add(f"{path}.{sd_name}", v[sd_name], "a value >= 0")
        return None
    low = float(v.get("low", -math.inf if kind == "normal" else 0.0))
    high = float(v.get("high", math.inf))
    d = Dist(kind, float(v["mean" if kind == "normal" else "mu"]), float(v[sd_name]), low, high)
    lo, hi = d.bounds()
    if not lo <= hi:
        pr.add(path, v, "bounds [low, high] that the distribution can reach")
        return None
    return d


def parse_simulation(d: Any, pr: Problems, path: str = "simulation") -> SimulationSettings:
    if d is None:
        return SimulationSettings()
    if not _keys(d, path, {"dt", "t", "seed"}, set(), pr):
        return SimulationSettings()
    s = SimulationSettings()
    dt = d.get("dt", s.dt)
    t = d.get("t", s.t)
    seed = d.get("seed", s.seed)
    if not (_is_number(dt) and dt > 0):
        pr.add(f"{path}.dt", dt, "a time step in ms > 0")
        dt = s.dt
    if not (_is_number(t) and t > 0):
        pr.add(f"{path}.t", t, "a model time in ms > 0")
        t = s.t
    if not (_is_int(seed) and 0 <= seed < 2**32):
        pr.add(f"{path}.seed", seed, "an integer in [0, 2**32)")
        seed = s.seed
    return SimulationSettings(float(dt), float(t), int(seed))


def _parse_inputs(v: Any, path: str, model, pr: Problems) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)):
        pr.add(path, v, "a list of inputs")
        return ()
    out = []
    for i, inp in enumerate(v):
        ip = f"{path}[{i}]"
        if hasattr(inp, "to_dict"):
            inp = inp.to_dict()
        if not isinstance(inp, dict) or inp.get("type") not in ("poisson", "ou", "dc"):
            pr.add(f"{ip}.type", inp.get("type") if isinstance(inp, dict) else inp,
                   "one of poisson, ou, dc")
            continue
        kind = inp["type"]
        if kind == "poisson":
            if not _keys(inp, ip, {"type", "rate", "weight", "in_degree", "receptor"},
                         {"rate", "weight"}, pr):
                continue
            rate, w, k = inp["rate"], inp["weight"], inp.get("in_degree", 1)
            ok = True
            if not (_is_number(rate) and rate >= 0):
                pr.add(f"{ip}.rate", rate, "a rate in Hz >= 0")
                ok = False
            if not _is_number(w):
                pr.add(f"{ip}.weight", w, "a finite number")
                ok = False
            if not (_is_int(k) and k >= 0):
                pr.add(f"{ip}.in_degree", k, "an integer >= 0")
                ok = False
            # external drive is excitatory unless the receptor (or, for currents, the
            # weight's sign) says otherwise: the population's own type does not matter
            rec = inp.get("receptor")
            if rec is None:
                rec = (model.inhibitory_receptor
                       if (not model.conductance_based and ok and w < 0)
                       else model.excitatory_receptor)
            rec = _resolve_receptor(rec, model, None, 0.0, f"{ip}.receptor", pr)
            if ok and rec is not None:
                _check_weight_sign(model, rec, (w, w), f"{ip}.weight", pr)
                out.append(PoissonInput(float(rate), float(w), int(k), rec))
        elif kind == "ou":
            if not _keys(inp, ip, {"type", "mean", "sigma", "tau"}, {"mean", "sigma", "tau"}, pr):
                continue
            ok = True
            for k in ("mean", "sigma", "tau"):
                if not _is_number(inp[k]):
                    pr.add(f"{ip}.{k}", inp[k], "a finite number")
                    ok = False
            if ok and not inp["sigma"] >= 0:
                pr.add(f"{ip}.sigma", inp["sigma"], "a value >= 0")
                ok = False
            if ok and not inp["tau"] > 0:
                pr.add(f"{ip}.tau", inp["tau"], "a time constant in ms > 0")
                ok = False
            if ok:
                out.append(OUInput(float(inp["mean"]), float(inp["sigma"]), float(inp["tau"])))
        else:
            if not _keys(inp, ip, {"type", "amplitude"}, {"amplitude"}, pr):
                continue
            if not _is_number(inp["amplitude"]):
                pr.add(f"{ip}.amplitude", inp["amplitude"], "a finite number")
                continue
            out.append(DCInput(float(inp["amplitude"])))
    return tuple(out)


def _resolve_receptor(rec, model, ptype, weight_hint, path, pr) -> str | None:
    if rec is not None:
        if not isinstance(rec, str) or rec not in model.receptors:
            pr.add(path, rec, f"a receptor of {model.name}: {', '.join(model.receptors)}")
            return None
        return rec
    if ptype == "E":
        return model.excitatory_receptor
    if ptype == "I":
        return model.inhibitory_receptor
    if not model.conductance_based:
        return model.excitatory_receptor if weight_hint >= 0 else model.inhibitory_receptor
    pr.add(path, None, f"a receptor of {model.name} ({', '.join(model.receptors)}); "
                       "give one, or a source population 'type' (E or I)")
    return None


def _check_weight_sign(model, receptor, bounds, path, pr) -> None:
    lo, hi = bounds
    if model.conductance_based or receptor == model.excitatory_receptor:
        if lo < 0:
            pr.add(path, lo, f"weights >= 0 for receptor {receptor} of {model.name} "
                             "(bound a normal distribution with low: 0)")
    elif hi > 0:
        pr.add(path, hi, f"weights <= 0 for receptor {receptor} of {model.name} "
                         "(bound a normal distribution with high: 0)")


def _parse_population(d: Any, path: str, pr: Problems) -> Population | None:
    if isinstance(d, Population):
        d = d.to_dict()
    if not _keys(d, path, {"name", "size", "model", "params", "initial", "inputs", "type",
                           "units", "groups"}, {"name", "size"}, pr):
        return None
    name, size = d["name"], d["size"]
    ok = True
    if not (isinstance(name, str) and NAME_RE.match(name)):
        pr.add(f"{path}.name", name, "a name of letters, digits and _ starting with a letter")
        ok = False
    if not (_is_int(size) and size > 0):
        pr.add(f"{path}.size", size, "a positive integer")
        ok = False
    model_name = d.get("model", "lif_cond")
    if not isinstance(model_name, str) or model_name not in MODELS:
        pr.add(f"{path}.model", model_name, f"one of {', '.join(MODELS)}")
        return None
    model = MODELS[model_name]
    ptype = d.get("type")
    if ptype not in (None, "E", "I"):
        pr.add(f"{path}.type", ptype, "E or I")
        ptype = None
    units, groups = _parse_units(d, path, size if ok else None, pr)
    params: dict[str, Dist | PerUnit] = {}
    raw = d.get("params") or {}
    if not isinstance(raw, dict):
        pr.add(f"{path}.params", raw, "a mapping of parameter names to values")
        raw = {}
    for k, v in raw.items():
        if k not in model.defaults:
            pr.add(f"{path}.params.{k}", v, f"a parameter of {model.name}: "
                                            f"{', '.join(model.defaults)}")
            continue
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, PerUnit):
            v = v.to_dict()
        if isinstance(v, dict) and "per_unit" in v:
            pu = _parse_per_unit(v, f"{path}.params.{k}", units, pr)
            if pu is not None:
                params[k] = pu
            continue
        dist = parse_dist(v, f"{path}.params.{k}", pr)
        if dist is not None:
            params[k] = dist
    # range checks on the bounds of every parameter (defaults filled in)
    for side in (0, 1):
        scalar = {k: (_bounds(params[k])[side] if k in params else v)
                  for k, v in model.defaults.items()}
        for k, v, expected in check_params(model, scalar):
            pr.add(f"{path}.params.{k}", v, expected)
    initial: dict[str, Dist] = {}
    raw = d.get("initial") or {}
    if not isinstance(raw, dict):
        pr.add(f"{path}.initial", raw, "a mapping with V")
        raw = {}
    for k, v in raw.items():
        if k != "V":
            pr.add(f"{path}.initial.{k}", v, "V (the only initial state that can be set)")
            continue
        dist = parse_dist(v, f"{path}.initial.V", pr)
        if dist is not None:
            initial["V"] = dist
    inputs = _parse_inputs(d.get("inputs"), f"{path}.inputs", model, pr)
    if not ok:
        return None
    return Population(name, int(size), model_name, params, initial, inputs, ptype, units,
                      groups)


def _bounds(v: Dist | PerUnit) -> tuple[float, float]:
    if isinstance(v, PerUnit):
        return min(v.values), max(v.values)
    return v.bounds()


def _parse_units(d: dict, path: str, size: int | None, pr: Problems):
    """Unit sizes (>= 0, summing to size) and non-decreasing group indices."""
    units = d.get("units")
    groups = d.get("groups")
    if units is None:
        if groups is not None:
            pr.add(f"{path}.groups", "...", "groups only together with units")
        return None, None
    try:
        arr = np.asarray(units)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or np.any(arr < 0):
        pr.add(f"{path}.units", _short(units), "a non-empty list of unit sizes (integers >= 0)")
        return None, None
    if size is not None and int(arr.sum()) != size:
        pr.add(f"{path}.units", f"sum {int(arr.sum())}", f"unit sizes summing to size ({size})")
        return None, None
    if groups is None:
        return tuple(int(x) for x in arr), None
    g = np.asarray(groups)
    if (g.shape != arr.shape or g.dtype.kind not in "iu" or np.any(g < 0)
            or np.any(np.diff(g) < 0)):
        pr.add(f"{path}.groups", _short(groups),
               f"{arr.size} non-decreasing group indices >= 0, one per unit")
        return tuple(int(x) for x in arr), None
    return tuple(int(x) for x in arr), tuple(int(x) for x in g)


def _short(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) > 8:
        return f"[{', '.join(str(x) for x in list(v[:4]))}, ... ({len(v)} values)]"
    return v


def _parse_per_unit(v: dict, path: str, units, pr: Problems) -> PerUnit | None:
    if set(v) != {"per_unit"}:
        pr.add(path, _short(v), "{per_unit: [one value per unit]}")
        return None
    if units is None:
        pr.add(path, "per_unit", "per-unit values only in a population with units")
        return None
    try:
        vals = np.asarray(v["per_unit"], dtype=float)
    except (TypeError, ValueError):
        vals = np.zeros(0)
    if vals.shape != (len(units),) or not np.all(np.isfinite(vals)):
        pr.add(path, _short(v["per_unit"]), f"{len(units)} finite numbers, one per unit")
        return None
    return PerUnit(tuple(float(x) for x in vals))


def _parse_unit_rule(d: Any, path: str, pr: Problems):
    """unit_local {k} or long_range {k, probs, conduction_ms}; k one int or one per unit."""
    kind = d["kind"] if isinstance(d, dict) else d.kind
    get = d.get if isinstance(d, dict) else (lambda key: getattr(d, key, None))
    if isinstance(d, dict):
        allowed = {"kind", "k"} | ({"probs", "conduction_ms"} if kind == "long_range" else set())
        if not _keys(d, path, allowed, allowed, pr):
            return None
    k = get("k")
    if _is_int(k):
        if k < 0:
            pr.add(f"{path}.k", k, "an in-degree >= 0")
            return None
    else:
        try:
            arr = np.asarray(k)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or np.any(arr < 0):
            pr.add(f"{path}.k", _short(k), "an in-degree >= 0, or one per target unit")
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
            pr.add(f"{path}.{name}", _short(get(name)), "a square (groups x groups) matrix")
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
    if not _keys(d, path, {"kind", arg}, {arg}, pr):
        return None
    v = d[arg]
    if arg == "p":
        if not (_is_number(v) and 0.0 <= v <= 1.0):
            pr.add(f"{path}.p", v, "a probability in [0, 1]")
            return None
        return PairwiseBernoulli(float(v))
    if not (_is_int(v) and v >= 0):
        pr.add(f"{path}.{arg}", v, "an integer >= 0")
        return None
    return FixedInDegree(v) if arg == "k" else FixedTotalNumber(v)


def _parse_projection(d: Any, path: str, pops: dict[str, Population], declared: set,
                      dt: float, pr: Problems) -> Projection | None:
    if isinstance(d, Projection):
        d = {**d.to_dict(), "rule": d.rule}  # keep rule arrays as they are
    if not _keys(d, path, {"source", "target", "rule", "weight", "delay", "receptor",
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
    receptor = _resolve_receptor(d.get("receptor"), model, pre.type, weight.mean(),
                                 f"{path}.receptor", pr)
    if receptor is None:
        return None
    _check_weight_sign(model, receptor, weight.bounds(), f"{path}.weight", pr)
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
        if rule.to_dict().get("k", rule.to_dict().get("n")) >= 2**31:
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
            pr.add(f"{path}.rule", f"units {_short(bad.tolist())}",
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
        pr.add(f"{path}.rule.probs", f"groups {_short(bad.tolist())}",
               "a connectome row with weight on some source group that has neurons "
               "(these units would have no long-range inputs)")


def parse_network(d: Any, dt: float = 0.1, source: str | None = None) -> Network:
    """A validated Network from its mapping (or a Network); raises ConfigError."""
    if isinstance(d, Network):
        d = {"name": d.name, "populations": list(d.populations),
             "projections": list(d.projections)}
    pr = Problems()
    if not _keys(d, "network", {"name", "populations", "projections"}, {"populations"}, pr):
        raise ConfigError(pr.items, source)
    pops: dict[str, Population] = {}
    raw_pops = d["populations"]
    if not isinstance(raw_pops, (list, tuple)) or not raw_pops:
        pr.add("populations", raw_pops, "a non-empty list of populations")
        raw_pops = []
    declared = {n for n in (pd.name if isinstance(pd, Population) else pd.get("name")
                            for pd in raw_pops if isinstance(pd, (dict, Population)))
                if isinstance(n, str)}
    for i, pd in enumerate(raw_pops):
        p = _parse_population(pd, f"populations[{i}]", pr)
        if p is None:
            continue
        if p.name in pops:
            pr.add(f"populations[{i}].name", p.name, "a name not used by another population")
            continue
        pops[p.name] = p
    projs = []
    raw_projs = d.get("projections") or []
    if not isinstance(raw_projs, (list, tuple)):
        pr.add("projections", raw_projs, "a list of projections")
        raw_projs = []
    for i, qd in enumerate(raw_projs):
        q = _parse_projection(qd, f"projections[{i}]", pops, declared, dt, pr)
        if q is not None:
            projs.append(q)
    if len(projs) >= 2**24:
        pr.add("projections", len(projs), "fewer than 2**24 projections")
    total = sum(p.size for p in pops.values())
    if total >= 2**32:
        pr.add("populations", total, "fewer than 2**32 neurons per engine (distributed runs "
                                     "split larger networks)")
    if pr.items:
        raise ConfigError(pr.items, source)
    name = d.get("name", "network")
    return Network(tuple(pops.values()), tuple(projs), str(name))


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML document in ``path``, read safely; raises ConfigError naming the file.

    Refused, each with what was expected: a file over ``MAX_CONFIG_BYTES``; bytes that are
    not UTF-8 (the offset named); invalid YAML; more than ``MAX_YAML_NODES`` values once
    aliases are expanded (an alias bomb costs nothing to write and exponential time to
    walk), nesting deeper than ``MAX_YAML_DEPTH``, or a recursive alias.  The limits are
    checked on the parsed node graph before anything is constructed, in time linear in
    the file."""

    path = Path(path)
    src = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([f"file of {size:,} bytes -- expected a {what} of at most "
                               f"{MAX_CONFIG_BYTES:,} bytes"], src)
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError([f"cannot read the file: {e.strerror or e}"], src) from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError([f"byte {e.start} (line {line}): {raw[e.start:e.start + 1]!r} -- "
                           "expected UTF-8 text"], src) from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)           # its reader refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(node, src)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError([f"nested too deeply -- expected at most {MAX_YAML_DEPTH} levels"],
                          src) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {short_repr(str(e), 400)[1:-1]}"], src) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_graph(root: Any, src: str) -> None:
    """Expanded size and depth of a composed YAML node graph (aliases are shared nodes),
    iteratively and with one visit per distinct node; raises ConfigError past the limits
    or on a cycle."""

    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]

    def children(n: Any) -> list[Any]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [x for kv in n.value for x in kv]
        return []

    while stack:
        n, done = stack.pop()
        key = id(n)
        if done:
            kids = children(n)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_YAML_NODES:
                raise ConfigError([f"line {n.start_mark.line + 1}: {size[key]:,} values once "
                                   f"aliases are expanded -- expected at most "
                                   f"{MAX_YAML_NODES:,} (an alias bomb?)"], src)
            if height[key] > MAX_YAML_DEPTH:
                raise ConfigError([f"line {n.start_mark.line + 1}: nested more than "
                                   f"{MAX_YAML_DEPTH} levels -- expected at most "
                                   f"{MAX_YAML_DEPTH}"], src)
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError([f"line {n.start_mark.line + 1}: a recursive alias -- expected "
                               "a value that does not contain itself"], src)
        on_path.add(key)
        stack.append((n, True))
        stack.extend((c, False) for c in children(n) if id(c) not in size)


def load_config(path: str | Path) -> tuple[Network, SimulationSettings]:
    """Read and validate a YAML configuration: ``simulation``, ``populations``,
    ``projections`` and optionally ``record`` (dtb.engine.recording; in
    ``SimulationSettings.record``).
    The file is read by ``read_yaml`` (bounded in size, expansion and depth)."""
    path = Path(path)
    src = str(path)
    d = read_yaml(path)
    pr = Problems()
    if not _keys(d, "config", {"name", "simulation", "populations", "projections", "record"},
                 {"populations"}, pr):
        raise ConfigError(pr.items, src)
    sim = parse_simulation(d.get("simulation"), pr)
    record = parse_record(d["record"], pr.add) if "record" in d else None
    if pr.items:
        raise ConfigError(pr.items, src)
    net = parse_network({k: v for k, v in d.items() if k not in ("simulation", "record")},
                        sim.dt, src)
    if record is not None:
        check_record(record, net, sim.dt, pr.add)
        if pr.items:
            raise ConfigError(pr.items, src)
        sim = SimulationSettings(sim.dt, sim.t, sim.seed, record)
    return net, sim
