"""Observed BOLD files: formats, preprocessing and refusals naming file, field and value."""

import h5py
import nibabel as nib
import numpy as np
import pytest

from dtb.assimilation.observations import match_labels, preprocess, read_bold, resolve_regions
from dtb.errors import InputError

LABELS = [3, 1, 7]


def _series(T=40, seed=0):
    return np.random.default_rng(seed).standard_normal((T, 3)) + np.arange(3)


def _csv(path, data, labels=LABELS, sep=","):
    lines = [sep.join(str(x) for x in labels)]
    lines += [sep.join(repr(float(v)) for v in row) for row in data]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_tsv_npy_hdf5_read_the_same(tmp_path):
    x = _series()
    a = read_bold(_csv(tmp_path / "b.csv", x), 0.8)
    b = read_bold(_csv(tmp_path / "b.tsv", x, sep="\t"), 0.8)
    np.save(tmp_path / "b.npy", x)
    (tmp_path / "labels.txt").write_text("3\n1\n7\n")
    c = read_bold(tmp_path / "b.npy", 0.8, labels=tmp_path / "labels.txt")
    with h5py.File(tmp_path / "b.h5", "w") as h:
        h["bold"] = x
        h["bold"].attrs["labels"] = LABELS
        h["bold"].attrs["tr"] = 0.8
    d = read_bold(tmp_path / "b.h5")                   # TR from the file
    for r in (a, b, c, d):
        np.testing.assert_array_equal(r.data, x)
        np.testing.assert_array_equal(r.labels, LABELS)
        assert r.tr_s == 0.8
    assert a.duration_s == pytest.approx(32.0)


def test_nifti_with_atlas_gives_region_means(tmp_path):
    rng = np.random.default_rng(1)
    atlas = np.zeros((4, 3, 2), np.int16)
    atlas[:2] = 5
    atlas[2:, :, 0] = 9
    vol = rng.standard_normal((4, 3, 2, 12))
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm", "sec")
    img = nib.Nifti1Image(vol.astype(np.float32), np.eye(4), hdr)
    img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    nib.save(img, tmp_path / "bold.nii.gz")
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), tmp_path / "atlas.nii.gz")
    r = read_bold(tmp_path / "bold.nii.gz", 2.0, atlas=tmp_path / "atlas.nii.gz")
    np.testing.assert_array_equal(r.labels, [5, 9])
    v32 = vol.astype(np.float32).astype(float)
    np.testing.assert_allclose(r.data[:, 0], v32[:2].reshape(-1, 12).mean(0), rtol=1e-6)
    np.testing.assert_allclose(r.data[:, 1], v32[2:, :, 0].reshape(-1, 12).mean(0), rtol=1e-6)
    with pytest.raises(InputError, match=r"bold\.nii\.gz: tr: 2\.0 -- expected the given TR"):
        read_bold(tmp_path / "bold.nii.gz", 0.8, atlas=tmp_path / "atlas.nii.gz")
    with pytest.raises(InputError, match="atlas"):
        read_bold(tmp_path / "bold.nii.gz", 2.0)


