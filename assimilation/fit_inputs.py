"""``dtb fit``: the brain, the recorded BOLD and the group FC, read and checked (cheap:
nothing is simulated), into a ``FitInputs``.

The BOLD is read as ``dtb assimilate`` reads it (``observations.read_bold`` and
``resolve_regions``: a header of region labels or names), must cover every region of the
brain exactly once (the fit compares whole FC matrices), and is put in the brain's region
order (``BrainSpec.region_labels``), the order of the model's BOLD.  The fit and test TRs
are detrended separately (``--detrend``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dtb.assimilation.boldfiles import read_table
from dtb.assimilation.fit import HOMOTOPIC, FitParameter, _nominal, with_coupling
from dtb.assimilation.fit_options import FitOptions
from dtb.assimilation.observations import BoldData, read_bold, resolve_regions
from dtb.assimilation.summary import detrend
from dtb.brain.maps import (
    FC_STRENGTH,
    SC_STRENGTH,
    fc_strength_map,
    read_region_maps,
    sc_strength_map,
)
from dtb.brain.spec import BrainSpec
from dtb.errors import ConfigError, InputError
from dtb.io.fileio import sha256_file

__all__ = ["FitInputs", "load_inputs", "detrend", "read_group_fc", "with_maps"]


@dataclass
class FitInputs:
    """``spec`` the brain; ``fit`` (T_fit, R) and ``test`` (T_test, R) the detrended BOLD of
    the fit and held-out TRs in the brain's region order; ``fit_trs``/``test_trs`` their
    (start, stop) TR indices; ``tr_s`` seconds; ``group_fc`` (R, R) or None; ``source``
    what the manifest records (paths, SHA-256, TR and where it came from); ``params`` the
    options' parameters with their maps resolved for this brain (U,) per unit."""

    spec: Any
    fit: np.ndarray
    test: np.ndarray
    fit_trs: tuple[int, int]
    test_trs: tuple[int, int]
    tr_s: float
    group_fc: np.ndarray | None
    source: dict[str, Any]
    labels: np.ndarray
    names: list[str]
    params: list[FitParameter]


def _resolve_range(r: tuple[int | None, int | None] | None, default: tuple[int, int], T: int,
                   flag: str, src: str) -> tuple[int, int]:
    a, b = (None, None) if r is None else r
    a = default[0] if a is None else a
    b = default[1] if b is None else b
    if not 0 <= a < b <= T:
        raise InputError(src, flag, f"{a}:{b}", f"a range of TRs within the recording's "
                         f"{T} (0 <= A < B <= {T})")
    return a, b


def _load_brain(path: Path) -> Any:
    if not path.is_file():
        raise InputError(str(path), "file", "no such file" if not path.exists() else
                         "not a regular file", "a brain.h5 written by dtb build")
    return BrainSpec.load(path)


def _order(bold: Any, spec: Any, what: str) -> np.ndarray:
    """Column indices putting ``bold``'s labelled columns in the brain's region order."""
    want = [int(v) for v in np.asarray(spec.region_labels)]
    have = [int(v) for v in bold.labels]
    extra = [v for v in have if v not in want]
    missing = [v for v in want if v not in have]
    if extra or missing:
        parts = []
        if missing:
            parts.append(f"no column for the brain's region label(s) {missing[:8]}")
        if extra:
            parts.append(f"label(s) {extra[:8]} the brain lacks")
        raise InputError(bold.source, "header", "; ".join(parts),
                         f"one column for each of the brain's {len(want)} regions ({what} "
                         "compares whole FC matrices)")
    return np.array([have.index(v) for v in want])


def read_group_fc(path: Path, spec: Any) -> np.ndarray:
    """A group FC: a square CSV/TSV headed by region labels or names, in any order; returned
    (R, R) in the brain's region order.  Checked: square, symmetric to 1e-6, finite, values
    in [-1, 1]."""
    src = str(path)
    if not path.is_file():
        raise InputError(src, "file", "no such file", "a group FC table (R x R, headed by "
                         "region labels or names)")
    data, (lab, names), _ = read_table(src)
    fake = BoldData(np.asarray(data, float), lab, 1.0, src, names)
    fake = resolve_regions(fake, spec.region_labels, spec.region_names)
    m = fake.data
    if m.shape[0] != m.shape[1]:
        raise InputError(src, "shape", tuple(m.shape), "a square matrix, one row and column "
                         "per region")
    idx = _order(fake, spec, "a group FC baseline")
    m = m[np.ix_(idx, idx)]
    if not np.all(np.isfinite(m)) or np.abs(m).max() > 1 + 1e-9:
        raise InputError(src, "values", f"from {np.nanmin(m):.3g} to {np.nanmax(m):.3g}",
                         "finite correlations in [-1, 1]")
    if not np.allclose(m, m.T, atol=1e-6):
        raise InputError(src, "matrix", "not symmetric", "a symmetric FC matrix")
    return m


