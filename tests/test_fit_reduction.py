"""Reducing blocks of the fitted statistics to the prior ensemble's principal axes (issue 13):
the log regional variances as well as FC.  A twin at 80 regions fitted FC and all 80 log
variances with 8 members and its ensemble collapsed, as it once did on the whole FC
triangle.  Checked here: each block's basis against an independent PCA and the reduction
by hand, the fitter reducing both blocks (the spread kept where the whole variance block
collapses it), a checkpoint round trip that restores both bases, and the command's options
and outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dtb.assimilation.fit import StatisticsConfig, bases
from dtb.assimilation.fit_esmda import Fitter
from dtb.assimilation.fit_options import check_args
from dtb.assimilation.fit_statistics import BlockBasis, reduce
from dtb.brain.spec import BrainSpec
from dtb.cli.main import main
from dtb.cli.parser import _parser
from dtb.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labelled_brain import build_labelled_brain  # noqa: E402
from linear_forward import LinearForward  # noqa: E402


def _pca(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Leading eigenvectors (columns) and eigenvalue fractions of a block's covariance."""
    C = np.cov(block, rowvar=False)
    w, V = np.linalg.eigh(C)
    order = np.argsort(w)[::-1]
    return V[:, order[:k]], w[order[:k]] / np.trace(C)


def test_fc_and_variance_blocks_are_each_reduced_to_their_principal_axes():
    """R = 6: 15 FC numbers, 2 FCD quantiles, 6 log variances.  Each block's axes are the
    eigenvectors of that block's sample covariance; the reduced statistics are FC's
    projection, the FCD quantiles unchanged, the variances' projection, in that order."""
    R, N = 6, 9
    cfg = StatisticsConfig(fc=True, fcd_quantiles=2, variance=True, fc_components=3,
                           variance_components=2)
    rng = np.random.default_rng(7)
    S = rng.standard_normal((N, 15 + 2 + R)) @ np.diag(np.linspace(3, 0.2, 23))
    fc, var = bases(S, R, cfg)
    assert (fc.name, fc.start, fc.size) == ("fc", 0, 15)
    assert (var.name, var.start, var.size) == ("variance", 17, R)
    for b, k in ((fc, 3), (var, 2)):
        block = S[:, b.start:b.start + b.size]
        V, frac = _pca(block, k)
        assert b.components.shape == (k, b.size)
        for j in range(k):
            assert abs(abs(b.components[j] @ V[:, j]) - 1) < 1e-9
        np.testing.assert_allclose(b.explained, frac)
        np.testing.assert_allclose(b.centre, block.mean(axis=0))
    x = rng.standard_normal((4, 23))
    want = np.concatenate([(x[:, :15] - fc.centre) @ fc.components.T, x[:, 15:17],
                           (x[:, 17:] - var.centre) @ var.components.T], axis=1)
    np.testing.assert_allclose(reduce(x, (fc, var)), want)
    np.testing.assert_allclose(reduce(x, (var, fc)), want)     # order given does not matter
    # the variance block alone, without FC: it starts at column 0
    only = bases(S[:, 15:], R, StatisticsConfig(fc=False, fcd_quantiles=2, variance=True,
                                                variance_components=2))
    assert [(b.name, b.start) for b in only] == [("variance", 2)]
    with pytest.raises(ConfigError, match="variance_components: 2 -- expected 0 when"):
        StatisticsConfig(variance_components=2)
    with pytest.raises(ConfigError, match="variance_components: -1"):
        StatisticsConfig(variance=True, variance_components=-1)


VAR_R = 40
VAR_M = VAR_R * (VAR_R - 1) // 2 + VAR_R     # 780 FC statistics and 40 log variances


def _forward(k_fc: int, k_var: int, seed: int) -> LinearForward:
    """The linear-Gaussian map over R = 40 "regions"' FC and log variances."""
    rng = np.random.default_rng(5)
    stats = StatisticsConfig(fc=True, fc_components=k_fc, variance=True,
                             variance_components=k_var)
    return LinearForward(stats, VAR_R, rng.normal(0, 0.3, VAR_M), rng.normal(0, 1.0, VAR_M),
                         0.5, seed)


def _data(fw: LinearForward, u: float) -> np.ndarray:
    rng = np.random.default_rng([fw.seed, 99])
    return u * fw.a + rng.standard_normal() * fw.b + fw.sigma * rng.standard_normal(VAR_M)


def _fitter(k_var: int, seed: int) -> Fitter:
    fw = _forward(3, k_var, seed)
    return Fitter(fw, _data(fw, 0.7), members=8, iterations=2, seed=seed, noise_runs=6,
                  data_noise=0.0, prior_sd=1.0)


def _posterior(k_var: int, seed: int) -> tuple[float, float]:
    """The fitted ensemble's SD and the truth's distance from its mean in those SDs."""
    f = _fitter(k_var, seed)
    f.start()
    while not f.done:
        f.step()
    u = f.U[:, 0]
    return float(u.std(ddof=1)), float(abs(u.mean() - 0.7) / u.std(ddof=1))


def test_reducing_the_variances_keeps_the_truth_the_whole_block_excludes():
    """8 members, FC on 3 axes, the 40 log variances whole or on 3 axes, 6 seeds.  The
    whole block (43 statistics, Gamma from 6 noise runs pooled with 6 residual degrees of
    freedom) is overconfident: the truth lies 3.9-50 ensemble SDs from the mean (measured)
    in every seed.  Reduced (6 statistics): 0.1-2.6 SDs, and a spread 2.7-7.8 times
    larger (the exact posterior SD given every statistic is 0.059)."""
    for seed in range(6):
        sd_whole, z_whole = _posterior(0, seed)
        sd_red, z_red = _posterior(3, seed)
        assert z_whole > 3.5 and z_red < 3.0, (seed, z_whole, z_red)
        assert sd_red > 2 * sd_whole


