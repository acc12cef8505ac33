#!/usr/bin/env python
"""Generate dtb's embedded default subject: a synthetic, openly licensed (CC0-1.0) brain.

Nothing here comes from a real person. The script draws, from one fixed seed, an MNI-like
4 mm brain (two ellipsoidal hemispheres with a cortical ribbon cut into 34 patches each, and
seven deep grey-matter nuclei per side), a grey-matter probability map, a structural
connectome that follows the exponential distance rule with hubs and homotopic links, tract
lengths, and a synaptic-density (SV2A PET-like) map. See data/README.md for what each file
holds, what the numbers imitate and what they do not.

Usage::

    python data/make_default_subject.py [--out data/default_subject] [--quiet]

Needs numpy, scipy and nibabel only. The output is a pure function of SEED (and of the
numpy/scipy versions' random streams and arithmetic): running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

SEED = 20240611

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

OUTPUT_FILES = (
    "atlas.nii.gz",
    "gm.nii.gz",
    "regions.tsv",
    "sc_weights.csv",
    "tract_lengths.csv",
    "pet_sv2a.csv",
    "labels.txt",
    "default_subject_tvb.zip",
)

# Labels: cortical L 1-34, cortical R 35-68, subcortical L 69-75, subcortical R 76-82.
N_REGIONS = 2 * N_CORTICAL_PER_HEMI + 2 * len(SUBCORTICAL)

# ---------------------------------------------------------------- connectome
LAMBDA_PER_MM = 0.075  # exponential distance rule, per mm of tract length (human scale)
# Homotopic callosal links and rich-club links (between the hub-role regions) are long yet
# strong: their weights decay as max(EDR, gain * exp(-LAMBDA_SLOW * length)).
LAMBDA_SLOW = 0.03
HOMOTOPIC_GAIN = 1.0
RICH_CLUB_GAIN = 0.5
TORTUOSITY = (1.1, 1.45)  # tract length / straight-line distance
EDGE_SIGMA = 0.9  # log-normal spread of edge weights
HUBNESS_SIGMA = 0.3  # log-normal spread of node "hubness"
CONNECT_GAIN = 300.0  # sets the density: p = 1 - exp(-gain * affinity * hubness * EDR)
TOTAL_STREAMLINES = 1_000_000
# Hub roles after van den Heuvel & Sporns (2011): rich-club members get extra hubness.
# Cortical hubs are the patches nearest these MNI points (left hemisphere; mirrored for right).
CORTICAL_HUBS = (
    ("precuneus-like", (-7.0, -60.0, 42.0), 4.0),
    ("superior-frontal-like", (-18.0, 28.0, 52.0), 2.5),
    ("superior-parietal-like", (-26.0, -58.0, 58.0), 4.0),
)
SUBCORTICAL_HUBS = {"thalamus": 3.0, "putamen": 2.0, "hippocampus": 1.8}


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


def make_connectome(
    rng: np.random.Generator,
    cents: np.ndarray,
    volume: np.ndarray,
    names: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, list[int]]]:
    """Streamline-count-like weights (int), tract lengths (mm) and node hubness."""
    n = N_REGIONS
    nc = N_CORTICAL_PER_HEMI
    ns = len(SUBCORTICAL)
    hemi = np.array([0] * nc + [1] * nc + [0] * ns + [1] * ns)
    cortical = np.arange(n) < 2 * nc
    struct = {names[2 * nc + s].split("-syn-")[1]: s for s in range(ns)}

    # tract length: the straight line within a hemisphere, the shortest route through a
    # midline commissure between hemispheres; times a tortuosity factor, plus a little jitter
    dist = np.linalg.norm(cents[:, None, :] - cents[None, :, :], axis=2)
    mid = commissure_points()
    to_mid = np.linalg.norm(cents[:, None, :] - mid[None, :, :], axis=2)
    via = np.min(to_mid[:, None, :] + to_mid[None, :, :], axis=2)
    same = hemi[:, None] == hemi[None, :]
    route = np.where(same, dist, np.maximum(via, dist))
    tort = rng.uniform(*TORTUOSITY, size=(n, n))
    jitter = np.abs(rng.normal(0.0, 2.0, size=(n, n)))
    length = route * tort + jitter
    length = np.triu(length, 1)
    length = np.round(length + length.T, 2)

    # node hubness: log-normal, mirrored between hemispheres, larger regions more connected
    base = np.exp(rng.normal(0.0, HUBNESS_SIGMA, nc))
    hub = np.ones(n)
    hub[:nc] = base
    hub[nc : 2 * nc] = base * np.exp(rng.normal(0.0, 0.05, nc))
    hub *= np.sqrt(volume / np.median(volume[: 2 * nc]))
    roles: dict[str, list[int]] = {}
    taken: set[int] = set()
    for role, point, factor in CORTICAL_HUBS:
        d = np.linalg.norm(cents[:nc] - np.array(point), axis=1)
        d[list(taken)] = np.inf
        r = int(np.argmin(d))  # left patch nearest the point; its homologue on the right
        taken.add(r)
        rr = r + nc
        hub[[r, rr]] *= factor
        roles[role] = [r + 1, rr + 1]
    for sname, factor in SUBCORTICAL_HUBS.items():
        s = struct[sname]
        hub[[2 * nc + s, 2 * nc + ns + s]] *= factor
        roles[f"{sname}"] = [2 * nc + s + 1, 2 * nc + ns + s + 1]

    # pair categories
    cc = cortical[:, None] & cortical[None, :]
    homotopic = np.zeros((n, n), dtype=bool)
    for k in range(nc):
        homotopic[k, nc + k] = homotopic[nc + k, k] = True
    for s in range(ns):
        homotopic[2 * nc + s, 2 * nc + ns + s] = homotopic[2 * nc + ns + s, 2 * nc + s] = True
    thal = np.zeros(n, dtype=bool)
    thal[[2 * nc + struct["thalamus"], 2 * nc + ns + struct["thalamus"]]] = True
    striatum = np.zeros(n, dtype=bool)
    for sname in ("caudate", "putamen"):
        striatum[[2 * nc + struct[sname], 2 * nc + ns + struct[sname]]] = True
    thalamocortical = same & (
        (thal[:, None] & cortical[None, :]) | (cortical[:, None] & thal[None])
    )
    corticostriatal = same & (
        (striatum[:, None] & cortical[None, :]) | (cortical[:, None] & striatum[None, :])
    )

    # connection propensity by pair type: callosal (heterotopic) and contralateral subcortical
    # links are rare, thalamo-cortical and cortico-striatal projections common
    affinity = np.where(same, 1.0, np.where(cc, 0.4, 0.05))
    affinity = np.where(corticostriatal, 2.0, affinity)
    affinity = np.where(thalamocortical, 4.0, affinity)
    edr = np.exp(-LAMBDA_PER_MM * length)
    rich = np.zeros(n, dtype=bool)
    rich[[lab - 1 for labs in roles.values() for lab in labs]] = True
    rich_club = rich[:, None] & rich[None, :]
    hh = np.sqrt(hub[:, None] * hub[None, :])
    p = 1.0 - np.exp(-CONNECT_GAIN * affinity * hh * edr)
    u = rng.uniform(size=(n, n))
    u = np.triu(u, 1) + np.triu(u, 1).T
    conn = (u < p) | homotopic | rich_club
    np.fill_diagonal(conn, False)

    # weights: hubness x distance rule x log-normal scatter. Callosal fibres favour homotopic
    # targets (Rosen & Halgren 2021 find contralateral homologues hyperconnected) and rich-club
    # links are long (van den Heuvel & Sporns 2011), so both decay more slowly; thalamic
    # radiations are boosted.
    gain = np.where(homotopic & cc, HOMOTOPIC_GAIN, np.where(rich_club, RICH_CLUB_GAIN, 0.0))
    edr_w = np.maximum(edr, gain * np.exp(-LAMBDA_SLOW * length))
    boost = np.where(thalamocortical, 2.0, 1.0)
    scatter = np.exp(EDGE_SIGMA * np.clip(rng.standard_normal((n, n)), -2.5, 2.5))
    scatter = np.triu(scatter, 1) + np.triu(scatter, 1).T
    raw = np.where(conn, hub[:, None] * hub[None, :] * edr_w * boost * scatter, 0.0)
    raw = raw * (2 * TOTAL_STREAMLINES / raw.sum())
    weights = np.where(conn, np.maximum(np.rint(raw), 1.0), 0.0).astype(np.int64)
    np.fill_diagonal(weights, 0)
    return weights, length, hub, roles


def commissure_points() -> np.ndarray:
    """Midline points (mm) that interhemispheric tracts pass: the corpus callosum from
    splenium to genu, and the anterior and posterior commissures."""
    callosum = np.array(
        [(0, -38, 10), (0, -30, 19), (0, -15, 23), (0, 0, 24), (0, 15, 22), (0, 28, 12)],
        dtype=float,
    )
    t = np.linspace(0.0, 1.0, 11)[:-1, None]
    pts = [a + t * (b - a) for a, b in zip(callosum[:-1], callosum[1:], strict=True)]
    pts.append(np.array([(0.0, 28.0, 12.0), (0.0, 2.0, -5.0), (0.0, -26.0, 2.0)]))
    return np.concatenate(pts)


def make_pet(rng: np.random.Generator, cents: np.ndarray, names: list[str]) -> np.ndarray:
    """SV2A-PET-like synaptic density, SUVR-like scale: cortex ~1.8-2.4, nuclei lower."""
    nc2 = 2 * N_CORTICAL_PER_HEMI
    x, y, z = cents.T
    # smooth gradient: anterior and ventral cortex denser than posterior and dorsal cortex
    cort = 2.1 + 0.12 * (y + 20.0) / 60.0 - 0.06 * (z - 20.0) / 40.0
    value = np.empty(N_REGIONS)
    value[:nc2] = cort[:nc2] + rng.normal(0.0, 0.04, nc2)
    sub_level = {
        "thalamus": 1.45,
        "caudate": 1.6,
        "putamen": 1.85,
        "pallidum": 1.2,
        "hippocampus": 1.5,
        "amygdala": 1.65,
        "accumbens": 1.7,
    }
    for r in range(nc2, N_REGIONS):
        value[r] = sub_level[names[r].split("-syn-")[1]] + rng.normal(0.0, 0.03)
    return np.round(value, 3)


# ---------------------------------------------------------------- writing
def matrix_csv(labels: np.ndarray, mat: np.ndarray, fmt: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", *labels.tolist()])
    for lab, row in zip(labels, mat, strict=True):
        w.writerow([int(lab), *(format(v, fmt) for v in row)])
    return buf.getvalue()


def tvb_zip(path: Path, files: dict[str, str]) -> None:
    """Deterministic zip (fixed timestamps and order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)


