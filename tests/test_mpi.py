"""The distributed engine under mpiexec: identical spikes on 1, 2, 3 and 4 ranks,
neighbourhood exchange, the CLI, and failure behaviour (no hangs).

Each case starts MPICH's mpiexec (installed with the dev extra) in a subprocess; the
reference is the same script run as a single process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.mpi

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")


def _env() -> dict:
    env = dict(os.environ)
    for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        env.pop(k, None)
    return env


def job(model: str, ranks: int, out: Path, t_ms: float = 100.0, seed: int = 7,
        routing: str = "direct", partition: str = "slices", env: dict | None = None):
    cmd = [sys.executable, str(HERE / "mpi_job.py"), model, str(t_ms), str(out), str(seed),
           routing, partition]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**_env(), **(env or {})})
    assert p.returncode == 0, p.stderr[-3000:]
    d = np.load(out)
    assert int(d["ranks"]) == ranks
    job.last = d
    return d["t"], d["g"]


@needs_mpi
@pytest.mark.parametrize("model,ranks", [("mixed", 2), ("mixed", 3), ("mixed", 4),
                                         ("microcircuit", 2), ("microcircuit", 4),
                                         ("brain", 3)])
def test_identical_spikes_on_any_number_of_ranks(tmp_path, model, ranks):
    t1, g1 = job(model, 1, tmp_path / "one.npz")
    tp, gp = job(model, ranks, tmp_path / "many.npz")
    assert len(t1) > 100  # the comparison is about real activity
    np.testing.assert_array_equal(t1, tp)
    np.testing.assert_array_equal(g1, gp)


@needs_mpi
@pytest.mark.parametrize("model,ranks", [("mixed", 4), ("mixed", 3), ("brain", 4)])
def test_two_level_routing_gives_the_same_spikes(tmp_path, model, ranks):
    """Groups of 2 ranks with one relay each (3 ranks: groups of 2 and 1)."""
    t1, g1 = job(model, 1, tmp_path / "one.npz")
    tp, gp = job(model, ranks, tmp_path / "two_level.npz", routing="two-level")
    assert len(t1) > 100
    np.testing.assert_array_equal(t1, tp)
    np.testing.assert_array_equal(g1, gp)


@needs_mpi
@pytest.mark.parametrize("ranks,partition,routing", [(2, "metis", "direct"),
                                                     (3, "metis", "direct"),
                                                     (4, "metis", "two-level"),
                                                     (3, "contiguous", "direct")])
def test_partition_plans_give_the_same_spikes(tmp_path, ranks, partition, routing):
    """A METIS plan gives ranks scattered sets of units (several ranges of a family on
    one rank, units cut into blocks); the spikes stay those of one process."""
    t1, g1 = job("brain", 1, tmp_path / "one.npz")
    tp, gp = job("brain", ranks, tmp_path / "plan.npz", routing=routing, partition=partition)
    assert len(t1) > 100
    np.testing.assert_array_equal(t1, tp)
    np.testing.assert_array_equal(g1, gp)


@needs_mpi
def test_cli_under_mpiexec_records_ranks_and_exchange(tmp_path):
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    base = [str(BIN / "dtb"), "simulate", "--model", "microcircuit", "--scale", "0.02",
            "--t", "50", "--quiet"]
    p = subprocess.run([*base, "--out", str(out1)], capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([MPIEXEC, "-n", "2", *base, "--out", str(out2)], capture_output=True,
                       text=True, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    m1 = json.loads((out1 / "manifest.json").read_text())
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert m2["status"] == "complete" and m2["ranks"] == 2
    assert m2["counts"]["synapses"] == m1["counts"]["synapses"]
    assert m2["counts"]["spikes"] == m1["counts"]["spikes"]
    d = m2["distribution"]
    assert sum(d["per_rank"]["neurons"]) == m1["counts"]["neurons"]
    assert sum(d["per_rank"]["synapses"]) == m1["counts"]["synapses"]
    assert d["imbalance"]["synapses"] < 1.05
    assert d["exchange"]["windows"] == 500  # 50 ms at the 0.1 ms minimum delay
    import h5py

    with h5py.File(out1 / "spikes.h5") as a, h5py.File(out2 / "spikes.h5") as b:
        for pop in a["spikes"]:
            for ds in ("timestamps", "node_ids"):
                np.testing.assert_array_equal(a["spikes"][pop][ds][()], b["spikes"][pop][ds][()])


@needs_mpi
@pytest.mark.parametrize("ranks,routing", [(2, "direct"), (4, "direct"), (4, "two-level")])
def test_silent_bursting_and_empty_ranks(tmp_path, ranks, routing):
    """A rank whose neurons never fire, one that bursts (DC-driven, ~100 Hz), and on 4
    ranks one that owns no neuron: no deadlock, the same spikes as one process."""
    t1, g1 = job("uneven", 1, tmp_path / "one.npz")
    tp, gp = job("uneven", ranks, tmp_path / "many.npz", routing=routing, partition="uneven")
    n_b0 = 400 + 100 + 150 + 200
    assert np.sum(g1 >= n_b0) > 40 * 5  # the bursting population fires
    assert not np.any((g1 >= 650) & (g1 < n_b0))  # the silent one does not
    np.testing.assert_array_equal(t1, tp)
    np.testing.assert_array_equal(g1, gp)


@needs_mpi
def test_cli_runs_a_brain_on_a_metis_plan(tmp_path):
    import h5py

    from dtb.cli.main import main

    brain = tmp_path / "b.h5"
    assert main(["build", "--demo", "--neurons", "4000", "-o", str(brain)]) == 0
    out1, out3 = tmp_path / "r1", tmp_path / "r3"
    base = [str(BIN / "dtb"), "simulate", "--brain", str(brain), "--t", "40", "--quiet"]
    p = subprocess.run([*base, "--out", str(out1)], capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([MPIEXEC, "-n", "3", *base, "--partition", "metis", "--out", str(out3)],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    m = json.loads((out3 / "manifest.json").read_text())
    assert m["distribution"]["partition"] == "metis" and m["ranks"] == 3
    with h5py.File(out1 / "spikes.h5") as a, h5py.File(out3 / "spikes.h5") as b:
        assert sum(len(a["spikes"][pop]["node_ids"]) for pop in a["spikes"]) > 100
        for pop in a["spikes"]:
            for ds in ("timestamps", "node_ids"):
                np.testing.assert_array_equal(a["spikes"][pop][ds][()], b["spikes"][pop][ds][()])
    p = subprocess.run([*base, "--partition", "metis", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr  # one rank: a plan of one part
    p = subprocess.run([str(BIN / "dtb"), "simulate", "--model", "microcircuit", "--t", "1",
                        "--partition", "metis"], capture_output=True, text=True, env=_env())
    assert p.returncode == 2 and "expected --brain" in p.stderr


@needs_mpi
def test_error_every_rank_raises_ends_the_job_in_order_with_one_message(tmp_path):
    """The run directory is checked on rank 0 and its error raised on every rank: the ranks
    exit in order (no MPI_Abort, which could lose the message) and it is printed once."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    p = subprocess.run([MPIEXEC, "-n", "2", str(BIN / "dtb"), "simulate", "--model",
                        "microcircuit", "--scale", "0.02", "--t", "20", "--out",
                        str(blocker / "run")], capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("dtb: error:") == 1 and str(blocker) in p.stderr


