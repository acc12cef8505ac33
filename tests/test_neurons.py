"""Single-neuron dynamics against closed-form solutions and a high-accuracy ODE reference.

iaf_psc_exp is integrated exactly (Rotter & Diesmann 1999), so its membrane potential
on the grid must match the analytic solution of

    dV/dt = -(V - E_L)/tau_m + (I_e + I_dc + I_syn(t))/C,   I_syn = sum_k w_k e^{-(t-t_k)/tau_s}

to rounding.  lif_cond freezes the conductances within a step and solves the remaining
linear ODE exactly (exponential Euler): exact for constant input, first order in dt with
synaptic input, which is checked against scipy's solve_ivp at tight tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dtb

DT = 0.1


def pop(name, model="iaf_psc_exp", size=1, params=None, inputs=(), initial=None, type=None):
    return dtb.Population(name, size, model=model, params=dict(params or {}),
                          initial=dict(initial or {}), inputs=tuple(inputs), type=type)


def trace(engine: dtb.Engine, n_samples: int, every_ms: float | None = None):
    """V and syn sampled n_samples times, every every_ms (default: each step):
    times (n,), V (n, N), syn (n, 4, N)."""
    ts, vs, ss = [], [], []
    for _ in range(n_samples):
        engine.run(every_ms or engine.dt)
        ts.append(engine.t_ms)
        vs.append(engine.V.copy())
        ss.append(engine.syn.copy())
    return np.array(ts), np.array(vs), np.array(ss)


def spike_times(engine: dtb.Engine, gid: int) -> np.ndarray:
    t, g = engine.spikes()
    return t[g == gid]


def grid_frac(x: float) -> float:
    return x / DT - math.floor(x / DT)


# --- iaf_psc_exp: exact integration ------------------------------------------------------

def psc_kernel(u, tau_s, tau_m, c_m):
    """Membrane response (mV per pA) at u >= 0 to the current e^{-u/tau_s}, V(0) = 0."""
    u = np.asarray(u, float)
    if math.isclose(tau_s, tau_m):
        out = u * np.exp(-u / tau_m) / c_m
    else:
        out = (np.exp(-u / tau_m) - np.exp(-u / tau_s)) / (c_m * (1.0 / tau_s - 1.0 / tau_m))
    return np.where(u >= 0, out, 0.0)


@pytest.mark.parametrize("tau_ex,tau_in", [(2.0, 5.0), (10.0, 0.5)])
def test_psc_exp_subthreshold_matches_closed_form(tau_ex, tau_in):
    """DC + I_e + an excitatory and an inhibitory spike train through projections.

    (10.0, 0.5): tau_syn_ex equals tau_m, the degenerate case of the propagator.
    """
    tgt_p = {"C_m": 250.0, "tau_m": 10.0, "tau_syn_ex": tau_ex, "tau_syn_in": tau_in,
             "E_L": -70.0, "V_th": 0.0, "V_reset": -70.0, "I_e": 50.0}
    net = dtb.Network(
        populations=(
            # sources spike every ~9.7 ms and ~5.3 ms respectively
            pop("src_e", params={"t_ref": 2.0}, inputs=[dtb.DCInput(700.0)], type="E"),
            pop("src_i", params={"t_ref": 3.0}, inputs=[dtb.DCInput(2000.0)], type="I"),
            pop("tgt", params=tgt_p, inputs=[dtb.DCInput(100.0)], initial={"V": -68.0}),
        ),
        projections=(
            # weights exactly representable in the int16 << shift fixed point
            dtb.Projection("src_e", "tgt", dtb.FixedInDegree(1), weight=100.0, delay=1.5),
            dtb.Projection("src_i", "tgt", dtb.FixedInDegree(1), weight=-60.0, delay=0.7,
                           receptor="in"),
        ),
    )
    eng = dtb.Engine(net, dt=DT, seed=3)
    t, V, syn = trace(eng, 400)
    te = spike_times(eng, 0) + 1.5
    ti = spike_times(eng, 1) + 0.7
    assert len(te) >= 3 and len(ti) >= 6
    assert len(spike_times(eng, 2)) == 0

    c, tau_m, el, v0 = 250.0, 10.0, -70.0, -68.0
    ri = tau_m / c * (50.0 + 100.0)
    ref = el + ri * (1.0 - np.exp(-t / tau_m)) + (v0 - el) * np.exp(-t / tau_m)
    i_ex = np.zeros_like(t)
    i_in = np.zeros_like(t)
    for tk in te:
        ref += 100.0 * psc_kernel(t - tk, tau_ex, tau_m, c)
        i_ex += np.where(t >= tk - 1e-9, 100.0 * np.exp(-(t - tk) / tau_ex), 0.0)
    for tk in ti:
        ref += -60.0 * psc_kernel(t - tk, tau_in, tau_m, c)
        i_in += np.where(t >= tk - 1e-9, -60.0 * np.exp(-(t - tk) / tau_in), 0.0)
    np.testing.assert_allclose(V[:, 2], ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(syn[:, 0, 2], i_ex, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(syn[:, 1, 2], i_in, rtol=1e-9, atol=1e-9)
    # the input visibly moved V (the comparison is not dominated by the DC part)
    base = el + ri * (1.0 - np.exp(-t / tau_m)) + (v0 - el) * np.exp(-t / tau_m)
    assert np.max(np.abs(V[:, 2] - base)) > 0.1


@pytest.mark.parametrize("current,t_ref", [(400.0, 2.0), (455.0, 2.0), (700.0, 1.0),
                                          (2000.0, 2.04), (700.0, 2.06)])
def test_psc_exp_constant_current_firing(current, t_ref):
    """ISI on the grid: round(t_ref/dt) refractory steps + ceil(T/dt) steps to climb from
    V_reset = E_L to threshold, T = tau_m ln(RI / (RI - theta)); rate within a step per ISI
    of the continuous-time LIF rate."""
    tau_m, c, theta = 10.0, 250.0, 15.0
    ri = tau_m / c * current
    climb = tau_m * math.log(ri / (ri - theta))
    assert 0.05 < grid_frac(climb) < 0.95  # no threshold ties on the grid
    n_ref = round(t_ref / DT)
    net = dtb.Network(populations=(
        pop("a", params={"t_ref": t_ref, "I_e": current / 2}, inputs=[dtb.DCInput(current / 2)]),
    ))
    eng = dtb.Engine(net, dt=DT)
    eng.run(300.0)
    st = spike_times(eng, 0)
    steps_to_climb = math.ceil(climb / DT)
    assert st[0] == pytest.approx(steps_to_climb * DT, abs=1e-9)
    isi = np.diff(st)
    np.testing.assert_allclose(isi, (n_ref + steps_to_climb) * DT, atol=1e-9)
    lif_period = t_ref + climb  # continuous-time closed form
    assert abs(isi.mean() - lif_period) <= 1.01 * DT


def test_psc_exp_refractory_clamp():
    """After a spike V sits at V_reset for the spike step and exactly round(t_ref/dt) more."""
    t_ref = 1.53  # -> 15 steps
    n_ref = round(t_ref / DT)
    net = dtb.Network(populations=(
        pop("a", params={"t_ref": t_ref, "E_L": -65.0, "V_reset": -70.0},
            inputs=[dtb.DCInput(2000.0)]),
    ))
    eng = dtb.Engine(net, dt=DT)
    t, V, _ = trace(eng, 200)
    v = V[:, 0]
    spike_steps = np.round(spike_times(eng, 0) / DT).astype(int) - 1
    assert len(spike_steps) >= 3
    for s in spike_steps:
        if s + n_ref + 1 >= len(v):
            continue
        np.testing.assert_allclose(v[s:s + n_ref + 1], -70.0, atol=1e-12)
        assert v[s + n_ref + 1] > -70.0 + 1e-3


# --- lif_cond -----------------------------------------------------------------------------

LIF = {"C": 1.0, "g_L": 0.03, "V_L": -75.0, "V_th": -50.0, "V_reset": -65.0, "t_ref": 5.0}


def test_lif_cond_constant_current_exact():
    """Constant current: V(t) = V_inf + (V0 - V_inf) exp(-g_L t / C), V_inf = V_L + I/g_L."""
    c, g_l, v_l = 2.0, 0.05, -70.0
    i_e, i_dc, v0 = 0.3, 0.4, -72.5
    net = dtb.Network(populations=(
        pop("a", model="lif_cond",
            params={"C": c, "g_L": g_l, "V_L": v_l, "V_th": -40.0, "I_e": i_e},
            inputs=[dtb.DCInput(i_dc)], initial={"V": v0}),
    ))
    eng = dtb.Engine(net, dt=DT)
    t, V, _ = trace(eng, 1500)
    v_inf = v_l + (i_e + i_dc) / g_l  # -56 mV, below threshold
    ref = v_inf + (v0 - v_inf) * np.exp(-g_l * t / c)
    np.testing.assert_allclose(V[:, 0], ref, rtol=1e-11, atol=0)
    assert len(eng.spikes()[0]) == 0


@pytest.mark.parametrize("current,t_ref", [(0.8, 5.0), (1.0, 5.0), (1.3, 2.0), (3.0, 3.33)])
def test_lif_cond_constant_current_firing(current, t_ref):
    tau = LIF["C"] / LIF["g_L"]
    v_inf = LIF["V_L"] + current / LIF["g_L"]
    first = tau * math.log((v_inf - LIF["V_L"]) / (v_inf - LIF["V_th"]))
    climb = tau * math.log((v_inf - LIF["V_reset"]) / (v_inf - LIF["V_th"]))
    assert 0.05 < grid_frac(first) < 0.95 and 0.05 < grid_frac(climb) < 0.95
    n_ref = round(t_ref / DT)
    net = dtb.Network(populations=(
        pop("a", model="lif_cond", params={**LIF, "t_ref": t_ref, "I_e": current}),
    ))
    eng = dtb.Engine(net, dt=DT)
    eng.run(500.0)
    st = spike_times(eng, 0)
    assert len(st) >= 4
    assert st[0] == pytest.approx(math.ceil(first / DT) * DT, abs=1e-9)
    isi = np.diff(st)
    np.testing.assert_allclose(isi, (n_ref + math.ceil(climb / DT)) * DT, atol=1e-9)
    assert abs(isi.mean() - (t_ref + climb)) <= 1.01 * DT


def test_lif_cond_refractory_clamp():
    t_ref = 5.0
    n_ref = round(t_ref / DT)
    net = dtb.Network(populations=(
        pop("a", model="lif_cond", params={**LIF, "t_ref": t_ref, "I_e": 3.0}),
    ))
    eng = dtb.Engine(net, dt=DT)
    t, V, _ = trace(eng, 600)
    v = V[:, 0]
    spike_steps = np.round(spike_times(eng, 0) / DT).astype(int) - 1
    assert len(spike_steps) >= 3
    for s in spike_steps:
        if s + n_ref + 1 >= len(v):
            continue
        assert np.all(v[s:s + n_ref + 1] == LIF["V_reset"])
        assert v[s + n_ref + 1] > LIF["V_reset"] + 1e-3


RECEPTORS = {  # channel order AMPA, NMDA, GABA_A, GABA_B
    "E": (1, 1, 0, 0), "I": (0, 0, 1, 1), "AMPA": (1, 0, 0, 0), "NMDA": (0, 1, 0, 0),
    "GABA_A": (0, 0, 1, 0), "GABA_B": (0, 0, 0, 1),
}
E_REV = (0.0, 0.0, -70.0, -100.0)
TAU = (2.0, 40.0, 10.0, 50.0)
G_SCALE = (5.0 / 275.0, 5.0 / 4000.0, 3.0 / 30.0, 3.0 / 730.0)


def lif_reference(t_eval, arrivals, v0, i_ext, mg_block=False, mg=1.0):
    """solve_ivp reference of the continuous lif_cond model.

    arrivals: list of (time, weight, receptor); the traces jump at those times.
    """
    p = LIF

    def traces(t):
        j = np.zeros(4)
        for tk, w, rec in arrivals:
            if t >= tk:
                j += w * np.array(RECEPTORS[rec]) * np.exp(-(t - tk) / np.array(TAU))
        return j

    def rhs(t, y):
        v = y[0]
        j = traces(t)
        dv = -p["g_L"] * (v - p["V_L"]) + i_ext
        for u in range(4):
            b = 1.0
            if u == 1 and mg_block:
                b = 1.0 / (1.0 + mg * math.exp(-0.062 * v) / 3.57)
            dv += G_SCALE[u] * j[u] * b * (E_REV[u] - v)
        return [dv / p["C"]]

    # integrate piecewise between the trace discontinuities
    edges = sorted({0.0, *[a[0] for a in arrivals], float(t_eval[-1])})
    out = np.empty(len(t_eval))
    v = v0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        sel = (t_eval > a + 1e-12) & (t_eval <= b + 1e-12)
        sol = solve_ivp(rhs, (a, b), [v], method="DOP853", rtol=1e-11, atol=1e-11,
                        t_eval=np.clip(t_eval[sel], a, b), first_step=1e-3)
        assert sol.success
        out[sel] = sol.y[0]
        end = solve_ivp(rhs, (a, b), [v], method="DOP853", rtol=1e-11, atol=1e-11,
                        first_step=1e-3)
        v = end.y[0, -1]
    return out


def lif_synaptic_run(dt, connections, i_ext=0.2, tgt_params=None, t_end=120.0):
    """A lif_cond target fed by one DC-driven source per (receptor, weight, delay)."""
    pops, projs = [], []
    for k, (rec, w, d, drive) in enumerate(connections):
        pops.append(pop(f"s{k}", model="lif_cond", params={**LIF, "t_ref": 30.0},
                        inputs=[dtb.DCInput(drive)]))
        projs.append(dtb.Projection(f"s{k}", "tgt", dtb.FixedInDegree(1), weight=w, delay=d,
                                    receptor=rec))
    pops.append(pop("tgt", model="lif_cond", params={**LIF, **(tgt_params or {})},
                    inputs=[dtb.DCInput(i_ext)]))
    eng = dtb.Engine(dtb.Network(tuple(pops), tuple(projs)), dt=dt, seed=5)
    every = 0.2  # ms, a whole number of steps for every dt used
    t, V, _ = trace(eng, int(round(t_end / every)), every)
    arrivals = []
    for k, (rec, w, d, _drive) in enumerate(connections):
        for ts in spike_times(eng, k):
            arrivals.append((ts + d, w, rec))
    assert len(spike_times(eng, len(connections))) == 0  # target stays subthreshold
    return t, V[:, len(connections)], arrivals


CONNS = [("E", 1.0, 1.0, 1.2), ("I", 0.25, 2.0, 0.9), ("AMPA", 0.5, 0.5, 1.5)]


def test_lif_cond_synaptic_input_first_order_convergence():
    errs = []
    for dt in (0.1, 0.05, 0.025):
        t, v, arrivals = lif_synaptic_run(dt, CONNS)
        assert len(arrivals) >= 6
        ref = lif_reference(t, arrivals, LIF["V_L"], 0.2)
        # the synaptic input is large compared with the error measured
        base = LIF["V_L"] + 0.2 / LIF["g_L"] * (1 - np.exp(-LIF["g_L"] * t / LIF["C"]))
        assert np.max(np.abs(ref - base)) > 2.0
        errs.append(np.max(np.abs(v - ref)))
    # first order: each halving of dt halves the error
    assert errs[0] < 0.15  # mV, for PSPs of several mV at dt = 0.1 ms
    for coarse, fine in zip(errs[:-1], errs[1:], strict=True):
        assert 1.7 < coarse / fine < 2.3, errs


@pytest.mark.parametrize("mg", [1.0, 2.0])
def test_lif_cond_mg_block(mg):
    """mg_block on: NMDA conductance times B(V) = 1/(1 + [Mg] e^{-0.062 V}/3.57)."""
    conns = [("NMDA", 40.0, 1.0, 1.2)]
    errs, errs_unblocked = [], []
    for dt in (0.1, 0.05):
        t, v, arrivals = lif_synaptic_run(dt, conns, i_ext=0.3,
                                          tgt_params={"mg_block": 1.0, "Mg": mg})
        ref = lif_reference(t, arrivals, LIF["V_L"], 0.3, mg_block=True, mg=mg)
        errs.append(np.max(np.abs(v - ref)))
        ref_lin = lif_reference(t, arrivals, LIF["V_L"], 0.3, mg_block=False)
        errs_unblocked.append(np.max(np.abs(v - ref_lin)))
    assert 1.7 < errs[0] / errs[1] < 2.3, errs
    assert errs[1] < 0.05
    # the block matters: the linear-NMDA model is far from what the engine computes
    assert errs_unblocked[1] > 20 * errs[1]


def test_lif_cond_nmda_linear_without_block():
    """Published model (mg_block off): NMDA acts linearly; the blocked reference is far off."""
    conns = [("NMDA", 4.0, 1.0, 1.2)]
    t, v, arrivals = lif_synaptic_run(0.05, conns, i_ext=0.3)
    err = np.max(np.abs(v - lif_reference(t, arrivals, LIF["V_L"], 0.3)))
    err_blocked = np.max(np.abs(v - lif_reference(t, arrivals, LIF["V_L"], 0.3, mg_block=True)))
    assert err < 0.05
    assert err_blocked > 20 * err


def test_lif_cond_receptor_pairings_feed_the_right_traces():
    """'E' feeds AMPA and NMDA, 'I' feeds GABA_A and GABA_B, each with the same weight,
    and every trace then decays with its own time constant."""
    net = dtb.Network(
        populations=(
            pop("s", model="lif_cond", params={**LIF, "t_ref": 500.0}, initial={"V": -40.0}),
            pop("te", model="lif_cond", params=LIF),
            pop("ti", model="lif_cond", params=LIF),
        ),
        projections=(
            dtb.Projection("s", "te", dtb.FixedInDegree(1), weight=0.75, delay=0.3, receptor="E"),
            dtb.Projection("s", "ti", dtb.FixedInDegree(1), weight=0.5, delay=0.3, receptor="I"),
        ),
    )
    eng = dtb.Engine(net, dt=DT)
    t, _, syn = trace(eng, 60)
    st = spike_times(eng, 0)
    assert st.tolist() == pytest.approx([DT])  # initial V above threshold: spike in step 0
    arrive = st[0] + 0.3
    after = t >= arrive - 1e-9
    decay = np.exp(-(t[after] - arrive)[:, None] / np.array(TAU)[None, :])
    np.testing.assert_allclose(syn[after, :4, 1], 0.75 * decay * RECEPTORS["E"], rtol=1e-12)
    np.testing.assert_allclose(syn[after, :4, 2], 0.5 * decay * RECEPTORS["I"], rtol=1e-12)
    assert np.all(syn[~after, :4] == 0.0)
    assert np.all(syn[:, 4, 1:] == 0.0)  # the targets never fire: no adaptation trace


ADAPT = {"g_adapt": 0.05, "E_adapt": -80.0, "tau_adapt": 20.0}


def test_lif_cond_adaptation_trace_steps_at_own_spike_and_decays():
    """The adaptation trace is 0 until the neuron's own spike, 1 at it, then exp(-t/tau)."""
    net = dtb.Network(populations=(
        pop("a", model="lif_cond", params={**LIF, **ADAPT, "t_ref": 500.0},
            initial={"V": -40.0}),
    ))
    eng = dtb.Engine(net, dt=DT)
    t, _, syn = trace(eng, 300)
    assert spike_times(eng, 0).tolist() == pytest.approx([DT])
    np.testing.assert_allclose(syn[:, 4, 0], np.exp(-(t - DT) / ADAPT["tau_adapt"]),
                               rtol=1e-12)


