"""The engine's nouns (issue 17): a Simulation built from a network, a Context and a
decomposition; its epochs; the backend protocol.

Expectations come from a second run: the keyword form (Engine) and the nouns must build
the same model; a run in irregular epochs, or stopped by its epoch callback and continued,
must equal one uninterrupted run spike for spike.
"""

from __future__ import annotations

import numpy as np
import pytest

from dtb.engine.backend import Backend
from dtb.engine.context import Context
from dtb.engine.cpu import CpuBackend
from dtb.engine.decomposition import Ownership
from dtb.engine.decomposition import ownership as cost_slices
from dtb.engine.gpu.backend import GpuBackend
from dtb.engine.simulation import Engine, Simulation
from dtb.errors import ArgumentError
from dtb.models.microcircuit import microcircuit

T_MS = 60.0


@pytest.fixture(scope="module")
def net():
    return microcircuit(0.02)


@pytest.fixture(scope="module")
def reference(net):
    eng = Engine(net, dt=0.1, seed=7, threads=1)
    eng.run(T_MS)
    return eng.spikes()


def test_the_nouns_build_what_the_keywords_build(net, reference):
    own = Ownership.from_starts(cost_slices(net, 1))
    sim = Simulation(net, Context(threads=1), own, seed=7, dt=0.1)
    assert sim.partition == "slices" and sim.context.backend == "cpu"
    assert isinstance(sim.backend, CpuBackend)
    sim.run(T_MS)
    for got, want in zip(sim.spikes(), reference, strict=True):
        np.testing.assert_array_equal(got, want)


def test_irregular_epochs_do_not_change_the_run(net, reference):
    sim = Simulation(net, Context(threads=1), seed=7, dt=0.1)
    n = int(round(T_MS / 0.1))
    ends = [3, 4, 17, 100, 101, 333, n]  # steps; not multiples of the exchange window
    seen: list[int] = []

    def epoch_end(step: int) -> int:
        return next(e for e in ends if e > step)

    def on_epoch(step: int) -> bool:
        seen.append(step)
        return True

    assert sim.run_until(n, epoch_end=epoch_end, on_epoch=on_epoch)
    assert seen == ends and sim.step == n
    for got, want in zip(sim.spikes(), reference, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_epoch_callback_stops_the_run_and_it_continues_exactly(net, reference):
    sim = Simulation(net, Context(threads=1), seed=7, dt=0.1)
    n = int(round(T_MS / 0.1))
    assert not sim.run_until(n, epoch_end=lambda s: s + 50, on_epoch=lambda s: s < 200)
    assert sim.step == 200
    assert sim.run_until(n)
    for got, want in zip(sim.spikes(), reference, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_epoch_end_that_does_not_advance_is_refused(net):
    sim = Simulation(net, Context(threads=1), seed=7, dt=0.1)
    with pytest.raises(ArgumentError, match="epoch end"):
        sim.run_until(10, epoch_end=lambda s: s)


def test_a_decomposition_for_another_rank_count_is_refused(net):
    own = Ownership.from_starts(cost_slices(net, 2))
    with pytest.raises(ArgumentError, match="ownership: for 2 ranks"):
        Simulation(net, Context(threads=1), own, seed=7)


@pytest.mark.parametrize("kw, what", [({"backend": "tpu"}, "backend"),
                                      ({"routing": "mesh"}, "routing")])
def test_context_refuses_unknown_backends_and_routings(kw, what):
    with pytest.raises(ArgumentError, match=what):
        Context(**kw)


def test_both_backends_implement_the_protocol():
    """Every method of the Backend protocol exists, with its parameters, on both."""
    import inspect

    for name, member in inspect.getmembers(Backend, inspect.isfunction):
        if name.startswith("_"):
            continue
        want = list(inspect.signature(member).parameters)
        for impl in (CpuBackend, GpuBackend):
            got = list(inspect.signature(getattr(impl, name)).parameters)
            assert got == want, f"{impl.__name__}.{name}{got} -- expected {want}"
