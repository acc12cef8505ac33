"""dtb.analysis: statistics checked on synthetic spike trains with known answers, read in
small chunks (as data larger than memory would be), and open_run on a real run directory."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from dtb.analysis import (
    SpikeReader,
    count_correlation,
    cv_isi,
    cv_isi_grouped,
    functional_connectivity,
    open_run,
    population_rate,
)
from dtb.cli.main import main

T_MS = 200_000.0  # 200 s of synthetic activity


def write_trains(path: Path, trains: dict[str, list[np.ndarray]]) -> Path:
    """A SONATA file sorted by (node id, time), written here with h5py (not with dtb)."""
    with h5py.File(path, "w") as f:
        f.attrs["magic"] = np.uint32(0x0A7A)
        f.attrs["version"] = np.array([0, 1], np.uint32)
        for pop, ts in trains.items():
            g = f.create_group(f"spikes/{pop}")
            g.attrs["sorting"] = "by_id"
            g["timestamps"] = np.concatenate([np.sort(t) for t in ts])
            g["node_ids"] = np.repeat(np.arange(len(ts)), [len(t) for t in ts]).astype(np.uint64)
    return path


def poisson(rng: np.random.Generator, rate_hz: float, t_ms: float = T_MS) -> np.ndarray:
    n = rng.poisson(rate_hz * t_ms * 1e-3)
    return np.sort(rng.uniform(0.0, t_ms, n))


def gamma(rng: np.random.Generator, rate_hz: float, k: int, t_ms: float = T_MS) -> np.ndarray:
    isi = rng.gamma(k, 1000.0 / (rate_hz * k), int(2 * rate_hz * t_ms * 1e-3) + 10)
    t = np.cumsum(isi)
    return t[t < t_ms]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(42)
    n, r = 60, 20.0
    shared = poisson(rng, 0.3 * r)
    trains = {
        "poisson": [poisson(rng, r) for _ in range(n)],
        "gamma4": [gamma(rng, r, 4) for _ in range(n)],
        "regular": [np.arange(1, 1001) * 10.0 + 0.5 * i for i in range(n)],
        # shared-input construction: each train is its own Poisson process at 0.7 r plus a
        # common one at 0.3 r, so any two have spike-count correlation 0.3 in any bin
        "correlated": [np.sort(np.concatenate([poisson(rng, 0.7 * r), shared]))
                       for _ in range(n)],
    }
    return write_trains(tmp_path_factory.mktemp("syn") / "spikes.h5", trains)


@pytest.mark.parametrize("chunk", [997, 1 << 22])  # many small reads, or one
def test_cv_of_known_processes(synthetic: Path, chunk: int):
    with SpikeReader(synthetic, chunk=chunk) as r:
        ids, cv = cv_isi(r, "poisson")
        assert list(ids) == list(range(60))
        assert np.mean(cv) == pytest.approx(1.0, abs=0.02)
        _, cv = cv_isi(r, "gamma4")
        assert np.mean(cv) == pytest.approx(0.5, abs=0.015)
        _, cv = cv_isi(r, "regular")
        assert np.all(cv < 1e-9)


def test_cv_streaming_equals_in_memory(synthetic: Path):
    """The chunked computation (neurons cut at chunk ends) matches a direct one."""
    with SpikeReader(synthetic, chunk=333) as r:
        ids, cv = cv_isi(r, "gamma4")
        for i in (0, 17, 59):
            isi = np.diff(r.train("gamma4", i))
            assert cv[list(ids).index(i)] == pytest.approx(isi.std() / isi.mean(), rel=1e-9)


def test_count_correlation_of_shared_input(synthetic: Path):
    with SpikeReader(synthetic, sizes={"correlated": 60, "poisson": 60}) as r:
        rho = count_correlation(r, "correlated", bin_ms=100.0, t_start=0, t_stop=T_MS,
                                n_pairs=150, seed=1)
        assert rho.shape == (150,)
        assert np.mean(rho) == pytest.approx(0.3, abs=0.03)
        rho0 = count_correlation(r, "poisson", bin_ms=100.0, t_start=0, t_stop=T_MS,
                                 n_pairs=150, seed=1)
        assert np.mean(rho0) == pytest.approx(0.0, abs=0.02)


def test_population_rate_streaming(synthetic: Path):
    with SpikeReader(synthetic, sizes={"poisson": 60}, chunk=1000) as r:
        starts, rate = population_rate(r, "poisson", bin_ms=1000.0, t_stop=T_MS)
        t = np.concatenate(r.trains("poisson", range(60)))
    expect = np.histogram(t, np.arange(0, T_MS + 1, 1000.0))[0] / 60 / 1.0
    assert starts[0] == 0.0 and len(rate) == 200
    np.testing.assert_allclose(rate, expect)
    assert rate.mean() == pytest.approx(20.0, rel=0.02)


def test_functional_connectivity_chunked(tmp_path: Path):
    """Units 0-3 share a signal with weight a (correlation a^2), units 4-5 are independent;
    the dask computation over time chunks equals numpy's corrcoef."""
    rng = np.random.default_rng(3)
    n_t, a = 20_000, 0.8
    s = rng.standard_normal(n_t)
    x = rng.standard_normal((n_t, 6))
    x[:, :4] = a * s[:, None] + np.sqrt(1 - a * a) * x[:, :4]
    da = xr.DataArray(x, dims=("time_bold", "unit"),
                      coords={"unit": [f"u{i}" for i in range(6)]}).chunk({"time_bold": 999})
    fc = functional_connectivity(da)
    assert fc.dims == ("unit", "unit_2") and list(fc.unit.values) == [f"u{i}" for i in range(6)]
    np.testing.assert_allclose(fc.values, np.corrcoef(x.T), atol=1e-10)
    assert fc.values[0, 1] == pytest.approx(a * a, abs=0.02)
    assert abs(fc.values[4, 5]) < 0.03