def adaptive_reference(t_end, i_ext, t_ref):
    """Event-driven solve_ivp of lif_cond with adaptation and constant current from V_L:
    the spike times (threshold crossings; V held at V_reset for t_ref after each)."""
    p = {**LIF, **ADAPT}

    def rhs(_t, y):
        v, w = y
        dv = (-p["g_L"] * (v - p["V_L"]) + i_ext + p["g_adapt"] * w * (p["E_adapt"] - v))
        return [dv / p["C"], -w / p["tau_adapt"]]

    def cross(_t, y):
        return y[0] - p["V_th"]
    cross.terminal, cross.direction = True, 1
    t, y, spikes = 0.0, [p["V_L"], 0.0], []
    while t < t_end:
        sol = solve_ivp(rhs, (t, t_end), y, method="DOP853", rtol=1e-11, atol=1e-11,
                        events=cross)
        if not sol.t_events[0].size:
            break
        ts = sol.t_events[0][0]
        spikes.append(ts)
        w = (sol.y_events[0][0][1] + 1.0) * math.exp(-t_ref / p["tau_adapt"])
        t, y = ts + t_ref, [p["V_reset"], w]
    return np.array(spikes)


def test_lif_cond_adaptation_lengthens_intervals_as_the_ode():
    """Under constant drive the interspike intervals grow as the adaptation conductance
    builds up, and match an event-driven ODE solution to within the grid (first order)."""
    i_ext, t_ref, t_end = 3.0, 2.0, 300.0
    ref = adaptive_reference(t_end, i_ext, t_ref)
    isi_ref = np.diff(ref)
    assert isi_ref[-1] > 1.3 * isi_ref[0]  # the reference itself adapts
    drift = []
    for dt in (0.1, 0.025):
        net = dtb.Network(populations=(
            pop("a", model="lif_cond", params={**LIF, **ADAPT, "t_ref": t_ref},
                inputs=[dtb.DCInput(i_ext)]),
        ))
        eng = dtb.Engine(net, dt=dt)
        eng.run(t_end)
        st = spike_times(eng, 0)
        assert len(st) == len(ref)
        # each spike is stamped at the end of its step, so an interval is off by < dt
        # (plus the first-order error of the frozen conductances)
        assert np.max(np.abs(np.diff(st) - isi_ref)) < 1.2 * dt
        drift.append(np.max(np.abs(st - ref)))
    assert drift[1] < 0.35 * drift[0]  # first order: the lag shrinks with dt
    # without adaptation the same drive fires regularly and faster
    plain = dtb.Engine(dtb.Network(populations=(
        pop("a", model="lif_cond", params={**LIF, "t_ref": t_ref}, inputs=[dtb.DCInput(i_ext)]),
    )), dt=0.1)
    plain.run(t_end)
    assert len(spike_times(plain, 0)) > 1.5 * len(ref)


