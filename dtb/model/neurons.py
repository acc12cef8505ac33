"""Neuron models: parameters (with units and defaults), receptors, and their packed form.

Two models, both integrated with exact exponential propagators at step ``dt`` (ms):

``iaf_psc_exp``
    Current-based LIF with exponential synaptic currents, NEST's model of that name
    (Tsodyks et al. 2000; exact integration after Rotter & Diesmann 1999).  Units: pF, ms,
    mV, pA.  Receptors ``ex`` and ``in`` (weights in pA; ``in`` weights are negative).

``lif_cond``
    The DTB conductance-based LIF (Lu et al. 2024) with AMPA, NMDA, GABA_A and GABA_B
    channels::

        C dV/dt = -g_L (V - V_L) + sum_u g_u J_u B_u(V) (V_u - V) + I
        J_u(t+dt) = J_u(t) exp(-dt/tau_u) + (weights of spikes arriving)

    ``B_u = 1`` except for NMDA with ``mg_block`` on: ``B(V) = 1 / (1 + [Mg] exp(-0.062 V) / 3.57)``
    (Jahr & Stevens 1990).  Within a step the conductances are frozen, so V moves
    exactly (exponential Euler) toward its instantaneous steady state; traces decay
    exactly.

    An optional spike-triggered adaptation conductance (off by default, as published) adds
    ``g_adapt w (E_adapt - V)`` to the sum, where the trace ``w`` (syn row 4) decays with
    ``tau_adapt`` (ms) and steps by 1 at each of the neuron's own spikes: the slow
    potassium current that lowers a neuron's rate during sustained firing (conductance-
    based adaptation, as in Destexhe 2009).

    Units: ms, mV; C and g in the published arbitrary units (tau_m = C/g_L).
    Receptors: ``AMPA``, ``NMDA``, ``GABA_A``, ``GABA_B`` and the published pairings
    ``E`` (AMPA and NMDA, the same weight) and ``I`` (GABA_A and GABA_B).  Weights are
    dimensionless trace increments (>= 0); ``g_*`` are the per-population scales that the
    assimilation estimates.

Both hold V at V_reset for round(t_ref / dt) whole steps after a spike.  The packed form is
a float64 matrix ``(N_PARAM_ROWS, n)`` of per-neuron constants (propagators included), so
parameters may differ per neuron at no extra cost in the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.kernels import rows as row

N_CHANNELS = 4  # receptor channels a port can feed (psc_exp uses 2, lif_cond 4)
N_SYN = 5  # rows of the per-neuron trace state: the channels, then lif_cond's adaptation
N_PARAM_ROWS = 24

MODEL_CODES = {"iaf_psc_exp": 0, "lif_cond": 1}


@dataclass(frozen=True)
class NeuronModel:
    name: str
    code: int
    defaults: dict[str, float]
    units: dict[str, str]
    receptors: dict[str, tuple[int, ...]]  # receptor name -> synaptic channels it feeds
    weight_unit: str
    current_unit: str
    excitatory_receptor: str
    inhibitory_receptor: str
    conductance_based: bool


IAF_PSC_EXP = NeuronModel(
    name="iaf_psc_exp",
    code=0,
    defaults={
        "C_m": 250.0, "tau_m": 10.0, "tau_syn_ex": 0.5, "tau_syn_in": 0.5, "t_ref": 2.0,
        "E_L": -65.0, "V_th": -50.0, "V_reset": -65.0, "I_e": 0.0,
    },
    units={
        "C_m": "pF", "tau_m": "ms", "tau_syn_ex": "ms", "tau_syn_in": "ms", "t_ref": "ms",
        "E_L": "mV", "V_th": "mV", "V_reset": "mV", "I_e": "pA",
    },
    receptors={"ex": (0,), "in": (1,)},
    weight_unit="pA",
    current_unit="pA",
    excitatory_receptor="ex",
    inhibitory_receptor="in",
    conductance_based=False,
)

LIF_COND = NeuronModel(
    name="lif_cond",
    code=1,
    defaults={
        "C": 1.0, "g_L": 0.03, "V_L": -75.0, "V_th": -50.0, "V_reset": -65.0, "t_ref": 5.0,
        "E_AMPA": 0.0, "E_NMDA": 0.0, "E_GABA_A": -70.0, "E_GABA_B": -100.0,
        "tau_AMPA": 2.0, "tau_NMDA": 40.0, "tau_GABA_A": 10.0, "tau_GABA_B": 50.0,
        "g_AMPA": 5.0 / 275.0, "g_NMDA": 5.0 / 4000.0, "g_GABA_A": 3.0 / 30.0,
        "g_GABA_B": 3.0 / 730.0, "I_e": 0.0, "mg_block": 0.0, "Mg": 1.0,
        "g_adapt": 0.0, "E_adapt": -80.0, "tau_adapt": 500.0,
    },
    units={
        "C": "a.u.", "g_L": "a.u.", "V_L": "mV", "V_th": "mV", "V_reset": "mV", "t_ref": "ms",
        "E_AMPA": "mV", "E_NMDA": "mV", "E_GABA_A": "mV", "E_GABA_B": "mV",
        "tau_AMPA": "ms", "tau_NMDA": "ms", "tau_GABA_A": "ms", "tau_GABA_B": "ms",
        "g_AMPA": "a.u.", "g_NMDA": "a.u.", "g_GABA_A": "a.u.", "g_GABA_B": "a.u.",
        "I_e": "a.u.", "mg_block": "0 or 1", "Mg": "mM",
        "g_adapt": "a.u. per spike", "E_adapt": "mV", "tau_adapt": "ms",
    },
    receptors={"AMPA": (0,), "NMDA": (1,), "GABA_A": (2,), "GABA_B": (3,),
               "E": (0, 1), "I": (2, 3)},
    weight_unit="1 (trace increment)",
    current_unit="a.u.",
    excitatory_receptor="E",
    inhibitory_receptor="I",
    conductance_based=True,
)

MODELS: dict[str, NeuronModel] = {m.name: m for m in (IAF_PSC_EXP, LIF_COND)}

LIF_CHANNELS = ("AMPA", "NMDA", "GABA_A", "GABA_B")


def refractory_steps(t_ref: np.ndarray, dt: float) -> np.ndarray:
    """Whole steps of refractoriness: t_ref / dt rounded, halves up (as NEST)."""
    return np.floor(np.asarray(t_ref) / dt + 0.5)


def _propagator_32(tau_syn: np.ndarray, tau_m: np.ndarray, c_m: np.ndarray, h: float) -> np.ndarray:
    """V response at time h to a unit exponential current started at 0 (mV per pA).

    ``(exp(-h/tau_m) - exp(-h/tau_syn)) / (C (1/tau_syn - 1/tau_m))``, with its limit
    ``h exp(-h/tau) / C`` where the time constants (nearly) coincide.
    """
    d = 1.0 / tau_syn - 1.0 / tau_m
    with np.errstate(divide="ignore", invalid="ignore"):
        regular = (np.exp(-h / tau_m) - np.exp(-h / tau_syn)) / (c_m * d)
    limit = h * np.exp(-h / tau_m) / c_m
    close = np.abs(d) * h < 1e-9
    return np.where(close, limit, regular)


def pack(model: NeuronModel, p: dict[str, np.ndarray], dt: float) -> np.ndarray:
    """The packed parameter matrix (N_PARAM_ROWS, n) from per-neuron parameter arrays."""
    n = len(next(iter(p.values())))
    out = np.zeros((N_PARAM_ROWS, n))
    if model is IAF_PSC_EXP:
        out[row.R_P22] = np.exp(-dt / p["tau_m"])
        out[row.R_P20] = p["tau_m"] / p["C_m"] * (1.0 - out[row.R_P22])
        out[row.R_P21EX] = _propagator_32(p["tau_syn_ex"], p["tau_m"], p["C_m"], dt)
        out[row.R_P21IN] = _propagator_32(p["tau_syn_in"], p["tau_m"], p["C_m"], dt)
        out[row.R_P11EX] = np.exp(-dt / p["tau_syn_ex"])
        out[row.R_P11IN] = np.exp(-dt / p["tau_syn_in"])
        out[row.R_THETA] = p["V_th"] - p["E_L"]
        out[row.R_VRESET_REL] = p["V_reset"] - p["E_L"]
        out[row.R_NREF] = refractory_steps(p["t_ref"], dt)
        out[row.R_IE] = p["I_e"]
        out[row.R_EL] = p["E_L"]
    else:
        out[row.L_C] = p["C"]
        out[row.L_GL] = p["g_L"]
        out[row.L_VL] = p["V_L"]
        out[row.L_VTH] = p["V_th"]
        out[row.L_VRESET] = p["V_reset"]
        out[row.L_NREF] = refractory_steps(p["t_ref"], dt)
        out[row.L_IE] = p["I_e"]
        out[row.L_MG_ON] = p["mg_block"]
        out[row.L_MG] = p["Mg"]
        for c, ch in enumerate(LIF_CHANNELS):
            out[row.L_G0 + c] = p["g_" + ch]
            out[row.L_E0 + c] = p["E_" + ch]
            out[row.L_DECAY0 + c] = np.exp(-dt / p["tau_" + ch])
        out[row.L_GA] = p["g_adapt"]
        out[row.L_EA] = p["E_adapt"]
        out[row.L_DECAYA] = np.exp(-dt / p["tau_adapt"])
    return out


def initial_voltage_default(model: NeuronModel) -> str:
    """Name of the parameter whose value is the default initial V."""
    return "E_L" if model is IAF_PSC_EXP else "V_L"


def check_params(model: NeuronModel, p: dict[str, float]) -> list[tuple[str, float, str]]:
    """Range problems in one population's (scalar or bound) parameter values.

    Returns (parameter, value, expected) triples; heterogeneous parameters are checked
    on their bounds by the caller.
    """
    bad: list[tuple[str, float, str]] = []
    nan = {k for k, v in p.items() if isinstance(v, float) and v != v}
    bad += [(k, p[k], "a number (not NaN)") for k in sorted(nan)]
    p = {k: v for k, v in p.items() if k not in nan}     # blame NaN itself, not a partner
    positive = (
        ["C_m", "tau_m", "tau_syn_ex", "tau_syn_in"]
        if model is IAF_PSC_EXP
        else ["C", "g_L", "tau_AMPA", "tau_NMDA", "tau_GABA_A", "tau_GABA_B", "Mg",
              "tau_adapt"]
    )
    for k in positive:
        if k in p and not p[k] > 0:
            bad.append((k, p[k], "a positive number"))
    if "t_ref" in p and not p["t_ref"] >= 0:
        bad.append(("t_ref", p["t_ref"], "a number >= 0"))
    if model is LIF_COND:
        for ch in LIF_CHANNELS:
            if "g_" + ch in p and not p["g_" + ch] >= 0:
                bad.append(("g_" + ch, p["g_" + ch], "a conductance scale >= 0"))
        if "g_adapt" in p and not p["g_adapt"] >= 0:
            bad.append(("g_adapt", p["g_adapt"], "a conductance per spike >= 0"))
        if "mg_block" in p and p["mg_block"] not in (0.0, 1.0):
            bad.append(("mg_block", p["mg_block"], "true or false"))
    if "V_reset" in p and "V_th" in p and not p["V_reset"] < p["V_th"]:
        bad.append(("V_reset", p["V_reset"], f"a value below V_th ({p['V_th']})"))
    return bad
