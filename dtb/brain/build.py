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
  (mean 0.6, sd 0.12, tau 10 ms).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtb.brain import inputs as bi
from dtb.brain.recipe import scale_long_range
from dtb.brain.spec import BrainSpec, Family, Rule
from dtb.errors import ConfigError, InputError
from dtb.model.neurons import LIF_COND, check_params
from dtb.models.microcircuit import N_FULL, POPULATIONS, full_scale_synapses

LAYERS = ("L23", "L4", "L5", "L6")
LAYER_SHARE = (0.338, 0.349, 0.076, 0.221)
LAYER_E_FRACTION = (0.78, 0.80, 0.82, 0.83)
LONG_RANGE_SOURCE_LAYERS = ("L23", "L5")  # cortico-cortical projection neurons
CALIBRATED_G = {"g_AMPA": 0.00743, "g_NMDA": 0.000869, "g_GABA_A": 0.0703,
                "g_GABA_B": 0.00253}  # published voxel model, in-degree 100, ~10 Hz
# Our defaults: the published values were calibrated for forward Euler at 1 ms with spike
# noise.  With exact integration at 0.1 ms and the OU background below they leave the
# default subject in a high-rate state (~33 Hz); GABA scales x3 give asynchronous activity
# at ~6.6 Hz (E/I, 8000 neurons, region level; measured 2026-11-26).
DEFAULT_HYPER = {"g_AMPA": 0.00743, "g_NMDA": 0.000869, "g_GABA_A": 3 * 0.0703,
                 "g_GABA_B": 3 * 0.00253, "I_e": 0.0}


