"""The anatomy of dtb's synthetic default subject (data/make_default_subject.py draws it):
an MNI-like 4 mm grid, two ellipsoidal hemispheres with a cortical ribbon cut into patches,
deep grey-matter nuclei, the grey-matter map and the region table.  Lengths in mm."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# ---------------------------------------------------------------- grid (MNI-like, RAS, 4 mm)
SHAPE = (45, 54, 45)
VOXEL_MM = 4.0
# world = affine @ (i, j, k, 1): x = 4 i - 88, y = 4 j - 126, z = 4 k - 72 (mm). Voxel i = 22
# lies on the midline x = 0 and voxels i and 44 - i are mirror images.
AFFINE = np.array(
    [
        [VOXEL_MM, 0.0, 0.0, -88.0],
        [0.0, VOXEL_MM, 0.0, -126.0],
        [0.0, 0.0, VOXEL_MM, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# ---------------------------------------------------------------- brain shape (mm)
BRAIN_CENTRE = (0.0, -18.0, 8.0)
BRAIN_SEMI = (68.0, 86.0, 68.0, 50.0)  # x, y, z above centre, z below centre
CORE_CENTRE = (-4.0, 4.0)  # (y, z) of the diencephalon/callosal core, no midline gap there
CORE_SEMI = (40.0, 22.0)
RIBBON_DEPTH = 2.5  # cortical ribbon: voxels within this many voxels of the brain's edge
GM_LABEL_MIN = 0.25  # every off-midline voxel with at least this much grey matter is labelled
N_CORTICAL_PER_HEMI = 34
LOBE_ORDER = ("frontal", "limbic", "parietal", "temporal", "occipital")
# Deep grey matter, left hemisphere (x < 0): centre (mm), semi-axes (mm), grey-matter level.
# Centres and sizes follow MNI152 / FreeSurfer-aseg adult averages roughly.
SUBCORTICAL = (
    ("thalamus", (-11.0, -18.0, 7.0), (9.0, 15.0, 9.0), 0.62),
    ("caudate", (-13.0, 12.0, 10.0), (6.0, 15.0, 9.0), 0.80),
    ("putamen", (-25.0, 3.0, 1.0), (6.0, 17.0, 10.0), 0.82),
    ("pallidum", (-18.0, -3.0, -1.0), (5.0, 9.0, 6.0), 0.48),
    ("hippocampus", (-27.0, -24.0, -12.0), (7.0, 17.0, 7.0), 0.76),
    ("amygdala", (-23.0, -4.0, -19.0), (7.0, 7.0, 7.0), 0.74),
    ("accumbens", (-9.0, 11.0, -7.0), (5.0, 5.0, 5.0), 0.72),
)
# Labels: cortical L 1-34, cortical R 35-68, subcortical L 69-75, subcortical R 76-82.
N_REGIONS = 2 * N_CORTICAL_PER_HEMI + 2 * len(SUBCORTICAL)


def world_coords() -> np.ndarray:
    """``(3, *SHAPE)`` array of voxel-centre coordinates in mm."""
    ijk = np.indices(SHAPE, dtype=float)
    return np.einsum("ab,b...->a...", AFFINE[:3, :3], ijk) + AFFINE[:3, 3, None, None, None]


def mirror(vol: np.ndarray) -> np.ndarray:
    """Mirror a volume left-right about x = 0."""
    return vol[::-1]


def smooth_field(rng: np.random.Generator, sigma_vox: float, symmetric: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field; `symmetric` in [0, 1] mirrors it."""
    f = ndimage.gaussian_filter(rng.standard_normal(SHAPE), sigma_vox, mode="reflect")
    f = symmetric * 0.5 * (f + mirror(f)) + (1.0 - symmetric) * f
    return (f - f.mean()) / f.std()


