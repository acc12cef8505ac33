"""What ``dtb build`` is asked for (``BuildOptions``, checked as a whole) and the recipe's
constants: cortical layers and their shares, the calibrated conductances, the size limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dtb.errors import ConfigError
from dtb.model.neurons import LIF_COND, check_params

LAYERS = ("L23", "L4", "L5", "L6")
LAYER_SHARE = (0.338, 0.349, 0.076, 0.221)
LAYER_E_FRACTION = (0.78, 0.80, 0.82, 0.83)
LONG_RANGE_SOURCE_LAYERS = ("L23", "L5")  # cortico-cortical projection neurons
CALIBRATED_G = {"g_AMPA": 0.00743, "g_NMDA": 0.000869, "g_GABA_A": 0.0703,
                "g_GABA_B": 0.00253}  # published voxel model, in-degree 100, ~10 Hz
DEFAULT_HYPER = {"g_AMPA": 0.00743, "g_NMDA": 0.000869, "g_GABA_A": 3 * 0.0703,
                 "g_GABA_B": 3 * 0.00253, "I_e": 0.0}
MAX_NEURONS = 10**12            # 10x the 86 billion neurons of a human brain
MAX_IN_DEGREE = 10**5           # synapses per neuron (cortex: about 1e4)
BYTES_PER_NEURON = 64           # state, parameters, ids (lif_cond, CPU; order of magnitude)
BYTES_PER_SYNAPSE = 8           # target uint32, weight int16, delay uint16 (README, Memory)


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the brain builder (units: mm/ms = m/s, ms)."""

    level: str = "region"
    neurons: int = 20_000
    in_degree: int = 100
    split: tuple[float, float, float] = (4.0, 1.0, 2.0)  # local E : local I : long-range
    e_fraction: float = 0.8
    velocity: float = 3.0  # mm/ms (= m/s); TVB's default conduction speed
    local_delay: float = 1.0  # ms, synaptic delay of unit-local connections
    layers: bool = False
    params: dict[str, float] = field(default_factory=dict)  # lif_cond parameters
    hyper: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_HYPER))
    background: dict[str, float] = field(
        default_factory=lambda: {"mean": 0.6, "sigma": 0.12, "tau": 10.0})  # OU current
    pet_mode: str = "indegree"
    # the long-range recipe (dtb.brain.recipe): weights x coupling, onto inhibitory families
    # x lr_inhibitory more, in-degrees x (SC strength / mean)^lr_sc_exponent, homotopic x
    # the SC's largest weight added between the left and right parts of each region
    coupling: float = 1.0
    lr_inhibitory: float = 1.0
    lr_sc_exponent: float = 0.0
    homotopic: float = 0.0
    # spike-triggered adaptation of the excitatory families: (g_adapt a.u. per spike,
    # tau_adapt ms); g 0 leaves the published model
    adaptation: tuple[float, float] = (0.0, 500.0)

    def check(self) -> None:
        """Every knob in range, before any file is read; raises ConfigError."""
        bad: list[str] = []

        def add(name: str, value: Any, expected: str) -> None:
            bad.append(f"{name}: {value!r} -- expected {expected}")

        if self.level not in ("region", "voxel"):
            add("level", self.level, "region or voxel")
        if not (isinstance(self.neurons, int) and self.neurons > 0):
            add("neurons", self.neurons, "a positive integer")
        if not (isinstance(self.in_degree, int) and self.in_degree > 0):
            add("in_degree", self.in_degree, "a positive integer")
        elif isinstance(self.neurons, int) and self.neurons > MAX_NEURONS:
            need = self.neurons * (BYTES_PER_NEURON + BYTES_PER_SYNAPSE * self.in_degree)
            add("neurons", self.neurons,
                f"at most {MAX_NEURONS:.0e} (10x a human brain): {self.neurons:.3g} neurons "
                f"with {self.in_degree} synapses each would need about {need:.3g} bytes of "
                "memory to run")
        elif isinstance(self.in_degree, int) and self.in_degree > MAX_IN_DEGREE:
            add("in_degree", self.in_degree, f"at most {MAX_IN_DEGREE:,} synapses per neuron")
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            add("split", self.split, "three shares >= 0 (local E, local I, long-range)")
        if not 0 < self.e_fraction < 1:
            add("e_fraction", self.e_fraction, "a fraction in (0, 1)")
        if not self.velocity > 0:
            add("velocity", self.velocity, "a conduction velocity > 0 mm/ms")
        if not self.local_delay >= 0:
            add("local_delay", self.local_delay, "a delay >= 0 ms")
        for name in ("coupling", "lr_inhibitory", "homotopic"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                add(name, v, "a finite factor >= 0")
        if not (isinstance(self.lr_sc_exponent, int | float)
                and math.isfinite(self.lr_sc_exponent) and abs(self.lr_sc_exponent) <= 4):
            add("lr_sc_exponent", self.lr_sc_exponent, "an exponent in [-4, 4]")
        if not (len(self.adaptation) == 2 and all(math.isfinite(x) for x in self.adaptation)
                and self.adaptation[0] >= 0 and self.adaptation[1] > 0):
            add("adaptation", self.adaptation, "(g_adapt >= 0, tau_adapt > 0 ms)")
        if self.pet_mode not in ("indegree", "conductance"):
            add("pet_mode", self.pet_mode, "indegree or conductance")
        for k in self.params:
            if k not in LIF_COND.defaults:
                add(f"params.{k}", self.params[k], f"a parameter of lif_cond "
                                                   f"({', '.join(LIF_COND.defaults)})")
        for k in self.hyper:
            if k not in LIF_COND.defaults:
                add(f"hyper.{k}", self.hyper[k], "a lif_cond parameter")
        merged = {**LIF_COND.defaults, **self.params, **self.hyper}
        if not bad:
            for k, v, expected in check_params(LIF_COND, merged):
                add(f"params.{k}", v, expected)
        for k in ("mean", "sigma", "tau"):
            if k not in self.background:
                add(f"background.{k}", None, "a value (OU current: mean, sigma, tau)")
        if bad:
            raise ConfigError(bad, "dtb build")
