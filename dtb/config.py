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

from dtb.errors import ConfigError
from dtb.network import (
    DCInput,
    Dist,
    FixedInDegree,
    FixedTotalNumber,
    Network,
    OUInput,
    PairwiseBernoulli,
    PoissonInput,
    Population,
    Projection,
)
from dtb.neurons import MODELS, check_params

MAX_DELAY_STEPS = 65535  # delays are stored as uint16 steps
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SimulationSettings:
    """Time step and duration in ms, and the seed (0 <= seed < 2**32)."""

    dt: float = 0.1
    t: float = 1000.0
    seed: int = 1


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, value: Any, expected: str) -> None:
        line = f"{path}: {value!r} -- expected {expected}"
        if line not in self.items:
            self.items.append(line)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(d: Any, path: str, allowed: set[str], required: set[str], pr: _Problems) -> bool:
    if not isinstance(d, dict):
        pr.add(path, d, "a mapping")
        return False
    for k in d:
        if k not in allowed:
            pr.items.append(f"{path}.{k}: unknown key (value {d[k]!r}) -- expected one of "
                            f"{', '.join(sorted(allowed))}")
    ok = True
    for k in sorted(required - set(d)):
        pr.add(f"{path}.{k}", None, "a value (required)")
        ok = False
    return ok


def parse_dist(v: Any, path: str, pr: _Problems) -> Dist | None:
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
    if kind not in spec:
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


def parse_simulation(d: Any, pr: _Problems, path: str = "simulation") -> SimulationSettings:
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


def _parse_inputs(v: Any, path: str, model, ptype, pr: _Problems) -> tuple:
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
        if rec not in model.receptors:
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


def _parse_population(d: Any, path: str, pr: _Problems) -> Population | None:
    if isinstance(d, Population):
        d = d.to_dict()
    if not _keys(d, path, {"name", "size", "model", "params", "initial", "inputs", "type"},
                 {"name", "size"}, pr):
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
    if model_name not in MODELS:
        pr.add(f"{path}.model", model_name, f"one of {', '.join(MODELS)}")
        return None
    model = MODELS[model_name]
    ptype = d.get("type")
    if ptype not in (None, "E", "I"):
        pr.add(f"{path}.type", ptype, "E or I")
        ptype = None
    params: dict[str, Dist] = {}
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
        dist = parse_dist(v, f"{path}.params.{k}", pr)
        if dist is not None:
            params[k] = dist
    # range checks on the bounds of every parameter (defaults filled in)
    for side in (0, 1):
        scalar = {k: (params[k].bounds()[side] if k in params else v)
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
    inputs = _parse_inputs(d.get("inputs"), f"{path}.inputs", model, ptype, pr)
    if not ok:
        return None
    return Population(name, int(size), model_name, params, initial, inputs, ptype)


def _parse_rule(d: Any, path: str, pr: _Problems):
    if hasattr(d, "to_dict"):
        d = d.to_dict()
    kinds = {"fixed_indegree": "k", "fixed_total_number": "n", "pairwise_bernoulli": "p"}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
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
                      dt: float, pr: _Problems) -> Projection | None:
    if isinstance(d, Projection):
        d = d.to_dict()
    if not _keys(d, path, {"source", "target", "rule", "weight", "delay", "receptor",
                           "autapses", "multapses"},
                 {"source", "target", "rule", "weight", "delay"}, pr):
        return None
    src, tgt = d["source"], d["target"]
    ok = True
    for k, v in (("source", src), ("target", tgt)):
        if v not in declared:
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
    if lo < dt * (1 - 1e-9):
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


def parse_network(d: Any, dt: float = 0.1, source: str | None = None) -> Network:
    """A validated Network from its mapping (or a Network); raises ConfigError."""
    if isinstance(d, Network):
        d = d.to_dict()
    pr = _Problems()
    if not _keys(d, "network", {"name", "populations", "projections"}, {"populations"}, pr):
        raise ConfigError(pr.items, source)
    pops: dict[str, Population] = {}
    raw_pops = d["populations"]
    if not isinstance(raw_pops, (list, tuple)) or not raw_pops:
        pr.add("populations", raw_pops, "a non-empty list of populations")
        raw_pops = []
    declared = {(pd.name if isinstance(pd, Population) else pd.get("name"))
                for pd in raw_pops if isinstance(pd, (dict, Population))}
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


def load_config(path: str | Path) -> tuple[Network, SimulationSettings]:
    """Read and validate a YAML configuration: ``simulation``, ``populations``, ``projections``."""
    import yaml

    path = Path(path)
    src = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError([f"cannot read the file: {e.strerror or e}"], src) from e
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], src) from e
    pr = _Problems()
    if not _keys(d, "config", {"name", "simulation", "populations", "projections"},
                 {"populations"}, pr):
        raise ConfigError(pr.items, src)
    sim = parse_simulation(d.get("simulation"), pr)
    if pr.items:
        raise ConfigError(pr.items, src)
    net = parse_network({k: v for k, v in d.items() if k != "simulation"}, sim.dt, src)
    return net, sim
