"""Analysis of run directories: open a run, read its spikes in chunks, compute statistics.

    >>> from dtb.analysis import open_run
    >>> run = open_run("runs/demo")
    >>> run.dataset                     # xarray.Dataset backed by dask arrays (series.zarr)
    >>> run.dataset.unit_rate.mean("time_unit").compute()
    >>> ids, cv = cv_isi(run.spikes, "E")           # streams through spikes.h5
    >>> fc = functional_connectivity(run.dataset.bold)

Everything here reads lazily: the Dataset's arrays are dask arrays over the Zarr chunks and
the spike statistics stream through ``spikes.h5`` a chunk at a time, so outputs larger than
memory are fine.  Units: ms for times, Hz for rates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import xarray as xr

from dtb.analysis.spikes import (
    SpikeReader,
    binned_counts,
    count_correlation,
    cv_isi,
    cv_isi_grouped,
    population_rate,
)
from dtb.errors import InputError
from dtb.io.runfiles import DamagedOutput, format_problem, verify_outputs

__all__ = ["Run", "open_run", "SpikeReader", "cv_isi", "cv_isi_grouped", "count_correlation",
           "binned_counts", "population_rate", "functional_connectivity", "mean_rates"]


class Run:
    """A run directory opened for analysis.

    ``manifest``: the manifest (dict); ``dataset``: the dense series (xarray.Dataset over
    dask arrays; empty when the run recorded none); ``spikes``: a SpikeReader (None without
    spikes.h5); ``sizes``: {population: neurons}; ``dt``, ``t_stop`` in ms.

    Opening checks the run (dtb.io.runfiles.verify_outputs): every file the manifest lists is
    present with its recorded size, and its recorded SHA-256 when ``verify`` is true (None:
    when the outputs hold at most 256 MiB; False: sizes only); every part file the virtual
    datasets of ``spikes.h5`` read is present.  A damaged run raises ``DamagedOutput``
    (an InputError) naming the file, instead of reading fill values (spikes at t = 0, NaN
    rates).
    """

    def __init__(self, path: str | Path, chunk: int | None = None,
                 verify: bool | None = None):

        self.path = Path(path)
        try:
            self.manifest: dict[str, Any] = json.loads((self.path / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise InputError(str(self.path / "manifest.json"), None, why, "the manifest of a run "
                             "directory written by dtb simulate or dtb demo") from e
        if not isinstance(self.manifest, dict):
            problem: str | None = "not a JSON object"
        else:
            problem = format_problem(self.manifest)
            if problem is None and self.manifest.get("format") != "dtb-run":
                problem = f"format {self.manifest.get('format')!r} (not a simulation)"
        if problem is not None:
            raise DamagedOutput(f"{self.path / 'manifest.json'}: {problem} -- expected the "
                                "manifest of a run directory written by dtb simulate or dtb "
                                "demo")
        if self.manifest.get("status") == "complete":
            verify_outputs(self.path, self.manifest, checksums=verify)
        _check_virtual_sources(self.path / "spikes.h5")
        self.status = self.manifest.get("status")
        self.sizes = _sizes(self.manifest)
        sim = self.manifest.get("config", {}).get("simulation", {})
        self.dt = float(sim.get("dt", 0.1))
        timings = self.manifest.get("timings") or {}
        self.t_stop = float(timings.get("model_time_ms") or sim.get("t", 0.0))
        self.dataset = self._open_series()
        spikes = self.path / "spikes.h5"
        self.spikes = (SpikeReader(spikes, self.sizes, **({"chunk": chunk} if chunk else {}))
                       if spikes.exists() else None)

    def _open_series(self) -> Any:
        store = self.path / "series.zarr"
        if not store.exists():
            return xr.Dataset()
        return xr.open_zarr(str(store), consolidated=False, zarr_format=3)

    def close(self) -> None:
        if self.spikes is not None:
            self.spikes.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<dtb run {str(self.path)!r}: status {self.status}, {len(self.sizes)} "
                f"populations, {self.t_stop:g} ms, series {list(self.dataset.data_vars)}>")


def _check_virtual_sources(path: Path) -> None:
    """Every file the virtual datasets of HDF5 file ``path`` read is present (HDF5 would
    give its fill value for a missing one: spikes at t = 0); raises DamagedOutput."""


    if not path.is_file():
        return
    missing: set[str] = set()
    try:
        with h5py.File(path, "r") as f:
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                    for vs in obj.virtual_sources():
                        src = Path(vs.file_name)
                        src = src if src.is_absolute() else path.parent / src
                        if vs.file_name != "." and not src.is_file():
                            missing.add(str(src))
            f.visititems(visit)
    except OSError as e:
        raise DamagedOutput(f"{path}: unreadable HDF5 ({e}) -- the file is damaged; "
                            "restore it or run again") from e
    if missing:
        first = sorted(missing)[0]
        raise DamagedOutput(f"{first}: missing -- {path} reads its spikes from it "
                            f"({len(missing)} part file(s) missing); the run directory is "
                            "damaged (restore the file or run again)")


def _sizes(m: dict[str, Any]) -> dict[str, int]:
    sizes = ((m.get("outputs") or {}).get("spikes") or {}).get("sizes")
    if sizes:
        return {k: int(v) for k, v in sizes.items()}
    pops = (m.get("config") or {}).get("populations")
    if pops:
        return {p["name"]: int(p["size"]) for p in pops}
    rates, counts = m.get("rates_hz") or {}, m.get("outputs", {}).get("spikes", {})
    t = (m.get("timings") or {}).get("model_time_ms")
    out = {}
    for name, r in rates.items():  # a brain run: size = spikes / (rate * time)
        n = counts.get("populations", {}).get(name)
        if r and n and t:
            out[name] = int(round(n / (r * t * 1e-3)))
    return out


def open_run(path: str | Path, chunk: int | None = None, verify: bool | None = None) -> Run:
    """Open a run directory (see Run); ``chunk``: spikes per read for the spike reader;
    ``verify``: check every listed output's SHA-256 (None: when small; sizes always)."""
    return Run(path, chunk, verify)


def functional_connectivity(bold: Any, dim: str | None = None) -> Any:
    """Pearson correlation between the columns of ``bold`` (an xarray.DataArray
    (time, unit), dask-backed or not) over time: an (unit, unit) DataArray with the unit
    coordinates, computed chunk-wise (X^T X of the standardised series; one pass over the
    time chunks).  Constant columns give NaN."""

    tdim = dim or bold.dims[0]
    udim = [d for d in bold.dims if d != tdim][0]
    x = bold.transpose(tdim, udim).data
    x = x if isinstance(x, da.Array) else da.from_array(np.asarray(x))
    x = x.astype(np.float64)
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    cov = (xc.T @ xc) / n
    sd = da.sqrt(da.diagonal(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (cov / sd[:, None] / sd[None, :]).compute()
    other = f"{udim}_2"
    coords = {udim: bold[udim].values, other: bold[udim].values}
    return xr.DataArray(r, dims=(udim, other), coords=coords, name="fc",
                        attrs={"description": "Pearson correlation over time"})


def mean_rates(run: Run) -> dict[str, float]:
    """Mean rate per population (Hz) over the run, from the spike counts in spikes.h5."""
    if run.spikes is None:
        return {}
    return {p: run.spikes.count(p) / (run.sizes[p] * run.t_stop * 1e-3)
            for p in run.spikes.populations if run.sizes.get(p) and run.t_stop > 0}
