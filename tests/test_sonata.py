"""spikes.h5 read by libsonata, the SONATA reference reader (issue 15, defect 2).

The spec's ``sorting`` attribute is an HDF5 enum (uint8: none 0, by_id 1, by_time 2);
dtb wrote a string, which libsonata cannot convert ("Unable to read attribute
(Datatype)").  Every spike dtb wrote must come back through libsonata, which reads the
virtual datasets of spikes.h5 over the per-rank part files: compared here with the part
files read directly with h5py, on 1 and 2 ranks."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import libsonata
import numpy as np
import pytest
from interrupt import MPIEXEC, run_dtb


def _parts(run: Path, pop: str) -> tuple[np.ndarray, np.ndarray]:
    """(node ids, times) of ``pop`` from every part file, read directly (no virtual
    datasets), sorted by (id, time)."""
    ids, ts = [], []
    for part in sorted((run / "spikes").glob("rank-*.h5")):
        with h5py.File(part, "r") as f:
            if pop in f["spikes"]:
                ids.append(f["spikes"][pop]["node_ids"][()])
                ts.append(f["spikes"][pop]["timestamps"][()])
    i, t = np.concatenate(ids), np.concatenate(ts)
    order = np.lexsort((t, i))
    return i[order], t[order]


@pytest.mark.parametrize("ranks", [1, pytest.param(2, marks=pytest.mark.mpi)])
def test_libsonata_reads_every_spike(tmp_path: Path, ranks: int):
    if ranks > 1 and MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")
    run = tmp_path / "mc"
    r = run_dtb("simulate", "--model", "microcircuit", "--scale", "0.02", "--t", "100",
                "--out", str(run), "--quiet", "--threads", "1", ranks=ranks)
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "manifest.json").read_text())
    counts = m["outputs"]["spikes"]["populations"]
    assert len(m["outputs"]["spikes"]["parts"]) == ranks
    with h5py.File(run / "spikes.h5", "r") as f:
        for g in f["spikes"].values():
            enum = h5py.check_enum_dtype(g.attrs.get_id("sorting").dtype)
            assert enum == {"none": 0, "by_id": 1, "by_time": 2}
            assert g.attrs.get_id("sorting").dtype.itemsize == 1  # uint8 base
            assert int(g.attrs["sorting"]) == 1  # by_id
    reader = libsonata.SpikeReader(str(run / "spikes.h5"))
    assert sorted(reader.get_population_names()) == sorted(counts)
    total = 0
    for pop, n in counts.items():
        p = reader[pop]
        assert p.sorting == "by_id"
        assert p.time_units == "ms"
        d = p.get_dict()
        want_ids, want_t = _parts(run, pop)
        assert len(d["node_ids"]) == len(d["timestamps"]) == n == len(want_ids)
        np.testing.assert_array_equal(d["node_ids"], want_ids)
        np.testing.assert_array_equal(d["timestamps"], want_t)
        total += n
    assert total == m["counts"]["spikes"] > 0


def test_sorting_attribute_reads_old_and_new_files(tmp_path: Path):
    """dtb.analysis still reads files whose ``sorting`` is a string (written by dtb before
    the enum, or by other tools); an absent or unknown value reads as none."""
    from dtb.analysis import SpikeReader
    from dtb.io.sonata import SORTINGS, set_sorting

    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.create_group("spikes/a").attrs["sorting"] = "by_id"
        f.create_group("spikes/b").attrs["sorting"] = np.bytes_("by_time")
        f.create_group("spikes/c")
        f.create_group("spikes/d").attrs["sorting"] = "sideways"
        set_sorting(f.create_group("spikes/e"), "by_time")
        for name in "abcde":
            f[f"spikes/{name}/timestamps"] = np.zeros(0)
            f[f"spikes/{name}/node_ids"] = np.zeros(0, np.uint64)
    with SpikeReader(path) as r:
        assert [r.sorting(p) for p in "abcde"] == ["by_id", "by_time", "none", "none",
                                                   "by_time"]
    assert SORTINGS == ("none", "by_id", "by_time")
