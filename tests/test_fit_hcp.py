"""benchmarks/fit_hcp.py: the data side of the real-subject validation (detrending, the
baselines on held-out TRs), on synthetic subjects, against independent computations."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import detrend as scipy_detrend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
fit_hcp = pytest.importorskip("fit_hcp")
hcp = pytest.importorskip("hcp")


def _subject(sid: str, rng: np.random.Generator, shared: np.ndarray) -> "hcp.Subject":
    R = 6
    mix = shared + 0.3 * rng.standard_normal((R, R))
    t = np.arange(hcp.N_TR)[:, None]
    bold = 1000 + 0.05 * t + rng.standard_normal((hcp.N_TR, R)) @ mix.T
    sc = np.abs(rng.standard_normal((R, R)))
    sc = (sc + sc.T) / 2
    np.fill_diagonal(sc, 0.0)
    return hcp.Subject(sid, sc / sc.max(), np.ones((R, R)), bold, [f"r{k}" for k in range(R)],
                       np.arange(1, R + 1))


def _r_upper(a: np.ndarray, b: np.ndarray) -> float:
    iu = np.triu_indices(a.shape[0], 1)
    return float(np.corrcoef(a[iu], b[iu])[0, 1])


def test_detrend_matches_scipy():
    x = np.random.default_rng(0).standard_normal((50, 4)) + np.arange(50)[:, None] * 0.3 + 7
    np.testing.assert_allclose(fit_hcp.detrend(x), scipy_detrend(x, axis=0, type="linear"),
                               atol=1e-10)


def test_baselines_use_the_right_trs_and_subjects():
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((6, 6))
    sub, o1, o2 = (_subject(s, rng, shared) for s in hcp.DEV_SUBJECTS)
    d = fit_hcp.subject_data(sub, [o1, o2])
    train = scipy_detrend(sub.bold[:600], axis=0)
    held = scipy_detrend(sub.bold[600:], axis=0)
    fc_tr, fc_ho = np.corrcoef(train.T), np.corrcoef(held.T)
    b = d["baselines"]
    assert b["split_half_r"] == pytest.approx(_r_upper(fc_tr, fc_ho), abs=1e-9)
    assert b["log1p_sc_r"] == pytest.approx(_r_upper(np.log1p(sub.sc), fc_ho), abs=1e-9)
    group = np.tanh(np.mean([np.arctanh(np.clip(np.corrcoef(scipy_detrend(o.bold, axis=0).T),
                                                -1 + 1e-7, 1 - 1e-7)) for o in (o1, o2)],
                            axis=0))
    assert b["group_fc_r"] == pytest.approx(_r_upper(group, fc_ho), abs=1e-6)
    assert b["group_subjects"] == [o1.sid, o2.sid]
    np.testing.assert_allclose(d["train"], train, atol=1e-8)
    # a model's BOLD (detrended again) scored against the held-out FC
    s = fit_hcp.score(held[:300] * 1e-5, d)
    fc_m = np.corrcoef(scipy_detrend(held[:300], axis=0).T)
    assert s["fc_r"] == pytest.approx(_r_upper(fc_m, fc_ho), abs=1e-9)
    assert s["trs"] == 300