# --- background inputs --------------------------------------------------------------------

def test_poisson_input_mean_current_and_voltage():
    """Campbell's theorem for K Poisson sources of rate nu and weight w.

    Sampled on the grid right after the jumps, I_ex is the AR(1) process
    x' = P11 x + w N, N ~ Poisson(K nu dt): mean K nu dt w / (1 - P11), variance
    K nu dt w^2 / (1 - P11^2) (both -> K nu w tau_syn and K nu w^2 tau_syn / 2 as dt -> 0).
    The membrane integrates each PSC exactly, so E[V] - E_L = (tau_m / C) K nu w tau_syn
    holds with no grid correction.
    """
    k, rate, w, tau_s = 50, 20.0, 40.0, 0.5
    tau_m, c_m = 10.0, 250.0
    n = 400
    net = dtb.Network(populations=(
        pop("a", size=n, params={"tau_syn_ex": tau_s, "V_th": 1000.0},
            inputs=[dtb.PoissonInput(rate, w, k)]),
    ))
    eng = dtb.Engine(net, dt=DT, seed=11)
    eng.run(50.0)  # settle (5 tau_m)
    cur, volt = [], []
    for _ in range(200):
        eng.run(2.0)
        cur.append(eng.syn[0].copy())
        volt.append(eng.V.copy())
    lam = k * rate * 1e-3 * DT  # sources' spikes per step
    p11 = math.exp(-DT / tau_s)
    x = np.array(cur)
    per_neuron = x.mean(axis=0)
    se = per_neuron.std(ddof=1) / math.sqrt(n)
    assert abs(per_neuron.mean() - lam * w / (1 - p11)) < 5 * se
    assert x.var() == pytest.approx(lam * w * w / (1 - p11 * p11), rel=0.05)
    v = np.array(volt).mean(axis=0) + 65.0
    se_v = v.std(ddof=1) / math.sqrt(n)
    mean_v = tau_m / c_m * k * rate * 1e-3 * w * tau_s
    assert abs(v.mean() - mean_v) < 5 * se_v
    assert 5 * se_v < 0.05 * mean_v  # the test resolves a 5 % error


