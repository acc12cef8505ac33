"""Validation of network and simulation configurations (YAML files or Python objects).

One validator serves both: Python objects are turned into the mapping a YAML file holds
(``Network.to_dict``) and parsed back.  Every problem is collected and reported at once,
each naming the file, the field path, the offending value and what was expected, before
any neuron or synapse is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import ConfigError
from dtb.model.config_fields import (
    NAME_RE,
    check_keys,
    check_weight_sign,
    is_int,
    is_number,
    parse_dist,
    resolve_receptor,
    short_list,
    value_bounds,
)
from dtb.model.config_rules import parse_projection
from dtb.model.network import (
    DCInput,
    Input,
    Network,
    OUInput,
    PerUnit,
    PoissonInput,
    Population,
    Value,
)
from dtb.model.neurons import MODELS, check_params
from dtb.model.problems import Problems
from dtb.model.yamlfile import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, read_yaml

# parse_dist, read_yaml and the YAML limits live beside (config_fields, yamlfile) and are
# re-exported: dtb.model.config is where the configuration's API is found
__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_DEPTH", "SimulationSettings", "load_config",
           "parse_dist", "parse_network", "parse_simulation", "read_yaml"]
from dtb.model.record_spec import RecordSpec, check_record, parse_record


@dataclass(frozen=True)
class SimulationSettings:
    """Time step and duration in ms, the seed (0 <= seed < 2**32), and what to record
    (the config's ``record:`` section, dtb.model.record_spec.RecordSpec; None: the defaults)."""

    dt: float = 0.1
    t: float = 1000.0
    seed: int = 1
    record: RecordSpec | None = None


def parse_simulation(d: Any, pr: Problems, path: str = "simulation") -> SimulationSettings:
    if d is None:
        return SimulationSettings()
    if not check_keys(d, path, {"dt", "t", "seed"}, set(), pr):
        return SimulationSettings()
    s = SimulationSettings()
    dt = d.get("dt", s.dt)
    t = d.get("t", s.t)
    seed = d.get("seed", s.seed)
    if not (is_number(dt) and dt > 0):
        pr.add(f"{path}.dt", dt, "a time step in ms > 0")
        dt = s.dt
    if not (is_number(t) and t > 0):
        pr.add(f"{path}.t", t, "a model time in ms > 0")
        t = s.t
    if not (is_int(seed) and 0 <= seed < 2**32):
        pr.add(f"{path}.seed", seed, "an integer in [0, 2**32)")
        seed = s.seed
    return SimulationSettings(float(dt), float(t), int(seed))


def _parse_inputs(v: Any, path: str, model, pr: Problems) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)):
        pr.add(path, v, "a list of inputs")
        return ()
    out: list[Input] = []
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
            if not check_keys(inp, ip, {"type", "rate", "weight", "in_degree", "receptor"},
                              {"rate", "weight"}, pr):
                continue
            rate, w, k = inp["rate"], inp["weight"], inp.get("in_degree", 1)
            ok = True
            if not (is_number(rate) and rate >= 0):
                pr.add(f"{ip}.rate", rate, "a rate in Hz >= 0")
                ok = False
            if not is_number(w):
                pr.add(f"{ip}.weight", w, "a finite number")
                ok = False
            if not (is_int(k) and k >= 0):
                pr.add(f"{ip}.in_degree", k, "an integer >= 0")
                ok = False
            # external drive is excitatory unless the receptor (or, for currents, the
            # weight's sign) says otherwise: the population's own type does not matter
            rec = inp.get("receptor")
            if rec is None:
                rec = (model.inhibitory_receptor
                       if (not model.conductance_based and ok and w < 0)
                       else model.excitatory_receptor)
            rec = resolve_receptor(rec, model, None, 0.0, f"{ip}.receptor", pr)
            if ok and rec is not None:
                check_weight_sign(model, rec, (w, w), f"{ip}.weight", pr)
                out.append(PoissonInput(float(rate), float(w), int(k), rec))
        elif kind == "ou":
            if not check_keys(inp, ip, {"type", "mean", "sigma", "tau"},
                              {"mean", "sigma", "tau"}, pr):
                continue
            ok = True
            for k in ("mean", "sigma", "tau"):
                if not is_number(inp[k]):
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
            if not check_keys(inp, ip, {"type", "amplitude"}, {"amplitude"}, pr):
                continue
            if not is_number(inp["amplitude"]):
                pr.add(f"{ip}.amplitude", inp["amplitude"], "a finite number")
                continue
            out.append(DCInput(float(inp["amplitude"])))
    return tuple(out)


