"""Outputs for the ecosystem: a run's BOLD as a region table, its spikes as one
self-contained SONATA file, spikes and BOLD as NWB; ``dtb export``.

- ``UnitRegions``: which region (integer label, name) every unit of a brain belongs to.
- ``region_bold(store, unit_label)``: the run's BOLD (``series.zarr``, time_bold x unit)
  averaged over each region's units, as ``dtb assimilate`` compares it with data: (T, R),
  read one column chunk at a time.
- ``write_run_bold_tsv(run_dir, regions)``: ``bold.tsv`` (headed by region names, or labels
  where names cannot serve, ``dtb.io.bids.region_header``) and its BIDS sidecar ``bold.json``
  (``RepetitionTime`` in s), which ``dtb assimilate --bold RUN/bold.tsv`` reads back as they
  are.  ``dtb simulate`` and ``dtb demo`` write them whenever BOLD is recorded.
- ``consolidate_spikes(run_dir, out)``: ``spikes.h5`` reads its data through HDF5 virtual
  datasets over ``spikes/rank-*.h5``; this copies every population's ``timestamps`` and
  ``node_ids`` into one file of ordinary datasets, with every attribute as stored (the
  ``sorting`` enum included), so it can be moved without the parts.
- ``write_nwb(run_dir, out)``: an NWB 2 file (pynwb, the ``nwb`` extra): every recorded
  neuron a row of the ``units`` table (``spike_times`` in **seconds**, columns
  ``population`` and ``node_id``; silent neurons have no spike times), and, when BOLD was
  recorded, a ``TimeSeries`` ``bold`` (time x unit, fractional signal change, at 1/TR Hz)
  in the processing module ``hemodynamics`` with a table ``bold_units`` (unit name, region
  label) for its columns.  It holds every spike in memory while writing (16 bytes each).

Every output is written under a temporary name and renamed when complete; an existing file
is replaced only with ``overwrite``.  Bad runs or paths raise ``InputError`` /
``OutputError`` naming them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from dtb.errors import ConfigError, InputError, OutputError
from dtb.io.bids import sidecar_path, write_bold_tsv
from dtb.io.fileio import TMP_PREFIX, write_h5_atomic
from dtb.io.sonata import sample_ids

__all__ = ["UnitRegions", "region_bold", "write_run_bold_tsv", "consolidate_spikes",
           "write_nwb", "add_export_parser", "run_export", "BOLD_TSV"]

BOLD_TSV = "bold.tsv"
COPY_CHUNK = 1 << 20     # elements per read when copying spike datasets


@dataclass(frozen=True)
class UnitRegions:
    """``unit_label`` (U,) the region label of every unit; ``labels`` (R,) and ``names``
    (R,) the regions, in the brain's order."""

    unit_label: np.ndarray
    labels: np.ndarray
    names: list[str]

    @classmethod
    def from_spec(cls, spec: Any) -> UnitRegions:
        """From a ``BrainSpec``."""
        return cls(np.asarray(spec.unit_labels, np.int64),
                   np.asarray(spec.region_labels, np.int64),
                   [str(n) for n in spec.region_names])


def region_bold(store: str | Path, unit_label: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      float]:
    """``(data (T, R), labels (R,), tr_s)``: the ``bold`` array of the Zarr store averaged
    over the units of each region label (labels in ascending order), and the TR in s."""

    g = zarr.open_group(str(store), mode="r")
    bold: Any = g["bold"]  # a zarr.Array (zarr types an item as Array | Group)
    T, U = bold.shape
    unit_label = np.asarray(unit_label, np.int64)
    if unit_label.size != U:
        raise InputError(str(store), "bold", f"{U} units", f"{unit_label.size} units, as the "
                         "brain has")
    labels, col = np.unique(unit_label, return_inverse=True)
    sums = np.zeros((T, labels.size))
    step = int(bold.chunks[1]) if bold.chunks[1] else U
    for c0 in range(0, U, step):
        c1 = min(U, c0 + step)
        block = np.asarray(bold[:, c0:c1], float)
        np.add.at(sums.T, col[c0:c1], block.T)
    data = sums / np.bincount(col, minlength=labels.size)
    tr_s = float(bold.attrs["tr_ms"]) * 1e-3
    return data, labels, tr_s


