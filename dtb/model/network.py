"""The network description: populations, their inputs, and projection rules.

This is *what* to simulate, nothing about where or how.  Objects are frozen and
plain; ``Network.to_dict`` gives the same mapping a YAML file holds, and
``dtb.model.config.parse_network`` validates either form before anything is built.
Units: ms, mV, Hz; weights in the target model's unit (pA for ``iaf_psc_exp``,
dimensionless trace increments for ``lif_cond``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtb.errors import ConfigError
from dtb.kernels import philox as _ph

DIST_KINDS = {"constant": _ph.D_CONSTANT, "uniform": _ph.D_UNIFORM, "normal": _ph.D_NORMAL,
              "lognormal": _ph.D_LOGNORMAL}
TAIL_SD = 7.0  # support of unbounded normal/lognormal used for bounds (P(beyond) ~ 1e-12)


@dataclass(frozen=True)
class Dist:
    """A scalar distribution.

    ``constant(a)``, ``uniform(a=low, b=high)``, ``normal(a=mean, b=std)``,
    ``lognormal(a=mu, b=sigma)`` of the logarithm; normal and lognormal draws outside
    ``[low, high]`` are redrawn.
    """

    kind: str
    a: float
    b: float = 0.0
    low: float = -math.inf
    high: float = math.inf

    @staticmethod
    def constant(value: float) -> Dist:
        return Dist("constant", float(value))

    @staticmethod
    def uniform(low: float, high: float) -> Dist:
        return Dist("uniform", float(low), float(high))

    @staticmethod
    def normal(mean: float, std: float, low: float = -math.inf, high: float = math.inf) -> Dist:
        return Dist("normal", float(mean), float(std), float(low), float(high))

    @staticmethod
    def lognormal(mu: float, sigma: float, low: float = 0.0, high: float = math.inf) -> Dist:
        return Dist("lognormal", float(mu), float(sigma), float(low), float(high))

    @property
    def code(self) -> int:
        return DIST_KINDS[self.kind]

    def bounds(self) -> tuple[float, float]:
        """The range values fall in (unbounded tails cut at TAIL_SD standard deviations)."""
        if self.kind == "constant":
            return self.a, self.a
        if self.kind == "uniform":
            return self.a, self.b
        lo, hi = self.a - TAIL_SD * self.b, self.a + TAIL_SD * self.b
        if self.kind == "lognormal":
            lo, hi = math.exp(lo), math.exp(min(hi, 700.0))
        return max(lo, self.low), min(hi, self.high)

    def mean(self) -> float:
        """The mean, ignoring any redraw bounds."""
        if self.kind in ("constant", "normal"):
            return self.a
        if self.kind == "uniform":
            return 0.5 * (self.a + self.b)
        return math.exp(self.a + 0.5 * self.b**2)

    def to_dict(self) -> float | dict[str, Any]:
        if self.kind == "constant":
            return self.a
        if self.kind == "uniform":
            return {"dist": "uniform", "low": self.a, "high": self.b}
        names = ("mean", "std") if self.kind == "normal" else ("mu", "sigma")
        d: dict[str, Any] = {"dist": self.kind, names[0]: self.a, names[1]: self.b}
        if self.low != -math.inf and not (self.kind == "lognormal" and self.low == 0.0):
            d["low"] = self.low
        if self.high != math.inf:
            d["high"] = self.high
        return d


@dataclass(frozen=True)
class PerUnit:
    """One value per unit of the population (for example a region's receptor conductance
    scale, the hyperparameters that data assimilation estimates)."""

    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"per_unit": list(self.values)}


Value = float | int | Dist | PerUnit


def as_dist(v: Value) -> Dist:
    if isinstance(v, PerUnit):
        raise TypeError("a per-unit value has no single distribution")
    return v if isinstance(v, Dist) else Dist.constant(float(v))


def value_to_dict(v: Value) -> Any:
    return v.to_dict() if isinstance(v, PerUnit) else as_dist(v).to_dict()


# --- connection rules ------------------------------------------------------------------

@dataclass(frozen=True)
class FixedInDegree:
    """Each target neuron receives exactly ``k`` synapses, sources drawn uniformly."""

    k: int
    kind: str = field(default="fixed_indegree", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k}


@dataclass(frozen=True)
class FixedTotalNumber:
    """``n`` synapses in all, each with a uniformly drawn source and target (NEST's rule)."""

    n: int
    kind: str = field(default="fixed_total_number", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n}


@dataclass(frozen=True)
class PairwiseBernoulli:
    """Each (source, target) pair is connected with probability ``p``."""

    p: float
    kind: str = field(default="pairwise_bernoulli", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "p": self.p}


@dataclass(frozen=True)
class UnitLocal:
    """Each target neuron receives ``k`` synapses from neurons of the *same unit* of the
    source population (uniform, multapses allowed); ``k`` is one number or one per target
    unit.  Source and target populations must have the same units."""

    k: int | tuple[int, ...]
    kind: str = field(default="unit_local", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k if isinstance(self.k, int) else list(self.k)}


@dataclass(frozen=True, eq=False)
class LongRange:
    """Long-range input from a connectome: a target neuron of group g receives ``k``
    synapses (one number or one per target unit); each source group v is drawn with
    probability ``probs[g, v] / sum(probs[g])`` and the source neuron uniformly among the
    source population's neurons in group v.  The synapse's delay is
    ``conduction_ms[g, v]`` plus the projection's delay draw, at least one step.

    Groups are the populations' unit groups (``Population.groups``; regions, when units
    are voxels).  probs and conduction_ms: (G, G) float arrays, G the number of groups.
    """

    k: int | tuple[int, ...]
    probs: np.ndarray
    conduction_ms: np.ndarray
    kind: str = field(default="long_range", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k if isinstance(self.k, int) else list(self.k),
                "probs": np.asarray(self.probs).tolist(),
                "conduction_ms": np.asarray(self.conduction_ms).tolist()}


Rule = FixedInDegree | FixedTotalNumber | PairwiseBernoulli | UnitLocal | LongRange


# --- background inputs -----------------------------------------------------------------

@dataclass(frozen=True)
class PoissonInput:
    """``in_degree`` independent Poisson sources at ``rate`` Hz, each synapse of ``weight``."""

    rate: float
    weight: float
    in_degree: int = 1
    receptor: str | None = None
    type: str = field(default="poisson", init=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "poisson", "rate": self.rate, "weight": self.weight,
                             "in_degree": self.in_degree}
        if self.receptor is not None:
            d["receptor"] = self.receptor
        return d


@dataclass(frozen=True)
class OUInput:
    """Ornstein-Uhlenbeck current: mean, stationary sd ``sigma``, time constant ``tau`` ms."""

    mean: float
    sigma: float
    tau: float
    type: str = field(default="ou", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ou", "mean": self.mean, "sigma": self.sigma, "tau": self.tau}


@dataclass(frozen=True)
class DCInput:
    """A constant current."""

    amplitude: float
    type: str = field(default="dc", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "dc", "amplitude": self.amplitude}


Input = PoissonInput | OUInput | DCInput


# --- populations and projections ------------------------------------------------------

@dataclass(frozen=True)
class Population:
    """``size`` neurons of one model.  ``params`` and ``initial`` values may be
    distributions (drawn per neuron) or, params only, per-unit values; ``type`` ("E" or
    "I") sets default receptors.

    ``units``: optional sizes of the population's consecutive units (voxels or regions;
    they sum to ``size``), which unit-structured rules and per-unit values refer to.
    ``groups``: optional group (region) index of each unit, non-decreasing, so that a
    group's neurons are contiguous; by default every unit is its own group.
    """

    name: str
    size: int
    model: str = "lif_cond"
    params: dict[str, Value] = field(default_factory=dict)
    initial: dict[str, Value] = field(default_factory=dict)
    inputs: tuple[Input, ...] = ()
    type: str | None = None
    units: tuple[int, ...] | None = None
    groups: tuple[int, ...] | None = None

    @property
    def unit_sizes(self) -> tuple[int, ...]:
        """``units``, for code that only runs on populations with units (unit rules, a
        brain's families): an error naming the population where there are none."""
        if self.units is None:
            raise ConfigError([f"population {self.name}: no units -- expected a population "
                               "with per-unit structure (units: [...])"])
        return self.units

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "size": self.size, "model": self.model}
        if self.type is not None:
            d["type"] = self.type
        if self.units is not None:
            d["units"] = list(self.units)
        if self.groups is not None:
            d["groups"] = list(self.groups)
        if self.params:
            d["params"] = {k: value_to_dict(v) for k, v in self.params.items()}
        if self.initial:
            d["initial"] = {k: as_dist(v).to_dict() for k, v in self.initial.items()}
        if self.inputs:
            d["inputs"] = [i.to_dict() for i in self.inputs]
        return d


@dataclass(frozen=True)
class Projection:
    """Synapses from ``source`` to ``target`` population made by ``rule``; ``delay`` in ms."""

    source: str
    target: str
    rule: Rule
    weight: Value
    delay: Value
    receptor: str | None = None
    autapses: bool = True
    multapses: bool = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "target": self.target,
                             "rule": self.rule.to_dict(),
                             "weight": as_dist(self.weight).to_dict(),
                             "delay": as_dist(self.delay).to_dict(),
                             "autapses": self.autapses, "multapses": self.multapses}
        if self.receptor is not None:
            d["receptor"] = self.receptor
        return d


@dataclass(frozen=True)
class Network:
    """Populations (global ids are assigned in this order) and projections."""

    populations: tuple[Population, ...]
    projections: tuple[Projection, ...] = ()
    name: str = "network"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "populations": [p.to_dict() for p in self.populations],
                "projections": [p.to_dict() for p in self.projections]}

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations)

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def offsets(self) -> dict[str, int]:
        """First global id of each population."""
        out, o = {}, 0
        for p in self.populations:
            out[p.name] = o
            o += p.size
        return out
