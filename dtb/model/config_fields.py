"""The fields of a configuration, checked one at a time: numbers, mappings with known keys,
distributions, receptors and weight signs.  Every problem is added to a ``Problems``
(dtb.model.problems) so that a ``ConfigError`` reports them all at once.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from dtb.model.network import Dist, PerUnit, Value, as_dist
from dtb.model.problems import Problems, short_repr

MAX_DELAY_STEPS = 65535  # delays are stored as uint16 steps
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_keys(d: Any, path: str, allowed: set[str], required: set[str], pr: Problems) -> bool:
    """``d`` is a mapping with only ``allowed`` keys and every ``required`` one; each
    problem is added to ``pr``.  False when ``d`` is no mapping or lacks a required key."""
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
    if is_number(v):
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
    if not check_keys(v, path, req | opt | {"dist"}, req, pr):
        return None
    bad = False
    for k in req | (opt & set(v)):
        x = v[k]
        if not (is_number(x) or (k in ("low", "high") and isinstance(x, float) and math.isinf(x))):
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


def short_list(v: Any) -> Any:
    """A long list shortened for a message (its first values and its length)."""
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) > 8:
        return f"[{', '.join(str(x) for x in list(v[:4]))}, ... ({len(v)} values)]"
    return v


def value_bounds(v: Value) -> tuple[float, float]:
    """The smallest and largest value ``v`` can take."""
    if isinstance(v, PerUnit):
        return min(v.values), max(v.values)
    return as_dist(v).bounds()


def resolve_receptor(rec: Any, model: Any, ptype: str | None, weight_hint: float, path: str,
                     pr: Problems) -> str | None:
    """The receptor an input or projection targets: ``rec`` if given (checked), else the
    model's excitatory or inhibitory one by the source's type (or the weight's sign)."""
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


def check_weight_sign(model: Any, receptor: str, bounds: tuple[float, float], path: str,
                      pr: Problems) -> None:
    """Weights of the sign the receptor needs (>= 0 for conductances and excitation)."""
    lo, hi = bounds
    if model.conductance_based or receptor == model.excitatory_receptor:
        if lo < 0:
            pr.add(path, lo, f"weights >= 0 for receptor {receptor} of {model.name} "
                             "(bound a normal distribution with low: 0)")
    elif hi > 0:
        pr.add(path, hi, f"weights <= 0 for receptor {receptor} of {model.name} "
                         "(bound a normal distribution with high: 0)")