def _parse_population(d: Any, path: str, pr: Problems) -> Population | None:
    if isinstance(d, Population):
        d = d.to_dict()
    if not check_keys(d, path, {"name", "size", "model", "params", "initial", "inputs", "type",
                                "units", "groups"}, {"name", "size"}, pr):
        return None
    name, size = d["name"], d["size"]
    ok = True
    if not (isinstance(name, str) and NAME_RE.match(name)):
        pr.add(f"{path}.name", name, "a name of letters, digits and _ starting with a letter")
        ok = False
    if not (is_int(size) and size > 0):
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
    params: dict[str, Value] = {}
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
        scalar = {k: (value_bounds(params[k])[side] if k in params else v)
                  for k, v in model.defaults.items()}
        for k, v, expected in check_params(model, scalar):
            pr.add(f"{path}.params.{k}", v, expected)
    initial: dict[str, Value] = {}
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
        pr.add(f"{path}.units", short_list(units), "a non-empty list of unit sizes (integers >= 0)")
        return None, None
    if size is not None and int(arr.sum()) != size:
        pr.add(f"{path}.units", f"sum {int(arr.sum())}", f"unit sizes summing to size ({size})")
        return None, None
    if groups is None:
        return tuple(int(x) for x in arr), None
    g = np.asarray(groups)
    if (g.shape != arr.shape or g.dtype.kind not in "iu" or np.any(g < 0)
            or np.any(np.diff(g) < 0)):
        pr.add(f"{path}.groups", short_list(groups),
               f"{arr.size} non-decreasing group indices >= 0, one per unit")
        return tuple(int(x) for x in arr), None
    return tuple(int(x) for x in arr), tuple(int(x) for x in g)


def _parse_per_unit(v: dict, path: str, units, pr: Problems) -> PerUnit | None:
    if set(v) != {"per_unit"}:
        pr.add(path, short_list(v), "{per_unit: [one value per unit]}")
        return None
    if units is None:
        pr.add(path, "per_unit", "per-unit values only in a population with units")
        return None
    try:
        vals = np.asarray(v["per_unit"], dtype=float)
    except (TypeError, ValueError):
        vals = np.zeros(0)
    if vals.shape != (len(units),) or not np.all(np.isfinite(vals)):
        pr.add(path, short_list(v["per_unit"]), f"{len(units)} finite numbers, one per unit")
        return None
    return PerUnit(tuple(float(x) for x in vals))


def parse_network(d: Any, dt: float = 0.1, source: str | None = None) -> Network:
    """A validated Network from its mapping (or a Network); raises ConfigError."""
    if isinstance(d, Network):
        d = {"name": d.name, "populations": list(d.populations),
             "projections": list(d.projections)}
    pr = Problems()
    if not check_keys(d, "network", {"name", "populations", "projections"}, {"populations"}, pr):
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
        q = parse_projection(qd, f"projections[{i}]", pops, declared, dt, pr)
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
    """Read and validate a YAML configuration: ``simulation``, ``populations``,
    ``projections`` and optionally ``record`` (dtb.engine.recording; in
    ``SimulationSettings.record``).
    The file is read by ``read_yaml`` (bounded in size, expansion and depth)."""
    path = Path(path)
    src = str(path)
    d = read_yaml(path)
    pr = Problems()
    if not check_keys(d, "config",
                      {"name", "simulation", "populations", "projections", "record"},
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
