"""Observed BOLD files: formats, preprocessing and refusals naming file, field and value."""

import h5py
import nibabel as nib
import numpy as np
import pytest

from dtb.assimilation.observations import match_labels, preprocess, read_bold
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
    with pytest.raises(InputError, match=r"name\.csv: header: 'two' -- expected integer"):
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
