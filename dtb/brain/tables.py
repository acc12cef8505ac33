"""Text tables as the imaging readers meet them: CSV, TSV or whitespace-separated, '#'
comments and blank lines skipped, UTF-8 (a BOM is dropped).  ``Rows`` keep each line's
1-based number so that every InputError names the line; :class:`_Table` reads a table with
a header row (case-insensitive column names); region labels and 1/0, true/false, yes/no
flags are parsed here.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

import numpy as np

from dtb.brain.reading import LABEL_MAX, PathLike, _decode, _listed, _read_bytes, _Text
from dtb.errors import InputError

_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
Rows = list[tuple[int, list[str]]]     # (1-based line number, cells)


def _split_rows(text: str) -> Rows:
    """Non-blank, non-comment ('#') lines split into stripped cells.

    The separator is chosen from the first such line: tab, else comma (CSV quoting honoured),
    else runs of whitespace.
    """
    lines = [(n, s) for n, s in enumerate(text.splitlines(), 1)
             if s.strip() and not s.lstrip().startswith("#")]
    if not lines:
        return []
    first = lines[0][1]
    if "\t" in first:
        return [(n, [c.strip() for c in s.split("\t")]) for n, s in lines]
    if "," in first:
        return [(n, [c.strip() for c in next(csv.reader([s]))]) for n, s in lines]
    return [(n, s.split()) for n, s in lines]


def _whitespace_rows(text: str) -> Rows:
    """Non-blank, non-comment lines split on runs of whitespace (TVB text files)."""
    return [(n, s.split()) for n, s in enumerate(text.splitlines(), 1)
            if s.strip() and not s.lstrip().startswith("#")]


def _read_rows(path: PathLike, role: str) -> Rows:
    """Rows of a text table file; InputError when it holds no data."""
    rows = _split_rows(_decode(str(path), role, _read_bytes(path, role)))
    if not rows:
        raise InputError(path, role, _Text("empty file"), "at least one row of data")
    return rows


def _is_number(cell: str) -> bool:
    """Whether a cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_int(cell: str) -> bool:
    """Whether a cell is a whole number written without a decimal point."""
    return bool(_INT_RE.match(cell))


def _numeric_rows(path: str, role: str, rows: Rows) -> np.ndarray:
    """Cells as a (rows, columns) float64 array; InputError at the first ragged row or bad cell."""
    n = len(rows[0][1])
    for line, cells in rows:
        if len(cells) != n:
            raise InputError(path, f"line {line}", _Text(f"{len(cells)} values"),
                             f"{n} values per row, like the first row")
    try:
        return np.array([cells for _, cells in rows], dtype=np.float64)
    except ValueError:
        pass
    for line, cells in rows:          # slow path: find the cell numpy could not parse
        for j, cell in enumerate(cells):
            if not _is_number(cell):
                raise InputError(path, f"line {line}, column {j + 1}", cell, "a number")
    return np.array([[float(c) for c in cells] for _, cells in rows], dtype=np.float64)


@dataclass
class _Table:
    """A text table with a header row: lower-cased column names, rows and their line numbers."""

    path: str
    header: list[str]
    rows: Rows

    @classmethod
    def read(cls, path: PathLike, role: str, rows: Rows | None = None) -> _Table:
        """Parse a header table; every row must have as many cells as the header."""
        rows = _read_rows(path, role) if rows is None else rows
        header = [c.strip().lower() for c in rows[0][1]]
        dup = next((c for c in header if header.count(c) > 1), None)
        if dup is not None:
            raise InputError(path, f"line {rows[0][0]}: header", dup, "distinct column names")
        for line, cells in rows[1:]:
            if len(cells) != len(header):
                raise InputError(path, f"line {line}", _Text(f"{len(cells)} cells"),
                                 f"{len(header)} cells, one per header column {header}")
        if len(rows) < 2:
            raise InputError(path, role, _Text("a header and no rows"), "one row per region")
        return cls(str(path), header, rows[1:])

    def pick(self, *names: str, required: str | None = None) -> str | None:
        """The first of names present as a column; InputError (naming `required`) when absent."""
        found = [n for n in names if n in self.header]
        if len(found) > 1:
            raise InputError(self.path, "header", _listed(found), "only one of these columns")
        if not found and required:
            raise InputError(self.path, "header", _listed(self.header),
                             f"a {required} column")
        return found[0] if found else None

    def cells(self, col: str) -> list[tuple[int, str]]:
        """(line, cell) of one column."""
        j = self.header.index(col)
        return [(line, cells[j]) for line, cells in self.rows]

    def numbers(self, col: str, expected: str, ok) -> np.ndarray:
        """A column as float64; InputError at the first cell that is not a number or fails ok."""
        out = []
        for line, cell in self.cells(col):
            try:
                v = float(cell)
            except ValueError:
                v = None
            if v is None or not np.isfinite(v) or not ok(v):
                raise InputError(self.path, f"line {line}: column '{col}'", cell, expected)
            out.append(v)
        return np.array(out, dtype=np.float64)

    def labels(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        """Region labels of a column: (labels (K,) int64, keep (rows,) bool).

        Label 0 (the background) rows are dropped (keep False); labels must be distinct
        positive integers.
        """
        out, keep, seen = [], [], {}
        for line, cell in self.cells(col):
            lab = _parse_label(self.path, f"line {line}: column '{col}'", cell)
            keep.append(lab != 0)
            if lab == 0:
                continue
            if lab in seen:
                raise InputError(self.path, f"line {line}: column '{col}'", lab,
                                 f"each region label once (also on line {seen[lab]})")
            seen[lab] = line
            out.append(lab)
        if not out:
            raise InputError(self.path, col, _Text("no labels other than 0"), "region labels > 0")
        return np.array(out, dtype=np.int64), np.array(keep, dtype=bool)


def _parse_label(path: str, field: str, cell: str) -> int:
    """A region label: a whole number >= 0 ("17" or "17.0")."""
    try:
        v = float(cell)
    except ValueError:
        v = float("nan")
    if not np.isfinite(v) or v != int(v) or v < 0 or v > LABEL_MAX:
        raise InputError(path, field, cell, f"a region label: a whole number 0..{LABEL_MAX}")
    return int(v)


def _parse_bool(path: str, field: str, cell: str) -> bool:
    """1/0, true/false, yes/no (any case)."""
    c = cell.strip().lower()
    if c in _TRUE or c in _FALSE:
        return c in _TRUE
    try:
        v = float(c)
    except ValueError:
        v = None
    if v in (0.0, 1.0):
        return v == 1.0
    raise InputError(path, field, cell, "1/0, true/false or yes/no")
