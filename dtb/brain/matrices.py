"""Region x region matrices from text (CSV, TSV, whitespace; MRtrix tck2connectome output)
or ``.npy`` files with the identity of their rows and columns (:func:`read_matrix`), the
entry checks (finite, >= 0) and the symmetrize policy for one-triangle matrices.  Entry
``[i, j]`` is row ``i``, column ``j`` of the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dtb.brain.reading import (
    LABEL_MAX,
    PathLike,
    Provenance,
    _check_distinct,
    _existing_file,
    _listed,
    _Text,
    _why,
    provenance,
)
from dtb.brain.regions import _read_label_file
from dtb.brain.tables import Rows, _is_int, _is_number, _numeric_rows, _read_rows
from dtb.errors import InputError


@dataclass
class LabelledMatrix:
    """A region x region matrix and the identity of its rows/columns.

    labels: (K,) int64, or None when the file identifies regions by name only.
    names: K names or None.  values: (K, K) float64, as read.
    provenance: the matrix file and, when one was read, the label file.
    """

    path: str
    labels: np.ndarray | None
    names: list[str] | None
    values: np.ndarray
    provenance: list[Provenance]


def _keys_from_cells(path: str, field: str, cells: list[str]) -> tuple[np.ndarray | None,
                                                                     list[str] | None]:
    """Header cells as (labels, None) when all are integers, else (None, names)."""
    if all(_is_int(c) for c in cells):
        bad = next((c for c in cells if not 0 < int(c) <= LABEL_MAX), None)
        if bad is not None:
            raise InputError(path, field, bad, f"region labels 1..{LABEL_MAX}")
        labels = np.array([int(c) for c in cells], dtype=np.int64)
        _check_distinct(path, field, labels.tolist())
        return labels, None
    if any(c == "" for c in cells):
        raise InputError(path, field, _Text("an empty cell"), "a label or name for every column")
    _check_distinct(path, field, cells)
    return None, list(cells)


def _int_header(rows: Rows) -> bool:
    """Whether an all-numeric first row is a header of integer labels: distinct positive
    integers followed by exactly one row per column (a (K+1) x K table, or K+1 columns when a
    row-label column follows)."""
    first = rows[0][1]
    if not all(_is_int(c) and int(c) > 0 for c in first) or len(set(first)) != len(first):
        return False
    body = rows[1:]
    return len(body) == len(first) and all(len(c) in (len(first), len(first) + 1)
                                           for _, c in body)


def _has_row_labels(header: list[str], body: Rows) -> bool:
    """Whether the body's first column holds row labels (pandas-style index column)."""
    n_body, n_head = len(body[0][1]), len(header)
    if n_body == n_head + 1:
        return True
    if n_body != n_head:
        return False
    return (header[0] == "" or not _is_number(body[0][1][0])
            or (not _is_int(header[0]) and all(_is_int(c) for c in header[1:])))


def _text_matrix(path: PathLike, role: str) -> tuple[np.ndarray, list[str] | None]:
    """Values and header cells (None when headerless) of a text matrix.

    A first row with a non-numeric cell is a header of region labels or names; an
    all-integer first row is a header when the table is (K+1) x K (see _int_header).  An
    optional first column of row labels must repeat the header exactly, in the same order.
    """
    rows = _read_rows(path, role)
    if all(_is_number(c) for c in rows[0][1]) and not _int_header(rows):
        return _numeric_rows(str(path), role, rows), None
    header, body = list(rows[0][1]), rows[1:]
    if not body:
        raise InputError(path, role, _Text("a header and no rows"), "one row per region")
    if _has_row_labels(header, body):
        if len(body[0][1]) == len(header):
            header = header[1:]
        for i, (line, cells) in enumerate(body):
            want = header[i] if i < len(header) else _Text("no more rows")
            if cells[0] != want:
                raise InputError(path, f"line {line}, column 1 (row label)", cells[0],
                                 f"{want!r}: row labels in the header's order")
        body = [(line, cells[1:]) for line, cells in body]
    for line, cells in body:
        if len(cells) != len(header):
            raise InputError(path, f"line {line}", _Text(f"{len(cells)} values"),
                             f"{len(header)} values, one per header column")
    return _numeric_rows(str(path), role, body), header


def _npy_matrix(path: PathLike, role: str) -> np.ndarray:
    """A 2-D real array from a .npy file as float64."""
    p = _existing_file(path, role)
    try:
        values = np.load(p, allow_pickle=False)
    except Exception as e:
        raise InputError(path, role, _why(e),
                         "a complete NumPy .npy file holding a 2-D numeric array") from e
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "biuf":
        raise InputError(path, "data type", str(getattr(values, "dtype", type(values))),
                         "a real numeric array")
    return values.astype(np.float64)


def _resolve_labels(labels: PathLike | Sequence[int] | np.ndarray
                    ) -> tuple[np.ndarray, list[str] | None, list[Provenance], str]:
    """labels= as (labels, names, provenance, description): a label file or a sequence of ints."""
    if isinstance(labels, (str, os.PathLike)):
        prov = [provenance("labels", labels)]
        lab, names = _read_label_file(labels)
        return lab, names, prov, str(labels)
    arr = np.asarray(labels)
    if (arr.ndim != 1 or arr.dtype.kind not in "iu" or len(arr) == 0
            or (arr <= 0).any() or (arr > LABEL_MAX).any()):
        raise InputError("labels=", None, _Text(str(arr.tolist())),
                         f"a label file path or a 1-D sequence of integer labels 1..{LABEL_MAX}")
    _check_distinct("labels=", None, arr.tolist())
    return arr.astype(np.int64), None, [], "labels="


