"""The long-range part of a brain's recipe, changed after the build.

One transform, used by ``dtb build`` (``--coupling``, ``--lr-inhibitory``,
``--lr-sc-exponent``) and by the inversion mode's forward runs (``dtb.assimilation.fit``),
which estimates the same three numbers per subject:

- ``coupling`` G: every long-range rule's weight times G (the global coupling of
  whole-brain models);
- ``targets``: a further factor on the long-range weights onto one family
  (``{"I": 0.25}``).  The builder matches every long-range input to an E cell with one to
  an I cell; that feed-forward inhibition cancels the drive that correlates regions
  (``benchmarks/README.md``, regime study);
- ``sc_exponent`` a: each unit's long-range in-degree times (s / <s>)^a, rounded per unit,
  s its region's SC in-strength (row sum) and <s> its neuron-weighted mean.  With a = 0
  every neuron gets the same long-range in-degree (row-normalised coupling), which
  amplifies one global mode; a = 0.5 let the free run's FC follow the subject's.

Weights are the builder's numbers (dimensionless factors on the receptor conductances);
nothing here touches the unit-local rules.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from dtb.errors import ConfigError

__all__ = ["scale_long_range"]


def scale_long_range(spec: Any, coupling: float = 1.0, targets: dict[str, float] | None = None,
                     sc_exponent: float = 0.0, where: str = "long-range recipe") -> Any:
    """A copy of the BrainSpec ``spec`` with its long-range rules changed (see the module
    docstring); ``spec`` itself is left as it is."""
    targets = dict(targets or {})
    bad = [] if (np.isfinite(coupling) and coupling >= 0) else [
        f"coupling: {coupling!r} -- expected a finite factor >= 0"]
    fams = {f.name for f in spec.families}
    bad += [f"coupling.{k}: {v!r} -- expected a family ({', '.join(sorted(fams))}) and a "
            "finite factor >= 0" for k, v in targets.items()
            if k not in fams or not (np.isfinite(v) and v >= 0)]
    if not np.isfinite(sc_exponent):
        bad.append(f"sc_exponent: {sc_exponent!r} -- expected a finite number")
    if bad:
        raise ConfigError(bad, where)
    rel = None
    if sc_exponent != 0.0:
        strength = np.asarray(spec.weights, float).sum(axis=1)[spec.unit_region]
        rel = strength / np.average(strength, weights=spec.neurons_per_unit())
    out = copy.copy(spec)
    rules = []
    for r in spec.rules:
        r2 = copy.copy(r)
        if r.kind == "long_range":
            if not isinstance(r.weight, int | float | np.integer | np.floating):
                raise ConfigError([f"rules: {r.source}->{r.target} long_range weight "
                                   f"{r.weight!r} -- expected a number to scale"], where)
            r2.weight = float(r.weight) * float(coupling) * float(targets.get(r.target, 1.0))
            if rel is not None:
                r2.k = np.floor(np.asarray(r.k) * rel ** sc_exponent + 0.5).astype(np.int64)
        rules.append(r2)
    out.rules = rules
    return out