def write_run_bold_tsv(run_dir: str | Path, regions: UnitRegions | None,
                       unit_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``bold.tsv`` and ``bold.json`` into ``run_dir`` from its ``series.zarr``
    (see the module docstring).  Without ``regions`` (a network that is not a brain) each
    unit is a column, labelled 1..U and named by ``unit_names``.  Returns the manifest's
    output entries ``{"bold_tsv": {...}, "bold_json": {...}}`` (none for a run shorter than
    one TR)."""

    run_dir = Path(run_dir)
    store = run_dir / "series.zarr"
    if regions is None:
        bold: Any = zarr.open_group(str(store), mode="r")["bold"]
        n = bold.shape[1]
        regions = UnitRegions(np.arange(1, n + 1), np.arange(1, n + 1),
                              list(unit_names) if unit_names is not None
                              else [str(i) for i in range(1, n + 1)])
    data, labels, tr_s = region_bold(store, regions.unit_label)
    if data.shape[0] == 0:
        return {}              # a run shorter than one TR: no table (dtb report says why)
    name_of = dict(zip(regions.labels.tolist(), regions.names, strict=True))
    names = [name_of.get(int(v), str(int(v))) for v in labels]
    files = write_bold_tsv(run_dir / BOLD_TSV, data, labels, names, tr_s,
                           {"Description": "simulated BOLD (Balloon-Windkessel), the mean "
                                           "over each region's units, written by dtb",
                            "StartTime": tr_s})
    tsv, side = files[BOLD_TSV], files[Path(BOLD_TSV).with_suffix(".json").name]
    return {"bold_tsv": {**tsv, "format": "tsv", "tr_s": tr_s, "regions": int(labels.size),
                         "time_points": int(data.shape[0])},
            "bold_json": {**side, "format": "bids-sidecar"}}


# --- dtb export ------------------------------------------------------------------------------

def _complete_run(run_dir: Path) -> dict[str, Any]:
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(str(run_dir / "manifest.json"), None, why, "the manifest of a run "
                         "directory written by dtb simulate or dtb demo") from e
    if m.get("format") != "dtb-run":
        raise InputError(str(run_dir / "manifest.json"), "format", m.get("format"),
                         "'dtb-run' (a run of dtb simulate or dtb demo)")
    if m.get("status") != "complete":
        raise InputError(str(run_dir / "manifest.json"), "status", m.get("status"),
                         "'complete' (export a finished run)")
    return m


def _target(out: str | Path, overwrite: bool) -> tuple[Path, Path]:
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: exists -- choose another file, or pass --overwrite to "
                          "replace it")
    if out.exists() and not out.is_file():
        raise OutputError(f"{out}: exists and is not a file -- expected a file path")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist -- create it first")

    return out, out.with_name(f"{TMP_PREFIX}{os.getpid()}-{out.name}")


def _copy_attrs(src: Any, dst: Any) -> None:
    """Every attribute with its stored type (an HDF5 enum stays an enum)."""
    for name in src.attrs:
        dst.attrs.create(name, src.attrs[name], dtype=src.attrs.get_id(name).dtype)


def consolidate_spikes(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's spikes as one self-contained SONATA file ``out`` (see the module
    docstring); returns ``out``."""

    run_dir = Path(run_dir)
    _complete_run(run_dir)
    src_path = run_dir / "spikes.h5"
    if not src_path.is_file():
        raise InputError(str(src_path), "file", "missing", "spikes.h5 (a run that recorded "
                         "spikes)")
    out, tmp = _target(out, overwrite)

    def fill(dst: Any) -> None:
        with h5py.File(src_path, "r") as src:
            _copy_attrs(src, dst)
            for gname, g in src.items():
                dg = dst.create_group(gname)
                _copy_attrs(g, dg)
                for pname, pg in g.items():
                    dp = dg.create_group(pname)
                    _copy_attrs(pg, dp)
                    for dname, ds in pg.items():
                        n = ds.shape[0]
                        d = dp.create_dataset(dname, shape=ds.shape, dtype=ds.dtype,
                                              chunks=(min(max(n, 1), COPY_CHUNK),)
                                              if n else None)
                        for i in range(0, n, COPY_CHUNK):
                            d[i:i + COPY_CHUNK] = ds[i:i + COPY_CHUNK]
                        _copy_attrs(ds, d)

    # through dtb.io.fileio's latched file: a full disk is an OutputError naming ``out``,
    # and the temporary file is removed whatever fails
    write_h5_atomic(out, fill, "spikes", tmp=tmp)
    return out


def _nwb_units(run_dir: Path, m: dict[str, Any]) -> Any:
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    sp = (m.get("outputs") or {}).get("spikes") or {}
    sizes = sp.get("sizes") or {}
    sample = sp.get("sample")
    times, index, pops, ids = [], [], [], []
    total = 0
    with h5py.File(run_dir / "spikes.h5", "r") as f:
        for pop, size in sizes.items():
            rows = (np.arange(int(size)) if sample is None
                    else np.asarray(sample_ids(int(size), int(sample)), np.int64))
            g = f["spikes"].get(pop)
            t = np.asarray(g["timestamps"][()], float) if g is not None else np.zeros(0)
            nid = np.asarray(g["node_ids"][()], np.int64) if g is not None else np.zeros(0, int)
            order = np.lexsort((t, nid))          # by neuron, then time (any sorting)
            t, nid = t[order], nid[order]
            pos = np.searchsorted(rows, nid)
            if nid.size and (np.any(pos >= rows.size) or np.any(rows[np.minimum(
                    pos, rows.size - 1)] != nid)):
                raise InputError(str(run_dir / "spikes.h5"), f"spikes/{pop}/node_ids",
                                 "ids outside the recorded neurons",
                                 "the neurons the manifest says were recorded")
            counts = np.bincount(pos, minlength=rows.size)
            times.append(t * 1e-3)                # ms -> s
            index.append(total + np.cumsum(counts))
            total += int(counts.sum())
            pops.append(np.full(rows.size, pop, dtype=object))
            ids.append(rows)
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))  # noqa: E731
    st = VectorData(name="spike_times", description="spike times, s (SONATA timestamps / "
                    "1000)", data=cat(times, float))
    idx = VectorIndex(name="spike_times_index", data=cat(index, np.int64).astype(np.uint64),
                      target=st)
    pop = VectorData(name="population", description="dtb population (neuron family)",
                     data=cat(pops, object))
    nid = VectorData(name="node_id", description="SONATA node id within the population "
                     "(from 0)", data=cat(ids, np.int64))
    n = len(nid.data)
    return Units(name="units", id=ElementIdentifiers(name="id", data=np.arange(n)),
                 columns=[st, idx, pop, nid],
                 colnames=["spike_times", "population", "node_id"],
                 description="every recorded neuron of the simulation, one row each")


