"""``dtb fit``'s fitted parameters and their priors, parsed and checked.

Parameters (``--param``, repeatable, or ``--params FILE.yaml``)::

    --param coupling=0.25:3            # NAME=LOW:HIGH, prior centred in the middle
    --param coupling.I=0:1@0.25        # NAME=LOW:HIGH@CENTRE
    --param E.I_e=-0.2:0.2@0/shift     # a uniform shift (mode "shift") instead of a scale
    --param E.I_e=-0.1:0.1@0/shift:t1t2   # a shift along a map: I_e + x * map (per region)

    # FILE.yaml
    parameters:
      - {name: coupling, low: 0.25, high: 3, centre: 1}
      - {name: E.I_e, low: -0.2, high: 0.2, centre: 0, mode: shift}
      - {name: E.g_AMPA, low: -0.1, high: 0.1, mode: shift, map: sc_strength}

A map is a column of the region table ``--maps FILE`` (dtb.brain.maps: a ``label`` or
``name`` column and one column per map), or the built-in ``sc_strength`` (log SC
in-strength); either is standardised over regions (mean 0, SD 1), so a shift's bounds are
per SD of the map.  A hyperparameter may follow several maps (one ``--param`` each:
nominal + a * map1 + b * map2, pMFM's parameterisation); scales multiply the nominal value
first, shifts then add (``fit.hyper_values``).  Each map once per hyperparameter.

Without either: ``DEFAULT_PARAMS``, the three long-range parameters of the regime study
(``benchmarks/README.md``): coupling 0.25-3 (centre 1), coupling.I 0-1 (0.25),
sc_exponent 0-1 (0.5); for a brain built with E-cell adaptation (``dtb build
--adaptation``, read from the brain file's header) ``ADAPTED_PARAMS``, the same three around
the adaptation study's steady point: coupling 0.15-1.5 (0.5), coupling.I 0-1 (0.25),
sc_exponent 0.25-1.75 (1).  Both are relative to the brain as built.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from dtb.assimilation.fit import FitParameter, parameter_keys
from dtb.brain.maps import BUILT_IN, FC_STRENGTH, SC_STRENGTH
from dtb.brain.spec import peek_build_options
from dtb.errors import ConfigError
from dtb.model.config import read_yaml

__all__ = ["DEFAULT_PARAMS", "ADAPTED_PARAMS", "default_params", "parse_param",
           "check_params", "check_truth"]

#: (name, low, high, centre): the regime study's long-range parameters
DEFAULT_PARAMS = (("coupling", 0.25, 3.0, 1.0), ("coupling.I", 0.0, 1.0, 0.25),
                  ("sc_exponent", 0.0, 1.0, 0.5))
#: the same around the steady point of brains with E-cell adaptation ("Adaptation: steady
#: regions" in benchmarks/README.md: G 0.5, coupling.I 0.25, k ~ s^1), room on both sides
ADAPTED_PARAMS = (("coupling", 0.15, 1.5, 0.5), ("coupling.I", 0.0, 1.0, 0.25),
                  ("sc_exponent", 0.25, 1.75, 1.0))
_PARAM = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)=([^:@/]+):([^:@/]+)"
                    r"(?:@([^:@/]+))?(?:/(scale|shift)(?::([A-Za-z_][\w.-]*))?)?$")


def _num(text: str, flag: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError([f"{flag}: {what} {text!r} -- expected a number"], "dtb fit") from None
    if not np.isfinite(v):
        raise ConfigError([f"{flag}: {what} {text!r} -- expected a finite number"], "dtb fit")
    return v


def parse_param(text: str) -> tuple[FitParameter, float]:
    """``NAME=LOW:HIGH[@CENTRE][/shift[:MAP]]`` -> (FitParameter, prior centre)."""
    m = _PARAM.match(text.strip())
    if not m:
        raise ConfigError([f"--param: {text!r} -- expected NAME=LOW:HIGH[@CENTRE][/shift"
                           "[:MAP]] (e.g. coupling=0.25:3@1, E.I_e=-0.2:0.2/shift, "
                           "E.I_e=-0.1:0.1/shift:sc_strength)"], "dtb fit")
    name, lo, hi, c, mode, map_name = m.groups()
    if map_name is not None and mode != "shift":
        raise ConfigError([f"--param: {text!r} -- a map follows /shift only (a map shifts: "
                           f"{name}=LOW:HIGH/shift:{map_name})"], "dtb fit")
    return _param(name, _num(lo, "--param", f"{name} low"), _num(hi, "--param", f"{name} high"),
                  None if c is None else _num(c, "--param", f"{name} centre"), mode or "scale",
                  "--param", map_name)


def _param(name: str, lo: float, hi: float, c: float | None, mode: str,
           where: str, map_name: str | None = None) -> tuple[FitParameter, float]:
    p = FitParameter(name, lo, hi, mode=mode,
                     map_name=None if map_name is None else map_name.lower())
    centre = (lo + hi) / 2 if c is None else c
    if not lo < centre < hi:
        raise ConfigError([f"{where}: {name} centre {centre:g} -- expected a value strictly "
                           f"between its bounds ({lo:g}, {hi:g})"], "dtb fit")
    return p, float(centre)


def _params_yaml(path: str) -> list[tuple[FitParameter, float]]:
    d = read_yaml(path, "parameter file")
    items = d.get("parameters") if isinstance(d, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(["parameters: expected a list of {name, low, high[, centre, "
                           "mode, map]} mappings"], path)
    out = []
    for i, it in enumerate(items):
        where = f"parameters[{i}]"
        if not isinstance(it, dict) or not {"name", "low", "high"} <= set(it):
            raise ConfigError([f"{where}: {it!r} -- expected a mapping with name, low, high "
                               "(and optionally centre, mode, map)"], path)
        extra = set(it) - {"name", "low", "high", "centre", "mode", "map"}
        if extra:
            raise ConfigError([f"{where}: unknown key(s) {sorted(extra)} -- expected name, "
                               "low, high, centre, mode, map"], path)
        vals: list[float | None] = []
        for k in ("low", "high", "centre"):
            v = it.get(k)
            if v is None and k == "centre":
                vals.append(None)
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise ConfigError([f"{where}.{k}: {v!r} -- expected a finite number"], path)
            vals.append(float(v))
        mode = it.get("mode", "scale")
        if mode not in ("scale", "shift"):
            raise ConfigError([f"{where}.mode: {mode!r} -- expected scale or shift"], path)
        map_name = it.get("map")
        if map_name is not None and (not isinstance(map_name, str) or mode != "shift"):
            raise ConfigError([f"{where}.map: {map_name!r} -- expected the name of a map "
                               "(a column of --maps, or sc_strength) with mode: shift"], path)
        low, high = vals[0], vals[1]
        assert low is not None and high is not None  # required above; only centre may be None
        try:
            out.append(_param(str(it["name"]), low, high, vals[2], mode, where, map_name))
        except ConfigError as e:
            raise ConfigError(e.problems, path) from None
    return out


def default_params(brain: str | Path | None) -> tuple[tuple[str, float, float, float], ...]:
    """The prior without --param/--params: ``ADAPTED_PARAMS`` for a brain whose header
    records E-cell adaptation (``adaptation`` g_adapt > 0), else ``DEFAULT_PARAMS`` (also
    where the file cannot be read: loading it later says why)."""
    opts = peek_build_options(brain) if brain is not None else None
    try:
        adapted = opts is not None and float(opts.get("adaptation", [0.0])[0]) > 0
    except (TypeError, ValueError, IndexError):
        adapted = False
    return ADAPTED_PARAMS if adapted else DEFAULT_PARAMS


def check_params(a: argparse.Namespace, bad: list[str]) -> list[tuple[FitParameter, float]]:
    """The fitted parameters and their prior centres (--param, --params or the default);
    problems appended to ``bad`` (a --params file's are raised at once)."""
    if a.param and a.params:
        bad.append("--param and --params: both given -- expected one of them")
    pairs: list[tuple[FitParameter, float]] = []
    try:
        if a.params:
            pairs = _params_yaml(a.params)
        elif a.param:
            pairs = [parse_param(t) for t in a.param]
        else:
            pairs = [_param(n, lo, hi, c, "scale", "default")
                     for n, lo, hi, c in default_params(a.brain)]
    except ConfigError as e:
        if a.params:
            raise
        bad.extend(e.problems)
    need = sorted({p.map_name for p, _ in pairs
                   if p.map_name is not None and p.map_name not in BUILT_IN})
    if need and not a.maps:
        bad.append(f"--param: map(s) {need} -- expected --maps FILE, a region table with "
                   f"those columns (or a built-in map: {SC_STRENGTH}, {FC_STRENGTH})")
    if any(p.map_name == FC_STRENGTH for p, _ in pairs) and not a.group_fc:
        bad.append(f"--param: map {FC_STRENGTH!r} -- expected --group-fc FILE, the group "
                   "FC it is taken from")
    keys = parameter_keys([p for p, _ in pairs])      # E.I_e along two maps: two keys
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        bad.append(f"--param: {dup} given more than once -- expected each parameter (or "
                   "hyperparameter and map) once")
    return pairs


def check_truth(a: argparse.Namespace, names: list[str], bad: list[str]) -> dict[str, float]:
    """A twin experiment's true values (--truth), one for every fitted parameter."""
    truth: dict[str, float] = {}
    for t in a.truth:
        name, eq, val = t.partition("=")
        if not eq:
            bad.append(f"--truth: {t!r} -- expected NAME=VALUE")
            continue
        try:
            truth[name] = _num(val, "--truth", name)
        except ConfigError as e:
            bad.extend(e.problems)
            continue
        if name not in names:
            bad.append(f"--truth: {name!r} -- expected one of the fitted parameters {names}")
    if truth and set(truth) != set(names):
        bad.append(f"--truth: values for {sorted(truth)} -- expected one for every fitted "
                   f"parameter {names}")
    return truth
