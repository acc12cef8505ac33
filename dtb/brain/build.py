"""Turn a subject's images into a BrainSpec.

Inputs (dtb.brain.inputs): an atlas with a grey-matter map, or a per-region volume table,
or neither (uniform volumes, with a warning); a connectome (weights and tract lengths, or
a TVB zip); optionally PET.  Knobs: ``BuildOptions``.  The published DTB recipe
(Lu et al. 2024; ../shared/reference/dtb-neuron-model.md) is the default:

* neurons per unit proportional to grey-matter volume, ``N_u = N gm_u / sum(gm)``
  (largest-remainder rounding, so the total is exact);
* each unit an excitatory/inhibitory pair (80:20), or, with ``layers``, cortical units a
  column L2/3, L4, L5, L6 (shares 33.8/34.9/7.6/22.1 %, E fractions 78/80/82/83 %) and
  subcortical units an E/I pair;
* fixed in-degree K split local E : local I : long-range = 4 : 1 : 2; long-range inputs
  are excitatory, their source region drawn from the target region's connectome row
  (diagonal removed), their delay ``length / velocity`` (at least one step);
* PET (optional) scales each unit's in-degree (``indegree``, as the DTB proposes for SV2A
  synaptic density) or its receptor conductances (``conductance``), by value / mean,
  the mean weighted by neurons so that the mean in-degree stays K;
* per-unit hyperparameters: the receptor conductance scales g_AMPA, g_NMDA, g_GABA_A,
  g_GABA_B (the published calibrated values, GABA x3: see DEFAULT_HYPER) and the external
  current I_e, which the assimilation estimates; an Ornstein-Uhlenbeck background current
  (mean 0.6, sd 0.12, tau 10 ms);
* optionally (``adaptation``) a spike-triggered adaptation conductance in the excitatory
  families (pyramidal cells adapt; fast-spiking interneurons barely do).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.brain import inputs as bi
from dtb.brain.options import (  # noqa: F401 - BuildOptions, DEFAULT_HYPER: part of this module's API
    BYTES_PER_NEURON,
    BYTES_PER_SYNAPSE,
    CALIBRATED_G,
    DEFAULT_HYPER,
    LAYER_E_FRACTION,
    LAYER_SHARE,
    LAYERS,
    LONG_RANGE_SOURCE_LAYERS,
    MAX_IN_DEGREE,
    MAX_NEURONS,
    BuildOptions,
)
from dtb.brain.recipe import scale_long_range
from dtb.brain.spec import BrainSpec, Family, Rule
from dtb.errors import ConfigError, InputError
from dtb.models.microcircuit import N_FULL, POPULATIONS, full_scale_synapses


@dataclass
class _Regions:
    labels: np.ndarray
    names: list[str]
    volumes: np.ndarray
    centres: np.ndarray
    cortical: np.ndarray


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to weights summing exactly to total (Hamilton's method; ties
    go to the lower index, so the result is deterministic)."""
    w = np.asarray(weights, float)
    exact = total * w / w.sum()
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(exact - base)))
    base[order[:rest]] += 1
    return base


