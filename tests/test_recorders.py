"""The recorders as objects of one protocol (dtb.engine.recorders): each counts what an
independent computation counts, and each gives the same outputs whatever the epochs of the
run and across an interruption restored into a fresh Recording (get_state/set_state).

The store's chunks are made small here (CHUNK_ELEMENTS) so that series are flushed,
exchanged and fed to BOLD many times during a run, not only at its end.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
import zarr

import dtb
from dtb.engine.recorders import (
    BoldRecorder,
    PopulationCounts,
    RateSeries,
    Recorder,
    Span,
    SpikeOutput,
    StateSamples,
    population_rates,
    unit_rates,
)
from dtb.engine.recording import Recording
from dtb.engine.simulation import Engine
from dtb.errors import ArgumentError
from dtb.io import series_spec
from dtb.io.rundir import write_atomic
from dtb.model.record_spec import RecordSpec, SampleSpec

# two families over four units, one of them empty (its rates and BOLD are NaN)
NET = {
    "name": "units",
    "simulation": {"dt": 0.1, "t": 100.0, "seed": 5},
    "populations": [
        {"name": "E", "size": 40, "model": "iaf_psc_exp", "type": "E", "units": [10, 20, 0, 10],
         "inputs": [{"type": "poisson", "rate": 8.0, "weight": 87.8, "in_degree": 2000,
                     "receptor": "ex"}]},
        {"name": "C", "size": 12, "model": "lif_cond", "type": "E", "units": [4, 4, 0, 4],
         "inputs": [{"type": "ou", "mean": 0.8, "sigma": 0.3, "tau": 10.0}]},
    ],
    "projections": [
        {"source": "E", "target": "C", "rule": {"kind": "fixed_indegree", "k": 10},
         "weight": 0.02, "delay": 1.5},
        {"source": "C", "target": "E", "rule": {"kind": "fixed_indegree", "k": 5},
         "weight": 50.0, "delay": 0.8},
    ],
}
T_MS = 100.0
SPEC = RecordSpec(spikes="all", rates_ms=2.0, units_ms=1.0, bold_tr_ms=10.0, hdf5=True,
                  chunk_columns=2, spike_buffer_mb=0.0005,  # 32 spikes, then spill
                  samples=SampleSpec((("E", (0, 7, 39)), ("C", (5,))), 3, ("V", "syn")))


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    p = tmp_path_factory.mktemp("net") / "units.yaml"
    p.write_text(yaml.safe_dump(NET, sort_keys=False))
    return dtb.load_config(p)[0]


@pytest.fixture()
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(series_spec, "CHUNK_ELEMENTS", 8)  # 4 rows of 2 columns


def _engine(net) -> Engine:
    eng = Engine(net, dt=0.1, seed=5, threads=1)
    eng.keep_spikes = False
    return eng


def _outputs(run: Path, res: dict) -> dict[str, object]:
    """What each recorder wrote: spikes.h5's datasets, every series array (Zarr and
    HDF5), the spike counts, and every file of series.zarr with its SHA-256 (HDF5 files
    hold their creation time: their datasets are compared instead)."""
    out: dict[str, object] = {"pop_counts": res["pop_counts"],
                              "series.zarr": res["outputs"]["series"]["files"],
                              "spikes": res["outputs"]["spikes"]["populations"]}
    with h5py.File(run / "spikes.h5") as f:
        for pop in ("E", "C"):
            for ds in ("timestamps", "node_ids"):
                out[f"spikes/{pop}/{ds}"] = f[f"spikes/{pop}/{ds}"][()]
    g = zarr.open_group(str(run / "series.zarr"), mode="r")
    with h5py.File(run / "series.h5") as f:
        for name in ("population_rate", "unit_rate", "bold", "V", "syn0", "syn3"):
            out[f"series/{name}"] = g[name][...]
            np.testing.assert_array_equal(f[name][()], out[f"series/{name}"])
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def test_every_recorder_is_the_same_whatever_the_epochs_and_across_a_restore(
        net, tmp_path: Path, small_chunks: None):
    # the reference: epochs of one sampling interval (3 steps)
    eng = _engine(net)
    rec = Recording(eng, tmp_path / "ref", SPEC, T_MS)
    kinds = [type(r) for r in rec.recorders]
    assert kinds == [PopulationCounts, SpikeOutput, RateSeries, RateSeries, BoldRecorder,
                     StateSamples]
    assert all(isinstance(r, Recorder) for r in rec.recorders)
    assert rec.run()
    ref = _outputs(tmp_path / "ref", rec.finish(write_atomic))
    assert sum(ref["pop_counts"].values()) > 100
    assert rec.spikes is not None and rec.spikes.spilled > 0  # the spill took part
    assert np.isfinite(ref["series/bold"][:, [0, 1, 3]]).all()
    assert np.isnan(ref["series/bold"][:, 2]).all()  # the empty unit
    files = [f["path"] for f in ref["series.zarr"]]  # type: ignore[attr-defined]
    assert sum("series.zarr/bold/c/" in f for f in files) == 3 * 2  # 10 TRs: 3 x 4 rows

    # other epochs: also ending at every 7th step, which is no sampling step
    eng = _engine(net)
    rec = Recording(eng, tmp_path / "epochs", SPEC, T_MS)
    ends = []
    assert rec.run(checkpoint_steps=7, on_checkpoint=lambda: ends.append(eng.step))
    assert ends[:3] == [7, 14, 21]
    _assert_same(ref, _outputs(tmp_path / "epochs", rec.finish(write_atomic)))

    # stopped at step 259 (no multiple of 3, 7, a bin or a TR), its state restored into a
    # fresh engine and recording on the outputs written so far, then run to the end
    run = tmp_path / "resumed"
    eng = _engine(net)
    rec = Recording(eng, run, SPEC, T_MS)
    saved = []
    assert not rec.run(checkpoint_steps=37, stop_requested=lambda: eng.step >= 259,
                       on_checkpoint=lambda: saved.append((rec.get_state(), eng.get_state())))
    rec.abort()
    state, eng_state = saved[-1]
    assert eng.step == 259
    for key in ("step0", "n_steps", "pop_counts", "spikes/steps", "spikes/spill_chunks",
                "bold/chunks", "series/buffers/unit_rate/data", "series/buffers/V/row0"):
        assert key in state, key
    eng = _engine(net)
    rec = Recording(eng, run, SPEC, T_MS, resume=True)
    rec.set_state(state)
    eng.set_state(eng_state)
    assert rec.run()
    _assert_same(ref, _outputs(run, rec.finish(write_atomic)))


def test_a_state_without_a_recorder_s_part_is_refused(net, tmp_path: Path):
    eng = _engine(net)
    rec = Recording(eng, tmp_path / "a", SPEC, T_MS)
    state = rec.get_state()
    rec.abort()
    other = Recording(_engine(net), tmp_path / "b", SPEC, T_MS)
    with pytest.raises(ArgumentError, match="recording state: bold missing"):
        other.set_state({k: v for k, v in state.items() if not k.startswith("bold/")})
    no_spikes = Recording(_engine(net), tmp_path / "c",
                          RecordSpec(spikes="none", rates_ms=2.0, units_ms=None), T_MS)
    with pytest.raises(ArgumentError, match="recording state: bold unexpected"):
        no_spikes.set_state(state)
    other.abort()
    no_spikes.abort()


class _Counter:
    """A store that only counts (the series store's add_counts, densely)."""

    def __init__(self, rows: int, cols: int):
        self.data = np.zeros((rows, cols), np.int64)

    def add_counts(self, name: str, rows: np.ndarray, lcols: np.ndarray) -> None:
        np.add.at(self.data, (rows, lcols), 1)


def test_rate_series_and_counts_match_a_histogram_of_the_spikes(net):
    """Random spikes in uneven batches: the rate series' counts per (bin, column) are a 2-D
    histogram of (step, population or unit) of the spiking neurons, the population counts
    their histogram by population; units from the populations' unit sizes."""
    eng = Engine(net, dt=0.1, seed=5, threads=1)
    rng = np.random.default_rng(1)
    n_steps, step0 = 1000, 0
    steps = np.sort(rng.integers(0, n_steps, 5000))
    idx = rng.integers(0, eng.n_local, 5000)
    span = Span(step0, n_steps, 0.1, 2)
    spec = RecordSpec(units_ms=1.5, bold_tr_ms=None)  # bins of 15 steps
    pop = population_rates(eng, span, 2.0)
    unit = unit_rates(eng, span, spec, ["a", "b", "c", "d"])
    counts = PopulationCounts(eng)
    stores = {}
    for series in (pop, unit):
        stores[series.name] = _Counter(series.spec.n_rows, len(series.cols))
        series.bind(stores[series.name])
    for cut in np.array_split(np.arange(len(idx)), [7, 100, 101, 2500]):
        for r in (pop, unit, counts):
            r.on_spikes(steps[cut], idx[cut])

    gid = eng.gids[idx]
    pop_of_gid = np.repeat([0, 1], [40, 12])
    unit_of_gid = np.concatenate([np.repeat(np.arange(4), [10, 20, 0, 10]),
                                  np.repeat(np.arange(4), [4, 4, 0, 4])])
    for series, col_of_gid, bin_steps, n_cols in ((pop, pop_of_gid, 20, 2),
                                                  (unit, unit_of_gid, 15, 4)):
        assert series.bin_steps == bin_steps
        want, _, _ = np.histogram2d(steps, col_of_gid[gid],
                                    bins=[np.arange(0, n_steps + bin_steps, bin_steps),
                                          np.arange(n_cols + 1)])
        got = np.zeros((series.spec.n_rows, n_cols))
        got[:, series.cols] = stores[series.name].data
        np.testing.assert_array_equal(got, want[:series.spec.n_rows])
        assert series.rows_done(step0 + 449) == {series.name: 449 // bin_steps}
    np.testing.assert_array_equal(counts.counts, np.bincount(pop_of_gid[gid], minlength=2))
    np.testing.assert_array_equal(unit.col_sizes, [14, 24, 0, 14])
    # the last unit bin is short (1000 = 66 * 15 + 10): its rate is per 1 ms, not 1.5 ms
    np.testing.assert_allclose(unit.spec.row_scale[[0, -1]], [1000 / 1.5, 1000 / 1.0])