def generate(out: Path) -> dict:
    """Write every file of the default subject into `out`; return summary statistics."""
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    xyz = world_coords()

    brain, depth = make_brain(rng, xyz)
    sub_labels, sub_gm = make_subcortical(rng, xyz, brain)
    ribbon = brain & (depth <= RIBBON_DEPTH) & (sub_labels == 0)
    cortex, cortical_names = make_cortex(rng, xyz, ribbon)
    nc2 = 2 * N_CORTICAL_PER_HEMI
    labels = np.where(sub_labels > 0, sub_labels + nc2, cortex).astype(np.int16)
    gm = make_gm(rng, brain, depth, cortex, sub_gm, xyz[0])
    labels = label_grey_matter(labels, gm, xyz[0])
    sub_names = [f"sub-{h}h-syn-{s[0]}" for h in "lr" for s in SUBCORTICAL]
    names = cortical_names + sub_names

    cents, volume = region_table(xyz, labels, gm)
    weights, length, hub, roles = make_connectome(rng, cents, volume, names)
    pet = make_pet(rng, cents, names)
    lab = np.arange(1, N_REGIONS + 1)
    hemi = ["L"] * N_CORTICAL_PER_HEMI + ["R"] * N_CORTICAL_PER_HEMI
    hemi += ["L"] * len(SUBCORTICAL) + ["R"] * len(SUBCORTICAL)
    cortical = [1] * nc2 + [0] * (N_REGIONS - nc2)

    # volumes
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm")
    img = nib.Nifti1Image(labels, AFFINE, header)
    img.header.set_data_dtype(np.int16)
    img.set_qform(AFFINE, code=4)  # 4 = MNI152
    img.set_sform(AFFINE, code=4)
    nib.save(img, out / "atlas.nii.gz")
    gimg = nib.Nifti1Image(gm, AFFINE, header.copy())
    gimg.header.set_data_dtype(np.float32)
    gimg.set_qform(AFFINE, code=4)
    gimg.set_sform(AFFINE, code=4)
    nib.save(gimg, out / "gm.nii.gz")

    # tables
    rows = ["label\tname\themisphere\tcortical\tx\ty\tz\tvolume_mm3"]
    for r in range(N_REGIONS):
        x, y, z = cents[r]
        rows.append(
            f"{lab[r]}\t{names[r]}\t{hemi[r]}\t{cortical[r]}\t{x:.2f}\t{y:.2f}\t{z:.2f}"
            f"\t{volume[r]:.1f}"
        )
    (out / "regions.tsv").write_text("\n".join(rows) + "\n")
    sc_text = matrix_csv(lab, weights, "d")
    len_text = matrix_csv(lab, length, ".2f")
    (out / "sc_weights.csv").write_text(sc_text)
    (out / "tract_lengths.csv").write_text(len_text)
    (out / "pet_sv2a.csv").write_text(
        "label,value\n" + "".join(f"{lab[r]},{pet[r]:.3f}\n" for r in range(N_REGIONS))
    )
    (out / "labels.txt").write_text("".join(f"{v}\n" for v in lab))

    def plain(mat: np.ndarray, fmt: str) -> str:
        return "".join(" ".join(format(v, fmt) for v in row) + "\n" for row in mat)

    tvb_zip(
        out / "default_subject_tvb.zip",
        {
            "weights.txt": plain(weights, "d"),
            "tract_lengths.txt": plain(length, ".2f"),
            "centres.txt": "".join(
                f"{names[r]} {cents[r][0]:.2f} {cents[r][1]:.2f} {cents[r][2]:.2f}\n"
                for r in range(N_REGIONS)
            ),
            "areas.txt": "".join(f"{v:.1f}\n" for v in volume),
            "cortical.txt": "".join(f"{c}\n" for c in cortical),
            "hemispheres.txt": "".join(f"{int(h == 'R')}\n" for h in hemi),
        },
    )
    return summarize(weights, length, volume, roles, pet, names, cents)