def test_refusals_name_file_field_value_and_expectation(tmp_path):
    x = _series()
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(InputError, match=r"b\.csv: time point 5, label 7: nan -- expected "
                                         r"finite values"):
        read_bold(_csv(tmp_path / "b.csv", bad), 0.8)
    with pytest.raises(InputError, match=r"short\.csv: time points: 4 -- expected at least 10"):
        read_bold(_csv(tmp_path / "short.csv", x[:4]), 0.8)
    good = _csv(tmp_path / "g.csv", x)
    for tr in (0.0, -1.0, float("nan"), 120.0):
        with pytest.raises(InputError, match=r"g\.csv: tr: .* -- expected a repetition time"):
            read_bold(good, tr)
    with pytest.raises(InputError, match="tr: None"):
        read_bold(good, None)
    with h5py.File(tmp_path / "b.h5", "w") as h:
        h["bold"] = x
        h["bold"].attrs["labels"] = LABELS
        h["bold"].attrs["tr"] = 2.0
    with pytest.raises(InputError, match=r"b\.h5: tr: 2\.0 -- expected the given TR 0\.72"):
        read_bold(tmp_path / "b.h5", 0.72)
    (tmp_path / "dup.csv").write_text("1,1,2\n0,1,2\n")
    with pytest.raises(InputError, match=r"dup\.csv: header: \[1\] -- expected distinct"):
        read_bold(tmp_path / "dup.csv", 0.8)
    (tmp_path / "ragged.csv").write_text("1,2,3\n" + "0,1,2\n" * 11 + "0,1\n")
    with pytest.raises(InputError, match=r"ragged\.csv: row 12: 2 values -- expected 3"):
        read_bold(tmp_path / "ragged.csv", 0.8)
    (tmp_path / "word.csv").write_text("1,2,3\n0,x,2\n")
    with pytest.raises(InputError, match=r"word\.csv: row 1, label 2: 'x' -- expected a number"):
        read_bold(tmp_path / "word.csv", 0.8)
    (tmp_path / "name.csv").write_text("1,two,3\n0,1,2\n")
    with pytest.raises(InputError, match=r"name\.csv: header column 2: 'two' -- expected an "
                                         r"integer region label like the other columns"):
        read_bold(tmp_path / "name.csv", 0.8)
    c = x.copy()
    c[:, 1] = 4.0
    with pytest.raises(InputError, match=r"const\.csv: label 1: a constant series"):
        read_bold(_csv(tmp_path / "const.csv", c), 0.8)
    np.save(tmp_path / "b.npy", x)
    with pytest.raises(InputError, match=r"b\.npy: labels: None -- expected labels"):
        read_bold(tmp_path / "b.npy", 0.8)
    with pytest.raises(InputError, match=r"b\.npy: shape: \(40, 3\) -- expected \(time points, 2"):
        read_bold(tmp_path / "b.npy", 0.8, labels=[1, 2])
    with pytest.raises(InputError, match="no such file"):
        read_bold(tmp_path / "none.csv", 0.8)
    with pytest.raises(InputError, match=r"suffix: '\.mat'"):
        (tmp_path / "x.mat").write_bytes(b"0")
        read_bold(tmp_path / "x.mat", 0.8)


def test_label_matching_both_directions(tmp_path):
    b = read_bold(_csv(tmp_path / "b.csv", _series()), 0.8)
    units = [1, 1, 3, 7, 7, 7]                         # voxel-level units of regions 1, 3, 7
    idx, used = match_labels(b, units)
    np.testing.assert_array_equal(idx, [1, 1, 0, 2, 2, 2])
    np.testing.assert_array_equal(used, [0, 1, 2])
    with pytest.raises(InputError, match=r"b\.csv: labels: \[9\] -- expected an observed series"):
        match_labels(b, [1, 3, 7, 9])
    idx, _ = match_labels(b, [1, 3, 7, 9], allow_unobserved=True)
    assert idx[-1] == -1
    with pytest.raises(InputError, match=r"b\.csv: labels: \[7\] -- expected labels of the "
                                         r"brain's regions"):
        match_labels(b, [1, 3])
    idx, used = match_labels(b, [1, 3], allow_extra=True)
    np.testing.assert_array_equal(used, [0, 1])


def test_preprocessing_against_known_answers(tmp_path):
    T, tr = 400, 0.5
    t = np.arange(T) * tr
    slow = np.sin(2 * np.pi * 0.05 * t)                # in band
    fast = np.sin(2 * np.pi * 0.6 * t)                 # above 0.1 Hz
    trend = 3.0 + 0.02 * t
    x = np.stack([slow + fast + trend, 2 * slow + trend, slow - fast], 1)
    b = read_bold(_csv(tmp_path / "b.csv", x), tr)
    d = preprocess(b, detrend="linear")
    # a linear trend is removed exactly; what stays is orthogonal to 1 and t
    V = np.stack([np.ones(T), t], 1)
    np.testing.assert_allclose(V.T @ d.data, 0, atol=1e-8)
    np.testing.assert_allclose(d.data[:, 1], 2 * slow - V @ np.linalg.lstsq(V, 2 * slow,
                                                                          rcond=None)[0],
                               atol=1e-10)
    f = preprocess(b, detrend="linear", band=(0.01, 0.1))
    core = slice(100, 300)                             # away from the filter's edges
    assert np.corrcoef(f.data[core, 0], slow[core])[0, 1] > 0.99
    assert np.std(preprocess(b, band=(0.01, 0.1)).data[core, 2] - slow[core]) < 0.1
    z = preprocess(b, detrend="constant", zscore=True)
    np.testing.assert_allclose(z.data.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.data.std(0), 1)
    with pytest.raises(ValueError, match="Nyquist"):
        preprocess(b, band=(0.01, 1.5))


