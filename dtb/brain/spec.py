"""The brain specification: a personalised model as rules, never as synapses.

A ``BrainSpec`` holds what a subject's images determine — units (regions or grey-matter
voxels) with their regions, coordinates and volumes; the region connectome and the
conduction delays; neuron families (E/I, optionally per cortical layer) with their size
in every unit and their per-unit hyperparameters; and the projection rules between
families.  Its size is O(units + regions²) whatever the number of neurons, so the same
file serves a laptop run and an 86-billion-neuron run; every rank generates its own
synapses from the rules (``to_network``).

File: one HDF5 file, ``format = "dtb-brain"``, ``format_version = 1``::

    /                 attrs: format, format_version, dtb_version, created, level,
                             options (JSON), provenance (JSON list: role, path, sha256, bytes)
    /regions/         label (R,) int64, name (R,) str, centre_mm (R,3), volume_mm3 (R,),
                      cortical (R,) bool
    /units/           region (U,) int64 index into /regions, coords_mm (U,3), volume_mm3 (U,)
    /connectome/      weights (R,R) (diagonal removed), lengths_mm (R,R),
                      conduction_ms (R,R) = lengths / velocity
    /families/<name>  attrs: type (E|I), layer, model, params (JSON), inputs (JSON);
                      sizes (U,) int64 neurons per unit; hyper/<param> (U,) per-unit values
    /projections/<i>  attrs: source, target, kind (unit_local|long_range), weight (JSON),
                      delay (JSON), receptor; k (U,) int64 in-degree per target unit
    /pet/             (optional) value (R,), attrs: mode (indegree|conductance)

Units: mm, mm³, ms.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dtb.brain.brainfile import BrainFileReader
from dtb.brain.reading import _short, _Text
from dtb.errors import InputError, OutputError
from dtb.io.fileio import write_h5_atomic
from dtb.model.config import _parse_inputs, parse_dist
from dtb.model.network import (
    DCInput,
    Dist,
    LongRange,
    Network,
    OUInput,
    PerUnit,
    PoissonInput,
    Population,
    Projection,
    UnitLocal,
)
from dtb.model.neurons import MODELS
from dtb.model.problems import Problems
from dtb.version import __version__

FORMAT = "dtb-brain"
FORMAT_VERSION = 1


@dataclass
class Family:
    """One neuron family (for example the excitatory cells, or layer 2/3 inhibitory cells)
    across all units: ``sizes`` (U,) neurons per unit (0 where it is absent)."""

    name: str
    type: str
    model: str
    sizes: np.ndarray
    layer: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    hyper: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Rule:
    """A projection between families: ``unit_local`` (inputs from the same unit) or
    ``long_range`` (source region drawn from the connectome row of the target's region);
    ``k`` (U,) in-degree per target unit; weight and delay as configuration mappings."""

    source: str
    target: str
    kind: str
    k: np.ndarray
    weight: Any
    delay: Any
    receptor: str


@dataclass
class BrainSpec:
    """A personalised brain model (see the module docstring for the file layout)."""

    level: str
    region_labels: np.ndarray
    region_names: list[str]
    region_centres_mm: np.ndarray
    region_volumes_mm3: np.ndarray
    region_cortical: np.ndarray
    unit_region: np.ndarray
    unit_coords_mm: np.ndarray
    unit_volumes_mm3: np.ndarray
    weights: np.ndarray
    lengths_mm: np.ndarray
    conduction_ms: np.ndarray
    families: list[Family]
    rules: list[Rule]
    options: dict[str, Any] = field(default_factory=dict)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    pet: np.ndarray | None = None
    pet_mode: str | None = None
    created: str = ""
    dtb_version: str = ""

    # --- views -----------------------------------------------------------------------
    @property
    def n_units(self) -> int:
        return len(self.unit_region)

    @property
    def n_neurons(self) -> int:
        return int(sum(int(f.sizes.sum()) for f in self.families))

    @property
    def unit_labels(self) -> list[int]:
        """The atlas label of each unit, in unit order (a region's label for its voxels)."""
        return [int(x) for x in self.region_labels[self.unit_region]]

    def neurons_per_unit(self) -> np.ndarray:
        """(U,) neurons of all families in each unit."""
        return np.sum([f.sizes for f in self.families], axis=0)

    # --- the engine's view -----------------------------------------------------------
    def to_network(self, name: str = "brain") -> Network:
        """The dtb Network: one population per family (units = the spec's units, groups =
        their regions) and one projection per rule."""
        groups = tuple(int(r) for r in self.unit_region)
        pops = []
        for f in self.families:
            params: dict[str, Any] = dict(f.params)
            for k, v in f.hyper.items():
                params[k] = PerUnit(tuple(float(x) for x in v))
            pops.append(Population(
                name=f.name, size=int(f.sizes.sum()), model=f.model,
                params=params, initial={"V": Dist.uniform(-65.0, -50.0)},
                inputs=tuple(_input(i) for i in f.inputs),
                type=f.type, units=tuple(int(x) for x in f.sizes), groups=groups))
        projs = []
        for r in self.rules:
            indegree = tuple(int(x) for x in r.k)
            rule = (UnitLocal(indegree) if r.kind == "unit_local"
                    else LongRange(indegree, self.weights, self.conduction_ms))
            projs.append(Projection(r.source, r.target, rule, _dist(r.weight), _dist(r.delay),
                                    receptor=r.receptor))
        return Network(tuple(pops), tuple(projs), name=name)

    # --- file ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file beside the target, renamed when complete
        (dtb.io.fileio.write_h5_atomic: a full disk is an OutputError naming ``path``, never
        a crash in HDF5).  The file gets the default mode (0666 less the umask), as every
        other output."""
        path = Path(path)
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{path}: the folder {parent} does not exist")
        write_h5_atomic(path, self._write, "brain file")

    def _write(self, h: h5py.File) -> None:
        str_t = h5py.string_dtype()
        h.attrs["format"] = FORMAT
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["dtb_version"] = __version__
        h.attrs["created"] = self.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        h.attrs["level"] = self.level
        h.attrs["options"] = json.dumps(self.options)
        h.attrs["provenance"] = json.dumps(self.provenance)
        g = h.create_group("regions")
        g["label"] = self.region_labels.astype(np.int64)
        g.create_dataset("name", data=np.array(self.region_names, dtype=object), dtype=str_t)
        g["centre_mm"] = self.region_centres_mm.astype(float)
        g["volume_mm3"] = self.region_volumes_mm3.astype(float)
        g["cortical"] = self.region_cortical.astype(bool)
        g = h.create_group("units")
        kw = {"compression": "gzip", "shuffle": True} if self.n_units > 4096 else {}
        g.create_dataset("region", data=self.unit_region.astype(np.int64), **kw)
        g.create_dataset("coords_mm", data=self.unit_coords_mm.astype(np.float32), **kw)
        g.create_dataset("volume_mm3", data=self.unit_volumes_mm3.astype(float), **kw)
        g = h.create_group("connectome")
        g["weights"] = self.weights.astype(float)
        g["lengths_mm"] = self.lengths_mm.astype(float)
        g["conduction_ms"] = self.conduction_ms.astype(float)
        fam = h.create_group("families", track_order=True)  # order = global ids
        for f in self.families:
            fg = fam.create_group(f.name)
            fg.attrs.update({"type": f.type, "layer": f.layer, "model": f.model,
                             "params": json.dumps(f.params), "inputs": json.dumps(f.inputs)})
            fg.create_dataset("sizes", data=f.sizes.astype(np.int64), **kw)
            hg = fg.create_group("hyper")
            for k, v in f.hyper.items():
                hg.create_dataset(k, data=np.asarray(v, float), **kw)
        pr = h.create_group("projections", track_order=True)
        for i, r in enumerate(self.rules):
            rg = pr.create_group(f"{i:04d}")
            rg.attrs.update({"source": r.source, "target": r.target, "kind": r.kind,
                             "weight": json.dumps(r.weight), "delay": json.dumps(r.delay),
                             "receptor": r.receptor})
            rg.create_dataset("k", data=r.k.astype(np.int64), **kw)
        if self.pet is not None:
            pg = h.create_group("pet")
            pg["value"] = self.pet.astype(float)
            pg.attrs["mode"] = self.pet_mode or ""

    @classmethod
    def load(cls, path: str | Path) -> BrainSpec:
        """Read a brain file; a file that is not one, or is damaged, raises InputError
        naming the file and the field (dataset or attribute) that is wrong, whatever is
        wrong with it: missing, truncated, not JSON, of the wrong type, shape or range,
        or an unknown name (a projection kind, a family type or model, a receptor)."""
        path = Path(path)
        try:
            h = h5py.File(path, "r")
        except FileNotFoundError as e:
            raise InputError(str(path), None, "missing", "an existing brain file") from e
        except OSError as e:
            raise InputError(str(path), None, "unreadable",
                             f"an HDF5 brain file written by dtb build ({e})") from e
        with h:
            r = BrainFileReader(h, str(path))
            fmt = r.attr(h, "format", str)
            if fmt != FORMAT:
                raise InputError(str(path), "format", _short(fmt), f"'{FORMAT}'")
            ver = r.attr(h, "format_version", int)
            if ver != FORMAT_VERSION:
                raise InputError(str(path), "format_version", ver,
                                 f"{FORMAT_VERSION} (this dtb reads version {FORMAT_VERSION})")
            spec = cls._read(r)
        spec.check(str(path))
        return spec

    @classmethod
    def _read(cls, r: BrainFileReader) -> BrainSpec:
        h = r.h
        fams = []
        for name, fg in r.group(h, "families").items():
            where = f"families/{name}"
            fams.append(Family(
                name=name, type=r.attr(fg, "type", str, where),
                model=r.attr(fg, "model", str, where),
                sizes=r.array(f"{where}/sizes", np.int64), layer=r.attr(fg, "layer", str, where),
                params=r.json(fg, "params", dict, where),
                hyper={k: r.array(f"{where}/hyper/{k}", float)
                       for k in r.group(fg, "hyper", where)},
                inputs=r.json(fg, "inputs", list, where)))
        rules = []
        for i, rg in sorted(r.group(h, "projections").items()):
            where = f"projections/{i}"
            rules.append(Rule(r.attr(rg, "source", str, where), r.attr(rg, "target", str, where),
                              r.attr(rg, "kind", str, where), r.array(f"{where}/k", np.int64),
                              r.json(rg, "weight", (int, float, dict), where),
                              r.json(rg, "delay", (int, float, dict), where),
                              r.attr(rg, "receptor", str, where)))
        pet = pet_mode = None
        if "pet" in h:
            pet = r.array("pet/value", float)
            pet_mode = r.attr(h["pet"], "mode", str, "pet")
        names = [x.decode(errors="replace") if isinstance(x, bytes) else str(x)
                 for x in r.array("regions/name")]
        return cls(
            level=r.attr(h, "level", str), region_labels=r.array("regions/label", np.int64),
            region_names=names, region_centres_mm=r.array("regions/centre_mm", float),
            region_volumes_mm3=r.array("regions/volume_mm3", float),
            region_cortical=r.array("regions/cortical", bool),
            unit_region=r.array("units/region", np.int64),
            unit_coords_mm=r.array("units/coords_mm", float),
            unit_volumes_mm3=r.array("units/volume_mm3", float),
            weights=r.array("connectome/weights", float),
            lengths_mm=r.array("connectome/lengths_mm", float),
            conduction_ms=r.array("connectome/conduction_ms", float), families=fams,
            rules=rules, options=r.json(h, "options", dict),
            provenance=r.json(h, "provenance", list),
            pet=pet, pet_mode=pet_mode, created=r.attr(h, "created", str),
            dtb_version=r.attr(h, "dtb_version", str))

    def check(self, where: str = "brain") -> None:
        """Shapes, values and names consistent; raises InputError naming the field."""
        _check_arrays(self, where)
        seen: set[str] = set()
        for f in self.families:
            _check_family(f, where, self.n_units, seen)
        if not any(int(f.sizes.sum()) for f in self.families):
            raise InputError(where, "families", "no neurons", "at least one family with neurons")
        fams = {f.name: f for f in self.families}
        for i, r in enumerate(self.rules):
            _check_rule(r, f"projections/{i:04d}", where, fams, self.n_units)
        _check_pet_and_delays(self, where)


# --- checks (BrainSpec.check), in the order a file's problems are reported -----------------

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def peek_build_options(path: str | Path) -> dict[str, Any] | None:
    """The ``dtb build`` options recorded in a brain file's header (the ``options``
    attribute), without reading the brain; None where the file is missing, not HDF5, or
    has no readable options (``BrainSpec.load`` reports what is wrong with it)."""
    try:
        with h5py.File(path, "r") as h:
            d = json.loads(h.attrs["options"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _check_arrays(spec: BrainSpec, where: str) -> None:
    """The level, the region, unit and connectome arrays: shapes, finite values >= 0, unit
    regions in range and grouped by region."""
    if spec.level not in ("region", "voxel"):
        raise InputError(where, "level", _short(spec.level), "region or voxel")
    n_r, n_u = len(spec.region_labels), spec.n_units
    for name, a, shape in (("regions/label", spec.region_labels, (n_r,)),
                           ("regions/centre_mm", spec.region_centres_mm, (n_r, 3)),
                           ("regions/volume_mm3", spec.region_volumes_mm3, (n_r,)),
                           ("regions/cortical", spec.region_cortical, (n_r,)),
                           ("units/region", spec.unit_region, (n_u,)),
                           ("connectome/weights", spec.weights, (n_r, n_r)),
                           ("connectome/lengths_mm", spec.lengths_mm, (n_r, n_r)),
                           ("connectome/conduction_ms", spec.conduction_ms, (n_r, n_r)),
                           ("units/coords_mm", spec.unit_coords_mm, (n_u, 3)),
                           ("units/volume_mm3", spec.unit_volumes_mm3, (n_u,))):
        if np.shape(a) != shape:
            raise InputError(where, name, f"shape {np.shape(a)}", f"shape {shape}")
    if len(spec.region_names) != n_r:
        raise InputError(where, "regions/name", f"{len(spec.region_names)} names",
                         f"{n_r}, one per region")
    if n_r == 0 or n_u == 0:
        raise InputError(where, "regions" if n_r == 0 else "units", "none",
                         "at least one region and one unit")
    for name, a in (("regions/volume_mm3", spec.region_volumes_mm3),
                    ("units/volume_mm3", spec.unit_volumes_mm3),
                    ("connectome/weights", spec.weights),
                    ("connectome/lengths_mm", spec.lengths_mm),
                    ("connectome/conduction_ms", spec.conduction_ms)):
        _finite_nonneg(where, name, a)
    for name, a in (("regions/centre_mm", spec.region_centres_mm),
                    ("units/coords_mm", spec.unit_coords_mm)):
        if not np.all(np.isfinite(a)):
            raise InputError(where, name, _first_bad(a, ~np.isfinite(a)), "finite numbers")
    if spec.unit_region.min() < 0 or spec.unit_region.max() >= n_r:
        bad = spec.unit_region[(spec.unit_region < 0) | (spec.unit_region >= n_r)]
        raise InputError(where, "units/region", int(bad[0]),
                         f"region indices in [0, {n_r})")
    if np.any(np.diff(spec.unit_region) < 0):
        raise InputError(where, "units/region", "decreasing indices",
                         "units grouped by region, in region order")


def _check_family(f: Family, where: str, n_u: int, seen: set[str]) -> None:
    """One family: a distinct name (added to ``seen``), its type and model, sizes (n_u,)
    >= 0, per-unit hyperparameters and its params and inputs as the model takes them."""
    fw = f"families/{f.name}"
    if not _NAME_RE.match(f.name) or f.name in seen:
        raise InputError(where, fw, _short(f.name),
                         "a distinct name of letters, digits and _")
    seen.add(f.name)
    if f.type not in ("E", "I"):
        raise InputError(where, f"{fw}.attrs['type']", _short(f.type), "E or I")
    if f.model not in MODELS:
        raise InputError(where, f"{fw}.attrs['model']", _short(f.model),
                         f"one of {', '.join(MODELS)}")
    model = MODELS[f.model]
    if f.sizes.shape != (n_u,):
        raise InputError(where, f"{fw}/sizes", f"shape {f.sizes.shape}", f"({n_u},)")
    if np.any(f.sizes < 0):
        raise InputError(where, f"{fw}/sizes", int(f.sizes.min()), "sizes >= 0")
    for k, v in f.hyper.items():
        if k not in model.defaults:
            raise InputError(where, f"{fw}/hyper/{k}", "unknown parameter",
                             f"a parameter of {f.model}: {', '.join(model.defaults)}")
        if np.shape(v) != (n_u,):
            raise InputError(where, f"{fw}/hyper/{k}",
                             f"shape {np.shape(v)}", f"({n_u},)")
        if not np.all(np.isfinite(v)):
            raise InputError(where, f"{fw}/hyper/{k}", _first_bad(v, ~np.isfinite(v)),
                             "finite numbers")
    pr = Problems()
    for k, v in f.params.items():
        if k not in model.defaults:
            pr.add(f"params.{k}", v, f"a parameter of {f.model}")
        else:
            parse_dist(v, f"params.{k}", pr)
    _parse_inputs(f.inputs, "inputs", model, pr)
    if pr.items:
        raise InputError(where, f"{fw}.attrs[{pr.items[0].split(':', 1)[0]}]",
                         _Text(pr.items[0].split(": ", 1)[1].split(" -- ")[0]),
                         pr.items[0].split(" -- expected ", 1)[-1])


def _check_rule(r: Rule, rw: str, where: str, fams: dict[str, Family], n_u: int) -> None:
    """One projection rule (``rw`` its group in the file): known families, kind and
    receptor, in-degrees (n_u,) >= 0, weight and delay a number or a distribution."""
    if r.source not in fams or r.target not in fams:
        raise InputError(where, rw, _short(f"{r.source}->{r.target}"),
                         f"families among {sorted(fams)}")
    if r.kind not in ("unit_local", "long_range"):
        raise InputError(where, f"{rw}.attrs['kind']", _short(r.kind),
                         "unit_local or long_range")
    model = MODELS[fams[r.target].model]
    if r.receptor not in model.receptors:
        raise InputError(where, f"{rw}.attrs['receptor']", _short(r.receptor),
                         f"a receptor of {model.name}: {', '.join(model.receptors)}")
    if r.k.shape != (n_u,):
        raise InputError(where, f"{rw}/k", f"shape {r.k.shape}", f"({n_u},)")
    if np.any(r.k < 0):
        raise InputError(where, f"{rw}/k", int(r.k.min()), "in-degrees >= 0")
    for key, v in (("weight", r.weight), ("delay", r.delay)):
        pr = Problems()
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) or (
            isinstance(v, dict) and v.get("dist") in ("uniform", "normal"))
        if not ok or parse_dist(v, key, pr) is None or pr.items:
            raise InputError(where, f"{rw}.attrs['{key}']", _short(v),
                             "a finite number or a uniform/normal distribution")


def _check_pet_and_delays(spec: BrainSpec, where: str) -> None:
    """PET values (R,) finite >= 0 with a known mode; a conduction delay > 0 ms wherever
    a weight is > 0 (a tract without length is no tract)."""
    n_r = len(spec.region_labels)
    if spec.pet is not None:
        if np.shape(spec.pet) != (n_r,):
            raise InputError(where, "pet/value", f"shape {np.shape(spec.pet)}", f"({n_r},)")
        _finite_nonneg(where, "pet/value", spec.pet)
        if spec.pet_mode not in ("indegree", "conductance"):
            raise InputError(where, "pet.attrs['mode']", _short(spec.pet_mode),
                             "indegree or conductance")
    # a tract without length is no tract: a connection needs a conduction time
    bad = (spec.weights > 0) & (spec.conduction_ms <= 0)
    np.fill_diagonal(bad, False)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(where, f"connectome/conduction_ms[{i}][{j}]",
                         float(spec.conduction_ms[i, j]),
                         f"a conduction delay > 0 ms where the weight is > 0 "
                         f"({float(spec.weights[i, j]):g}; {int(bad.sum())} such entries)")


def _first_bad(a: Any, mask: np.ndarray) -> Any:
    idx = tuple(int(x) for x in np.argwhere(mask)[0])
    return _Text(f"{float(np.asarray(a)[idx])!r} at {list(idx)}")


def _finite_nonneg(where: str, name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a) | (a < 0)
    if bad.any():
        raise InputError(where, name, _first_bad(a, bad), "finite values >= 0")


def _dist(v: Any) -> float | Dist:
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict) and v.get("dist") == "uniform":
        return Dist.uniform(v["low"], v["high"])
    if isinstance(v, dict) and v.get("dist") == "normal":
        return Dist.normal(v["mean"], v["std"], v.get("low", -np.inf), v.get("high", np.inf))
    raise InputError("brain", "weight/delay", v, "a number or a uniform/normal distribution")


def _input(d: dict[str, Any]) -> OUInput | DCInput | PoissonInput:
    kind = d["type"]
    if kind == "ou":
        return OUInput(d["mean"], d["sigma"], d["tau"])
    if kind == "dc":
        return DCInput(d["amplitude"])
    return PoissonInput(d["rate"], d["weight"], d.get("in_degree", 1), d.get("receptor"))