def make_brain(rng: np.random.Generator, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brain mask (midline fissure removed outside the core) and depth below its edge (voxels)."""
    x, y, z = xyz
    cx, cy, cz = BRAIN_CENTRE
    ax, ay, az_up, az_down = BRAIN_SEMI
    az = np.where(z >= cz, az_up, az_down)
    r = np.sqrt((x / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2)
    # gentle, mostly symmetric bumps so the outline is not a perfect ellipsoid
    r = r * (1.0 + 0.035 * smooth_field(rng, 3.0, symmetric=0.85))
    brain = r <= 1.0
    core = ((y - CORE_CENTRE[0]) / CORE_SEMI[0]) ** 2 + ((z - CORE_CENTRE[1]) / CORE_SEMI[1]) ** 2
    fissure = (np.abs(x) < 0.5 * VOXEL_MM) & (core > 1.0)
    brain &= ~fissure
    depth = ndimage.distance_transform_edt(brain)
    return brain, depth


def make_subcortical(
    rng: np.random.Generator, xyz: np.ndarray, brain: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Subcortical labels (0 or 1..14, L then R) and their grey-matter probability."""
    x, y, z = xyz
    n = len(SUBCORTICAL)
    radius = np.full((2 * n, *SHAPE), np.inf)
    level = np.zeros(2 * n)
    for hemi in range(2):
        sign = 1.0 if hemi else -1.0
        for s, (_, centre, semi, gm_level) in enumerate(SUBCORTICAL):
            c = np.array([sign * abs(centre[0]), centre[1], centre[2]])
            c = c + rng.normal(0.0, 1.0, 3)  # slight left-right asymmetry
            sm = np.array(semi) * np.exp(rng.normal(0.0, 0.05, 3))
            rr = np.sqrt(
                ((x - c[0]) / sm[0]) ** 2 + ((y - c[1]) / sm[1]) ** 2 + ((z - c[2]) / sm[2]) ** 2
            )
            same_side = (x * sign) > 0
            radius[hemi * n + s] = np.where(same_side, rr, np.inf)
            level[hemi * n + s] = gm_level * np.exp(rng.normal(0.0, 0.03))
    nearest = np.argmin(radius, axis=0)
    rmin = np.take_along_axis(radius, nearest[None], 0)[0]
    labels = np.where((rmin <= 1.0) & brain, nearest + 1, 0).astype(np.int16)
    gm = np.max(level[:, None, None, None] * np.exp(-((radius / 1.15) ** 6)), axis=0)
    return labels, np.where(brain, gm, 0.0)


def farthest_points(rng: np.random.Generator, pts: np.ndarray, k: int) -> np.ndarray:
    """k well-spread points of pts (indices), greedy farthest-point order from a random start."""
    chosen = [int(rng.integers(len(pts)))]
    d = np.linalg.norm(pts - pts[chosen[0]], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(pts - pts[nxt], axis=1))
    return np.array(chosen)


def weighted_voronoi(pts: np.ndarray, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Index of the seed minimising distance / weight for every point."""
    d = np.linalg.norm(pts[:, None, :] - seeds[None, :, :], axis=2) / weights[None, :]
    return np.argmin(d, axis=1)


def make_contiguous(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep each label's largest 26-connected piece; give stray pieces to the nearest label."""
    structure = np.ones((3, 3, 3), dtype=bool)
    labels = labels.copy()
    for _ in range(20):
        stray = np.zeros(labels.shape, dtype=bool)
        for lab in np.unique(labels[labels > 0]):
            comp, n = ndimage.label(labels == lab, structure=structure)
            if n > 1:
                sizes = np.bincount(comp.ravel())[1:]
                stray |= (comp > 0) & (comp != 1 + int(np.argmax(sizes)))
        if not stray.any():
            return labels
        labels[stray] = 0
        _, (ii, jj, kk) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        fill = labels[ii, jj, kk]
        labels = np.where(mask & (labels == 0), fill, labels)
    raise RuntimeError("cortical parcellation did not become contiguous")


def lobe_of(c: np.ndarray) -> str:
    """Rough lobe name for a left-hemisphere cortical patch centroid (mm)."""
    x, y, z = c
    if abs(x) <= 18.0 and -55.0 <= y <= 40.0 and z <= 45.0:
        return "limbic"  # medial wall above the core: cingulate-like
    if y < -72.0:
        return "occipital"
    if z < 4.0 and y < 15.0 and abs(x) > 28.0:
        return "temporal"
    if y > -22.0 + 0.15 * z:
        return "frontal"
    return "parietal"


def make_cortex(
    rng: np.random.Generator, xyz: np.ndarray, ribbon: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Cortical labels 1..68 (left 1-34, right 35-68, homotopic k <-> k + 34) and names."""
    x = xyz[0]
    pts_all = np.moveaxis(xyz, 0, -1)
    left = ribbon & (x < 0)
    right = ribbon & (x > 0)
    pts_l = pts_all[left]
    # well-spread seeds, relaxed by two k-means steps, then sizes varied by weights
    seeds = pts_l[farthest_points(rng, pts_l, N_CORTICAL_PER_HEMI)]
    for _ in range(2):
        a = weighted_voronoi(pts_l, seeds, np.ones(N_CORTICAL_PER_HEMI))
        seeds = np.array([pts_l[a == r].mean(axis=0) for r in range(N_CORTICAL_PER_HEMI)])
    weights = np.exp(rng.normal(0.0, 0.28, N_CORTICAL_PER_HEMI))
    seeds_r = seeds * np.array([-1.0, 1.0, 1.0]) + rng.normal(0.0, 2.0, seeds.shape)
    weights_r = weights * np.exp(rng.normal(0.0, 0.06, N_CORTICAL_PER_HEMI))

    raw = np.zeros(SHAPE, dtype=np.int16)
    raw[left] = 1 + weighted_voronoi(pts_l, seeds, weights)
    raw[right] = 1 + N_CORTICAL_PER_HEMI + weighted_voronoi(pts_all[right], seeds_r, weights_r)
    # contiguity per hemisphere, so strays never jump the midline
    lab_l = make_contiguous(np.where(x < 0, raw, 0), left)
    lab_r = make_contiguous(np.where(x > 0, raw, 0), right)
    raw = (lab_l + lab_r).astype(np.int16)

    # order the left patches by lobe, then front to back, then top to bottom
    cents = np.array([pts_all[raw == r + 1].mean(axis=0) for r in range(N_CORTICAL_PER_HEMI)])
    lobes = [lobe_of(c) for c in cents]
    order = sorted(
        range(N_CORTICAL_PER_HEMI),
        key=lambda r: (LOBE_ORDER.index(lobes[r]), -round(cents[r][1]), -round(cents[r][2])),
    )
    relabel = np.zeros(2 * N_CORTICAL_PER_HEMI + 1, dtype=np.int16)
    names: list[str] = []
    count = {lobe: 0 for lobe in LOBE_ORDER}
    for new, old in enumerate(order):
        relabel[old + 1] = new + 1
        relabel[old + 1 + N_CORTICAL_PER_HEMI] = new + 1 + N_CORTICAL_PER_HEMI
        count[lobes[old]] += 1
        names.append(f"{lobes[old]}-{count[lobes[old]]:02d}")
    cortex = relabel[raw]
    full = [f"ctx-lh-syn-{n}" for n in names] + [f"ctx-rh-syn-{n}" for n in names]
    return cortex, full


def make_gm(
    rng: np.random.Generator,
    brain: np.ndarray,
    depth: np.ndarray,
    cortex: np.ndarray,
    sub_gm: np.ndarray,
    x: np.ndarray,
) -> np.ndarray:
    """Grey-matter probability: ribbon profile x regional thickness x smooth noise, nuclei.
    The midline plane (x = 0: fissure, callosum, third ventricle) holds none."""
    # across the ribbon: partial volume with CSF outside, peak inside, fall into white matter
    prof = 0.93 * np.exp(-(((depth - 1.75) / 1.05) ** 2))
    thickness = np.exp(rng.normal(0.0, 0.1, N_CORTICAL_PER_HEMI))
    thickness = np.concatenate([thickness, thickness * np.exp(rng.normal(0, 0.03, thickness.size))])
    # spread regional thickness to the unlabelled neighbourhood by nearest cortical label
    _, (ii, jj, kk) = ndimage.distance_transform_edt(cortex == 0, return_indices=True)
    near = cortex[ii, jj, kk]
    prof = prof * thickness[np.maximum(near, 1) - 1]
    prof = prof * np.exp(0.12 * smooth_field(rng, 1.5, symmetric=0.5))
    gm = np.maximum(prof, sub_gm)
    # voxel noise where there is grey matter; deep white matter stays clean
    gm = gm + rng.normal(0.0, 0.03, SHAPE) * np.minimum(1.0, gm / 0.1)
    gm = np.where(brain & (gm >= 0.02) & (np.abs(x) > 0.5 * VOXEL_MM), np.clip(gm, 0.0, 1.0), 0.0)
    return np.round(gm, 3).astype(np.float32)


def label_grey_matter(labels: np.ndarray, gm: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Give every off-midline voxel with gm >= GM_LABEL_MIN the label of an adjacent region
    (same hemisphere), so voxel-wise builders find a region for every grey voxel."""
    labels = labels.copy()
    for side in (x < 0, x > 0):
        for _ in range(4):
            own = np.where(side, labels, 0)
            todo = side & (labels == 0) & (gm >= GM_LABEL_MIN)
            dist, (ii, jj, kk) = ndimage.distance_transform_edt(own == 0, return_indices=True)
            take = todo & (dist <= np.sqrt(3.0) + 1e-9)
            if not take.any():
                break
            labels[take] = own[ii, jj, kk][take]
    return labels


def region_table(xyz: np.ndarray, labels: np.ndarray, gm: np.ndarray):
    """gm-weighted centroids (mm, 2 decimals) and grey-matter volumes (mm^3, 1 decimal)."""
    flat = labels.ravel()
    w = gm.ravel().astype(float)
    idx = np.arange(1, N_REGIONS + 1)
    mass = ndimage.sum(w, flat, idx)
    cents = np.stack([ndimage.sum(w * xyz[a].ravel(), flat, idx) / mass for a in range(3)], 1)
    volume = mass * VOXEL_MM**3
    return np.round(cents, 2), np.round(volume, 1)