def _nwb_bold(nwb: Any, run_dir: Path, m: dict[str, Any]) -> None:
    from hdmf.common import DynamicTable, VectorData
    from pynwb import TimeSeries

    store = run_dir / "series.zarr"
    if not store.exists():
        return
    g: Any = zarr.open_group(str(store), mode="r")  # items: arrays (zarr: Array | Group)
    if "bold" not in g:
        return
    bold = np.asarray(g["bold"][...], float)
    tr_s = float(g["bold"].attrs["tr_ms"]) * 1e-3
    t_bold = np.asarray(g["time_bold"][...], float) * 1e-3
    units = [str(u) for u in g["unit"][...]]
    mod = nwb.create_processing_module("hemodynamics", "simulated BOLD "
                                       "(Balloon-Windkessel driven by unit rates)")
    mod.add(TimeSeries(name="bold", data=bold, unit="fractional signal change", rate=1 / tr_s,
                       starting_time=float(t_bold[0]) if t_bold.size else tr_s,
                       description="BOLD per unit; columns described by bold_units",
                       comments=f"TR {tr_s:g} s; stamped at the end of each TR"))
    cols = [VectorData(name="unit_name", description="unit (region, or region#voxel)",
                       data=np.asarray(units, dtype=object))]
    if "label" in g:
        cols.append(VectorData(name="region_label", description="integer region label",
                               data=np.asarray(g["label"][...], np.int64)))
    mod.add(DynamicTable(name="bold_units", description="the columns of bold", columns=cols))


