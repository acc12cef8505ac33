"""Potjans & Diesmann (2014) cortical microcircuit in NEST 3, as a baseline.

Builds and runs the microcircuit with NEST (pip package ``nest-simulator``,
threads only, no MPI) following the conventions of NEST's own PD example
(``pynest/examples/Potjans_2014``), so that dtb's benchmark can time NEST on
the same model, scale and model time in the same script.

Model (see shared/reference/microcircuit.md):

- ``iaf_psc_exp``: C_m 250 pF, tau_m 10 ms, tau_syn_ex = tau_syn_in = 0.5 ms,
  t_ref 2 ms, E_L -65 mV, V_th -50 mV, V_reset -65 mV, I_e 0 (no DC
  compensation), initial V_m ~ Normal(-58, 10) mV.
- Recurrent projections: ``fixed_total_number`` with autapses and multapses
  allowed. ``K_full = round(log(1 - p) / log(1 - 1/(N_pre * N_post)))`` is
  computed at full scale and ``K = round(K_full * scale)``, so in-degrees stay
  at full-scale values (NEST's example with N_scaling = scale, K_scaling = 1).
- Weights Normal(w, 0.1 |w|) redrawn to keep their sign; w = 87.8 pA for
  excitatory sources, -4 * 87.8 pA for inhibitory ones, 2 * 87.8 pA for
  L4E -> L23E.
- Delays Normal(d, 0.5 d), d = 1.5 ms (excitatory) / 0.75 ms (inhibitory),
  redrawn below 0.5 * dt (as NEST's example does, so every delay rounds to at
  least one step, i.e. delays >= dt).
- Background: one ``poisson_generator`` per population with rate
  8 Hz * K_ext, connected all-to-all (each neuron gets its own independent
  train), weight 87.8 pA, delay 1.5 ms.

``nest`` is imported lazily, so this module imports without NEST installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

POPULATIONS = ("L23E", "L23I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")

FULL_NUM_NEURONS = (20683, 5834, 21915, 5479, 4850, 1065, 14395, 2948)

# Connection probabilities, row = target, column = source.
CONN_PROBS = (
    (0.1009, 0.1689, 0.0437, 0.0818, 0.0323, 0.0, 0.0076, 0.0),
    (0.1346, 0.1371, 0.0316, 0.0515, 0.0755, 0.0, 0.0042, 0.0),
    (0.0077, 0.0059, 0.0497, 0.1350, 0.0067, 0.0003, 0.0453, 0.0),
    (0.0691, 0.0029, 0.0794, 0.1597, 0.0033, 0.0, 0.1057, 0.0),
    (0.1004, 0.0622, 0.0505, 0.0057, 0.0831, 0.3726, 0.0204, 0.0),
    (0.0548, 0.0269, 0.0257, 0.0022, 0.0600, 0.3158, 0.0086, 0.0),
    (0.0156, 0.0066, 0.0211, 0.0166, 0.0572, 0.0197, 0.0396, 0.2252),
    (0.0364, 0.0010, 0.0034, 0.0005, 0.0277, 0.0080, 0.0658, 0.1443),
)

K_EXT = (1600, 1500, 2100, 1900, 2000, 1900, 2900, 2100)

NEURON_PARAMS = {
    "C_m": 250.0,
    "tau_m": 10.0,
    "tau_syn_ex": 0.5,
    "tau_syn_in": 0.5,
    "t_ref": 2.0,
    "E_L": -65.0,
    "V_th": -50.0,
    "V_reset": -65.0,
    "I_e": 0.0,
}
V0_MEAN = -58.0
V0_STD = 10.0

W_EXC = 87.8  # pA
G = -4.0
W_REL_STD = 0.1
D_EXC = 1.5  # ms
D_INH = 0.75  # ms
D_REL_STD = 0.5
BG_RATE = 8.0  # Hz per external synapse
D_POISSON = 1.5  # ms


def _is_excitatory(pop_index: int) -> bool:
    return POPULATIONS[pop_index].endswith("E")


def scaled_num_neurons(scale: float) -> list[int]:
    """Neurons per population at ``scale`` (rounded, as NEST's example)."""
    return [round(n * scale) for n in FULL_NUM_NEURONS]


def full_num_synapses() -> list[list[int]]:
    """Full-scale synapse counts per projection, [target][source]."""
    out = []
    for i, n_post in enumerate(FULL_NUM_NEURONS):
        row = []
        for j, n_pre in enumerate(FULL_NUM_NEURONS):
            p = CONN_PROBS[i][j]
            if p <= 0.0:
                row.append(0)
                continue
            n_pairs = float(n_pre) * float(n_post)
            k = math.log(1.0 - p) / math.log1p(-1.0 / n_pairs)
            row.append(round(k))
        out.append(row)
    return out


def scaled_num_synapses(scale: float) -> list[list[int]]:
    """``round(K_full * scale)`` per projection: full-scale in-degrees kept."""
    return [[round(k * scale) for k in row] for row in full_num_synapses()]


def mean_weight(target: int, source: int) -> float:
    if not _is_excitatory(source):
        return G * W_EXC
    if POPULATIONS[source] == "L4E" and POPULATIONS[target] == "L23E":
        return 2.0 * W_EXC
    return W_EXC


def mean_delay(source: int) -> float:
    return D_EXC if _is_excitatory(source) else D_INH


def _import_nest():
    # NEST prints a banner on import unless PYNEST_QUIET is set; keep stdout
    # clean for the benchmark's own output.
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest  # lazy: NEST is optional

    return nest


def _silence(nest) -> None:
    if hasattr(nest, "VerbosityLevel"):  # NEST >= 3.9
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nest.set_verbosity("M_ERROR")


def nest_available() -> bool:
    """True when ``import nest`` works here."""
    try:
        _import_nest()
    except (ImportError, OSError, RuntimeError):  # missing, or bad native lib
        return False
    return True


def _syn_spec(nest, target: int, source: int, dt_ms: float) -> dict:
    w = mean_weight(target, source)
    d = mean_delay(source)
    w_min, w_max = (-math.inf, 0.0) if w < 0 else (0.0, math.inf)
    return {
        "synapse_model": "static_synapse",
        "weight": nest.math.redraw(
            nest.random.normal(mean=w, std=abs(w) * W_REL_STD),
            min=w_min,
            max=w_max,
        ),
        # Redraw below half a step, as NEST's example: every delay then
        # rounds to at least one time step.
        "delay": nest.math.redraw(
            nest.random.normal(mean=d, std=d * D_REL_STD),
            min=0.5 * dt_ms,
            max=math.inf,
        ),
    }


def _create(nest, n_neurons: list[int], t_start_rec: float, record: bool):
    pops = []
    for n in n_neurons:
        pop = nest.Create("iaf_psc_exp", n, params=NEURON_PARAMS)
        pop.V_m = nest.random.normal(mean=V0_MEAN, std=V0_STD)
        pops.append(pop)
    bg = nest.Create("poisson_generator", len(n_neurons))
    bg.rate = [BG_RATE * k for k in K_EXT]
    recorders = None
    if record:
        recorders = nest.Create("spike_recorder", len(n_neurons), params={"start": t_start_rec})
    return pops, bg, recorders


def _connect_recurrent(nest, pops, n_syn: list[list[int]], dt_ms: float) -> None:
    for i, target in enumerate(pops):
        for j, source in enumerate(pops):
            if n_syn[i][j] <= 0:
                continue
            conn_spec = {
                "rule": "fixed_total_number",
                "N": n_syn[i][j],
                "allow_autapses": True,
                "allow_multapses": True,
            }
            nest.Connect(
                source,
                target,
                conn_spec=conn_spec,
                syn_spec=_syn_spec(nest, i, j, dt_ms),
            )


def _connect_devices(nest, pops, bg, recorders) -> None:
    for i, target in enumerate(pops):
        nest.Connect(
            bg[i],
            target,
            conn_spec={"rule": "all_to_all"},
            syn_spec={
                "synapse_model": "static_synapse",
                "weight": W_EXC,
                "delay": D_POISSON,
            },
        )
        if recorders is not None:
            nest.Connect(target, recorders[i])


def run_nest_microcircuit(
    scale: float,
    t_sim_ms: float,
    t_presim_ms: float = 500.0,
    dt_ms: float = 0.1,
    seed: int = 1,
    threads: int = 2,
    record_spikes: bool = True,
) -> dict:
    """Build and run the microcircuit in NEST; return timings and rates.

    ``build_s`` covers node creation, all ``Connect`` calls and
    ``nest.Prepare()`` (which in NEST 3 builds the presynaptic connection
    infrastructure; NEST's PD example counts it as connection time);
    ``create_s``, ``connect_s`` and ``prepare_s`` split it.
    ``presim_s`` is the wall time of the first ``t_presim_ms``,
    ``simulate_s`` that of the following ``t_sim_ms`` (``nest.Run``, no
    per-call preparation inside the timed region). Spikes are recorded only
    during the timed interval, counted in memory (``n_events``).

    ``n_synapses`` is ``nest.num_connections`` read right after the recurrent
    projections are connected, i.e. neuron-to-neuron synapses only;
    ``n_connections_total`` also counts the Poisson generator and spike
    recorder connections.
    """
    if scale <= 0 or t_sim_ms <= 0 or t_presim_ms < 0:
        raise ValueError("scale and t_sim_ms must be > 0, t_presim_ms >= 0")
    n_neurons = scaled_num_neurons(scale)
    if min(n_neurons) < 1:
        raise ValueError(f"scale {scale} leaves a population empty")
    n_syn = scaled_num_synapses(scale)

    nest = _import_nest()
    _silence(nest)
    nest.ResetKernel()
    _silence(nest)
    nest.set(
        local_num_threads=int(threads),
        resolution=float(dt_ms),
        rng_seed=int(seed),
        print_time=False,
    )

    t0 = time.perf_counter()
    pops, bg, recorders = _create(nest, n_neurons, float(t_presim_ms), record_spikes)
    t_created = time.perf_counter()
    _connect_recurrent(nest, pops, n_syn, float(dt_ms))
    n_synapses = int(nest.num_connections)
    _connect_devices(nest, pops, bg, recorders)
    t_connected = time.perf_counter()
    nest.Prepare()
    t_prepared = time.perf_counter()
    if t_presim_ms > 0:
        nest.Run(float(t_presim_ms))
    t_presimmed = time.perf_counter()
    nest.Run(float(t_sim_ms))
    t_done = time.perf_counter()
    nest.Cleanup()

    rates = None
    if recorders is not None:
        rates = {
            name: c / n / (t_sim_ms / 1000.0)
            for name, n, c in zip(POPULATIONS, n_neurons, recorders.n_events, strict=True)
        }

    simulate_s = t_done - t_presimmed
    return {
        "scale": float(scale),
        "t_sim_ms": float(t_sim_ms),
        "t_presim_ms": float(t_presim_ms),
        "dt_ms": float(dt_ms),
        "seed": int(seed),
        "build_s": t_prepared - t0,
        "create_s": t_created - t0,
        "connect_s": t_connected - t_created,
        "prepare_s": t_prepared - t_connected,
        "presim_s": t_presimmed - t_prepared,
        "simulate_s": simulate_s,
        "rtf": simulate_s / (t_sim_ms / 1000.0),
        "n_neurons": int(sum(n_neurons)),
        "n_synapses": n_synapses,
        "n_connections_total": int(nest.num_connections),
        "rates_hz": rates,
        "nest_version": str(nest.__version__),
        "threads": int(nest.local_num_threads),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Potjans-Diesmann microcircuit in NEST.")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--t", type=float, default=1000.0, help="timed model ms")
    parser.add_argument("--presim", type=float, default=500.0)
    parser.add_argument("--dt", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-spikes", action="store_true")
    args = parser.parse_args(argv)
    result = run_nest_microcircuit(
        scale=args.scale,
        t_sim_ms=args.t,
        t_presim_ms=args.presim,
        dt_ms=args.dt,
        seed=args.seed,
        threads=args.threads,
        record_spikes=not args.no_spikes,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