def test_ou_input_mean_and_variance_of_v():
    """lif_cond with an OU current (mean mu, sd sigma, tau_I): linear in steady state, so
    E[V] = V_L + mu/g_L and Var[V] = (sigma/g_L)^2 tau_I / (tau_I + tau_m)."""
    mu, sigma, tau_i = 0.3, 0.12, 10.0
    n = 300
    net = dtb.Network(populations=(
        pop("a", model="lif_cond", size=n, params={**LIF, "V_th": 100.0},
            inputs=[dtb.OUInput(mu, sigma, tau_i)], initial={"V": LIF["V_L"] + mu / LIF["g_L"]}),
    ))
    eng = dtb.Engine(net, dt=DT, seed=2)
    eng.run(100.0)
    samples = []
    for _ in range(40):
        eng.run(25.0)
        samples.append(eng.V.copy())
    x = np.array(samples)
    tau_m = LIF["C"] / LIF["g_L"]
    mean_exp = LIF["V_L"] + mu / LIF["g_L"]
    var_exp = (sigma / LIF["g_L"]) ** 2 * tau_i / (tau_i + tau_m)
    per_neuron = x.mean(axis=0)
    se = per_neuron.std(ddof=1) / math.sqrt(n)
    assert abs(per_neuron.mean() - mean_exp) < 5 * se
    assert x.var() == pytest.approx(var_exp, rel=0.1)