def summarize(weights, length, volume, roles, pet, names, cents) -> dict:
    """Statistics the README quotes."""
    n = N_REGIONS
    nc2 = 2 * N_CORTICAL_PER_HEMI
    iu = np.triu_indices(n, 1)
    w = weights[iu].astype(float)
    ln = length[iu]
    on = w > 0
    slope = np.polyfit(ln[on], np.log(w[on]), 1)[0]
    strength = weights.sum(axis=1)
    top = np.argsort(strength)[::-1][:8]
    dist = np.linalg.norm(cents[:, None] - cents[None], axis=2)[iu]
    return {
        "density": float(on.mean()),
        "edges": int(on.sum()),
        "decay_per_mm": float(-slope),
        "median_length_connected_mm": float(np.median(ln[on])),
        "median_length_all_mm": float(np.median(ln)),
        "median_distance_all_mm": float(np.median(dist)),
        "tortuosity_median": float(np.median(ln / dist)),
        "strength_max_over_median": float(strength.max() / np.median(strength)),
        "degree_range": (int((weights > 0).sum(1).min()), int((weights > 0).sum(1).max())),
        "top_strength": [(names[i], int(strength[i])) for i in top],
        "hub_roles": roles,
        "cortical_volume_mm3": (float(volume[:nc2].min()), float(volume[:nc2].max())),
        "cortical_volume_ratio": float(volume[:nc2].max() / volume[:nc2].min()),
        "subcortical_volume_mm3": (float(volume[nc2:].min()), float(volume[nc2:].max())),
        "total_gm_cm3": float(volume.sum() / 1000.0),
        "cortical_gm_cm3": float(volume[:nc2].sum() / 1000.0),
        "pet_cortical_mean": float(pet[:nc2].mean()),
        "pet_subcortical_mean": float(pet[nc2:].mean()),
        "weight_range": (int(w[on].min()), int(w[on].max())),
    }


def sha256s(out: Path) -> dict[str, str]:
    """sha256 of every generated file, for the README's provenance section."""
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in OUTPUT_FILES}


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=here / "default_subject")
    ap.add_argument("--quiet", action="store_true", help="print nothing")
    args = ap.parse_args(argv)
    stats = generate(args.out)
    if not args.quiet:
        for k, v in stats.items():
            print(f"{k}: {v}")
        print("sha256:")
        for name, digest in sha256s(args.out).items():
            print(f"  {digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