@needs_mpi
def test_error_on_one_rank_ends_the_job_with_its_message():
    t0 = time.monotonic()
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_fail_one_rank.py")],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode != 0
    assert "rank 1: error: rank-one failure" in p.stderr
    assert time.monotonic() - t0 < 120  # promptly: rank 0 is not left in its barrier


@needs_mpi
def test_ranks_with_different_configurations_are_detected(tmp_path):
    a = [sys.executable, str(HERE / "mpi_job.py"), "mixed", "10", str(tmp_path / "x.npz")]
    p = subprocess.run([MPIEXEC, "-n", "1", *a, "1", ":", "-n", "1", *a, "2"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode != 0
    assert "different from rank 0" in p.stderr


# --- recorded outputs (issue 5) --------------------------------------------------------------

def _read_run(run: Path) -> dict:
    """Everything a run wrote, read through h5py and zarr (values, not files)."""
    import h5py
    import zarr

    from dtb.io.sonata import read_sorting

    out = {}
    with h5py.File(run / "spikes.h5", "r") as f:
        out["attrs"] = (int(f.attrs["magic"]), list(f.attrs["version"]))
        for pop, g in f["spikes"].items():
            out[f"spikes/{pop}"] = (read_sorting(g.attrs), g["timestamps"][()],
                                    g["node_ids"][()])
    root = zarr.open_group(str(run / "series.zarr"), mode="r")
    for name, arr in root.arrays():
        out[f"zarr/{name}"] = arr[...]
    with h5py.File(run / "series.h5", "r") as f:
        for name, d in f.items():
            out[f"h5/{name}"] = d[()]
    return out


@needs_mpi
@pytest.mark.parametrize("partition", ["slices", "metis"])
def test_recorded_outputs_identical_on_1_and_4_ranks(tmp_path, partition):
    """A brain with units: spikes.h5 (virtual datasets over the parts), rates, unit rates,
    BOLD, membrane and synaptic samples in Zarr and HDF5 read the same from a 4-rank run as
    from one process, and the Zarr chunk files are byte for byte the same; small chunk
    columns make every rank own and write some.  A METIS plan gives ranks several slices of
    each population, in no particular id order."""
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    brain = tmp_path / "brain.h5"
    build(**demo_inputs(), options=BuildOptions(neurons=6000)).save(brain)
    rec = ["--record", "units:5", "--record", "bold:50", "--record", "chunks:8",
           "--record", "samples:n=7,every=5,variables=V+syn", "--record", "hdf5"]
    runs = {}
    for ranks in (1, 4):
        out = tmp_path / f"r{ranks}"
        cmd = [str(BIN / "dtb"), "simulate", "--brain", str(brain), "--t", "120", "--quiet",
               "--out", str(out), *rec]
        if ranks > 1:
            cmd = [MPIEXEC, "-n", str(ranks), *cmd, "--partition", partition]
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        runs[ranks] = out
    m1 = json.loads((runs[1] / "manifest.json").read_text())
    m4 = json.loads((runs[4] / "manifest.json").read_text())
    assert m4["status"] == "complete" and m4["ranks"] == 4
    assert len(m4["outputs"]["spikes"]["parts"]) == 4
    assert set(m4["outputs"]["spikes"]["sorting"].values()) == {"by_id"}
    assert m1["rates_hz"] == m4["rates_hz"] and m1["counts"]["spikes"] > 1000
    a, b = _read_run(runs[1]), _read_run(runs[4])
    assert set(a) == set(b)
    assert {"zarr/bold", "zarr/unit_rate", "zarr/V", "zarr/syn3", "h5/bold"} <= set(a)
    for k in a:
        if isinstance(a[k], tuple) and k.startswith("spikes/"):
            assert a[k][0] == b[k][0] == "by_id"
            for x, y in zip(a[k][1:], b[k][1:], strict=True):
                np.testing.assert_array_equal(x, y)
        elif k == "attrs":
            assert a[k] == b[k] == (0x0A7A, [0, 1])
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # NaN == NaN here
    assert np.isfinite(a["zarr/bold"]).all() and np.abs(a["zarr/bold"]).max() > 0
    files1 = {f["path"]: f["sha256"] for f in m1["outputs"]["series"]["files"]}
    files4 = {f["path"]: f["sha256"] for f in m4["outputs"]["series"]["files"]}
    assert files1 == files4 and any("/c/" in p for p in files1)
    # every file listed in the manifest is there with the recorded checksum
    import hashlib

    for f in [*m4["outputs"]["series"]["files"], *m4["outputs"]["spikes"]["parts"],
              *m4["outputs"]["series_h5"]["parts"]]:
        assert hashlib.sha256((runs[4] / f["path"]).read_bytes()).hexdigest() == f["sha256"]


@needs_mpi
@pytest.mark.parametrize("ranks,plain", [(2, False), (3, False), (4, False), (3, True)])
def test_block_transfer_delivers_overflow_and_agrees_on_resizing(ranks, plain):
    """Counts from 0 to 300 against blocks of 16 and more: the remainder of a full block
    arrives point to point, and the ranks change the block size together; with MPI-4's
    persistent collective and without it (plain: what an MPI-3 library gets)."""
    p = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable,
                        str(HERE / "mpi_transfer.py"), *(["--plain"] if plain else [])],
                       capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.stdout.startswith("ok [16, ")


@needs_mpi
@pytest.mark.parametrize("model", ["microcircuit", "uneven"])
def test_compiled_loop_across_block_resizes(tmp_path, model):
    """The compiled distributed loop (an exchange every step) leaves and re-enters when the
    ranks agree on another block size (every 40 windows here), overflowing blocks go
    point to point: the spikes stay those of one process."""
    t1, g1 = job(model, 1, tmp_path / "one.npz", t_ms=60.0)
    partition = "uneven" if model == "uneven" else "slices"
    tp, gp = job(model, 2, tmp_path / "two.npz", t_ms=60.0, partition=partition,
                 env={"DTB_BLOCK_RESIZE_EVERY": "40"})
    assert len(t1) > 100
    np.testing.assert_array_equal(t1, tp)
    np.testing.assert_array_equal(g1, gp)
    assert int(job.last["resizes"]) >= 1  # the block size changed (measured: 4 and 1 times)