# --- regions by name (issue 15, defect 3), BIDS sidecars, n/a, confounds, other grids ---------

NAMES = ["Precentral_L", "Precentral_R", "Occipital_L"]
BRAIN_LABELS = [1, 2, 3]                 # the brain's region labels, with NAMES as names


def _table(path, header, data, sep="\t", fmt=lambda v: repr(float(v))):
    lines = [sep.join(header)] + [sep.join(fmt(v) for v in row) for row in data]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_header_of_names_is_matched_to_the_brain_by_name(tmp_path):
    x = _series()
    # the table's columns in another order than the brain's regions
    order = [2, 0, 1]
    b = read_bold(_table(tmp_path / "n.tsv", [NAMES[i] for i in order], x), 0.8)
    assert b.labels is None and b.names == tuple(NAMES[i] for i in order)
    r = resolve_regions(b, BRAIN_LABELS, NAMES)
    np.testing.assert_array_equal(r.labels, [3, 1, 2])
    idx, used = match_labels(r, [1, 1, 2, 3])            # units of regions 1, 1, 2, 3
    np.testing.assert_array_equal(idx, [1, 1, 2, 0])
    np.testing.assert_array_equal(r.data[:, idx[3]], x[:, 0])
    # a header of labels keeps matching by label, and learns the names
    lab = resolve_regions(read_bold(_csv(tmp_path / "l.csv", x, labels=[3, 1, 2]), 0.8),
                          BRAIN_LABELS, NAMES)
    assert lab.names == ("Occipital_L", "Precentral_L", "Precentral_R")
    # match_labels alone refuses names it cannot place
    with pytest.raises(InputError, match=r"n\.tsv: header: .* -- expected region labels"):
        match_labels(b, [1, 2, 3])


def test_names_the_brain_lacks_are_named_in_the_error(tmp_path):
    x = _series()
    b = read_bold(_table(tmp_path / "n.tsv", ["Precentral_L", "precentral_r", "Insula_L"], x),
                  0.8)
    with pytest.raises(InputError) as e:
        resolve_regions(b, BRAIN_LABELS, NAMES)
    msg = str(e.value)
    assert "n.tsv: header: ['precentral_r', 'Insula_L'] -- expected names of the brain's " \
           "regions" in msg
    assert "names differ in case: 'precentral_r' (the brain has 'Precentral_R')" in msg
    r = resolve_regions(b, BRAIN_LABELS, NAMES, allow_extra=True)     # dropped
    np.testing.assert_array_equal(r.labels, [1])
    np.testing.assert_array_equal(r.data[:, 0], x[:, 0])


def test_mixed_and_ambiguous_headers_are_refused_naming_the_column(tmp_path):
    x = _series()
    mixed = _table(tmp_path / "m.tsv", ["Precentral_L", "2", "Occipital_L"], x)
    with pytest.raises(InputError, match=r"m\.tsv: header column 2: '2' -- expected a region "
                                         r"name like the other columns"):
        read_bold(mixed, 0.8)
    # an integer that is also the name of another region of the brain
    b = read_bold(_csv(tmp_path / "a.csv", x, labels=[1, 2, 3]), 0.8)
    with pytest.raises(InputError, match=r"a\.csv: header column 2: 2 -- expected an "
                                         r"unambiguous region: read as a label, but the "
                                         r"brain's label 2 is region 'B' and its region with "
                                         r"label 7 is named '2'"):
        resolve_regions(b, [1, 2, 7], ["A", "B", "2"])
    # a name two regions of the brain share
    n = read_bold(_table(tmp_path / "d.tsv", ["A", "B", "C"], x), 0.8)
    with pytest.raises(InputError, match=r"d\.tsv: header column 2: 'B' -- expected a region "
                                         r"name the brain has once \(labels \[2, 5\]"):
        resolve_regions(n, [1, 2, 3, 5], ["A", "B", "C", "B"])
    with pytest.raises(InputError, match=r"dup\.tsv: header: \['A'\] -- expected distinct "
                                         r"region names"):
        read_bold(_table(tmp_path / "dup.tsv", ["A", "B", "A"], x), 0.8)


