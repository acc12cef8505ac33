"""Confound regression for observed BOLD, from an fMRIPrep-style confounds TSV.

``read_confounds(path, columns, n_samples)`` reads the columns chosen by name or shell-style
pattern (``trans_*``, ``a_comp_cor_0[0-4]``, as fMRIPrep's
``*_desc-confounds_timeseries.tsv`` names them) as a (T, K) matrix.  ``n/a`` (BIDS' missing
value) is accepted only in a column's first rows, where fMRIPrep leaves its derivatives and
``framewise_displacement`` undefined; those rows take the column's first defined value (as
nilearn's ``load_confounds`` does).  ``n/a`` anywhere else is refused.

``regress_confounds(bold, X)`` removes the confounds by ordinary least squares, region by
region: with ``Xc`` the confounds minus their means and ``A = [1, Xc]``, ``beta`` minimises
``|Y - A beta|^2`` and the result is ``Y - Xc beta[1:]``: the part of the signal that the
confounds explain is removed and every region keeps its mean, so ``psc`` may follow.  This is
the same projection as regressing on ``[1, X]`` and adding the mean back.

Every problem is an ``InputError`` naming the file, the column or row, the value and what was
expected: an unknown column or pattern, a row count other than the BOLD series', ``n/a``
after the first rows, non-numbers, too many regressors for the time points.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import InputError

__all__ = ["read_confounds", "regress_confounds"]

PathLike = str | os.PathLike
MISSING = "n/a"


def _listed(items: Sequence[str], most: int = 8) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def read_confounds(path: PathLike, columns: Sequence[str],
                   n_samples: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The chosen confound columns of the TSV (or CSV) at ``path``: ``(X, names)`` with ``X``
    (T, K) float64 in file order of the columns.  ``columns``: names or shell-style patterns,
    each of which must match at least one column.  ``n_samples``: the BOLD series' time
    points, which the table's rows must equal."""
    src = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError(src, "file", "no such file", "an existing confounds table (TSV)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(src, "file", f"unreadable ({e})", "a confounds table (TSV)") from e
    rows = [ln for ln in text.splitlines() if ln.strip()]
    if len(rows) < 2:
        raise InputError(src, "file", f"{len(rows)} lines", "a header and a row per time point")
    sep = "\t" if "\t" in rows[0] else ","
    header = [c.strip().strip('"') for c in rows[0].split(sep)]
    if not columns:
        raise InputError(src, "columns", [], "confound columns to regress out "
                         "(--confound-columns)")
    picked: list[int] = []
    for pat in columns:
        hits = [j for j, h in enumerate(header) if fnmatch.fnmatchcase(h, pat)]
        if not hits:
            raise InputError(src, "columns", pat, f"a column or pattern of the table (it has "
                             f"{_listed(header)})")
        picked += [j for j in hits if j not in picked]
    picked.sort()
    body = [[c.strip() for c in r.split(sep)] for r in rows[1:]]
    if n_samples is not None and len(body) != n_samples:
        raise InputError(src, "rows", len(body), f"{n_samples} rows, one per BOLD time point")
    X = np.empty((len(body), len(picked)))
    for k, j in enumerate(picked):
        defined = False
        for i, cells in enumerate(body):
            if len(cells) != len(header):
                raise InputError(src, f"row {i + 1}", f"{len(cells)} values",
                                 f"{len(header)} values, one per column of the header")
            c = cells[j]
            if c == MISSING:
                if defined:
                    raise InputError(src, f"row {i + 1}, column {header[j]}", c,
                                     "a number (n/a is accepted in a column's first rows only)")
                X[i, k] = np.nan
                continue
            try:
                X[i, k] = float(c)
            except ValueError:
                raise InputError(src, f"row {i + 1}, column {header[j]}", c,
                                 "a number") from None
            if not np.isfinite(X[i, k]):
                raise InputError(src, f"row {i + 1}, column {header[j]}", c, "a finite number")
            defined = True
        if not defined:
            raise InputError(src, f"column {header[j]}", MISSING, "some defined values")
        first = int(np.argmax(~np.isnan(X[:, k])))
        X[:first, k] = X[first, k]
    T = X.shape[0]
    if X.shape[1] + 1 >= T:
        raise InputError(src, "columns", len(picked), f"fewer than {T - 1} regressors for "
                         f"{T} time points")
    return X, [header[j] for j in picked]


def regress_confounds(bold: Any, X: np.ndarray) -> Any:
    """``bold`` (a ``BoldData``, data (T, R)) with the confounds ``X`` (T, K) removed by
    least squares, each region's mean kept (see the module docstring)."""
    Y = bold.data
    Xc = X - X.mean(axis=0)
    A = np.hstack([np.ones((X.shape[0], 1)), Xc])
    beta, *_ = np.linalg.lstsq(A, Y, rcond=None)
    return replace(bold, data=Y - Xc @ beta[1:])
