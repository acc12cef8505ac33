"""A fit's forward runs on MPI member communicators (assimilation/fit_members.py): the same
prior, posterior and statistics, bit for bit, as the fit in one process, with one rank per
member (2 members at a time) and with one member distributed over 2 ranks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtb.assimilation.fit import FitParameter, Forward, ForwardConfig, StatisticsConfig
from dtb.assimilation.fit_esmda import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labelled_brain import build_labelled_brain  # noqa: E402

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
R = 4


def small_fit(spec: Any, run_map: Any = map) -> tuple[Any, np.ndarray]:
    """One ES-MDA iteration of 4 members (3 noise runs) on region rates of 1.6 s."""
    cfg = ForwardConfig(tr_s=0.04, n_tr=40, spinup_s=0.0, substeps=1, observable="rates")
    stats = StatisticsConfig(fc=True, mean=True, fc_components=2)
    params = [FitParameter("coupling", 0.25, 4.0), FitParameter("E.I_e", 0.5, 2.0)]
    fw = Forward(spec, params, cfg, stats, seed=3, run_map=run_map)
    y = np.concatenate([np.full(R * (R - 1) // 2, 0.2), np.full(R, np.log(5.0))])
    res = fit(fw, y, members=4, iterations=1, seed=3, noise_runs=3, centre=[1.5, 1.0])
    return res, np.asarray(fw(fw.unbounded(res.posterior), 9))


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> Path:
    return build_labelled_brain(tmp_path_factory.mktemp("members"), R, 240)


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
@pytest.mark.parametrize("ranks, per_member", [(2, 1), (2, 2)])
def test_members_on_communicators_give_the_serial_fit(brain, tmp_path, ranks, per_member):
    from dtb.brain.spec import BrainSpec

    res, stats = small_fit(BrainSpec.load(brain))
    out = tmp_path / "mpi.npz"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")}
    env["NUMBA_NUM_THREADS"] = "1"
    p = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable,
                        str(HERE / "fit_members_job.py"), str(brain), str(per_member),
                        str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    got = np.load(out)
    assert not np.allclose(res.prior, res.posterior)          # the update moved something
    np.testing.assert_array_equal(got["prior"], res.prior)
    np.testing.assert_array_equal(got["posterior"], res.posterior)
    np.testing.assert_array_equal(got["stats"], stats)
    # each run went to one member communicator of per_member ranks: 3 noise runs, 4
    # members and 4 posterior runs (11) split over the ranks / per_member members
    assert got["sizes"].tolist() == [per_member]
    members = ranks // per_member
    want = [len(range(m, n, members)) for n in (3, 4, 4) for m in range(members)]
    assert sorted(got["runs"].tolist()) == sorted(
        sum(want[k * members + m] for k in range(3)) for m in range(members)
        for _ in range(per_member))