def test_whole_n_a_columns_are_regions_without_coverage(tmp_path):
    x = _series().astype(object)
    x[:, 1] = "n/a"                                            # XCP-D: a parcel not covered
    path = _table(tmp_path / "sub-01_timeseries.tsv", NAMES, x, fmt=str)
    b = read_bold(path, 0.8)
    assert b.names == (NAMES[0], NAMES[2]) and b.no_coverage == (NAMES[1],)
    r = resolve_regions(b, BRAIN_LABELS, NAMES)
    assert r.no_coverage == (2,)
    with pytest.raises(InputError, match=r"labels: \[2\] -- expected an observed series for "
                                         r"every region of the brain \(these brain regions "
                                         r"have none; \[2\] are all n/a in the file"):
        match_labels(r, [1, 2, 3])
    idx, _ = match_labels(r, [1, 2, 3], allow_unobserved=True)
    np.testing.assert_array_equal(idx, [0, -1, 1])
    y = _series().astype(object)
    y[7, 2] = "n/a"
    with pytest.raises(InputError, match=r"p\.tsv: row 8, region 'Occipital_L': 'n/a' -- "
                                         r"expected a number \(n/a is accepted for a whole "
                                         r"column only"):
        read_bold(_table(tmp_path / "p.tsv", NAMES, y, fmt=str), 0.8)


def test_the_tr_comes_from_a_bids_sidecar_and_conflicts_name_both(tmp_path):
    import json

    x = _series()
    path = _table(tmp_path / "sub-01_task-rest_timeseries.tsv", NAMES, x)
    side = tmp_path / "sub-01_task-rest_timeseries.json"
    side.write_text(json.dumps({"RepetitionTime": 2.0}))
    b = read_bold(path)
    assert b.tr_s == 2.0 and b.tr_source == f"{side} (RepetitionTime)"
    assert read_bold(path, 2.0).tr_s == 2.0                   # agreeing sources are fine
    with pytest.raises(InputError, match=r"timeseries\.json: RepetitionTime: 2\.0 -- expected "
                                         r"the given --tr 0\.8 s \(the sidecar and --tr "
                                         r"disagree"):
        read_bold(path, 0.8)
    side.write_text(json.dumps({"SamplingFrequency": 1.25}))   # derived series: Hz
    assert read_bold(path).tr_s == pytest.approx(0.8)
    side.write_text(json.dumps({"RepetitionTime": 720}))
    with pytest.raises(InputError, match=r"RepetitionTime: 720 -- expected a repetition time "
                                         r"in seconds.*not ms"):
        read_bold(path)
    side.write_text("{not json")
    with pytest.raises(InputError, match=r"timeseries\.json: file: .* -- expected a JSON"):
        read_bold(path, 0.8)
    side.unlink()
    with pytest.raises(InputError, match=r"tr: None -- expected a repetition time in seconds "
                                         r"\(--tr, or RepetitionTime in a JSON sidecar"):
        read_bold(path)


