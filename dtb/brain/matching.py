"""Pairing region sets explicitly, by integer label or by name, never by position
(:func:`match`): the connectome against the atlas, lengths against weights, PET against
the regions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dtb.brain.reading import _check_distinct, _listed, _Text
from dtb.errors import InputError


def _keys_of(other: Any) -> tuple[np.ndarray | None, list[str] | None, str | None]:
    """(labels, names, path) of a Connectome, RegionTable, LabelledMatrix or {label: value}."""
    if isinstance(other, Mapping):
        return np.array([int(k) for k in other], dtype=np.int64), None, None
    prov = getattr(other, "provenance", None) or []
    path = getattr(other, "path", None) or (prov[0].path if prov else None)
    return getattr(other, "labels", None), getattr(other, "names", None), path


def match(reference_labels: np.ndarray | Sequence[int] | None,
          reference_names: Sequence[str] | None, other: Any, what: str,
          *, reference: str = "atlas", path: str | None = None,
          allow_extra: bool = False) -> np.ndarray:
    """Pair another region set with a reference one, explicitly: never by position.

    other: a Connectome, RegionTable, LabelledMatrix, or a {label: value} mapping (PET).
    Regions are matched by integer label when both sides have labels, otherwise by name
    (e.g. a TVB connectome against atlas names from a lookup table).  Returns idx (K,) intp
    with ``other_array[idx]`` in the reference's order (``M[np.ix_(idx, idx)]`` for
    matrices).  InputError listing up to MAX_LISTED reference regions missing from `what`
    and, unless allow_extra, regions of `what` missing from the reference.  path: the file
    named in messages (default: the other's first provenance path).
    """
    o_labels, o_names, o_path = _keys_of(other)
    where = path or o_path or what
    if reference_labels is not None and o_labels is not None:
        kind = "labels"
        ref, oth = [int(x) for x in reference_labels], [int(x) for x in o_labels]
    elif reference_names is not None and o_names is not None:
        kind = "names"
        ref, oth = [str(x) for x in reference_names], [str(x) for x in o_names]
    else:
        have = "labels" if o_labels is not None else "names" if o_names is not None else "nothing"
        raise InputError(where, "region identity", _Text(f"the {what} has {have}"),
                         f"integer labels or region names on both the {reference} and the "
                         f"{what} (give the {reference} a lookup table of names to match by "
                         "name)")
    _check_distinct(where, f"{kind} in the {what}", oth)
    _check_distinct(where, f"{kind} in the {reference}", ref)
    pos = {key: i for i, key in enumerate(oth)}
    missing = [key for key in ref if key not in pos]
    if missing:
        raise InputError(where, f"{kind} in the {reference} missing from the {what}",
                         _listed(missing), f"every {reference} region in the {what}")
    if not allow_extra:
        known = set(ref)
        extra = [key for key in oth if key not in known]
        if extra:
            raise InputError(where, f"{kind} in the {what} missing from the {reference}",
                             _listed(extra), f"every {what} region in the {reference}")
    return np.array([pos[key] for key in ref], dtype=np.intp)
