"""Reading a brain file (HDF5, written by ``BrainSpec.save``) field by field: every way a
dataset or attribute can be wrong (missing, truncated, unreadable, not JSON, of the wrong
type) becomes an InputError naming the file and the field, so that ``BrainSpec.load``
never lets an h5py, JSON or numpy exception escape for a bad file.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from dtb.brain.reading import _short, _Text
from dtb.errors import InputError


class BrainFileReader:
    """Reads a brain file's datasets and attributes, turning every way one can be wrong
    (missing, unreadable, not JSON, of the wrong type) into an InputError naming it."""

    def __init__(self, h: Any, path: str):
        self.h, self.path = h, path

    def _fail(self, field: str, value: Any, expected: str, e: BaseException | None = None):
        err = InputError(self.path, field, value, expected)
        return err.with_traceback(None) if e is None else err

    def group(self, g: Any, name: str, where: str = "") -> Any:
        field = f"{where}/{name}" if where else name
        try:
            sub = g[name]
        except (KeyError, OSError, RuntimeError) as e:
            raise InputError(self.path, field, "missing",
                             "a complete brain file (is it truncated?)") from e
        if not isinstance(sub, h5py.Group):
            raise InputError(self.path, field, "not a group", "a group of the brain file")
        return sub

    def array(self, name: str, dtype: Any = None) -> np.ndarray:
        try:
            d = self.h[name]
        except (KeyError, OSError, RuntimeError) as e:
            raise InputError(self.path, name, "missing",
                             "a complete brain file (is it truncated?)") from e
        if not isinstance(d, h5py.Dataset):
            raise InputError(self.path, name, "not a dataset", "a dataset of the brain file")
        try:
            a = np.asarray(d[()])
        except (OSError, RuntimeError, ValueError, TypeError) as e:
            raise InputError(self.path, name, _Text(f"unreadable ({e})"),
                             "a complete brain file (is it truncated?)") from e
        if dtype is None:
            return a
        ok = {np.int64: "iu", bool: "b?iu", float: "fiu"}.get(dtype)
        if ok is not None and a.dtype.kind not in ok:
            raise InputError(self.path, name, _Text(f"dtype {a.dtype}"),
                             {np.int64: "integers", bool: "booleans",
                              float: "numbers"}[dtype])
        return a.astype(dtype)

    def attr(self, g: Any, name: str, kind: type, where: str = "") -> Any:
        field = f"{where}.attrs['{name}']" if where else name
        try:
            if name not in g.attrs:
                raise InputError(self.path, field, "missing",
                                 "a complete brain file (is it truncated?)")
            v = g.attrs[name]
        except (OSError, RuntimeError, TypeError, ValueError) as e:
            raise InputError(self.path, field, _Text(f"unreadable ({e})"),
                             "an attribute written by dtb build") from e
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        if kind is int:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InputError(self.path, field, _short(v), "an integer")
            return int(v)
        if not isinstance(v, str):
            raise InputError(self.path, field, _short(v), "a string")
        return str(v)

    def json(self, g: Any, name: str, kind: Any, where: str = "") -> Any:
        text = self.attr(g, name, str, where)
        field = f"{where}.attrs['{name}']" if where else name
        try:
            v = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise InputError(self.path, field, _short(text),
                             f"JSON ({type(e).__name__}: {str(e)[:80]})") from None
        if not isinstance(v, kind) or isinstance(v, bool):
            want = {dict: "a JSON object", list: "a JSON list"}.get(kind, "a number or a "
                                                                          "JSON object")
            raise InputError(self.path, field, _short(v), want)
        return v