def test_a_bids_sidecar_must_agree_with_the_nifti_header(tmp_path):
    import json

    vol = np.random.default_rng(2).standard_normal((2, 2, 1, 12)).astype(np.float32)
    img = nib.Nifti1Image(vol, np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    nib.save(img, tmp_path / "sub-01_bold.nii.gz")
    nib.save(nib.Nifti1Image(np.array([[[1], [1]], [[2], [2]]], np.int16), np.eye(4)),
             tmp_path / "atlas.nii.gz")
    (tmp_path / "sub-01_bold.json").write_text(json.dumps({"RepetitionTime": 1.5}))
    with pytest.raises(InputError, match=r"sub-01_bold\.json: RepetitionTime: 1\.5 -- expected "
                                         r"the TR in .*sub-01_bold\.nii\.gz's header, 2\.0 s"):
        read_bold(tmp_path / "sub-01_bold.nii.gz", atlas=tmp_path / "atlas.nii.gz")


def test_confound_regression_removes_exactly_the_confounds(tmp_path):
    from dtb.assimilation.confounds import read_confounds, regress_confounds

    rng = np.random.default_rng(5)
    T = 60
    X = rng.standard_normal((T, 3))
    Xc = X - X.mean(0)
    s = rng.standard_normal((T, 3))
    s -= Xc @ np.linalg.lstsq(Xc, s - s.mean(0), rcond=None)[0]    # s orthogonal to Xc
    s += [1.0, 2.0, 3.0]                                            # region means
    B = rng.standard_normal((3, 3))
    y = s + X @ B
    cols = ["trans_x", "trans_x_derivative1", "csf", "white_matter"]
    table = np.column_stack([X[:, 0], np.r_[np.nan, np.diff(X[:, 0])], X[:, 1], X[:, 2]])
    cells = [["n/a" if np.isnan(v) else repr(float(v)) for v in row] for row in table]
    conf = tmp_path / "sub-01_desc-confounds_timeseries.tsv"
    conf.write_text("\t".join(cols) + "\n" + "\n".join("\t".join(r) for r in cells) + "\n")
    got, names = read_confounds(conf, ["trans_x", "csf", "white_*"], T)
    assert names == ["trans_x", "csf", "white_matter"]
    np.testing.assert_array_equal(got, X)
    bold = read_bold(_csv(tmp_path / "b.csv", y), 0.8)
    clean = regress_confounds(bold, got).data
    # what the confounds explain beyond their mean is gone; every region keeps its mean
    np.testing.assert_allclose(clean, s + X.mean(0) @ B, atol=1e-10)
    np.testing.assert_allclose(clean.mean(0), y.mean(0), atol=1e-12)
    # the leading n/a of a derivative takes the first defined value (as nilearn does)
    d, _ = read_confounds(conf, ["*_derivative1"], T)
    assert d[0, 0] == d[1, 0] == X[1, 0] - X[0, 0]
    with pytest.raises(InputError, match=r"columns: 'rot_\*' -- expected a column or pattern "
                                         r"of the table \(it has trans_x, "):
        read_confounds(conf, ["rot_*"], T)
    with pytest.raises(InputError, match=r"rows: 60 -- expected 50 rows, one per BOLD time"):
        read_confounds(conf, ["csf"], 50)
    cells[10][2] = "n/a"
    conf.write_text("\t".join(cols) + "\n" + "\n".join("\t".join(r) for r in cells) + "\n")
    with pytest.raises(InputError, match=r"row 11, column csf: 'n/a' -- expected a number "
                                         r"\(n/a is accepted in a column's first rows only"):
        read_confounds(conf, ["csf"], T)


def test_an_atlas_on_another_grid_goes_through_nilearn(tmp_path, monkeypatch):
    """The atlas at 1 mm, the BOLD at 2 mm: each 2 mm voxel holds one region's fine voxels,
    and every voxel of a region carries that region's series, so the masker's means must be
    those series exactly.  Without nilearn the grids are refused, naming the extra."""
    pytest.importorskip("nilearn")
    rng = np.random.default_rng(3)
    T = 12
    fine = np.zeros((8, 6, 4), np.int16)
    fine[:4] = 5
    fine[4:, :, :2] = 9
    s5, s9 = rng.standard_normal(T), rng.standard_normal(T)
    coarse = np.zeros((4, 3, 2, T), np.float32)
    coarse[:2] = s5
    coarse[2:, :, 0] = s9
    coarse[2:, :, 1] = 100.0                              # background
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = 0.5                                      # 2 mm voxel centres between 1 mm ones
    img = nib.Nifti1Image(coarse, aff)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((2.0, 2.0, 2.0, 1.5))
    nib.save(img, tmp_path / "bold.nii.gz")
    nib.save(nib.Nifti1Image(fine, np.eye(4)), tmp_path / "atlas.nii.gz")
    r = read_bold(tmp_path / "bold.nii.gz", atlas=tmp_path / "atlas.nii.gz")
    np.testing.assert_array_equal(r.labels, [5, 9])
    np.testing.assert_allclose(r.data[:, 0], s5.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(r.data[:, 1], s9.astype(np.float32), rtol=1e-6)
    assert r.tr_s == 1.5 and "nilearn NiftiLabelsMasker" in r.tr_source
    import sys

    monkeypatch.setitem(sys.modules, "nilearn.maskers", None)     # as if not installed
    with pytest.raises(InputError, match=r"atlas\.nii\.gz: grid: shape \(8, 6, 4\).* -- "
                                         r"expected the BOLD image's grid \(shape \(4, 3, 2\)"
                                         r".*pip install 'dtb\[nilearn\]'"):
        read_bold(tmp_path / "bold.nii.gz", atlas=tmp_path / "atlas.nii.gz")
