"""What every reader of the brain package shares: access to an input file, its provenance
(sha256 and size), and how a value is shown in an :class:`dtb.errors.InputError` message
(a list cut to MAX_LISTED items, numpy scalars as plain numbers, a library's exception as
one line).  Units: sizes in bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtb.errors import InputError
from dtb.io.fileio import digest_file

PathLike = str | os.PathLike
MAX_LISTED = 10          # at most this many missing labels/names are listed in a message
LABEL_MAX = int(np.iinfo(np.int32).max)   # atlas labels are stored as int32
_MAX_REPR = 80           # a value longer than this (as repr) is cut in a message


class _Text(str):
    """A value shown without quotes in an InputError message ("no such file", "[1, 2]")."""

    def __repr__(self) -> str:
        return str(self)


def _short(v: Any) -> Any:
    """``v`` for a message: a long or odd value cut to _MAX_REPR characters."""
    text = repr(v)
    if len(text) <= _MAX_REPR:
        return v
    return _Text(text[:_MAX_REPR] + f"... ({len(text)} characters)")


def _listed(items: Iterable[Any]) -> _Text:
    """Show up to MAX_LISTED labels or names, with the total when there are more."""
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:MAX_LISTED])
    more = f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else ""
    return _Text(f"[{shown}{more}]")


def _plain(x: Any) -> int | float | str:
    """A numpy scalar as a plain Python value for messages (float32 1.2 shows as 1.2)."""
    if isinstance(x, np.floating):
        return float(str(x))
    return x.item() if isinstance(x, np.generic) else x


def _why(e: BaseException) -> _Text:
    """An exception from a library as one line: 'unreadable (EOFError: ...)'."""
    return _Text(f"unreadable ({type(e).__name__}: {' '.join(str(e).split())})")


def _check_distinct(path: str, field: str, keys: Sequence) -> None:
    """InputError naming the first key listed twice."""
    seen = set()
    for k in keys:
        if k in seen:
            raise InputError(path, field, _plain(k), "each region once")
        seen.add(k)


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Provenance:
    """Where one input came from: its role, the path as the user gave it, sha256 and size."""

    role: str
    path: str
    sha256: str
    bytes: int


def _existing_file(path: PathLike, role: str) -> Path:
    """The path as a Path, or InputError when it does not name a regular file."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, role, _Text("no such file"), "an existing file")
    if not p.is_file():
        raise InputError(path, role, _Text("not a regular file"), "a file, not a directory")
    return p


def provenance(role: str, path: PathLike) -> Provenance:
    """Hash a file (sha256, ``dtb.io.fileio.digest_file``) and record its size in bytes."""
    p = _existing_file(path, role)
    try:
        digest, size = digest_file(p)
    except OSError as e:
        raise InputError(path, role, _Text(f"unreadable ({e.strerror})"), "a readable file") from e
    return Provenance(role, str(path), digest, size)


def _role_path(prov: list[Provenance], role: str, default: str) -> str:
    """The path recorded for a role, or default when there is none."""
    return next((p.path for p in prov if p.role == role), default)


def _read_bytes(path: PathLike, role: str) -> bytes:
    """The whole file; InputError when it is missing or unreadable."""
    p = _existing_file(path, role)
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputError(path, role, _Text(f"unreadable ({e.strerror})"), "a readable file") from e


def _decode(path: str, role: str, raw: bytes) -> str:
    """Bytes as text (UTF-8, BOM dropped); InputError for binary or other encodings."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, role, _Text(f"undecodable byte at offset {e.start}"),
                         "a UTF-8 text file") from e
