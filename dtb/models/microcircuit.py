"""The Potjans & Diesmann (2014) cortical microcircuit, as NEST's example builds it.

Potjans TC, Diesmann M (2014) The cell-type specific cortical microcircuit. Cereb Cortex
24:785.  Parameters: ../shared/reference/microcircuit.md.  Scaling keeps the full-scale
in-degrees (the synapse count of each projection is scaled with the target population),
so no DC compensation is needed.
"""

from __future__ import annotations

import math

import numpy as np

from dtb.errors import ArgumentError
from dtb.model.network import Dist, FixedTotalNumber, Network, PoissonInput, Population, Projection

POPULATIONS = ("L23E", "L23I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")
N_FULL = (20683, 5834, 21915, 5479, 4850, 1065, 14395, 2948)
K_EXT = (1600, 1500, 2100, 1900, 2000, 1900, 2900, 2100)
# row = target, column = source
CONN_PROBS = np.array([
    [0.1009, 0.1689, 0.0437, 0.0818, 0.0323, 0.0, 0.0076, 0.0],
    [0.1346, 0.1371, 0.0316, 0.0515, 0.0755, 0.0, 0.0042, 0.0],
    [0.0077, 0.0059, 0.0497, 0.1350, 0.0067, 0.0003, 0.0453, 0.0],
    [0.0691, 0.0029, 0.0794, 0.1597, 0.0033, 0.0, 0.1057, 0.0],
    [0.1004, 0.0622, 0.0505, 0.0057, 0.0831, 0.3726, 0.0204, 0.0],
    [0.0548, 0.0269, 0.0257, 0.0022, 0.0600, 0.3158, 0.0086, 0.0],
    [0.0156, 0.0066, 0.0211, 0.0166, 0.0572, 0.0197, 0.0396, 0.2252],
    [0.0364, 0.0010, 0.0034, 0.0005, 0.0277, 0.0080, 0.0658, 0.1443],
])
PUBLISHED_RATES_HZ = {  # full scale, Potjans & Diesmann (2014) Fig. 6 / NEST example
    "L23E": 0.9, "L23I": 2.8, "L4E": 4.4, "L4I": 5.7,
    "L5E": 7.6, "L5I": 8.7, "L6E": 1.1, "L6I": 7.6,
}
NEURON = {"C_m": 250.0, "tau_m": 10.0, "tau_syn_ex": 0.5, "tau_syn_in": 0.5, "t_ref": 2.0,
          "E_L": -65.0, "V_th": -50.0, "V_reset": -65.0}
PSC_E = 87.8  # pA, PSP about 0.15 mV
W_REL_SD = 0.1
G = -4.0
DELAY_E, DELAY_I, DELAY_REL_SD = 1.5, 0.75, 0.5
BG_RATE = 8.0  # Hz per external synapse


def full_scale_synapses() -> np.ndarray:
    """Synapse counts K[target, source] of the full-scale model."""
    n = np.array(N_FULL, float)
    prod = np.outer(n, n)
    return np.round(np.log(1.0 - CONN_PROBS) / np.log(1.0 - 1.0 / prod)).astype(np.int64)


def microcircuit(scale: float = 0.1, dt: float = 0.1) -> Network:
    """The microcircuit with round(scale * N) neurons per population.

    dt (ms) bounds the delay distributions from below, as NEST's redraw at the resolution.
    """
    if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ArgumentError(f"scale: {scale!r} -- expected a number in (0, 1]")
    sizes = [max(1, int(round(n * scale))) for n in N_FULL]
    k_full = full_scale_synapses()
    pops = []
    for i, name in enumerate(POPULATIONS):
        pops.append(Population(
            name=name, size=sizes[i], model="iaf_psc_exp", type=name[-1],
            params=dict(NEURON),
            initial={"V": Dist.normal(-58.0, 10.0)},
            inputs=(PoissonInput(rate=BG_RATE, weight=PSC_E, in_degree=K_EXT[i], receptor="ex"),),
        ))
    projs = []
    for t, tgt in enumerate(POPULATIONS):
        for s, src in enumerate(POPULATIONS):
            n_syn = int(round(k_full[t, s] * sizes[t] / N_FULL[t]))
            if n_syn == 0:
                continue
            exc = src.endswith("E")
            w = PSC_E * (2.0 if (tgt == "L23E" and src == "L4E") else 1.0) * (1.0 if exc else G)
            sd = abs(w) * W_REL_SD
            weight = Dist.normal(w, sd, low=0.0) if exc else Dist.normal(w, sd, high=0.0)
            d_mean = DELAY_E if exc else DELAY_I
            delay = Dist.normal(d_mean, d_mean * DELAY_REL_SD, low=dt)
            projs.append(Projection(src, tgt, FixedTotalNumber(n_syn), weight, delay,
                                    receptor="ex" if exc else "in"))
    return Network(tuple(pops), tuple(projs), name=f"microcircuit_scale{scale:g}")


def expected_synapses(scale: float) -> int:
    """Total synapse count the model should have at this scale."""
    sizes = [max(1, int(round(n * scale))) for n in N_FULL]
    k = full_scale_synapses()
    return int(sum(int(round(k[t, s] * sizes[t] / N_FULL[t]))
                   for t in range(8) for s in range(8)))


assert math.isclose(sum(N_FULL), 77169)