def build(*, atlas: str | None = None, gm: str | None = None, regions: str | None = None,
          sc: str | None = None, lengths: str | None = None, labels: str | None = None,
          tvb: str | None = None, pet: str | None = None,
          options: BuildOptions | None = None, symmetrize: bool | None = None) -> BrainSpec:
    """A BrainSpec from imaging files (paths as the user gave them).

    Exactly one connectome source: ``sc`` + ``lengths`` (CSV/TSV/NPY; ``labels`` for files
    without a header) or ``tvb`` (a TVB connectivity zip).  Volumes: ``atlas`` (+ ``gm``),
    or a region table ``regions`` (label, volume, optional name, x, y, z, cortical), or
    none (uniform, with a warning).  With an atlas, a region table still supplies names
    and cortical flags (and names let a TVB connectome, which has no labels, be matched).
    ``level="voxel"`` needs the atlas.  ``symmetrize``: see inputs.read_connectome.
    """
    opt = options or BuildOptions()
    opt.check()
    if (sc is None) != (lengths is None):
        raise ConfigError(["sc and lengths: give both (weights and tract lengths)"], "dtb build")
    if (sc is None) == (tvb is None):
        raise ConfigError(["connectome: give either --sc and --lengths or --tvb"], "dtb build")
    if opt.level == "voxel" and atlas is None:
        raise ConfigError(["level: 'voxel' -- expected an --atlas (and --gm) to take voxels "
                           "from"], "dtb build")

    if tvb is not None:
        conn = bi.read_tvb_zip(tvb, symmetrize=symmetrize)
    else:
        assert sc is not None and lengths is not None  # the checks above: both, or --tvb
        conn = bi.read_connectome(sc, lengths, labels, symmetrize=symmetrize)
    prov = list(conn.provenance)
    img = None
    meta = bi.read_region_table(regions) if regions is not None else None
    if meta is not None:
        prov += meta.provenance
    if atlas is not None:
        img = bi.read_atlas(atlas, gm)
        names = (dict(zip(meta.labels.tolist(), meta.names, strict=True)) if meta is not None
                 else _names_from(conn))
        table = bi.regions_from_atlas(img, names)
        prov += img.provenance
        if meta is not None:
            m = bi.match(table.labels, None, meta, "region table", path=str(regions))
            if meta.cortical is not None:
                table.cortical = meta.cortical[m]
    elif meta is not None:
        table = meta
    else:
        warnings.warn("no atlas or volume table: every region gets the same volume",
                      stacklevel=2)
        table = None
    ref_regions, idx = _regions(table, conn)
    weights = conn.weights[np.ix_(idx, idx)].copy()
    np.fill_diagonal(weights, 0.0)
    lengths_mm = conn.lengths_mm[np.ix_(idx, idx)].copy()

    if opt.level == "region":
        unit_region = np.arange(len(ref_regions.labels))
        unit_vol = ref_regions.volumes.copy()
        unit_xyz = ref_regions.centres.copy()
    else:
        assert img is not None  # level "voxel" was refused above without an atlas
        unit_region, unit_vol, unit_xyz = _voxel_units(img, ref_regions.labels)

    pet_values = None
    if pet is not None:
        raw = bi.read_pet(pet, img)
        prov.append(bi.provenance("pet", pet))
        order = bi.match(ref_regions.labels, ref_regions.names, raw, "PET table", path=str(pet),
                         allow_extra=True)
        keys = list(raw)
        pet_values = np.array([raw[keys[i]] for i in order], float)

    spec = _assemble(opt, ref_regions, weights, lengths_mm, unit_region, unit_vol, unit_xyz,
                     pet_values, conn.provenance[0].path if conn.provenance else "connectome")
    spec.provenance = [asdict(p) for p in prov]
    return spec


def _names_from(conn: bi.Connectome) -> dict[int, str] | None:
    """label -> name of a connectome that has both (names for the atlas's regions)."""
    if conn.labels is not None and conn.names is not None:
        return {int(a): str(b) for a, b in zip(conn.labels, conn.names, strict=True)}
    return None


def _regions(table: bi.RegionTable | None,
             conn: bi.Connectome) -> tuple[_Regions, np.ndarray]:
    """Regions in the reference order (the atlas or volume table when given, else the
    connectome's) and the connectome indices matched to them, explicitly."""
    k = conn.weights.shape[0]
    if table is None:
        labels = (conn.labels if conn.labels is not None else np.arange(1, k + 1))
        names = conn.names or [str(x) for x in labels]
        centres = conn.centres_mm if conn.centres_mm is not None else np.zeros((k, 3))
        cortical = conn.cortical if conn.cortical is not None else np.ones(k, bool)
        return _Regions(np.asarray(labels, np.int64), list(names), np.ones(k), centres,
                        np.asarray(cortical, bool)), np.arange(k)
    idx = bi.match(table.labels, table.names if conn.labels is None else None, conn,
                   "connectome")
    bad = np.flatnonzero(~(table.volumes_mm3 > 0))
    if bad.size:
        raise InputError(table.provenance[0].path if table.provenance else "volumes",
                         f"volume of region {int(table.labels[bad[0]])}",
                         float(table.volumes_mm3[bad[0]]),
                         "a grey-matter volume > 0 (empty region)")
    if table.centres_mm is not None:
        centres = table.centres_mm
    elif conn.centres_mm is not None:
        centres = conn.centres_mm[idx]
    else:
        centres = np.zeros((len(idx), 3))
    if table.cortical is not None:
        cortical = table.cortical
    elif conn.cortical is not None:
        cortical = conn.cortical[idx]
    else:
        cortical = np.ones(len(idx), bool)
    return _Regions(np.asarray(table.labels, np.int64), list(table.names),
                    np.asarray(table.volumes_mm3, float), np.asarray(centres, float),
                    np.asarray(cortical, bool)), idx