@pytest.fixture(scope="module")
def brain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    d = tmp_path_factory.mktemp("brainrun")
    build(**demo_inputs(), options=BuildOptions(neurons=3000)).save(d / "brain.h5")
    out = d / "run"
    assert main(["simulate", "--brain", str(d / "brain.h5"), "--t", "400", "--out", str(out),
                 "--quiet", "--record", "units:5", "--record", "bold:100"]) == 0
    return out


def test_open_run_dataset_and_spikes_agree(brain_run: Path):
    """The rates the recorders wrote during the run equal the ones analysis computes from
    spikes.h5 afterwards (two independent paths)."""
    with open_run(brain_run, chunk=500) as run:
        ds = run.dataset
        assert run.status == "complete" and run.t_stop == pytest.approx(400.0)
        assert {"population_rate", "unit_rate", "bold"} <= set(ds.data_vars)
        assert ds.unit_rate.chunks is not None  # dask-backed
        assert ds.population_rate.attrs["units"] == "Hz"
        for pop in run.spikes.populations:
            _, rate = population_rate(run.spikes, pop, 1.0, run.t_stop)
            np.testing.assert_allclose(ds.population_rate.sel(population=pop).values, rate,
                                       rtol=1e-6)
        # unit rates weighted by unit size give the population-wide rate
        w = ds.unit_neurons.values
        total = (ds.unit_rate.values * w).sum(1) / w.sum()
        pr = ds.population_rate.values
        sizes = np.array([run.sizes[p] for p in ds.population.values])
        per_ms = (pr * sizes).sum(1) / sizes.sum()
        np.testing.assert_allclose(total, per_ms.reshape(-1, 5).mean(1), rtol=1e-5)
        fc = functional_connectivity(ds.bold)
        assert fc.shape == (ds.sizes["unit"], ds.sizes["unit"])
        assert np.allclose(np.diag(fc.values)[np.isfinite(np.diag(fc.values))], 1.0)


def _cv_one_by_one(trains: list[np.ndarray], min_spikes: int = 3) -> tuple[list[int], list[float]]:
    """The CV of ISIs neuron by neuron, with plain numpy: the independent expectation."""
    ids, cvs = [], []
    for i, t in enumerate(trains):
        if len(t) >= min_spikes:
            d = np.diff(np.sort(t))
            ids.append(i)
            cvs.append(float(np.std(d) / np.mean(d)))
    return ids, cvs


@pytest.mark.parametrize("silent", ["last", "first", "middle", "all", "none", "last-three"])
def test_cv_grouped_with_silent_neurons(silent: str):
    """Regression (issue 15, defect 1): a block whose last neuron never fired made
    cv_isi_grouped index past the end (IndexError; dtb report on short runs).  Silent
    neurons anywhere, and neurons with 1 or 2 spikes, against the per-neuron computation."""
    rng = np.random.default_rng(7)
    n = 12
    trains = [np.sort(rng.uniform(0, 100, rng.integers(1, 9))) for _ in range(n)]
    trains[4] = trains[4][:1]
    trains[5] = trains[5][:2]
    quiet = {"last": [n - 1], "first": [0], "middle": [3, 6], "all": list(range(n)),
             "none": [], "last-three": [n - 3, n - 2, n - 1]}[silent]
    for i in quiet:
        trains[i] = np.zeros(0)
    ids = np.arange(100, 100 + n)
    off = np.r_[0, np.cumsum([len(t) for t in trains])]
    t = np.concatenate(trains)
    got_ids, got_cv = cv_isi_grouped(ids, off, t)
    want_ids, want_cv = _cv_one_by_one(trains)
    assert list(got_ids) == [100 + i for i in want_ids]
    np.testing.assert_allclose(got_cv, want_cv, rtol=1e-12)
