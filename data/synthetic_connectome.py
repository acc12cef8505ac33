"""The connectome and PET map of dtb's synthetic default subject: streamline-count-like
weights following the exponential distance rule with hubs, homotopic and rich-club links,
tract lengths (mm), and an SV2A-PET-like synaptic density per region."""

from __future__ import annotations

import numpy as np

from dtb.data.synthetic_anatomy import N_CORTICAL_PER_HEMI, N_REGIONS, SUBCORTICAL

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


def make_connectome(
    rng: np.random.Generator,
    cents: np.ndarray,
    volume: np.ndarray,
    names: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, list[int]]]:
    """Streamline-count-like weights (int), tract lengths (mm) and node hubness.  The
    random draws come in one fixed order: lengths, hubness, links, weights."""
    n = N_REGIONS
    nc = N_CORTICAL_PER_HEMI
    ns = len(SUBCORTICAL)
    hemi = np.array([0] * nc + [1] * nc + [0] * ns + [1] * ns)
    struct = {names[2 * nc + s].split("-syn-")[1]: s for s in range(ns)}
    length = _tract_lengths(rng, cents, hemi)
    hub, roles = _hubness(rng, cents, volume, struct)
    kinds = _pair_kinds(hemi, struct, roles)
    same, cc, homotopic, thalamocortical, corticostriatal, rich_club = kinds

    # connection propensity by pair type: callosal (heterotopic) and contralateral subcortical
    # links are rare, thalamo-cortical and cortico-striatal projections common
    affinity = np.where(same, 1.0, np.where(cc, 0.4, 0.05))
    affinity = np.where(corticostriatal, 2.0, affinity)
    affinity = np.where(thalamocortical, 4.0, affinity)
    edr = np.exp(-LAMBDA_PER_MM * length)
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


def _tract_lengths(rng: np.random.Generator, cents: np.ndarray, hemi: np.ndarray) -> np.ndarray:
    """The straight line within a hemisphere, the shortest route through a midline
    commissure between hemispheres; times a tortuosity factor, plus a little jitter (mm)."""
    n = len(hemi)
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
    return np.round(length + length.T, 2)


def _hubness(rng: np.random.Generator, cents: np.ndarray, volume: np.ndarray,
             struct: dict[str, int]) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Node hubness: log-normal, mirrored between hemispheres, larger regions more
    connected, rich-club roles boosted; and the labels of each role's regions."""
    n, nc, ns = N_REGIONS, N_CORTICAL_PER_HEMI, len(SUBCORTICAL)
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
    return hub, roles


def _pair_kinds(hemi: np.ndarray, struct: dict[str, int], roles: dict[str, list[int]]
                ) -> tuple[np.ndarray, ...]:
    """Boolean (n, n) masks of region pairs: same hemisphere, cortico-cortical,
    homotopic, thalamo-cortical, cortico-striatal, rich club."""
    n, nc, ns = N_REGIONS, N_CORTICAL_PER_HEMI, len(SUBCORTICAL)
    cortical = np.arange(n) < 2 * nc
    same = hemi[:, None] == hemi[None, :]
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
    rich = np.zeros(n, dtype=bool)
    rich[[lab - 1 for labs in roles.values() for lab in labs]] = True
    rich_club = rich[:, None] & rich[None, :]
    return same, cc, homotopic, thalamocortical, corticostriatal, rich_club


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