def _voxel_units(img: bi.AtlasImage, region_labels: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One unit per grey-matter voxel (gm > 0 inside a labelled region), ordered by region
    then voxel index, so every region's voxels are contiguous."""
    lab = img.labels.reshape(-1)
    gmv = img.gm.reshape(-1).astype(float)
    lut = np.full(int(max(lab.max(), region_labels.max())) + 1, -1, np.int64)
    lut[region_labels] = np.arange(len(region_labels))
    region = np.where(lab > 0, lut[np.clip(lab, 0, len(lut) - 1)], -1)
    keep = np.flatnonzero((region >= 0) & (gmv > 0))
    order = np.lexsort((keep, region[keep]))
    vox = keep[order]
    ijk = np.stack(np.unravel_index(vox, img.labels.shape), axis=1).astype(float)
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    return region[vox], gmv[vox] * img.voxel_volume_mm3, xyz


def _split_k(opt: BuildOptions) -> tuple[int, int, int]:
    a, b, c = opt.split
    s = a + b + c
    k_e, k_i = round(opt.in_degree * a / s), round(opt.in_degree * b / s)
    return k_e, k_i, opt.in_degree - k_e - k_i


def _assemble(opt: BuildOptions, regions: _Regions, weights: np.ndarray,
              lengths_mm: np.ndarray, unit_region: np.ndarray, unit_vol: np.ndarray,
              unit_xyz: np.ndarray, pet_values: np.ndarray | None,
              conn_path: str = "connectome") -> BrainSpec:
    n_u = len(unit_region)
    n_per_unit = largest_remainder(opt.neurons, unit_vol)
    cortical_unit = regions.cortical[unit_region]
    fam_sizes = _family_sizes(opt, n_per_unit, cortical_unit)
    empty = np.flatnonzero((n_per_unit > 0) & ~_has_both(fam_sizes))
    if empty.size or np.any(n_per_unit == 0):
        u = int(empty[0]) if empty.size else int(np.flatnonzero(n_per_unit == 0)[0])
        least = min_neurons(opt, unit_vol, cortical_unit)
        raise ConfigError([f"neurons: {opt.neurons} -- expected at least {least} for this "
                           f"brain ({n_u} units; the fewest that give every unit an "
                           "excitatory and an inhibitory cell: with "
                           f"{opt.neurons}, unit {u}, region "
                           f"{int(regions.labels[unit_region[u]])}, gets "
                           f"{int(n_per_unit[u])})"
                           + (", or use the region level" if opt.level == "voxel" else "")],
                          "dtb build")
    # every region with neurons needs long-range input (its connectome row)
    has = np.bincount(unit_region, weights=n_per_unit, minlength=len(regions.labels)) > 0
    no_in = np.flatnonzero(has & ~((weights[:, has]).sum(axis=1) > 0))
    if no_in.size:
        raise InputError(conn_path, f"row of region {int(regions.labels[no_in[0]])}",
                         "all zero", "structural connections from some other region "
                         f"(units with no inputs: regions "
                         f"{[int(x) for x in regions.labels[no_in[:10]]]})")

    scale_k = np.ones(n_u)
    scale_g = np.ones(n_u)
    if pet_values is not None:
        # relative to the neuron-weighted mean, so the network's mean in-degree (or mean
        # conductance scale) stays what the options say
        per_unit = pet_values[unit_region]
        rel = per_unit / np.average(per_unit, weights=n_per_unit)
        if opt.pet_mode == "indegree":
            scale_k = rel
        else:
            scale_g = rel

    k_e, k_i, k_l = _split_k(opt)
    families = _families(opt, fam_sizes, n_u, scale_g)
    rules = _rules(opt, fam_sizes, weights, unit_region, cortical_unit, regions,
                   scale_k, (k_e, k_i, k_l))
    # drop families without neurons (no subcortical units, say) and rules with no synapse
    present = {f.name for f in families if f.sizes.sum() > 0}
    families = [f for f in families if f.name in present]
    rules = [r for r in rules if r.source in present and r.target in present
             and np.any(r.k * fam_sizes[r.target] > 0)]
    spec = BrainSpec(
        level=opt.level, region_labels=regions.labels, region_names=regions.names,
        region_centres_mm=regions.centres, region_volumes_mm3=regions.volumes,
        region_cortical=regions.cortical, unit_region=np.asarray(unit_region, np.int64),
        unit_coords_mm=np.asarray(unit_xyz, float), unit_volumes_mm3=np.asarray(unit_vol, float),
        weights=weights, lengths_mm=lengths_mm, conduction_ms=lengths_mm / opt.velocity,
        families=families, rules=rules, options=_options_dict(opt),
        pet=pet_values, pet_mode=opt.pet_mode if pet_values is not None else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if (opt.coupling, opt.lr_inhibitory, opt.lr_sc_exponent, opt.homotopic) != (1, 1, 0, 0):
        inhibitory = {f.name: opt.lr_inhibitory for f in families if f.type == "I"}
        spec = scale_long_range(spec, opt.coupling, inhibitory, opt.lr_sc_exponent,
                                where="dtb build", homotopic=opt.homotopic)
    spec.check("dtb build")
    return spec


def _families(opt: BuildOptions, fam_sizes: dict[str, np.ndarray], n_u: int,
              scale_g: np.ndarray) -> list[Family]:
    """One lif_cond family per entry of ``fam_sizes`` (name -> (U,) sizes): the options'
    parameters, per-unit hyperparameters (conductances times ``scale_g``, PET's), the OU
    background; the excitatory ones with the adaptation conductance if asked for."""
    params = dict(opt.params)
    hyper = {k: np.full(n_u, float(v)) * (scale_g if k.startswith("g_") else 1.0)
             for k, v in opt.hyper.items()}
    bg = [{"type": "ou", "mean": float(opt.background["mean"]),
           "sigma": float(opt.background["sigma"]), "tau": float(opt.background["tau"])}]
    g_adapt, tau_adapt = opt.adaptation
    out = []
    for name, sizes in fam_sizes.items():
        p, h = dict(params), {k: v.copy() for k, v in hyper.items()}
        if name[-1] == "E" and g_adapt > 0:
            # g_adapt per unit, a hyperparameter dtb fit can fit (--param E.g_adapt=...)
            p["tau_adapt"] = float(tau_adapt)
            h["g_adapt"] = np.full(n_u, float(g_adapt))
        out.append(Family(name, name[-1], "lif_cond", sizes,
                          layer=name[:-1] if opt.layers else "", params=p, hyper=h,
                          inputs=[dict(b) for b in bg]))
    return out


def _options_dict(opt: BuildOptions) -> dict[str, Any]:
    d = asdict(opt)
    d["split"] = list(d["split"])
    d["adaptation"] = list(d["adaptation"])
    return d


def _family_sizes(opt: BuildOptions, n: np.ndarray, cortical: np.ndarray) -> dict[str, np.ndarray]:
    """Neurons per unit of every family (0 where a family is absent)."""
    def e_i(total: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
        # at least one cell of each kind wherever a unit has two or more neurons
        e = np.floor(total * frac + 0.5).astype(np.int64)
        e = np.where(total >= 2, np.clip(e, 1, total - 1), e)
        return e, total - e

    if not opt.layers:
        e, i = e_i(n, opt.e_fraction)
        return {"E": e, "I": i}
    out: dict[str, np.ndarray] = {}
    col = np.where(cortical, n, 0)
    shares = np.stack([largest_remainder(int(t), np.array(LAYER_SHARE)) if t > 0
                       else np.zeros(4, np.int64) for t in col], axis=1) if len(n) else \
        np.zeros((4, 0), np.int64)
    for li, layer in enumerate(LAYERS):
        e, i = e_i(shares[li], LAYER_E_FRACTION[li])
        out[layer + "E"], out[layer + "I"] = e, i
    e, i = e_i(np.where(cortical, 0, n), opt.e_fraction)
    out["E"], out["I"] = e, i
    return out


def min_neurons(opt: BuildOptions, unit_vol: np.ndarray, cortical_unit: np.ndarray) -> int:
    """The fewest neurons (``opt.neurons``) with which every unit of volumes ``unit_vol``
    (cortical flags ``cortical_unit``) gets an excitatory and an inhibitory cell: N such
    that N works and N - 1 does not, found by doubling, then bisection."""
    def works(n: int) -> bool:
        per_unit = largest_remainder(n, unit_vol)
        return bool(np.all(per_unit > 0)
                    and np.all(_has_both(_family_sizes(opt, per_unit, cortical_unit))))

    lo, hi = 0, max(2 * len(unit_vol), 1)  # lo fails (or is 0), hi is tried next
    while not works(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if works(mid) else (mid, hi)
    return hi


def _has_both(fam_sizes: dict[str, np.ndarray]) -> np.ndarray:
    e = np.sum([s for f, s in fam_sizes.items() if f.endswith("E")], axis=0) > 0
    i = np.sum([s for f, s in fam_sizes.items() if f.endswith("I")], axis=0) > 0
    return e & i


def _rules(opt: BuildOptions, fam_sizes: dict[str, np.ndarray], weights: np.ndarray,
           unit_region: np.ndarray, cortical_unit: np.ndarray, regions: _Regions,
           scale_k: np.ndarray, ks: tuple[int, int, int]) -> list[Rule]:
    """The projection rules: in-degrees (U,) per target unit of every (source, target)
    family pair, local E/I and long-range, as ``ks`` (local E, local I, long-range) x
    ``scale_k`` (the PET in-degree scale) give them."""
    k_e, k_i, k_l = ks
    n_u = len(unit_region)

    def k_arr(k: float, mask: np.ndarray | None = None) -> np.ndarray:
        a = np.floor(k * scale_k + 0.5).astype(np.int64)
        return a if mask is None else np.where(mask, a, 0)

    w1, d_local = 1.0, float(max(opt.local_delay, 0.0))
    rules: list[Rule] = []
    if not opt.layers:
        for t in ("E", "I"):
            rules.append(Rule("E", t, "unit_local", k_arr(k_e), w1, d_local, "E"))
            rules.append(Rule("I", t, "unit_local", k_arr(k_i), w1, d_local, "I"))
            rules.append(Rule("E", t, "long_range", k_arr(k_l), w1, 0.0, "E"))
        return rules
    # Layered columns: local inputs of a cortical family split over the column's families
    # in proportion to the Potjans-Diesmann in-degrees; subcortical E/I pairs as above.
    indeg = full_scale_synapses() / np.array(N_FULL, float)[:, None]
    names = list(POPULATIONS)
    cort = cortical_unit
    for ti, t in enumerate(names):
        exc = np.array([s.endswith("E") for s in names])
        for si, s in enumerate(names):
            share_e = indeg[ti, si] / indeg[ti, exc].sum() if exc[si] else 0.0
            share_i = indeg[ti, si] / indeg[ti, ~exc].sum() if not exc[si] else 0.0
            k = k_e * share_e + k_i * share_i
            if k >= 0.5:
                rules.append(Rule(s, t, "unit_local", k_arr(k, cort), w1, d_local,
                                  "E" if exc[si] else "I"))
    for t in ("E", "I"):
        rules.append(Rule("E", t, "unit_local", k_arr(k_e, ~cort), w1, d_local, "E"))
        rules.append(Rule("I", t, "unit_local", k_arr(k_i, ~cort), w1, d_local, "I"))
    # Long-range: the target's connectome row decides how many inputs come from cortical
    # regions (from L2/3 and L5 E cells, by their sizes) and how many from subcortical ones.
    w = weights
    row = w.sum(axis=1)
    cort_r = regions.cortical
    frac_cort = np.divide(w[:, cort_r].sum(axis=1), row, out=np.zeros_like(row),
                          where=row > 0)[unit_region]
    k_all = k_arr(k_l)
    k_cort = np.floor(k_all * frac_cort + 0.5).astype(np.int64)
    k_sub = k_all - k_cort
    src_sizes = np.array([LAYER_SHARE[LAYERS.index(x)] * LAYER_E_FRACTION[LAYERS.index(x)]
                          for x in LONG_RANGE_SOURCE_LAYERS])
    for t in list(fam_sizes):
        rem = k_cort.copy()
        for j, layer in enumerate(LONG_RANGE_SOURCE_LAYERS):
            kk = (np.floor(k_cort * src_sizes[j] / src_sizes.sum() + 0.5).astype(np.int64)
                  if j < len(LONG_RANGE_SOURCE_LAYERS) - 1 else rem)
            rem = rem - kk
            rules.append(Rule(layer + "E", t, "long_range", kk, w1, 0.0, "E"))
        rules.append(Rule("E", t, "long_range", k_sub, w1, 0.0, "E"))
    assert all(r.k.shape == (n_u,) for r in rules)
    return rules


def build_to_file(out: str | Path, **kwargs: Any) -> BrainSpec:
    """build() and save atomically; nothing is written when anything fails."""
    spec = build(**kwargs)
    spec.save(out)
    return spec
