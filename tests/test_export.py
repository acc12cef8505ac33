"""Outputs for the ecosystem (issue 15): simulated BOLD as a region table that ``dtb
assimilate`` reads back, an integer ``label`` coordinate beside the region names in
series.zarr, one self-contained SONATA spikes file, and an NWB file that pynwb's validator
accepts and that gives back every neuron's spike count.

One small run (the names-headed 6-region brain, 1,200 neurons, 9.6 s of model time at dt
0.5 ms, BOLD every 0.8 s, one thread) serves every test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from named_brain import NAMES, build_named_brain

from dtb.cli.main import main

TR_MS = 800


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("export")
    brain = build_named_brain(d)
    out = d / "run"
    assert main(["simulate", "--brain", str(brain), "--t", str(12 * TR_MS), "--dt", "0.5",
                 "--record", f"bold:{TR_MS}", "--threads", "1", "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_series_carry_integer_region_labels_beside_the_names(run: Path) -> None:
    import xarray as xr

    from dtb.brain.spec import BrainSpec

    spec = BrainSpec.load(run.parent / "brain.h5")
    ds = xr.open_zarr(run / "series.zarr", consolidated=False)
    assert ds.unit.values.tolist() == NAMES
    assert ds.label.dtype.kind == "i"
    assert ds.label.values.tolist() == spec.unit_labels == [1, 2, 3, 4, 5, 6]
    assert ds.bold.dims == ("time_bold", "unit") and "label" in ds.bold.coords


def test_simulated_bold_is_a_names_headed_tsv_that_assimilate_reads_back(run, tmp_path,
                                                                         capsys) -> None:
    import xarray as xr

    from dtb.assimilation.observations import read_bold, resolve_regions
    from dtb.brain.spec import BrainSpec

    man = json.loads((run / "manifest.json").read_text())
    assert {"bold_tsv", "bold_json"} <= set(man["outputs"])
    head = (run / "bold.tsv").read_text().splitlines()[0].split("\t")
    assert head == NAMES
    side = json.loads((run / "bold.json").read_text())
    assert side["RepetitionTime"] == TR_MS / 1000 and side["RegionLabels"] == [1, 2, 3, 4, 5, 6]
    # the table is the series' BOLD averaged by region (xarray's groupby, independently)
    ds = xr.open_zarr(run / "series.zarr", consolidated=False).load()
    expect = ds.bold.groupby("label").mean("unit")
    spec = BrainSpec.load(run.parent / "brain.h5")
    b = resolve_regions(read_bold(run / "bold.tsv"), spec.region_labels, spec.region_names)
    assert b.tr_s == TR_MS / 1000 and "bold.json (RepetitionTime)" in b.tr_source
    np.testing.assert_allclose(b.data, expect.sel(label=b.labels).values, rtol=1e-9)
    # and dtb assimilate takes it as it is: no --tr, no hand editing
    out = tmp_path / "fit"
    code = main(["assimilate", "--brain", str(run.parent / "brain.h5"), "--bold",
                 str(run / "bold.tsv"), "--members", "2", "--spinup", "0.3",
                 "--free-run-trs", "3", "--dt", "0.5", "--threads", "1", "--quiet",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    fit = json.loads((out / "manifest.json").read_text())
    assert fit["source"]["matched_by"] == "names" and fit["source"]["tr_s"] == 0.8
    # the assimilation's free run comes out the same way
    free = (out / "bold_free.tsv").read_text().splitlines()
    assert free[0].split("\t") == NAMES and len(free) == 1 + 3
    assert json.loads((out / "bold_free.json").read_text())["RepetitionTime"] == 0.8
    again = read_bold(out / "bold_free.tsv", min_samples=3)
    fz = xr.open_zarr(out / "assimilation.zarr", consolidated=False).load()
    np.testing.assert_allclose(again.data, fz.bold_free.mean("member").values, rtol=1e-9)


def test_export_spikes_writes_one_self_contained_sonata_file(run: Path, tmp_path) -> None:
    with h5py.File(run / "spikes.h5", "r") as f:
        pops = list(f["spikes"])
        assert any(f["spikes"][p]["timestamps"].is_virtual for p in pops)
        want = {p: (f["spikes"][p]["timestamps"][()], f["spikes"][p]["node_ids"][()],
                    f["spikes"][p].attrs.get_id("sorting").dtype) for p in pops}
    out = tmp_path / "spikes.h5"
    assert main(["export", str(run), "--spikes", str(out)]) == 0
    # a copy of the run without its parts: the exported file stands alone
    alone = tmp_path / "moved.h5"
    shutil.copy(out, alone)
    with h5py.File(alone, "r") as f:
        assert f.attrs["magic"] == 0x0A7A and list(f["spikes"]) == pops
        for p, (t, i, sort_dtype) in want.items():
            g = f["spikes"][p]
            assert not g["timestamps"].is_virtual and not g["node_ids"].is_virtual
            np.testing.assert_array_equal(g["timestamps"][()], t)
            np.testing.assert_array_equal(g["node_ids"][()], i)
            assert g.attrs.get_id("sorting").dtype == sort_dtype      # enum stays enum
    code = main(["export", str(run), "--spikes", str(out)])
    assert code != 0 and out.exists()                       # refused without --overwrite
    assert main(["export", str(run), "--spikes", str(out), "--overwrite"]) == 0


def test_export_nwb_validates_and_round_trips_spike_counts(run: Path, tmp_path) -> None:
    pynwb = pytest.importorskip("pynwb")
    import zarr

    out = tmp_path / "run.nwb"
    assert main(["export", str(run), "--nwb", str(out)]) == 0
    errors = pynwb.validate(path=str(out))
    assert list(errors) == []
    sizes = json.loads((run / "manifest.json").read_text())["outputs"]["spikes"]["sizes"]
    with h5py.File(run / "spikes.h5", "r") as f:
        counts = {p: np.bincount(f["spikes"][p]["node_ids"][()].astype(np.int64),
                                 minlength=sizes[p]) for p in sizes}
        first = {p: np.sort(f["spikes"][p]["timestamps"][()][
            f["spikes"][p]["node_ids"][()] == np.argmax(counts[p])]) for p in sizes}
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        assert len(units) == sum(sizes.values())
        for p in sizes:
            mine = units[units.population == p].sort_values("node_id")
            np.testing.assert_array_equal(mine.node_id.values, np.arange(sizes[p]))
            np.testing.assert_array_equal([len(s) for s in mine.spike_times], counts[p])
            busiest = mine.spike_times.values[int(np.argmax(counts[p]))]
            np.testing.assert_allclose(busiest, first[p] * 1e-3)            # seconds
        bold = nwb.processing["hemodynamics"]["bold"]
        g = zarr.open_group(str(run / "series.zarr"), mode="r")
        np.testing.assert_array_equal(bold.data[:], g["bold"][...])
        assert bold.rate == pytest.approx(1000 / TR_MS)
        cols = nwb.processing["hemodynamics"]["bold_units"].to_dataframe()
        assert cols.unit_name.tolist() == NAMES and cols.region_label.tolist() == [1, 2, 3, 4,
                                                                                   5, 6]


def test_export_refuses_unfinished_runs_and_empty_requests(run: Path, tmp_path,
                                                           capsys) -> None:
    assert main(["export", str(run)]) == 2
    assert "nothing to write -- expected --spikes" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    m = json.loads((broken / "manifest.json").read_text())
    m["status"] = "running"
    (broken / "manifest.json").write_text(json.dumps(m))
    assert main(["export", str(broken), "--spikes", str(tmp_path / "x.h5")]) == 2
    assert "status: 'running' -- expected 'complete'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
    copy = tmp_path / "bold.tsv"
    assert main(["export", str(run), "--bold", str(copy)]) == 0
    assert copy.read_text() == (run / "bold.tsv").read_text()
    assert (tmp_path / "bold.json").read_text() == (run / "bold.json").read_text()