def read_matrix(path: PathLike, labels: PathLike | Sequence[int] | None = None,
                *, role: str = "matrix") -> LabelledMatrix:
    """Read a square region x region matrix and the labels of its rows/columns.

    .npy: a 2-D array; labels= is required.  Anything else is text (CSV, TSV or
    whitespace-separated, '#' comments allowed, e.g. MRtrix tck2connectome output): a first
    row with non-numeric cells is a header of integer labels or region names (an optional
    first column of row labels must repeat it in order); without a header, labels= is
    required.  labels=: a label file (:func:`read_label_list`) or a sequence of integers; when
    both a header and labels= are given they must agree.  role names the matrix in messages.
    """
    prov = [provenance(role, path)]
    header = None
    if str(path).lower().endswith(".npy"):
        values = _npy_matrix(path, role)
    else:
        values, header = _text_matrix(path, role)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise InputError(path, "shape", tuple(values.shape), "a square region x region matrix")
    k = values.shape[0]
    head_labels, head_names = (_keys_from_cells(str(path), "header", header)
                               if header is not None else (None, None))
    if labels is None:
        if header is None:
            def expected(how: str) -> str:
                return (f"a header row of region labels, or {how} a label list file (one "
                        "label per line, or 'label'/'name' columns)")

            where = (path, "labels", _Text("none given"))
            raise InputError(*where, expected("labels=")).on_command_line(
                str(InputError(*where, expected("--labels FILE,"))))
        return LabelledMatrix(str(path), head_labels, head_names, values, prov)
    lab, names, lprov, where = _resolve_labels(labels)
    if len(lab) != k:
        raise InputError(where, "labels", _Text(f"{len(lab)} labels"),
                         f"{k} labels, one per row of {path} (label 0, the background or "
                         "unassigned streamlines, is not a region)")
    if header is not None:
        _check_header_agrees(str(path), head_labels, head_names, lab, names, where)
        names = names if names is not None else head_names
    return LabelledMatrix(str(path), lab, names, values, prov + lprov)


def _check_header_agrees(path: str, head_labels: np.ndarray | None,
                         head_names: list[str] | None, labels: np.ndarray,
                         names: list[str] | None, where: str) -> None:
    """InputError unless a header's labels (or names) equal those of labels= in order."""
    if head_labels is not None:
        same = np.array_equal(head_labels, labels)
        shown = head_labels.tolist()
    else:
        same = names is not None and list(names) == list(head_names)
        shown = head_names
    if not same:
        raise InputError(path, "header", _listed(shown),
                         f"the regions of {where} in the same order (or give only one of them)")


def _key_text(labels: np.ndarray | None, names: list[str] | None, i: int) -> str:
    """How region i is shown in messages: label 7, or name 'rA1'."""
    if labels is not None:
        return f"label {int(labels[i])}"
    return f"name {names[i]!r}" if names is not None else f"index {i}"


def _check_entries(path: str, role: str, values: np.ndarray,
                   labels: np.ndarray | None, names: list[str] | None) -> None:
    """InputError at the first entry that is NaN, infinite or negative."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i, j = (int(x) for x in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise InputError(path, f"{role} entry (row {_key_text(labels, names, i)}, column "
                               f"{_key_text(labels, names, j)})", float(values[i, j]),
                         "a finite number >= 0")


def _triangle(values: np.ndarray) -> str | None:
    """'upper' or 'lower' when only that off-diagonal triangle holds non-zeros, else None."""
    if values.shape[0] < 2:
        return None
    upper, lower = np.triu(values, 1).any(), np.tril(values, -1).any()
    if upper != lower:
        return "upper" if upper else "lower"
    return None


def _symmetry(path: str, role: str, values: np.ndarray, symmetrize: bool | None) -> np.ndarray:
    """Apply the symmetrize= policy to one matrix.

    None: InputError when only one triangle holds values (MRtrix's default output).
    True: mirror a triangular matrix, average a full one ((M + M.T) / 2).  False: as read.
    """
    side = _triangle(values)
    if symmetrize is None and side is not None:
        other = "lower" if side == "upper" else "upper"
        def expected(mirror: str, keep: str) -> str:
            return ("a full matrix (MRtrix tck2connectome writes only the upper triangle "
                    f"unless run with -symmetric): re-run with -symmetric, or {mirror} to "
                    f"mirror it{keep}")

        where = (path, f"{role}: {other} triangle", _Text("all zero"))
        raise InputError(*where, expected("pass symmetrize=True",
                                          " (symmetrize=False keeps it as read)")
                         ).on_command_line(str(InputError(*where, expected(
                             "give dtb build --symmetrize", ""))))
    if not symmetrize:
        return values
    if side is not None:
        return values + values.T - np.diag(np.diag(values))
    return (values + values.T) / 2.0
