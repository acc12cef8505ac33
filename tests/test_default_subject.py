"""The embedded default subject (data/default_subject): consistent, realistic, reproducible.

Reads the files with numpy, csv, zipfile and nibabel only (not with dtb's readers), and checks
the properties data/README.md claims for them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "make_default_subject.py"
SUBJECT = ROOT / "data" / "default_subject"
FILES = (
    "atlas.nii.gz",
    "gm.nii.gz",
    "regions.tsv",
    "sc_weights.csv",
    "tract_lengths.csv",
    "pet_sv2a.csv",
    "labels.txt",
    "default_subject_tvb.zip",
)
N = 82
LABELS = list(range(1, N + 1))
CORTICAL = np.arange(N) < 68
HEMI = np.array([0] * 34 + [1] * 34 + [0] * 7 + [1] * 7)  # 0 = left, 1 = right
# Homotopic pairs: cortical k <-> k + 34, subcortical 69 + s <-> 76 + s (labels).
HOMOTOPIC = [(k, k + 34) for k in range(1, 35)] + [(69 + s, 76 + s) for s in range(7)]
# Rich-club (hub-role) labels, as listed in data/README.md.
HUB_LABELS = {24, 58, 9, 43, 26, 60, 69, 76, 71, 78, 73, 80}


# ----------------------------------------------------------------------------- readers
def read_regions(folder: Path = SUBJECT) -> list[dict[str, str]]:
    with open(folder / "regions.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_matrix(path: Path) -> tuple[list[int], list[int], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    cols = [int(v) for v in rows[0][1:]]
    labels = [int(r[0]) for r in rows[1:]]
    mat = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    return cols, labels, mat


def load_nifti(path: Path):
    nib = pytest.importorskip("nibabel")
    img = nib.load(path)
    return img, np.asarray(img.dataobj)


@pytest.fixture(scope="module")
def regions():
    return read_regions()


@pytest.fixture(scope="module")
def weights():
    cols, rows, w = read_matrix(SUBJECT / "sc_weights.csv")
    assert cols == LABELS and rows == LABELS
    return w


@pytest.fixture(scope="module")
def lengths():
    cols, rows, ln = read_matrix(SUBJECT / "tract_lengths.csv")
    assert cols == LABELS and rows == LABELS
    return ln


@pytest.fixture(scope="module")
def centres(regions):
    return np.array([[float(r[a]) for a in "xyz"] for r in regions])


def upper(mat: np.ndarray) -> np.ndarray:
    return mat[np.triu_indices(N, 1)]


# ----------------------------------------------------------------------------- files, labels
def test_files_present_and_small():
    sizes = {name: (SUBJECT / name).stat().st_size for name in FILES}
    assert all(s > 0 for s in sizes.values()), sizes
    assert max(sizes.values()) < 256 * 1024, sizes
    total = sum(p.stat().st_size for p in SUBJECT.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024, total
    assert sorted(p.name for p in SUBJECT.iterdir()) == sorted(FILES)


def test_same_82_labels_in_the_same_order_everywhere(regions):
    assert [int(r["label"]) for r in regions] == LABELS
    assert [int(v) for v in (SUBJECT / "labels.txt").read_text().split()] == LABELS
    for name in ("sc_weights.csv", "tract_lengths.csv"):
        cols, rows, mat = read_matrix(SUBJECT / name)
        assert cols == LABELS and rows == LABELS and mat.shape == (N, N), name
    with open(SUBJECT / "pet_sv2a.csv", newline="") as f:
        pet = list(csv.DictReader(f))
    assert [int(r["label"]) for r in pet] == LABELS
    _, atlas = load_nifti(SUBJECT / "atlas.nii.gz")
    assert sorted(np.unique(atlas).tolist()) == [0, *LABELS]


def test_label_scheme(regions, centres):
    assert list(regions[0]) == [
        "label", "name", "hemisphere", "cortical", "x", "y", "z", "volume_mm3",
    ]  # fmt: skip
    assert [r["hemisphere"] for r in regions] == ["L" if h == 0 else "R" for h in HEMI]
    assert [int(r["cortical"]) for r in regions] == CORTICAL.astype(int).tolist()
    names = [r["name"] for r in regions]
    assert len(set(names)) == N and all(" " not in n and "-syn-" in n for n in names)
    for a, b in HOMOTOPIC:  # mirrored names: lh <-> rh, same structure
        assert names[a - 1].replace("-lh-", "-rh-") == names[b - 1]
    # centroids on their own side of the midline, at plausible MNI positions (mm)
    assert np.all((centres[:, 0] < 0) == (HEMI == 0))
    assert np.all(np.abs(centres) < [75, 110, 85])


# ----------------------------------------------------------------------------- volumes
def test_atlas_and_gm_share_the_grid():
    aimg, atlas = load_nifti(SUBJECT / "atlas.nii.gz")
    gimg, gm = load_nifti(SUBJECT / "gm.nii.gz")
    assert atlas.shape == gm.shape == (45, 54, 45)
    assert np.array_equal(aimg.affine, gimg.affine)
    assert np.allclose(np.abs(np.diag(aimg.affine)[:3]), 4.0)
    assert np.issubdtype(atlas.dtype, np.integer) and gm.dtype == np.float32
    assert np.all(np.isfinite(gm)) and gm.min() >= 0.0 and gm.max() <= 1.0
    # the midline voxel column maps to x = 0 mm
    assert np.allclose(aimg.affine @ [22, 0, 0, 1], [0.0, -126.0, -72.0, 1.0])


def test_atlas_regions_are_contiguous_grey_and_lateralised():
    aimg, atlas = load_nifti(SUBJECT / "atlas.nii.gz")
    _, gm = load_nifti(SUBJECT / "gm.nii.gz")
    x = (aimg.affine @ np.vstack([np.indices(atlas.shape).reshape(3, -1), np.ones(atlas.size)]))[0]
    x = x.reshape(atlas.shape)
    assert np.all(gm[atlas > 0] > 0)  # labelled voxels hold grey matter
    assert not np.any((atlas == 0) & (gm >= 0.25) & (np.abs(x) > 2))  # grey voxels labelled
    structure = np.ones((3, 3, 3), dtype=bool)
    for lab in LABELS:
        mask = atlas == lab
        assert ndimage.label(mask, structure=structure)[1] == 1, f"label {lab} is split"
        side = x[mask] > 0
        assert side.all() if HEMI[lab - 1] else not side.any(), f"label {lab} crosses midline"


def test_region_volumes_and_centroids_match_the_maps(regions, centres):
    aimg, atlas = load_nifti(SUBJECT / "atlas.nii.gz")
    _, gm = load_nifti(SUBJECT / "gm.nii.gz")
    vol = np.array([float(r["volume_mm3"]) for r in regions])
    voxel = abs(np.linalg.det(aimg.affine[:3, :3]))
    gm64 = gm.astype(np.float64)
    mass = ndimage.sum(gm64, atlas, LABELS)
    assert np.allclose(vol, mass * voxel, atol=0.06)
    ijk = np.indices(atlas.shape).reshape(3, -1)
    xyz = (aimg.affine[:3, :3] @ ijk + aimg.affine[:3, 3:]).reshape(3, *atlas.shape)
    cent = np.stack([ndimage.sum(gm64 * xyz[a], atlas, LABELS) / mass for a in range(3)], 1)
    assert np.allclose(centres, cent, atol=0.006)


def test_region_volumes_are_realistic(regions):
    vol = np.array([float(r["volume_mm3"]) for r in regions])
    assert np.all(vol > 0)
    ctx, sub = vol[CORTICAL], vol[~CORTICAL]
    assert 5.0 <= ctx.max() / ctx.min() <= 10.0  # cortical regions vary 5-10 fold
    assert 400e3 < ctx.sum() < 600e3  # adult cortical grey matter, ~0.5 litre
    assert sub.max() < ctx.max() and sub.min() < ctx.min()
    names = [r["name"] for r in regions]
    thal, acc = names.index("sub-lh-syn-thalamus"), names.index("sub-lh-syn-accumbens")
    assert vol[thal] > 5 * vol[acc]


# ----------------------------------------------------------------------------- connectome
def test_weights_are_a_valid_streamline_count_matrix(weights):
    assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
    assert np.array_equal(weights, weights.T)
    assert np.all(np.diag(weights) == 0)
    assert np.array_equal(weights, np.round(weights))
    density = np.mean(upper(weights) > 0)
    assert 0.20 <= density <= 0.40, density
    assert (weights > 0).sum(axis=1).min() >= 5  # nobody is isolated
    # log-normal-like: nonzero counts span several decades
    logw = np.log10(upper(weights)[upper(weights) > 0])
    assert logw.max() - logw.min() >= 3.5
    assert abs(stats.skew(logw)) < 1.0


def test_lengths_cover_all_pairs_and_exceed_straight_lines(lengths, centres, weights):
    assert np.all(np.isfinite(lengths))
    assert np.array_equal(lengths, lengths.T)
    assert np.all(np.diag(lengths) == 0)
    assert np.all(upper(lengths) > 0)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    assert np.all(lengths >= dist - 0.01)
    ratio = upper(lengths) / upper(dist)
    assert 1.1 <= np.median(ratio) <= 1.6
    med = np.median(upper(lengths)[upper(weights) > 0])
    assert 40.0 <= med <= 90.0, med  # human-like: tens of mm


def test_weights_decay_with_distance(weights, lengths):
    w, ln = upper(weights), upper(lengths)
    on = w > 0
    rho = stats.spearmanr(ln[on], w[on])[0]
    assert rho < -0.4, rho
    decay = -np.polyfit(ln[on], np.log(w[on]), 1)[0]
    assert 0.02 <= decay <= 0.08, decay  # per mm
    # connection probability falls with length too
    assert np.mean(on[ln < 50]) > 3 * np.mean(on[ln > 100])


def test_strength_is_heavy_tailed_with_a_rich_club(weights):
    strength = weights.sum(axis=1)
    assert strength.max() / np.median(strength) > 4.0
    assert strength.mean() > np.median(strength)
    top = set((np.argsort(strength)[::-1][:15] + 1).tolist())
    assert len(top & HUB_LABELS) >= 10, sorted(top)
    hubs = np.array(sorted(HUB_LABELS)) - 1
    club = weights[np.ix_(hubs, hubs)]
    assert np.all(club[~np.eye(len(hubs), dtype=bool)] > 0)  # hubs are all interconnected
    assert club.sum() / (len(hubs) * (len(hubs) - 1)) > 5 * upper(weights).mean()


def test_homotopic_links_are_strong(weights):
    hom = np.array([weights[a - 1, b - 1] for a, b in HOMOTOPIC])
    assert np.all(hom > 0)
    inter = HEMI[:, None] != HEMI[None, :]
    for a, b in HOMOTOPIC:
        inter[a - 1, b - 1] = inter[b - 1, a - 1] = False
    hetero = weights[inter]
    cortical_hom = hom[:34]
    assert np.median(cortical_hom) > 2 * np.median(upper(weights)[upper(weights) > 0])
    assert hom.mean() > 20 * hetero.mean()
    # interhemispheric links are sparse compared with intrahemispheric ones
    intra = (HEMI[:, None] == HEMI[None, :]) & ~np.eye(N, dtype=bool)
    assert np.mean(weights[intra] > 0) > 4 * np.mean(hetero > 0)


def test_thalamus_projects_to_most_of_its_cortex(weights, regions):
    names = [r["name"] for r in regions]
    for hemi, h in (("lh", 0), ("rh", 1)):
        t = names.index(f"sub-{hemi}-syn-thalamus")
        ctx = CORTICAL & (HEMI == h)
        assert np.mean(weights[t, ctx] > 0) >= 0.8


# ----------------------------------------------------------------------------- PET, TVB
def test_pet_is_suvr_like_with_cortex_above_nuclei():
    with open(SUBJECT / "pet_sv2a.csv", newline="") as f:
        pet = np.array([float(r["value"]) for r in csv.DictReader(f)])
    assert np.all(np.isfinite(pet)) and pet.min() >= 1.0 and pet.max() <= 2.5
    assert pet[CORTICAL].mean() > pet[~CORTICAL].mean() + 0.3


def test_tvb_zip_matches_the_tables(regions, weights, lengths, centres):
    with zipfile.ZipFile(SUBJECT / "default_subject_tvb.zip") as zf:
        text = {n: zf.read(n).decode() for n in zf.namelist()}
    for name in ("weights.txt", "tract_lengths.txt", "centres.txt", "areas.txt", "cortical.txt"):
        assert name in text
    assert np.array_equal(np.loadtxt(io.StringIO(text["weights.txt"])), weights)
    assert np.array_equal(np.loadtxt(io.StringIO(text["tract_lengths.txt"])), lengths)
    lines = [ln.split() for ln in text["centres.txt"].splitlines()]
    assert [ln[0] for ln in lines] == [r["name"] for r in regions]
    assert np.array_equal(np.array([[float(v) for v in ln[1:]] for ln in lines]), centres)
    areas = np.loadtxt(io.StringIO(text["areas.txt"]))
    assert np.array_equal(areas, [float(r["volume_mm3"]) for r in regions])
    cort = np.loadtxt(io.StringIO(text["cortical.txt"]), dtype=int)
    assert np.array_equal(cort, CORTICAL.astype(int))


# ----------------------------------------------------------------------------- provenance
def test_script_regenerates_the_committed_files(tmp_path):
    pytest.importorskip("nibabel")
    out = tmp_path / "subject"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--quiet"],
        check=True,
        timeout=120,
    )
    for name in FILES:
        if name.endswith(".nii.gz"):
            img_new, new = load_nifti(out / name)
            img_old, old = load_nifti(SUBJECT / name)
            assert np.array_equal(img_new.affine, img_old.affine), name
            assert new.dtype == old.dtype and np.array_equal(new, old), name
        elif name.endswith(".zip"):
            with zipfile.ZipFile(out / name) as a, zipfile.ZipFile(SUBJECT / name) as b:
                assert a.namelist() == b.namelist()
                for member in a.namelist():
                    assert a.read(member) == b.read(member), member
        else:
            assert (out / name).read_bytes() == (SUBJECT / name).read_bytes(), name


def test_readme_lists_the_current_checksums():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for name in FILES:
        digest = hashlib.sha256((SUBJECT / name).read_bytes()).hexdigest()
        assert digest in readme, f"data/README.md lacks the sha256 of {name}"
