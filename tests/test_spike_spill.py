"""Spikes beyond a rank's in-memory buffer are appended to its spill file and come back
through an external sort (dtb.io.sonata): the part files and spikes.h5 must read exactly as
when every spike stays in memory (the independent expectation, itself checked against the
engine in test_recording), on 1 and 2 ranks and across an interruption; a spill file that
changed after its checkpoint is refused by name."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from interrupt import DTB, MPIEXEC, clean_env, signal_after_checkpoint
from interrupt import run_dtb as _run

from dtb.cli.exits import EXIT_TEMPFAIL
from dtb.engine.simulation import Engine
from dtb.io.rundir import write_atomic
from dtb.io.sonata import SpikeRecorder, read_sorting, spill_name
from dtb.models.microcircuit import microcircuit

MC = ["--model", "microcircuit", "--scale", "0.02", "--threads", "1", "--record", "rates:off"]
TINY_BUFFER = ["--record", "spike_buffer:0.002"]  # 131 spikes


def _same_spikes(a: Path, b: Path) -> int:
    """Every dataset and attribute of the spike files a and b agree; returns the spikes."""
    n = 0
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa["spikes"]) == sorted(fb["spikes"])
        for pop in fa["spikes"]:
            ga, gb = fa["spikes"][pop], fb["spikes"][pop]
            assert read_sorting(ga.attrs) == read_sorting(gb.attrs) == "by_id"
            for ds in ("timestamps", "node_ids"):
                x, y = ga[ds][()], gb[ds][()]
                assert x.dtype == y.dtype and np.array_equal(x, y), f"{pop}/{ds}"
            assert gb["timestamps"].attrs["units"] == "ms"
            n += len(ga["node_ids"])
    return n


@pytest.mark.parametrize("sample", [None, 7])
def test_spilled_part_equals_the_in_memory_part(sample, tmp_path: Path):
    eng = Engine(microcircuit(0.02), dt=0.1, seed=2, threads=1)
    eng.keep_spikes = False
    budget = 40 if sample is None else 5  # spikes
    mem = SpikeRecorder(eng, sample)
    spill = SpikeRecorder(eng, sample, spill_dir=tmp_path / "spikes", spill_bytes=16 * budget)
    peak = [0]

    def window(steps: np.ndarray, idx: np.ndarray) -> None:
        mem.window(steps, idx)
        spill.window(steps, idx)
        peak[0] = max(peak[0], spill._buffered)

    eng.run(300.0, on_window=window)
    assert spill.count() == mem.count() > 20 * budget
    assert spill.spilled > 10 * budget and peak[0] < budget  # memory stayed bounded
    assert (tmp_path / spill_name(0)).stat().st_size == 16 * spill.spilled
    image, sl_a, cnt_a = mem.part_image()
    write_atomic(tmp_path / "mem.h5", image)
    _, size, sl_b, cnt_b = spill.write_part(tmp_path / "ext.h5", write_atomic)
    assert size == (tmp_path / "ext.h5").stat().st_size
    assert sl_a == sl_b and cnt_a == cnt_b and sum(cnt_b.values()) == mem.count()
    assert _same_spikes(tmp_path / "mem.h5", tmp_path / "ext.h5") == mem.count()
    assert not list(tmp_path.glob(".tmp-*"))
    with h5py.File(tmp_path / "ext.h5") as f:  # sorted by (node id, time) on its own
        for g in f["spikes"].values():
            key = g["node_ids"][()].astype(np.float64) * 1e7 + g["timestamps"][()]
            assert np.all(np.diff(key) > 0)


def test_two_ranks_spilling_write_the_spikes_of_one_rank_in_memory(tmp_path: Path):
    if MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")
    ref, run = tmp_path / "ref", tmp_path / "run"
    p = _run("simulate", *MC, "--t", "400", "--out", str(ref), "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    p = _run("simulate", *MC, *TINY_BUFFER, "--t", "400", "--out", str(run), "--quiet",
             ranks=2)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _same_spikes(ref / "spikes.h5", run / "spikes.h5") > 20 * 131
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete" and len(m["outputs"]["spikes"]["parts"]) == 2
    assert sorted(q.name for q in (run / "spikes").iterdir()) == ["rank-00000.h5",
                                                                   "rank-00001.h5"]


def _interrupted(run: Path) -> None:
    cmd = [DTB, "simulate", *MC, *TINY_BUFFER, "--t", "1200", "--checkpoint-every", "100",
           "--out", str(run)]
    p = signal_after_checkpoint(cmd, run, signal.SIGTERM, 4000, clean_env())
    assert p.returncode == EXIT_TEMPFAIL, p.stderr[-2000:]
    assert (run / spill_name(0)).stat().st_size > 16 * 131 * 10


def test_resume_cuts_the_spill_back_to_its_checkpoint(tmp_path: Path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    p = _run("simulate", *MC, "--t", "1200", "--out", str(ref), "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    _interrupted(run)
    with open(run / spill_name(0), "ab") as f:  # as if killed after the checkpoint
        f.write(np.arange(32, dtype=np.int64).tobytes())
    p = _run("simulate", "--resume", str(run), "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    assert _same_spikes(ref / "spikes.h5", run / "spikes.h5") > 0
    assert not (run / spill_name(0)).exists()


def test_a_changed_spill_file_is_refused_by_name(tmp_path: Path):
    run = tmp_path / "run"
    _interrupted(run)
    spill = run / spill_name(0)
    data = bytearray(spill.read_bytes())
    data[20] ^= 1
    spill.write_bytes(bytes(data))
    p = _run("simulate", "--resume", str(run), "--quiet")
    assert p.returncode != 0
    assert f"{spill}: chunk 0" in p.stderr and "SHA-256" in p.stderr, p.stderr[-2000:]
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"


def test_recording_memory_stays_within_the_buffer(tmp_path: Path):
    """Through a Recording (chunks of 1 % of the run), neither the spikes waiting for the
    next chunk end nor the recorder's own buffer exceed spike_buffer_mb, and the outputs
    (spikes.h5, population rates) equal those of a run with a large buffer."""
    import zarr

    from dtb.engine.recording import Recording
    from dtb.model.record_spec import RecordSpec

    budget = 12  # spikes (a chunk, 1 % of the run, holds about 900)
    runs = {}
    for name, mb in (("big", 64.0), ("tiny", budget * 16 / 2**20)):
        eng = Engine(microcircuit(0.02), dt=0.1, seed=4, threads=1)
        eng.keep_spikes = False
        out = tmp_path / name
        out.mkdir()
        spec = RecordSpec(spikes="all", rates_ms=1.0, units_ms=None, spike_buffer_mb=mb)
        rec = Recording(eng, out, spec, 400.0)
        peak = [0, 0]
        inner = rec.window

        def window(steps, idx, rec=rec, inner=inner, peak=peak):
            inner(steps, idx)
            peak[0] = max(peak[0], rec._pending_n)
            peak[1] = max(peak[1], rec.spikes._buffered)

        rec.window = window
        assert rec.run()
        res = rec.finish(write_atomic)
        runs[name] = (out, peak, rec.spikes.spilled, sum(res["pop_counts"].values()))
    out, peak, spilled, n = runs["tiny"]
    assert n > 50 * budget and spilled > 40 * budget
    assert peak[0] < budget and peak[1] < budget
    assert runs["big"][2] == 0 and runs["big"][3] == n
    assert _same_spikes(runs["big"][0] / "spikes.h5", out / "spikes.h5") == n
    a = zarr.open_group(str(runs["big"][0] / "series.zarr"), mode="r")["population_rate"][...]
    b = zarr.open_group(str(out / "series.zarr"), mode="r")["population_rate"][...]
    assert np.array_equal(a, b) and a.sum() > 0