# Bounds on what a brain file may ask of a run (checked before anything is read): every
# count must stay far inside int64 (N K < 2^63), and the implied memory is stated
MAX_NEURONS = 10**12            # 10x the 86 billion neurons of a human brain
MAX_IN_DEGREE = 10**5           # synapses per neuron (cortex: about 1e4)
BYTES_PER_NEURON = 64           # state, parameters, ids (lif_cond, CPU; order of magnitude)
BYTES_PER_SYNAPSE = 8           # target uint32, weight int16, delay uint16 (README, Memory)


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the brain builder (units: mm/ms = m/s, ms)."""

    level: str = "region"
    neurons: int = 20_000
    in_degree: int = 100
    split: tuple[float, float, float] = (4.0, 1.0, 2.0)  # local E : local I : long-range
    e_fraction: float = 0.8
    velocity: float = 3.0  # mm/ms (= m/s); TVB's default conduction speed
    local_delay: float = 1.0  # ms, synaptic delay of unit-local connections
    layers: bool = False
    params: dict[str, float] = field(default_factory=dict)  # lif_cond parameters
    hyper: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_HYPER))
    background: dict[str, float] = field(
        default_factory=lambda: {"mean": 0.6, "sigma": 0.12, "tau": 10.0})  # OU current
    pet_mode: str = "indegree"
    # the long-range recipe (dtb.brain.recipe): weights x coupling, onto inhibitory families
    # x lr_inhibitory more, in-degrees x (SC strength / mean)^lr_sc_exponent
    coupling: float = 1.0
    lr_inhibitory: float = 1.0
    lr_sc_exponent: float = 0.0

    def check(self) -> None:
        """Every knob in range, before any file is read; raises ConfigError."""
        bad: list[str] = []

        def add(name, value, expected):
            bad.append(f"{name}: {value!r} -- expected {expected}")

        if self.level not in ("region", "voxel"):
            add("level", self.level, "region or voxel")
        if not (isinstance(self.neurons, int) and self.neurons > 0):
            add("neurons", self.neurons, "a positive integer")
        if not (isinstance(self.in_degree, int) and self.in_degree > 0):
            add("in_degree", self.in_degree, "a positive integer")
        elif isinstance(self.neurons, int) and self.neurons > MAX_NEURONS:
            need = self.neurons * (BYTES_PER_NEURON + BYTES_PER_SYNAPSE * self.in_degree)
            add("neurons", self.neurons,
                f"at most {MAX_NEURONS:.0e} (10x a human brain): {self.neurons:.3g} neurons "
                f"with {self.in_degree} synapses each would need about {need:.3g} bytes of "
                "memory to run")
        elif isinstance(self.in_degree, int) and self.in_degree > MAX_IN_DEGREE:
            add("in_degree", self.in_degree, f"at most {MAX_IN_DEGREE:,} synapses per neuron")
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            add("split", self.split, "three shares >= 0 (local E, local I, long-range)")
        if not 0 < self.e_fraction < 1:
            add("e_fraction", self.e_fraction, "a fraction in (0, 1)")
        if not self.velocity > 0:
            add("velocity", self.velocity, "a conduction velocity > 0 mm/ms")
        if not self.local_delay >= 0:
            add("local_delay", self.local_delay, "a delay >= 0 ms")
        for name in ("coupling", "lr_inhibitory"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                add(name, v, "a finite factor >= 0")
        if not (isinstance(self.lr_sc_exponent, int | float)
                and math.isfinite(self.lr_sc_exponent) and abs(self.lr_sc_exponent) <= 4):
            add("lr_sc_exponent", self.lr_sc_exponent, "an exponent in [-4, 4]")
        if self.pet_mode not in ("indegree", "conductance"):
            add("pet_mode", self.pet_mode, "indegree or conductance")
        for k in self.params:
            if k not in LIF_COND.defaults:
                add(f"params.{k}", self.params[k], f"a parameter of lif_cond "
                                                   f"({', '.join(LIF_COND.defaults)})")
        for k in self.hyper:
            if k not in LIF_COND.defaults:
                add(f"hyper.{k}", self.hyper[k], "a lif_cond parameter")
        merged = {**LIF_COND.defaults, **self.params, **self.hyper}
        if not bad:
            for k, v, expected in check_params(LIF_COND, merged):
                add(f"params.{k}", v, expected)
        for k in ("mean", "sigma", "tau"):
            if k not in self.background:
                add(f"background.{k}", None, "a value (OU current: mean, sigma, tau)")
        if bad:
            raise ConfigError(bad, "dtb build")


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

    conn = (bi.read_tvb_zip(tvb, symmetrize=symmetrize) if tvb is not None
            else bi.read_connectome(sc, lengths, labels, symmetrize=symmetrize))
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
    regions, idx = _regions(table, conn)
    weights = conn.weights[np.ix_(idx, idx)].copy()
    np.fill_diagonal(weights, 0.0)
    lengths_mm = conn.lengths_mm[np.ix_(idx, idx)].copy()

    if opt.level == "region":
        unit_region = np.arange(len(regions.labels))
        unit_vol = regions.volumes.copy()
        unit_xyz = regions.centres.copy()
    else:
        unit_region, unit_vol, unit_xyz = _voxel_units(img, regions.labels)

    pet_values = None
    if pet is not None:
        raw = bi.read_pet(pet, img)
        prov.append(_prov_dict(bi.provenance("pet", pet)))
        order = bi.match(regions.labels, regions.names, raw, "PET table", path=str(pet),
                         allow_extra=True)
        keys = list(raw)
        pet_values = np.array([raw[keys[i]] for i in order], float)

    spec = _assemble(opt, regions, weights, lengths_mm, unit_region, unit_vol, unit_xyz,
                     pet_values, conn.provenance[0].path if conn.provenance else "connectome")
    spec.provenance = [_prov_dict(p) for p in prov if not isinstance(p, dict)] + \
        [p for p in prov if isinstance(p, dict)]
    return spec


def _prov_dict(p) -> dict[str, Any]:
    return asdict(p) if not isinstance(p, dict) else p


def _names_from(conn) -> dict[int, str] | None:
    if conn.labels is not None and conn.names is not None:
        return {int(a): str(b) for a, b in zip(conn.labels, conn.names, strict=True)}
    return None


def _regions(table, conn) -> tuple[_Regions, np.ndarray]:
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
    centres = table.centres_mm
    if centres is None:
        centres = (conn.centres_mm[idx] if conn.centres_mm is not None
                   else np.zeros((len(idx), 3)))
    cortical = table.cortical
    if cortical is None:
        cortical = (conn.cortical[idx] if conn.cortical is not None
                    else np.ones(len(idx), bool))
    return _Regions(np.asarray(table.labels, np.int64), list(table.names),
                    np.asarray(table.volumes_mm3, float), np.asarray(centres, float),
                    np.asarray(cortical, bool)), idx


def _voxel_units(img, region_labels: np.ndarray):
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


def _assemble(opt: BuildOptions, regions: _Regions, weights, lengths_mm, unit_region,
              unit_vol, unit_xyz, pet_values, conn_path: str = "connectome") -> BrainSpec:
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
    params = dict(opt.params)
    hyper = {k: np.full(n_u, float(v)) * (scale_g if k.startswith("g_") else 1.0)
             for k, v in opt.hyper.items()}
    bg = [{"type": "ou", "mean": float(opt.background["mean"]),
           "sigma": float(opt.background["sigma"]), "tau": float(opt.background["tau"])}]
    families = [Family(name, name[-1], "lif_cond", sizes, layer=name[:-1] if opt.layers else "",
                       params=params, hyper={k: v.copy() for k, v in hyper.items()},
                       inputs=bg) for name, sizes in fam_sizes.items()]
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
    if (opt.coupling, opt.lr_inhibitory, opt.lr_sc_exponent) != (1.0, 1.0, 0.0):
        inhibitory = {f.name: opt.lr_inhibitory for f in families if f.type == "I"}
        spec = scale_long_range(spec, opt.coupling, inhibitory, opt.lr_sc_exponent,
                                where="dtb build")
    spec.check("dtb build")
    return spec


def _options_dict(opt: BuildOptions) -> dict[str, Any]:
    d = asdict(opt)
    d["split"] = list(d["split"])
    return d


def _family_sizes(opt: BuildOptions, n: np.ndarray, cortical: np.ndarray) -> dict[str, np.ndarray]:
    """Neurons per unit of every family (0 where a family is absent)."""
    def e_i(total, frac):
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


def _rules(opt, fam_sizes, weights, unit_region, cortical_unit, regions, scale_k, ks):
    k_e, k_i, k_l = ks
    n_u = len(unit_region)

    def k_arr(k, mask=None):
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


def build_to_file(out: str | Path, **kwargs) -> BrainSpec:
    """build() and save atomically; nothing is written when anything fails."""
    spec = build(**kwargs)
    spec.save(out)
    return spec