def test_population_spikes_and_rates():
    """Neurons with known grid periods: per-population spike lists use ids counted from 0
    in the population and rates() counts spikes after t_from over the population size."""
    net = dtb.Network(populations=(
        pop("a", size=3, params={"t_ref": 2.0}, inputs=[dtb.DCInput(400.0)]),  # period 29.8
        pop("b", size=2, params={"t_ref": 2.0}, inputs=[dtb.DCInput(2000.0)]),
    ))
    eng = dtb.Engine(net, dt=DT)
    eng.run(250.0)
    t, g = eng.spikes()
    assert np.all(np.diff(t) >= 0)
    assert np.all((np.diff(t) > 0) | (np.diff(g) > 0))  # sorted by (time, gid)
    ps = eng.population_spikes()
    ta, ia = ps["a"]
    tb, ib = ps["b"]
    assert set(ia.tolist()) == {0, 1, 2} and set(ib.tolist()) == {0, 1}
    assert len(ta) + len(tb) == len(t)
    climb_a = 10.0 * math.log(16.0 / 1.0)
    n_a = sum(1 for k in range(100) if math.ceil(climb_a / DT) * DT + k * 29.8 <= 250.0 + 1e-9)
    assert len(ta) == 3 * n_a
    after = np.sum(ta > 50.0)
    assert eng.rates(50.0)["a"] == pytest.approx(after / (3 * 0.2))
    assert eng.rates()["b"] == pytest.approx(len(tb) / (2 * 0.25))


def test_poisson_input_lif_cond_pairing_feeds_ampa_and_nmda():
    """A Poisson input on receptor 'E' adds the same weight to J_AMPA and J_NMDA; each
    trace's grid mean is K nu dt w / (1 - e^{-dt/tau_u})."""
    k, rate, w = 40, 10.0, 0.05
    n = 300
    net = dtb.Network(populations=(
        pop("a", model="lif_cond", size=n, params={**LIF, "V_th": 100.0},
            inputs=[dtb.PoissonInput(rate, w, k, receptor="E")]),
    ))
    eng = dtb.Engine(net, dt=DT, seed=4)
    eng.run(200.0)  # 5 tau_NMDA
    samples = []
    for _ in range(100):
        eng.run(5.0)
        samples.append(eng.syn.copy())
    x = np.array(samples)  # (samples, 4, n)
    lam = k * rate * 1e-3 * DT
    for u, tau in ((0, TAU[0]), (1, TAU[1])):
        per_neuron = x[:, u, :].mean(axis=0)
        se = per_neuron.std(ddof=1) / math.sqrt(n)
        assert abs(per_neuron.mean() - lam * w / (1 - math.exp(-DT / tau))) < 5 * se, u
    assert np.all(x[:, 2:, :] == 0.0)