def write_nwb(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's spikes and BOLD as an NWB file ``out`` (see the module docstring)."""
    try:
        import pynwb
    except ImportError:
        raise InputError(str(out), "format", "nwb", "pynwb, the nwb extra (pip install "
                         "'dtb[nwb]')") from None

    run_dir = Path(run_dir)
    m = _complete_run(run_dir)
    if not (run_dir / "spikes.h5").is_file():
        raise InputError(str(run_dir / "spikes.h5"), "file", "missing", "spikes.h5")
    out, tmp = _target(out, overwrite)
    start = dt.datetime.fromisoformat(str(m.get("start_time")).replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    ident = m.get("run_id") or (m.get("outputs", {}).get("spikes", {}).get("sha256")
                                or str(run_dir.resolve()))
    nwb = pynwb.NWBFile(
        session_description=f"dtb simulation {run_dir.name}: "
                            f"{' '.join(m.get('command') or [])}",
        identifier=str(ident), session_start_time=start,
        source_script=f"dtb {m.get('dtb_version', '')}", source_script_file_name="dtb",
        notes=json.dumps({"seed": m.get("seed"), "source": m.get("source"),
                          "timings": m.get("timings")}, default=str))
    nwb.units = _nwb_units(run_dir, m)
    _nwb_bold(nwb, run_dir, m)
    try:
        with pynwb.NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{out}: cannot write the NWB file: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dtb export`` on ``subparsers`` (the ``dtb`` parser's)."""
    e = subparsers.add_parser(
        "export", help="write a run's spikes and BOLD for other tools (SONATA, NWB, TSV)",
        description="Export a complete run directory: --spikes writes one self-contained "
                    "SONATA file (no virtual datasets, no spikes/ parts needed), --nwb an "
                    "NWB file (spikes as units, BOLD as a time series; needs pynwb, pip "
                    "install 'dtb[nwb]'), --bold the BOLD per region as TSV with its BIDS "
                    "sidecar.")
    e.add_argument("run", metavar="RUN", help="run directory (dtb simulate, dtb demo)")
    e.add_argument("--spikes", metavar="OUT.h5", help="self-contained SONATA spikes file")
    e.add_argument("--nwb", metavar="OUT.nwb", help="NWB file (spikes and BOLD)")
    e.add_argument("--bold", metavar="OUT.tsv", help="BOLD per region, TSV + JSON sidecar")
    e.add_argument("--overwrite", action="store_true", help="replace existing files")
    return e


def run_export(a: argparse.Namespace) -> int:
    """``dtb export``: see ``add_export_parser``."""

    if not (a.spikes or a.nwb or a.bold):
        raise ConfigError(["export: nothing to write -- expected --spikes OUT.h5, --nwb "
                           "OUT.nwb or --bold OUT.tsv"])
    run = Path(a.run)
    _complete_run(run)
    done = []
    if a.spikes:
        done.append(consolidate_spikes(run, a.spikes, a.overwrite))
    if a.nwb:
        done.append(write_nwb(run, a.nwb, a.overwrite))
    if a.bold:
        src = run / BOLD_TSV
        if not src.is_file():
            raise InputError(str(src), "file", "missing", "a run that recorded BOLD (record "
                             "bold: {tr_ms: ...}, --record bold:TR_MS)")

        pairs = [(src, *_target(a.bold, a.overwrite))]
        pairs.append((sidecar_path(src), *_target(sidecar_path(pairs[0][1]), a.overwrite)))
        for s, d, tmp in pairs:
            try:
                shutil.copyfile(s, tmp)
                os.replace(tmp, d)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise OutputError(f"{d}: cannot write: {e}") from e
        done.append(pairs[0][1])
    for p in done:
        print(p)
    return 0