def test_a_fitter_with_both_reductions_resumes_exactly():
    """After one iteration, state() -> a new Fitter -> restore(): both bases come back
    (the variance block's start included) and the fit ends where the uninterrupted one
    does."""
    whole = _fitter(3, 1)
    whole.start()
    while not whole.done:
        whole.step()
    first = _fitter(3, 1)
    first.start()
    first.step()
    arrays, meta = first.state()
    assert {"basis/centre", "basis_variance/centre", "basis_variance/start"} <= set(arrays)
    second = _fitter(3, 1)
    second.restore({k: np.array(v) for k, v in arrays.items()},
                   json.loads(json.dumps(meta)))
    assert [(b.name, b.start, b.components.shape) for b in second.bases] == \
        [("fc", 0, (3, 780)), ("variance", 780, (3, 40))]
    assert second.y is not None and second.y.size == 6
    while not second.done:
        second.step()
    assert np.array_equal(second.U, whole.U)
    r1, r2 = whole.result(), second.result()
    assert np.array_equal(r1.Gamma, r2.Gamma) and r1.Gamma.shape == (6, 6)
    assert isinstance(r2.reduction("variance"), BlockBasis) and r2.basis is r2.bases[0]


def test_a_checkpoint_from_before_variance_reduction_restores_its_fc_basis():
    """A checkpoint written before blocks other than FC could be reduced has ``basis/*``
    without ``start``: it restores as FC's basis at column 0."""
    fw = _forward(3, 0, 2)
    f = Fitter(fw, _data(fw, 0.7), members=8, iterations=2, seed=2, noise_runs=6)
    f.start()
    f.step()
    arrays, meta = f.state()
    old = {k: v for k, v in arrays.items() if k != "basis/start"}
    g = Fitter(fw, _data(fw, 0.7), members=8, iterations=2, seed=2, noise_runs=6)
    g.restore(old, json.loads(json.dumps(meta)))
    assert [(b.name, b.start) for b in g.bases] == [("fc", 0)]
    assert np.array_equal(g.Gamma, f.Gamma)


@pytest.mark.parametrize("extra, match", [
    (["--variance-components", "2"], "--variance-components: 2 -- expected an integer >= 0 "
                                     "with --fit-variance"),
    (["--fit-variance", "--variance-components", "8"], "fewer than --members (8)"),
    (["--fit-variance", "--members", "4"], "--variance-components: 4 -- expected fewer"),
])
def test_variance_components_are_checked(extra, match):
    a = _parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv",
                              "--fc-components", "2", *extra])
    with pytest.raises(ConfigError) as e:
        check_args(a)
    assert match in str(e.value)


def test_defaults_of_variance_components():
    """4 axes with --fit-variance, none without; 0 keeps every region's variance."""
    def opts(*extra: str):
        return check_args(_parser().parse_args(["fit", "--brain", "b.h5", "--bold", "x.csv",
                                                *extra]))

    assert opts().variance_components == 0
    assert opts("--fit-variance").variance_components == 4
    assert opts("--fit-variance", "--variance-components", "0").variance_components == 0


def test_the_command_records_both_reductions(tmp_path):
    """``dtb fit --fit-variance --variance-components 2`` on a 5-region brain: fit.h5
    holds both bases, whose projections of the fit data are ``y``'s entries; metrics.json
    the explained fractions."""
    R = 5
    spec = BrainSpec.load(build_labelled_brain(tmp_path, R, 100, seed=3))
    x = np.random.default_rng(3).normal(size=(120, R))
    bold = tmp_path / "bold.csv"
    bold.write_text(",".join(str(n) for n in spec.region_names) + "\n"
                    + "\n".join(",".join(map(str, r)) for r in x.tolist()) + "\n")
    out = tmp_path / "run"
    assert main(["fit", "--brain", str(tmp_path / "brain.h5"), "--bold", str(bold),
                 "--tr", "0.05", "--fit-trs", "0:60", "--test-trs", "60:120", "--window",
                 "10", "--step", "5", "--members", "4", "--iterations", "1",
                 "--noise-runs", "3", "--fc-components", "2", "--fit-variance",
                 "--variance-components", "2", "--observable", "rates", "--spinup-s", "0",
                 "--substeps", "1", "--param", "coupling=0.25:3@1", "--out", str(out),
                 "-q"]) == 0
    m = json.loads((out / "metrics.json").read_text())["fit"]["statistics"]
    assert m["m"] == 4 and m["variance_components"] == 2
    assert len(m["fc_explained"]) == 2 and len(m["variance_explained"]) == 2
    assert 0 < sum(m["variance_explained"]) <= 1 + 1e-12
    with h5py.File(out / "fit.h5") as h:
        fc = BlockBasis(*(h[f"basis/{k}"][()] for k in ("centre", "components",
                                                          "explained")))
        var = BlockBasis(*(h[f"basis_variance/{k}"][()] for k in ("centre", "components",
                                                                    "explained")),
                         int(h["basis_variance/start"][()]), "variance")
        y, fitted = h["y"][()], h["bold/observed_fit"][()]
    assert var.start == R * (R - 1) // 2 and var.components.shape == (2, R)
    from dtb.assimilation.fit import statistics
    full = statistics(fitted, StatisticsConfig(variance=True, detrend="none"))
    np.testing.assert_allclose(y, reduce(full, (fc, var)), rtol=1e-9, atol=1e-12)
