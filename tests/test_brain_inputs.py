"""Imaging inputs (dtb.brain.inputs): values read correctly, regions matched explicitly, and
every bad input rejected with an InputError naming the file, the field and the value."""

from __future__ import annotations

import hashlib
import zipfile

import nibabel as nib
import numpy as np
import pytest

from dtb.brain import inputs as bi
from dtb.errors import InputError

SHAPE = (6, 5, 4)
AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]])


def label_volume() -> np.ndarray:
    """Three labels (1, 2, 5) in slabs along x, background at x = 0."""
    lab = np.zeros(SHAPE, np.int16)
    lab[1:3] = 1
    lab[3:5] = 2
    lab[5] = 5
    return lab


def gm_volume() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0.05, 1.0, SHAPE).astype(np.float32)


def save(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture
def atlas_files(tmp_path):
    return (save(tmp_path / "atlas.nii.gz", label_volume()),
            save(tmp_path / "gm.nii.gz", gm_volume()))


def raises(match_parts, fn, *args, **kwargs) -> InputError:
    """Call fn, expect InputError, and check that every part appears in its message."""
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for part in match_parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return info.value


def write(path, text):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- provenance


def test_provenance_hashes_file(tmp_path):
    p = write(tmp_path / "x.txt", "hello\n")
    prov = bi.provenance("labels", p)
    assert prov.sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert prov.bytes == 6 and prov.path == str(p) and prov.role == "labels"
    raises(["nothere.txt", "no such file"], bi.provenance, "labels", tmp_path / "nothere.txt")


# --------------------------------------------------------------------------- atlas


def test_atlas_volumes_and_centres(atlas_files):
    atlas, gm = atlas_files
    img = bi.read_atlas(atlas, gm)
    assert img.labels.dtype == np.int32 and img.gm.dtype == np.float32
    assert img.voxel_volume_mm3 == pytest.approx(10.0)
    assert [p.role for p in img.provenance] == ["atlas", "grey_matter"]
    regions = bi.regions_from_atlas(img, names={1: "A", 2: "B"})
    lab, g = label_volume(), gm_volume().astype(np.float64)
    assert regions.labels.tolist() == [1, 2, 5]
    assert regions.names == ["A", "B", "5"]
    for r, label in enumerate([1, 2, 5]):
        m = lab == label
        assert regions.volumes_mm3[r] == pytest.approx(g[m].sum() * 10.0)
        ijk = np.argwhere(m).astype(np.float64)
        centre_vox = (ijk * g[m][:, None]).sum(0) / g[m].sum()
        centre_mm = AFFINE[:3, :3] @ centre_vox + AFFINE[:3, 3]
        np.testing.assert_allclose(regions.centres_mm[r], centre_mm)


def test_atlas_4d_single_volume_and_float_labels(tmp_path):
    atlas = save(tmp_path / "a4.nii", label_volume().astype(np.float32)[..., None])
    gm = save(tmp_path / "g4.nii", gm_volume()[..., None])
    img = bi.read_atlas(atlas, gm)
    assert img.labels.shape == SHAPE and img.labels.dtype == np.int32
    assert np.array_equal(img.labels, label_volume())


def test_atlas_without_gm_warns(tmp_path):
    atlas = save(tmp_path / "atlas.nii.gz", label_volume())
    with pytest.warns(UserWarning, match="no grey-matter map"):
        img = bi.read_atlas(atlas)
    assert np.array_equal(img.gm, (label_volume() > 0).astype(np.float32))
    regions = bi.regions_from_atlas(img)
    assert regions.volumes_mm3.tolist() == pytest.approx([400.0, 400.0, 200.0])


def test_atlas_rejects_bad_labels(tmp_path):
    lab = label_volume().astype(np.float32)
    lab[2, 3, 1] = 1.5
    raises(["frac.nii.gz", "voxel (2, 3, 1)", "1.5", "integer region labels"],
           bi.read_atlas, save(tmp_path / "frac.nii.gz", lab))
    lab = label_volume()
    lab[4, 0, 2] = -3
    raises(["neg.nii.gz", "voxel (4, 0, 2)", "-3", ">= 0"],
           bi.read_atlas, save(tmp_path / "neg.nii.gz", lab))
    raises(["flat.nii.gz", "shape", "(6, 5)", "3-D"],
           bi.read_atlas, save(tmp_path / "flat.nii.gz", label_volume()[:, :, 0]))
    raises(["zero.nii.gz", "all voxels 0"],
           bi.read_atlas, save(tmp_path / "zero.nii.gz", np.zeros(SHAPE, np.int16)))


def test_atlas_rejects_bad_gm(tmp_path, atlas_files):
    atlas, _ = atlas_files
    g = gm_volume()
    g[1, 1, 1] = np.nan
    raises(["nan.nii.gz", "voxel (1, 1, 1)", "nan", "[0, 1]"],
           bi.read_atlas, atlas, save(tmp_path / "nan.nii.gz", g))
    g = gm_volume()
    g[0, 2, 3] = 1.2
    raises(["big.nii.gz", "voxel (0, 2, 3): 1.2 --"],
           bi.read_atlas, atlas, save(tmp_path / "big.nii.gz", g))
    g = gm_volume()
    g[0, 0, 0] = 1.00005          # rounding noise within tolerance is clipped
    assert bi.read_atlas(atlas, save(tmp_path / "ok.nii.gz", g)).gm.max() == 1.0


def test_atlas_and_gm_on_different_grids(tmp_path, atlas_files):
    atlas, _ = atlas_files
    other = save(tmp_path / "shape.nii.gz", np.ones((6, 5, 3), np.float32))
    raises(["shape.nii.gz", "shape", "(6, 5, 3)", "(6, 5, 4)", "atlas.nii.gz"],
           bi.read_atlas, atlas, other)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0
    other = save(tmp_path / "shift.nii.gz", gm_volume(), shifted)
    raises(["shift.nii.gz", "affine[0, 3]", "-9.0", "-10.0", "atlas.nii.gz"],
           bi.read_atlas, atlas, other)
    tiny = AFFINE.copy()
    tiny[0, 3] += 1e-4            # within tolerance: same grid
    bi.read_atlas(atlas, save(tmp_path / "tiny.nii.gz", gm_volume(), tiny))


def test_truncated_and_missing_images(tmp_path, atlas_files):
    atlas, gm = atlas_files
    raw = gm.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    raises(["cut.nii.gz", "grey_matter", "unreadable"], bi.read_atlas, atlas, cut)
    big = np.random.default_rng(3).uniform(0, 1, (30, 30, 30)).astype(np.float32)
    raw = save(tmp_path / "big.nii.gz", big).read_bytes()
    bigcut = tmp_path / "bigcut.nii.gz"          # header intact, data cut short
    bigcut.write_bytes(raw[: len(raw) // 2])
    raises(["bigcut.nii.gz", "unreadable (EOFError"], bi.read_atlas, atlas, bigcut)
    junk = write(tmp_path / "junk.nii", "not an image")
    raises(["junk.nii", "atlas", "unreadable"], bi.read_atlas, junk)
    raises(["missing.nii.gz", "no such file"], bi.read_atlas, tmp_path / "missing.nii.gz")


def test_empty_region(tmp_path, atlas_files):
    atlas, _ = atlas_files
    g = gm_volume()
    g[label_volume() == 2] = 0.0
    img = bi.read_atlas(atlas, save(tmp_path / "gm_hole.nii.gz", g))
    raises(["gm_hole.nii.gz", "label 2", "grey-matter volume 0", "empty region"],
           bi.regions_from_atlas, img)


# --------------------------------------------------------------------------- region tables


def test_region_table(tmp_path):
    p = write(tmp_path / "regions.tsv",
              "label\tname\tvolume_mm3\tx\ty\tz\tcortical\n"
              "0\tbackground\t1\t0\t0\t0\t0\n"
              "3\tA\t120.5\t1\t2\t3\t1\n"
              "7\tB\t80\t-1\t-2\t-3\tno\n")
    t = bi.read_region_table(p)
    assert t.labels.tolist() == [3, 7] and t.names == ["A", "B"]
    assert t.volumes_mm3.tolist() == [120.5, 80.0]
    assert t.centres_mm.tolist() == [[1, 2, 3], [-1, -2, -3]]
    assert t.cortical.tolist() == [True, False]
    t = bi.read_region_table(write(tmp_path / "r.csv", "Label,Volume\n1,10\n2,20\n"))
    assert t.names == ["1", "2"] and t.centres_mm is None and t.cortical is None


def test_region_table_errors(tmp_path):
    raises(["r1.csv", "line 3", "column 'volume'", "'0'", "empty region"], bi.read_region_table,
           write(tmp_path / "r1.csv", "label,volume\n1,10\n2,0\n"))
    raises(["r2.csv", "header", "'label' column"], bi.read_region_table,
           write(tmp_path / "r2.csv", "region,volume\n1,10\n"))
    raises(["r3.csv", "line 3", "2", "once"], bi.read_region_table,
           write(tmp_path / "r3.csv", "label,volume\n2,10\n2,20\n"))
    raises(["r4.csv", "line 2", "1 cells"], bi.read_region_table,
           write(tmp_path / "r4.csv", "label,volume\n1\n"))
    raises(["r5.csv", "'x'", "'y'", "all of"], bi.read_region_table,
           write(tmp_path / "r5.csv", "label,volume,x,y\n1,10,0,0\n"))
    raises(["r6.csv", "'volume' (mm^3) column"], bi.read_region_table,
           write(tmp_path / "r6.csv", "label,name\n1,a\n"))


# --------------------------------------------------------------------------- label lists


def test_label_list_formats(tmp_path):
    lab, names = bi.read_label_list(write(tmp_path / "plain.txt", "3\n1\n2\n"))
    assert lab.tolist() == [3, 1, 2] and names == ["3", "1", "2"]
    lab, names = bi.read_label_list(write(tmp_path / "l.tsv", "label\tname\n5\tX\n4\tY\n"))
    assert lab.tolist() == [5, 4] and names == ["X", "Y"]
    lut = ("#$Id: FreeSurferColorLUT.txt\n#No. Label Name: R G B A\n"
           "0   Unknown  0 0 0 0\n17  Left-Hippocampus  220 216 20 0\n"
           "53  Right-Hippocampus  220 216 20 0\n")
    lab, names = bi.read_label_list(write(tmp_path / "lut.txt", lut))
    assert lab.tolist() == [17, 53] and names == ["Left-Hippocampus", "Right-Hippocampus"]
    mrtrix = ("# Lookup table\n\n0     ???     Unknown          0   0   0   0\n\n"
              "1     L.BSTS  ctx-lh-bankssts  25  100 40  255\n"
              "2     L.TH    Left-Thalamus    0   118 14  255\n"
              "2     L.TH    Left-Thalamus-Proper  0   118 14  255\n"
              "3     R.TH    Right-Thalamus   0   118 14  255\n")
    lab, names = bi.read_label_list(write(tmp_path / "fs_default.txt", mrtrix))
    assert lab.tolist() == [1, 2, 3] and names == ["L.BSTS", "L.TH", "R.TH"]
    lab, names = bi.read_label_list(write(tmp_path / "dseg.tsv", "index\tname\n1\tctx\n"))
    assert lab.tolist() == [1] and names == ["ctx"]


def test_label_list_errors(tmp_path):
    raises(["dup.txt", "line 3", "1", "once"], bi.read_label_list,
           write(tmp_path / "dup.txt", "1\n2\n1\n"))
    raises(["bad.txt", "line 2", "'x1'", "a region label: a whole number"], bi.read_label_list,
           write(tmp_path / "bad.txt", "1\nx1\n"))
    raises(["row.txt", "line 1", "one label per line"], bi.read_label_list,
           write(tmp_path / "row.txt", "1 2 3\n"))
    raises(["empty.txt", "empty file"], bi.read_label_list, write(tmp_path / "empty.txt", "\n"))
    raises(["bg.txt", "line 1", "0", "background"], bi.read_label_list,
           write(tmp_path / "bg.txt", "0\n1\n"))
    raises(["huge.csv", "line 2: column 'label'", "'1e30'", "0..2147483647"], bi.read_label_list,
           write(tmp_path / "huge.csv", "label\n1e30\n"))
    raises(["alias.txt", "line 2", "each region label once"], bi.read_label_list,
           write(tmp_path / "alias.txt", "4 A\n4 B\n"))


# --------------------------------------------------------------------------- matrices

W = np.array([[0.0, 2, 3], [2, 0, 5], [3, 5, 0]])
L = np.array([[0.0, 20, 30], [20, 0, 50], [30, 50, 0]])
LABELS = [1, 2, 5]


def matrix_text(m, sep=",", header=None, row_labels=None) -> str:
    lines = []
    if header is not None:
        lines.append(sep.join(str(h) for h in header))
    for i, row in enumerate(m):
        cells = [repr(float(v)) for v in row]
        if row_labels is not None:
            cells.insert(0, str(row_labels[i]))
        lines.append(sep.join(cells))
    return "\n".join(lines) + "\n"


def test_matrix_layouts(tmp_path):
    labels_file = write(tmp_path / "labels.txt", "1\n2\n5\n")
    cases = {
        "plain.csv": (matrix_text(W), labels_file),
        "mrtrix.txt": ("# tck2connectome\n" + matrix_text(W, sep=" "), labels_file),
        "head.csv": (matrix_text(W, header=LABELS), None),
        "head.tsv": (matrix_text(W, sep="\t", header=LABELS), None),
        "pandas.csv": (matrix_text(W, header=[""] + LABELS, row_labels=LABELS), None),
        "corner.csv": (matrix_text(W, header=["label"] + LABELS, row_labels=LABELS), None),
        "rowlab.txt": (matrix_text(W, sep=" ", header=LABELS, row_labels=LABELS), None),
        "both.csv": (matrix_text(W, header=LABELS), labels_file),
    }
    for name, (text, labels) in cases.items():
        m = bi.read_matrix(write(tmp_path / name, text), labels)
        assert m.labels.tolist() == LABELS, name
        np.testing.assert_array_equal(m.values, W, err_msg=name)
    np.save(tmp_path / "w.npy", W)
    m = bi.read_matrix(tmp_path / "w.npy", LABELS)
    assert m.labels.tolist() == LABELS and m.provenance[0].role == "matrix"
    m = bi.read_matrix(write(tmp_path / "names.csv", matrix_text(W, header=["a", "b", "c"])))
    assert m.labels is None and m.names == ["a", "b", "c"]


def test_matrix_errors(tmp_path):
    raises(["nolab.csv", "labels", "a header row", "label list file"], bi.read_matrix,
           write(tmp_path / "nolab.csv", matrix_text(W)))
    np.save(tmp_path / "w.npy", W)
    raises(["w.npy", "labels", "a header row"], bi.read_matrix, tmp_path / "w.npy")
    raises(["rect.csv", "shape", "(3, 2)", "square"], bi.read_matrix,
           write(tmp_path / "rect.csv", matrix_text(W[:, :2])), LABELS)
    np.save(tmp_path / "rect.npy", W[:2])
    raises(["rect.npy", "shape", "(2, 3)", "square"], bi.read_matrix, tmp_path / "rect.npy", [1, 2])
    raises(["ragged.csv", "line 2", "2 values", "3 values"], bi.read_matrix,
           write(tmp_path / "ragged.csv", "0,1,2\n1,0\n2,1,0\n"), LABELS)
    raises(["word.csv", "line 3, column 2", "'abc'", "a number"], bi.read_matrix,
           write(tmp_path / "word.csv", "0,1,2\n1,0,1\n2,abc,0\n"), LABELS)
    raises(["rows.csv", "row label", "'5'", "'2'"], bi.read_matrix,
           write(tmp_path / "rows.csv", matrix_text(W, header=[""] + LABELS,
                                                    row_labels=[1, 5, 2])))
    lf = write(tmp_path / "two.txt", "1\n2\n")
    raises(["two.txt", "2 labels", "3 labels"], bi.read_matrix,
           write(tmp_path / "m.csv", matrix_text(W)), lf)
    raises(["disagree.csv", "header", "same order"], bi.read_matrix,
           write(tmp_path / "disagree.csv", matrix_text(W, header=LABELS)), [2, 1, 5])
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    raises(["bad.npy", "unreadable"], bi.read_matrix, tmp_path / "bad.npy", LABELS)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x01")
    raises(["bin.csv", "UTF-8"], bi.read_matrix, tmp_path / "bin.csv", LABELS)


# --------------------------------------------------------------------------- connectomes


def test_connectome_reorders_lengths(tmp_path):
    order = [2, 0, 1]                                  # lengths file lists labels 5, 1, 2
    lw = write(tmp_path / "w.csv", matrix_text(W, header=LABELS))
    ll = write(tmp_path / "l.csv", matrix_text(L[np.ix_(order, order)],
                                               header=[LABELS[i] for i in order]))
    c = bi.read_connectome(lw, ll)
    assert c.labels.tolist() == LABELS
    np.testing.assert_array_equal(c.weights, W)
    np.testing.assert_array_equal(c.lengths_mm, L)
    assert [p.role for p in c.provenance] == ["weights", "lengths"]


def test_connectome_reorders_by_name(tmp_path):
    order = [1, 2, 0]
    names = ["a", "b", "c"]
    c = bi.read_connectome(
        write(tmp_path / "w.csv", matrix_text(W, header=names)),
        write(tmp_path / "l.tsv", matrix_text(L[np.ix_(order, order)], sep="\t",
                                              header=[names[i] for i in order])))
    assert c.labels is None and c.names == names
    np.testing.assert_array_equal(c.lengths_mm, L)


def test_connectome_shared_label_file(tmp_path):
    lut = write(tmp_path / "lut.txt", "0 ??? 0 0 0 0\n1 A 1 1 1 0\n2 B 1 1 1 0\n5 C 1 1 1 0\n")
    np.save(tmp_path / "w.npy", W)
    c = bi.read_connectome(tmp_path / "w.npy", write(tmp_path / "l.txt", matrix_text(L, " ")),
                           labels=lut)
    assert c.labels.tolist() == LABELS and c.names == ["A", "B", "C"]
    assert [p.role for p in c.provenance] == ["weights", "labels", "lengths"]


def test_connectome_rejects_bad_entries(tmp_path):
    lengths = write(tmp_path / "l.csv", matrix_text(L, header=LABELS))
    w = W.copy()
    w[1, 2] = np.nan
    raises(["wnan.csv", "weights entry (row label 2, column label 5)", "nan", "finite"],
           bi.read_connectome, write(tmp_path / "wnan.csv", matrix_text(w, header=LABELS)),
           lengths)
    w = W.copy()
    w[2, 0] = -1.0
    raises(["wneg.csv", "row label 5, column label 1", "-1.0", ">= 0"],
           bi.read_connectome, write(tmp_path / "wneg.csv", matrix_text(w, header=LABELS)),
           lengths)
    bad_l = L.copy()
    bad_l[0, 1] = -4.0
    raises(["lneg.csv", "lengths entry (row label 1, column label 2)", "-4.0"],
           bi.read_connectome, write(tmp_path / "w.csv", matrix_text(W, header=LABELS)),
           write(tmp_path / "lneg.csv", matrix_text(bad_l, header=LABELS)))
    raises(["zero.csv", "no off-diagonal connection"], bi.read_connectome,
           write(tmp_path / "zero.csv", matrix_text(np.eye(3), header=LABELS)), lengths)


def test_connectome_rejects_mismatches(tmp_path):
    w = write(tmp_path / "w.csv", matrix_text(W, header=LABELS))
    raises(["l4.csv", "shape", "(4, 4)", "(3, 3)"], bi.read_connectome, w,
           write(tmp_path / "l4.csv", matrix_text(np.ones((4, 4)), header=[1, 2, 5, 9])))
    raises(["lx.csv", "labels in the weights", "missing from the tract lengths", "[5]"],
           bi.read_connectome, w, write(tmp_path / "lx.csv", matrix_text(L, header=[1, 2, 9])))
    raises(["rect.csv", "shape", "(3, 2)"], bi.read_connectome,
           write(tmp_path / "rect.csv", matrix_text(W[:, :2])), w, LABELS)
    raises(["labels=", "integer labels"], bi.read_connectome,
           write(tmp_path / "m.csv", matrix_text(W)), w, ["a", "b", "c"])
    raises(["wn.csv", "region identity"], bi.read_connectome,
           write(tmp_path / "wn.csv", matrix_text(W, header=["a", "b", "c"])), w)


def test_connectome_triangular(tmp_path):
    up = np.triu(W)
    w = write(tmp_path / "tri.csv", matrix_text(up, header=LABELS))
    lengths = write(tmp_path / "l.csv", matrix_text(L, header=LABELS))
    raises(["tri.csv", "lower triangle", "all zero", "-symmetric", "symmetrize=True"],
           bi.read_connectome, w, lengths)
    np.testing.assert_array_equal(bi.read_connectome(w, lengths, symmetrize=True).weights, W)
    np.testing.assert_array_equal(bi.read_connectome(w, lengths, symmetrize=False).weights, up)


# --------------------------------------------------------------------------- TVB zips

NAMES = ["rA1", "rV1", "lA1"]


def tvb_zip(path, weights=W, lengths=L, names=NAMES, extra=None, drop=()):
    files = {
        "weights.txt": matrix_text(weights, sep=" "),
        "tract_lengths.txt": matrix_text(lengths, sep=" "),
        "centres.txt": "".join(f"{n}\t{i}.5 {-i} {2 * i}\n" for i, n in enumerate(names)),
        "areas.txt": "\n".join(str(10.0 * (i + 1)) for i in range(len(names))) + "\n",
        "cortical.txt": "1\n0\n1\n",
        "hemispheres.txt": "1\n1\n0\n",
        "average_orientations.txt": "0 0 1\n0 1 0\n1 0 0\n",
    }
    files.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            if name not in drop:
                zf.writestr(f"connectivity_3/{name}", text)
    return path


def test_tvb_zip(tmp_path):
    c = bi.read_tvb_zip(tvb_zip(tmp_path / "conn.zip"))
    assert c.labels is None and c.names == NAMES
    np.testing.assert_array_equal(c.weights, W)
    np.testing.assert_array_equal(c.lengths_mm, L)
    np.testing.assert_array_equal(c.centres_mm, [[0.5, 0, 0], [1.5, -1, 2], [2.5, -2, 4]])
    assert c.areas_mm2.tolist() == [10.0, 20.0, 30.0]
    assert c.cortical.tolist() == [True, False, True]
    assert c.hemispheres.tolist() == [True, True, False]
    assert c.provenance[0].role == "tvb_zip"
    c = bi.read_tvb_zip(tvb_zip(tmp_path / "min.zip", drop=("areas.txt", "cortical.txt",
                                                              "hemispheres.txt")))
    assert c.areas_mm2 is None and c.cortical is None and c.hemispheres is None


def test_tvb_zip_errors(tmp_path):
    good = tvb_zip(tmp_path / "good.zip").read_bytes()
    (tmp_path / "corrupt.zip").write_bytes(good[: len(good) // 2])
    raises(["corrupt.zip", "unreadable", "zip"], bi.read_tvb_zip, tmp_path / "corrupt.zip")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    raises(["junk.zip", "unreadable"], bi.read_tvb_zip, tmp_path / "junk.zip")
    crc = bytearray(good)
    data_at = crc.index(b"weights.txt") + len(b"weights.txt") + 2
    crc[data_at] ^= 0xFF                          # damage the weights member's deflate data
    (tmp_path / "crc.zip").write_bytes(bytes(crc))
    raises(["crc.zip", "weights.txt", "unreadable"], bi.read_tvb_zip, tmp_path / "crc.zip")
    raises(["now.zip", "missing: weights"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "now.zip", drop=("weights.txt",)))
    l_nan = L.copy()
    l_nan[2, 1] = np.nan
    raises(["nan.zip:connectivity_3/tract_lengths.txt", "row name 'lA1', column name 'rV1'",
            "nan"], bi.read_tvb_zip, tvb_zip(tmp_path / "nan.zip", lengths=l_nan))
    raises(["cent.zip:connectivity_3/centres.txt", "2 lines", "3 lines"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "cent.zip", extra={"centres.txt": "a 0 0 0\nb 1 1 1\n"}))
    raises(["nonames.zip", "line 1", "'name x y z'"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "nonames.zip", extra={"centres.txt": "0 0 0\n1 1 1\n2 2 2\n"}))
    raises(["sq.zip:connectivity_3/weights.txt", "shape", "(3, 2)"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "sq.zip", weights=W[:, :2]))
    raises(["len.zip:connectivity_3/tract_lengths.txt", "shape", "(2, 2)"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "len.zip", lengths=L[:2, :2]))
    raises(["dupe.zip:connectivity_3/centres.txt", "'rA1'", "once"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "dupe.zip", names=["rA1", "rV1", "rA1"]))
    raises(["area.zip:connectivity_3/areas.txt", "2 values", "3 values"], bi.read_tvb_zip,
           tvb_zip(tmp_path / "area.zip", extra={"areas.txt": "1\n2\n"}))


# --------------------------------------------------------------------------- matching


def test_match_by_label_and_name(tmp_path):
    c = bi.read_connectome(write(tmp_path / "w.csv", matrix_text(W, header=LABELS)),
                           write(tmp_path / "l.csv", matrix_text(L, header=LABELS)))
    idx = bi.match([5, 1, 2], None, c, "SC")
    np.testing.assert_array_equal(c.weights[np.ix_(idx, idx)], W[np.ix_([2, 0, 1], [2, 0, 1])])
    tvb = bi.read_tvb_zip(tvb_zip(tmp_path / "t.zip"))
    idx = bi.match([10, 11, 12], ["lA1", "rA1", "rV1"], tvb, "SC")
    assert idx.tolist() == [2, 0, 1]
    raises(["t.zip", "region identity", "names"], bi.match, [1, 2, 3], None, tvb, "SC")


def test_match_reports_missing_both_ways(tmp_path):
    c = bi.read_connectome(write(tmp_path / "sc.csv", matrix_text(W, header=LABELS)),
                           write(tmp_path / "l.csv", matrix_text(L, header=LABELS)))
    raises(["sc.csv", "labels in the atlas missing from the SC", "[7, 8]"],
           bi.match, [1, 2, 5, 7, 8], None, c, "SC")
    raises(["sc.csv", "labels in the SC missing from the atlas", "[5]"],
           bi.match, [1, 2], None, c, "SC")
    assert bi.match([1, 2], None, c, "SC", allow_extra=True).tolist() == [0, 1]
    e = raises(["(30 in all)"], bi.match, list(range(1, 31)) + LABELS[:0], None,
               {100: 1.0}, "PET", path="pet.csv")
    assert e.path == "pet.csv"
    tvb = bi.read_tvb_zip(tvb_zip(tmp_path / "t.zip"))
    raises(["names in the atlas missing from the SC", "'rX9'"],
           bi.match, [1, 2, 3], ["rA1", "rX9", "lA1"], tvb, "SC")


# --------------------------------------------------------------------------- PET


def test_pet_table_and_image(tmp_path, atlas_files):
    pet = bi.read_pet(write(tmp_path / "pet.csv", "label,name,sv2a\n1,A,2.5\n2,B,3\n5,C,1\n"))
    assert pet == {1: 2.5, 2: 3.0, 5: 1.0}
    img = bi.read_atlas(*atlas_files)
    values = np.random.default_rng(2).uniform(1, 2, SHAPE).astype(np.float32)
    values[label_volume() == 0] = np.nan          # outside the atlas does not matter
    pet = bi.read_pet(save(tmp_path / "pet.nii.gz", values), img)
    lab = label_volume()
    for label in (1, 2, 5):
        assert pet[label] == pytest.approx(values[lab == label].astype(np.float64).mean())


def test_pet_errors(tmp_path, atlas_files):
    img = bi.read_atlas(*atlas_files)
    raises(["p1.csv", "line 3", "column 'value'", "'-1'", "> 0"], bi.read_pet,
           write(tmp_path / "p1.csv", "label,value\n1,2\n2,-1\n"))
    raises(["p2.csv", "header", "'value' column"], bi.read_pet,
           write(tmp_path / "p2.csv", "label,a,b\n1,2,3\n"))
    p = save(tmp_path / "pet.nii.gz", np.ones(SHAPE, np.float32))
    raises(["pet.nii.gz", "atlas", "averaged per region"], bi.read_pet, p)
    raises(["small.nii.gz", "shape"], bi.read_pet,
           save(tmp_path / "small.nii.gz", np.ones((3, 3, 3), np.float32)), img)
    v = np.ones(SHAPE, np.float32)
    v[label_volume() == 2] = 0.0
    raises(["zero.nii.gz", "label 2", "> 0"], bi.read_pet, save(tmp_path / "zero.nii.gz", v), img)
    v = np.ones(SHAPE, np.float32)
    v[3, 0, 0] = np.inf
    raises(["inf.nii.gz", "voxel (3, 0, 0)", "inf"], bi.read_pet,
           save(tmp_path / "inf.nii.gz", v), img)


# --------------------------------------------------------------------------- garbage in

READERS = {
    "atlas": lambda p: bi.read_atlas(p, p),
    "region_table": bi.read_region_table,
    "label_list": bi.read_label_list,
    "matrix": lambda p: bi.read_matrix(p, [1, 2]),
    "matrix_labels_file": lambda p: bi.read_matrix(p, p),
    "connectome": lambda p: bi.read_connectome(p, p, [1, 2]),
    "tvb_zip": bi.read_tvb_zip,
    "pet": bi.read_pet,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_garbage_raises_input_error_only(tmp_path, reader):
    """Whatever the file holds, the reader raises InputError naming it, never a raw error."""
    rng = np.random.default_rng(0)
    garbage = {
        "empty.csv": b"", "random.csv": rng.bytes(300), "random.npy": rng.bytes(300),
        "random.nii.gz": rng.bytes(300), "commas.csv": b",,,\n,,,\n",
        "header_only.csv": b"label,volume\n", "huge_label.csv": b"label,volume\n1e30,1\n",
        "hex.csv": b"0x1,2\n3,4\n", "quote.csv": b'"a,1\n', "nan.txt": b"nan nan\n1 2\n",
    }
    paths = [write(tmp_path / name, "") for name in garbage]
    for p, data in zip(paths, garbage.values(), strict=True):
        p.write_bytes(data)
    np.save(tmp_path / "complex.npy", np.ones((2, 2), complex))
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2)))
    paths += [tmp_path / "complex.npy", tmp_path / "cube.npy", tmp_path / "missing.csv"]
    paths.append(tmp_path)                     # a directory
    if reader == "matrix":                     # a 2x2 NaN matrix is well-formed; the
        paths.remove(tmp_path / "nan.txt")     # connectome's entry check rejects it
    for p in paths:
        with pytest.raises(InputError) as info:
            READERS[reader](p)
        assert str(p) in str(info.value)