def load_inputs(o: FitOptions) -> FitInputs:
    """Read and check the brain, the BOLD (and the group FC); raises InputError /
    ConfigError.  Cheap: nothing is simulated."""
    spec = _load_brain(o.brain)
    bold = read_bold(o.bold, o.tr_s, labels=o.labels, dataset=o.dataset)
    header = "names" if bold.labels is None else "labels"
    bold = resolve_regions(bold, spec.region_labels, spec.region_names)
    idx = _order(bold, spec, "the fit")
    data = bold.data[:, idx]
    T = data.shape[0]
    src = str(o.bold)
    fit_trs = _resolve_range(o.fit_trs, (0, T // 2), T, "--fit-trs", src)
    test_trs = _resolve_range(o.test_trs, (fit_trs[1], T), T, "--test-trs", src)
    if fit_trs[0] < test_trs[1] and test_trs[0] < fit_trs[1]:
        raise ConfigError([f"--fit-trs {fit_trs[0]}:{fit_trs[1]} and --test-trs "
                           f"{test_trs[0]}:{test_trs[1]}: overlap -- expected held-out TRs "
                           "the fit never sees"], "dtb fit")
    least = max(o.window + 2, 10)
    for flag, (a, b) in (("--fit-trs", fit_trs), ("--test-trs", test_trs)):
        if b - a < least:
            raise InputError(src, flag, f"{a}:{b} ({b - a} TRs)",
                             f"at least {least} TRs (an FCD window of {o.window} + 2)")
    fit = detrend(data[fit_trs[0]:fit_trs[1]], o.detrend)
    test = detrend(data[test_trs[0]:test_trs[1]], o.detrend)
    for what, seg in (("fit", fit), ("test", test)):
        flat = np.flatnonzero(np.ptp(seg, axis=0) == 0)
        if flat.size:
            raise InputError(src, f"region label {int(spec.region_labels[flat[0]])}",
                             f"constant over the {what} TRs", "a varying signal")
    group = read_group_fc(o.group_fc, spec) if o.group_fc is not None else None
    _check_params(o, spec)
    params = with_maps(o.params, spec, o.maps, group)
    _check_tr(o, bold.tr_s, src)
    source = {"brain": str(o.brain.resolve()), "brain_sha256": sha256_file(o.brain),
              "bold": str(Path(o.bold).resolve()), "bold_sha256": sha256_file(o.bold),
              "tr_s": bold.tr_s, "tr_source": bold.tr_source, "time_points": T,
              "regions": int(len(idx)), "matched_by": header,
              "fit_trs": list(fit_trs), "test_trs": list(test_trs)}
    if o.group_fc is not None:
        source.update(group_fc=str(o.group_fc.resolve()),
                      group_fc_sha256=sha256_file(o.group_fc))
    if o.maps is not None:
        source.update(maps=str(o.maps.resolve()), maps_sha256=sha256_file(o.maps))
    return FitInputs(spec, fit, test, fit_trs, test_trs, float(bold.tr_s), group, source,
                     np.asarray(spec.region_labels, np.int64),
                     [str(n) for n in spec.region_names], params)


def with_maps(params: list[FitParameter], spec: Any, maps: Path | None,
              group_fc: np.ndarray | None = None) -> list[FitParameter]:
    """``params`` with each named map (``map_name``) resolved to its per-unit values (U,):
    a column of the region table ``maps``, the built-in ``sc_strength`` or, from the group
    FC ``group_fc`` (R, R, the brain's region order), ``group_fc_strength``, standardised
    over the brain's regions (dtb.brain.maps), then given to every unit of the region."""
    table = read_region_maps(maps) if maps is not None else None
    out = []
    for p in params:
        if p.map_name is None:
            out.append(p)
            continue
        if p.map_name == SC_STRENGTH:
            per_region = sc_strength_map(spec.weights)
        elif p.map_name == FC_STRENGTH:
            if group_fc is None:    # check_args asks for --group-fc first
                raise ConfigError([f"{p.name}: map {p.map_name!r} -- expected a group FC "
                                   "(--group-fc) to take it from"], "dtb fit")
            per_region = fc_strength_map(group_fc)
        elif table is None:  # check_args asks for --maps first; a library caller may not
            raise ConfigError([f"{p.name}: map {p.map_name!r} -- expected a region table "
                               f"of maps (--maps) with that column"], "dtb fit")
        else:
            per_region = table.for_brain(p.map_name, np.asarray(spec.region_labels),
                                         [str(n) for n in spec.region_names])
        out.append(replace(p, map=per_region[np.asarray(spec.unit_region, np.int64)]))
    return out


def _check_params(o: FitOptions, spec: Any) -> None:
    """Every fitted parameter names something the brain has (a family's hyperparameter, a
    family the long-range projections reach, left/right region pairs for ``homotopic``)."""
    fams = [f.name for f in spec.families]
    for p in o.params:
        if p.name.startswith("coupling."):
            fam = p.name.split(".", 1)[1]
            if fam not in fams:
                raise ConfigError([f"{p.name}: no family {fam!r} in {o.brain} -- expected "
                                   f"one of {fams}"], "dtb fit")
        elif p.name == HOMOTOPIC:  # the brain must have named left/right pairs
            try:
                with_coupling(spec, 1.0, homotopic=p.high)
            except ConfigError as e:
                raise ConfigError(e.problems, f"dtb fit ({o.brain})") from None
        elif not p.structural:
            try:
                _nominal(spec, p.name)
            except ConfigError as e:
                raise ConfigError(e.problems, f"dtb fit ({o.brain})") from None


def _check_tr(o: FitOptions, tr_s: float, src: str) -> None:
    steps = tr_s * 1e3 / o.substeps / o.dt_ms
    if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
        raise InputError(src, "tr", tr_s, f"a TR of whole steps of --dt {o.dt_ms} ms per "
                         f"substep ({o.substeps} substeps per TR): change --dt or --substeps")
