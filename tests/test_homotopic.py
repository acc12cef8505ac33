"""The homotopic term of the long-range recipe (dtb.brain.recipe): which regions pair, what
it adds to the SC, how it reaches the in-degrees, and its use from dtb build and dtb fit."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest

from dtb.assimilation.fit import FitParameter, fitted_spec, with_coupling
from dtb.assimilation.fit_score import identity_values
from dtb.brain.recipe import homotopic_pairs
from dtb.cli.main import main
from dtb.errors import ConfigError

NAMES = ["Precentral_L", "Precentral_R", "Frontal_Sup_2_L", "Frontal_Sup_2_R", "Thalamus",
         "Insula_R"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A 6-region connectome headed by AAL2-style names: 2 homotopic pairs, one midline
    region and one right region without a left partner."""
    d: Path = tmp_path_factory.mktemp("homotopic")
    rng = np.random.default_rng(3)
    w = rng.uniform(0, 1, (6, 6))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    w[0, 1] = w[1, 0] = w[2, 3] = w[3, 2] = 0.0   # tractography missed the callosal fibres
    ln = rng.uniform(20, 80, (6, 6))
    ln = (ln + ln.T) / 2
    np.fill_diagonal(ln, 0)
    for name, m in (("sc.csv", w), ("len.csv", ln)):
        (d / name).write_text(",".join(NAMES) + "\n" + "\n".join(
            ",".join(f"{x:.6g}" for x in r) for r in m) + "\n")
    return d


@pytest.fixture(scope="module")
def brain(files):
    from dtb.brain.build import BuildOptions, build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build(sc=str(files / "sc.csv"), lengths=str(files / "len.csv"),
                     options=BuildOptions(neurons=600))


def test_pairs_from_hemisphere_markers():
    names = ["Precentral_L", "Precentral_R", "ctx-lh-insula", "ctx-rh-insula", "Thal",
             "lh.A", "rh.A", "L_x", "R_x", "Left-Amyg", "Right-Amyg", "a_L", "a_L", "b_R",
             "Lingual_L_R"]
    assert homotopic_pairs(names).tolist() == [[0, 1], [2, 3], [5, 6], [7, 8], [9, 10]]
    assert homotopic_pairs(["1", "2", "3"]).shape == (0, 2)


def test_the_term_adds_to_the_pairs_only_and_feeds_the_in_degrees(brain):
    assert list(brain.region_names) == NAMES
    w0 = np.array(brain.weights, float)
    out = with_coupling(brain, 1.0, homotopic=0.5, sc_exponent=1.0)
    want = w0.copy()
    for i, j in ((0, 1), (2, 3)):
        want[i, j] = want[j, i] = w0[i, j] + 0.5 * w0.max()
    assert np.array_equal(out.weights, want)
    assert np.array_equal(brain.weights, w0)        # the input brain is left as it was
    strength = want.sum(axis=1)[brain.unit_region]
    rel = strength / np.average(strength, weights=brain.neurons_per_unit())
    lr = [(a, b) for a, b in zip(brain.rules, out.rules, strict=True) if a.kind == "long_range"]
    assert lr
    for a, b in lr:
        assert np.array_equal(b.k, np.floor(a.k * rel + 0.5).astype(np.int64))


def test_bad_values_and_brains_are_refused(brain):
    with pytest.raises(ConfigError, match=r"homotopic: -0.1 -- expected a finite number >= 0"):
        with_coupling(brain, 1.0, homotopic=-0.1)
    unnamed = copy.copy(brain)
    unnamed.region_names = [str(i) for i in range(1, 7)]
    with pytest.raises(ConfigError, match="no left/right pairs among the region names"):
        with_coupling(unnamed, 1.0, homotopic=0.5)
    nolength = copy.copy(brain)
    nolength.conduction_ms = np.array(brain.conduction_ms, float)
    nolength.conduction_ms[2, 3] = nolength.conduction_ms[3, 2] = 0.0
    with pytest.raises(ConfigError, match="Frontal_Sup_2_L-Frontal_Sup_2_R"):
        with_coupling(nolength, 1.0, homotopic=0.5)


def test_fit_parameter_and_build_option(brain, files, tmp_path):
    p = FitParameter("homotopic", 0.0, 2.0)
    assert p.structural
    assert identity_values([p]).tolist() == [0.0]
    assert np.array_equal(fitted_spec(brain, [p], np.array([0.5])).weights,
                          with_coupling(brain, 1.0, homotopic=0.5).weights)
    from dtb.brain.spec import BrainSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for h in ("0", "0.5"):
            assert main(["build", "--sc", str(files / "sc.csv"), "--lengths",
                         str(files / "len.csv"), "--neurons", "600", "--homotopic", h,
                         "-o", str(tmp_path / f"b{h}.h5"), "-q"]) == 0
    built = BrainSpec.load(tmp_path / "b0.5.h5")
    assert np.allclose(built.weights, with_coupling(brain, 1.0, homotopic=0.5).weights)
    assert np.allclose(BrainSpec.load(tmp_path / "b0.h5").weights, brain.weights)
    assert built.options["homotopic"] == 0.5
    assert main(["build", "--sc", str(files / "sc.csv"), "--lengths", str(files / "len.csv"),
                 "--neurons", "600", "--homotopic", "-1", "-o", str(tmp_path / "x.h5"),
                 "-q"]) == 2
    assert not (tmp_path / "x.h5").exists()
