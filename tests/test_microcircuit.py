"""The Potjans & Diesmann (2014) microcircuit: activity against the published rates.

Downscaled networks with full-scale in-degrees drift from the full-scale rates (NEST at
scale 0.1: L2/3 and L5 excitatory cells about twice as fast), so the comparison allows a
factor 2.5 at scale 0.1.  The first 100 ms (initial transient) are discarded; 1 s of
model time follows (a few seconds of wall time on 2 cores).
"""

from __future__ import annotations

import numpy as np
import pytest

import dtb
from dtb.models.microcircuit import POPULATIONS, PUBLISHED_RATES_HZ, microcircuit

T_DISCARD = 100.0


def _cv_isi(times: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """CV of the inter-spike intervals of every neuron with at least 4 spikes."""
    out = []
    order = np.lexsort((times, ids))
    t, g = times[order], ids[order]
    for n in np.unique(g):
        isi = np.diff(t[g == n])
        if len(isi) >= 3:
            out.append(isi.std() / isi.mean())
    return np.array(out)


def test_small_microcircuit_neither_silent_nor_runaway():
    """Scale 0.02 (about 1,500 neurons) drifts far from the full-scale rates (L5E about
    20 Hz), but no population is silent and none runs away (a sign error in the
    inhibition would drive rates above 100 Hz)."""
    eng = dtb.Engine(microcircuit(0.02), dt=0.1, seed=2)
    eng.run(300.0)
    rates = eng.rates(T_DISCARD)
    assert set(rates) == set(POPULATIONS)
    for name, r in rates.items():
        assert 0.1 < r < 50.0, (name, r)


@pytest.fixture(scope="module")
def mc_scale_01():
    eng = dtb.Engine(microcircuit(0.1), dt=0.1, seed=1)
    eng.run(T_DISCARD + 1000.0)
    return eng


def test_microcircuit_mean_field_sanity(mc_scale_01):
    """Every population fires, excitatory ones below 20 Hz, inhibitory below 40 Hz."""
    rates = mc_scale_01.rates(T_DISCARD)
    assert set(rates) == set(POPULATIONS)
    for name, r in rates.items():
        assert r > 0.1, f"{name} is silent ({r:.3f} Hz)"
        assert r < (20.0 if name.endswith("E") else 40.0), f"{name} fires at {r:.1f} Hz"


def test_microcircuit_rates_near_published(mc_scale_01):
    rates = mc_scale_01.rates(T_DISCARD)
    for name, published in PUBLISHED_RATES_HZ.items():
        assert published / 2.5 <= rates[name] <= published * 2.5, (name, rates[name], published)
    # the laminar pattern of the published model: L2/3 E and L6 E are the quietest
    # excitatory populations, every inhibitory population fires faster than its
    # excitatory partner
    assert max(rates["L23E"], rates["L6E"]) < min(rates["L4E"], rates["L5E"])
    for layer in ("L23", "L4", "L5", "L6"):
        assert rates[layer + "I"] > rates[layer + "E"], layer


def test_microcircuit_irregular_firing(mc_scale_01):
    """Asynchronous irregular state: ISI CVs near those of a Poisson process (published
    values about 0.7-0.9; over 1 s, neurons with few spikes bias the estimate low).
    Regular (mean-driven, CV << 0.5) or bursting (CV >> 1) firing fails."""
    pops = mc_scale_01.population_spikes()
    for name in POPULATIONS:
        t, ids = pops[name]
        keep = t > T_DISCARD
        cv = _cv_isi(t[keep], ids[keep])
        assert len(cv) >= 20, name
        assert 0.5 < np.median(cv) < 1.2, (name, np.median(cv))
