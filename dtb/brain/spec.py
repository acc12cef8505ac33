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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import InputError, OutputError

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
    def to_network(self, name: str = "brain"):
        """The dtb Network: one population per family (units = the spec's units, groups =
        their regions) and one projection per rule."""
        from dtb.network import (
            Dist,
            LongRange,
            Network,
            PerUnit,
            Population,
            Projection,
            UnitLocal,
        )

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
            k = tuple(int(x) for x in r.k)
            rule = (UnitLocal(k) if r.kind == "unit_local"
                    else LongRange(k, self.weights, self.conduction_ms))
            projs.append(Projection(r.source, r.target, rule, _dist(r.weight), _dist(r.delay),
                                    receptor=r.receptor))
        return Network(tuple(pops), tuple(projs), name=name)

    # --- file ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file beside the target, renamed when complete
        (dtb.fileio.write_h5_atomic: a full disk is an OutputError naming ``path``, never
        a crash in HDF5).  The file gets the default mode (0666 less the umask), as every
        other output."""
        from dtb.fileio import write_h5_atomic

        path = Path(path)
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{path}: the folder {parent} does not exist")
        write_h5_atomic(path, self._write, "brain file")

    def _write(self, h) -> None:
        import h5py

        import dtb

        str_t = h5py.string_dtype()
        h.attrs["format"] = FORMAT
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["dtb_version"] = dtb.__version__
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
        """Read a brain file; a file that is not one, or is damaged, raises InputError."""
        import h5py

        path = Path(path)
        try:
            h = h5py.File(path, "r")
        except FileNotFoundError as e:
            raise InputError(str(path), None, "missing", "an existing brain file") from e
        except OSError as e:
            raise InputError(str(path), None, "unreadable",
                             f"an HDF5 brain file written by dtb build ({e})") from e
        with h:
            fmt = h.attrs.get("format")
            if fmt != FORMAT:
                raise InputError(str(path), "format", fmt, f"'{FORMAT}'")
            ver = int(h.attrs.get("format_version", -1))
            if ver != FORMAT_VERSION:
                raise InputError(str(path), "format_version", ver,
                                 f"{FORMAT_VERSION} (this dtb reads version {FORMAT_VERSION})")
            try:
                spec = cls._read(h)
            except KeyError as e:
                raise InputError(str(path), str(e), "missing",
                                 "a complete brain file (is it truncated?)") from e
        spec.check(str(path))
        return spec

    @classmethod
    def _read(cls, h) -> BrainSpec:
        def arr(name, dtype=None):
            a = h[name][()]
            return a.astype(dtype) if dtype is not None else a

        fams = []
        for name, fg in h["families"].items():
            fams.append(Family(
                name=name, type=str(fg.attrs["type"]), model=str(fg.attrs["model"]),
                sizes=fg["sizes"][()].astype(np.int64), layer=str(fg.attrs["layer"]),
                params=json.loads(fg.attrs["params"]),
                hyper={k: v[()] for k, v in fg["hyper"].items()},
                inputs=json.loads(fg.attrs["inputs"])))
        rules = []
        for _, rg in sorted(h["projections"].items()):
            rules.append(Rule(str(rg.attrs["source"]), str(rg.attrs["target"]),
                              str(rg.attrs["kind"]), rg["k"][()].astype(np.int64),
                              json.loads(rg.attrs["weight"]), json.loads(rg.attrs["delay"]),
                              str(rg.attrs["receptor"])))
        pet = pet_mode = None
        if "pet" in h:
            pet = h["pet/value"][()]
            pet_mode = str(h["pet"].attrs["mode"])
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in h["regions/name"][()]]
        return cls(
            level=str(h.attrs["level"]), region_labels=arr("regions/label", np.int64),
            region_names=names, region_centres_mm=arr("regions/centre_mm"),
            region_volumes_mm3=arr("regions/volume_mm3"), region_cortical=arr("regions/cortical"),
            unit_region=arr("units/region", np.int64), unit_coords_mm=arr("units/coords_mm"),
            unit_volumes_mm3=arr("units/volume_mm3"), weights=arr("connectome/weights"),
            lengths_mm=arr("connectome/lengths_mm"),
            conduction_ms=arr("connectome/conduction_ms"), families=fams, rules=rules,
            options=json.loads(h.attrs["options"]), provenance=json.loads(h.attrs["provenance"]),
            pet=pet, pet_mode=pet_mode, created=str(h.attrs["created"]),
            dtb_version=str(h.attrs["dtb_version"]))

    def check(self, where: str = "brain") -> None:
        """Shapes and values consistent; raises InputError naming the field."""
        n_r, n_u = len(self.region_labels), self.n_units
        for name, a, shape in (("connectome/weights", self.weights, (n_r, n_r)),
                               ("connectome/lengths_mm", self.lengths_mm, (n_r, n_r)),
                               ("connectome/conduction_ms", self.conduction_ms, (n_r, n_r)),
                               ("units/coords_mm", self.unit_coords_mm, (n_u, 3))):
            if a.shape != shape:
                raise InputError(where, name, f"shape {a.shape}", f"shape {shape}")
        if n_u and (self.unit_region.min() < 0 or self.unit_region.max() >= n_r):
            raise InputError(where, "units/region", int(self.unit_region.max()),
                             f"region indices in [0, {n_r})")
        for f in self.families:
            if f.sizes.shape != (n_u,):
                raise InputError(where, f"families/{f.name}/sizes", f"shape {f.sizes.shape}",
                                 f"({n_u},)")
            for k, v in f.hyper.items():
                if np.shape(v) != (n_u,):
                    raise InputError(where, f"families/{f.name}/hyper/{k}",
                                     f"shape {np.shape(v)}", f"({n_u},)")
        names = {f.name for f in self.families}
        for i, r in enumerate(self.rules):
            if r.source not in names or r.target not in names:
                raise InputError(where, f"projections/{i:04d}", f"{r.source}->{r.target}",
                                 f"families among {sorted(names)}")
            if r.k.shape != (n_u,):
                raise InputError(where, f"projections/{i:04d}/k", f"shape {r.k.shape}",
                                 f"({n_u},)")


def _dist(v: Any):
    from dtb.network import Dist

    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict) and v.get("dist") == "uniform":
        return Dist.uniform(v["low"], v["high"])
    if isinstance(v, dict) and v.get("dist") == "normal":
        return Dist.normal(v["mean"], v["std"], v.get("low", -np.inf), v.get("high", np.inf))
    raise InputError("brain", "weight/delay", v, "a number or a uniform/normal distribution")


def _input(d: dict[str, Any]):
    from dtb.network import DCInput, OUInput, PoissonInput

    kind = d["type"]
    if kind == "ou":
        return OUInput(d["mean"], d["sigma"], d["tau"])
    if kind == "dc":
        return DCInput(d["amplitude"])
    return PoissonInput(d["rate"], d["weight"], d.get("in_degree", 1), d.get("receptor"))
