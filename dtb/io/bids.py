"""BIDS conventions for BOLD tables: JSON sidecars and region-headed TSV files.

- ``sidecar_path(path)``: the JSON beside a data file, with the same name and ``.json`` for
  its suffix (``sub-01_task-rest_bold.nii.gz`` -> ``sub-01_task-rest_bold.json``,
  ``..._timeseries.tsv`` -> ``..._timeseries.json``).  BIDS' inheritance of sidecars from
  folders above is not followed: only the file beside the data counts.
- ``sidecar_tr(path)``: the repetition time that sidecar records, in seconds:
  ``RepetitionTime`` (s), or ``SamplingFrequency`` (Hz; TR = 1 / f), as BIDS names them for
  images and for derived time series.  Both given must agree.
- ``region_header(labels, names)``: the header of a region table: the region names when they
  are distinct and none is a number (so a reader cannot take one for a label), else the
  integer labels.
- ``write_bold_tsv(path, data, labels, names, tr_s)``: a (T, R) BOLD table as TSV headed by
  ``region_header`` plus its sidecar (``RepetitionTime``), which ``dtb assimilate --bold``
  reads back without ``--tr``.

Every problem with a sidecar is an ``InputError`` naming the sidecar, the field, the value and
what was expected.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import ArgumentError, InputError
from dtb.io.rundir import write_atomic

__all__ = ["sidecar_path", "sidecar_tr", "region_header", "write_bold_tsv", "MAX_TR_S"]

PathLike = str | os.PathLike
MAX_TR_S = 60.0
_SUFFIXES = (".nii.gz", ".tsv.gz", ".nii", ".tsv", ".csv", ".txt", ".npy", ".h5", ".hdf5")


def sidecar_path(path: PathLike) -> Path:
    """The BIDS JSON sidecar's path for the data file ``path`` (it need not exist)."""
    p = Path(path)
    name = p.name
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            return p.with_name(name[: -len(suf)] + ".json")
    return p.with_name(p.stem + ".json")


def _positive(where: str, field: str, v: Any, expected: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v <= 0:
        raise InputError(where, field, v, expected)
    return float(v)


def sidecar_tr(path: PathLike) -> tuple[str, str, float] | None:
    """``(sidecar, field, TR in s)`` from the JSON sidecar beside ``path``, or None when
    there is no sidecar or it records no TR.  InputError for a sidecar that is not a JSON
    object or holds a TR that is not a positive number of seconds up to ``MAX_TR_S``."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    where = str(side)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(where, "file", f"unreadable ({e})", "a JSON object (a BIDS "
                         "sidecar)") from e
    if not isinstance(meta, dict):
        raise InputError(where, "file", type(meta).__name__, "a JSON object (a BIDS sidecar)")
    tr = fs = None
    if "RepetitionTime" in meta:
        tr = _positive(where, "RepetitionTime", meta["RepetitionTime"],
                       f"a repetition time in seconds, in (0, {MAX_TR_S:g}] (BIDS: seconds)")
        if tr > MAX_TR_S:
            raise InputError(where, "RepetitionTime", meta["RepetitionTime"],
                             f"a repetition time in seconds, in (0, {MAX_TR_S:g}] (BIDS "
                             "gives it in seconds, not ms)")
    if "SamplingFrequency" in meta:
        fs = _positive(where, "SamplingFrequency", meta["SamplingFrequency"],
                       "a sampling frequency in Hz > 0")
        if 1.0 / fs > MAX_TR_S:
            raise InputError(where, "SamplingFrequency", meta["SamplingFrequency"],
                             f"a sampling frequency in Hz of at least {1 / MAX_TR_S:.4g}")
    if tr is not None and fs is not None and abs(tr - 1.0 / fs) > 1e-3:
        raise InputError(where, "SamplingFrequency", meta["SamplingFrequency"],
                         f"1 / RepetitionTime = {1 / tr:.6g} Hz (the two fields disagree)")
    if tr is not None:
        return where, "RepetitionTime", tr
    if fs is not None:
        return where, "SamplingFrequency", 1.0 / fs
    return None


def is_number(s: str) -> bool:
    """Whether the text ``s`` reads as a number (a label column, not a name)."""
    try:
        float(s)
    except ValueError:
        return False
    return True


def region_header(labels: Sequence[int] | np.ndarray, names: Sequence[str] | None
                  ) -> list[str]:
    """Column names for a region table: ``names`` when they are distinct, non-empty, free
    of tabs, commas and quotes, none reads as a number, and they say more than the labels;
    otherwise the labels."""
    labs = [str(int(v)) for v in labels]
    if names is None:
        return labs
    nm = [str(n).strip() for n in names]
    usable = (len(set(nm)) == len(nm) and all(nm)
              and not any(is_number(n) or any(c in n for c in "\t,\"'") for n in nm)
              and nm != labs)
    return nm if usable else labs


def write_bold_tsv(path: PathLike, data: np.ndarray, labels: Sequence[int] | np.ndarray,
                   names: Sequence[str] | None, tr_s: float,
                   meta: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Write ``data`` (T time points, R regions; BOLD as a fractional signal change) as a
    TSV headed by ``region_header(labels, names)``, and its JSON sidecar
    (``RepetitionTime`` = ``tr_s`` seconds, ``Units``, ``Columns``, the column labels and
    ``meta``), each atomically.  Returns ``{file name: {"path", "sha256", "bytes"}}`` for
    the two files."""

    data = np.asarray(data, float)
    head = region_header(labels, names)
    if data.ndim != 2 or data.shape[1] != len(head):
        raise ArgumentError(f"data shape {data.shape} does not match {len(head)} regions")
    buf = io.StringIO()
    buf.write("\t".join(head) + "\n")
    np.savetxt(buf, data, delimiter="\t", fmt="%.10g")
    p = Path(path)
    side = sidecar_path(p)
    info = {"RepetitionTime": float(tr_s), "Units": "fractional signal change",
            "Columns": head, "RegionLabels": [int(v) for v in labels],
            **(meta or {})}
    out = {}
    for f, text, what in ((p, buf.getvalue(), "BOLD table"),
                          (side, json.dumps(info, indent=2) + "\n", "BOLD sidecar")):
        d, s = write_atomic(f, text.encode(), what)
        out[f.name] = {"path": f.name, "sha256": d, "bytes": s}
    return out
