"""A small brain built from a random symmetric connectome headed by integer region labels
(no atlas), for the fit tests: ``build_labelled_brain(d, regions, neurons)``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _csv(path: Path, head: Sequence[object], rows: np.ndarray) -> Path:
    path.write_text(",".join(map(str, head)) + "\n"
                    + "\n".join(",".join(map(repr, r)) for r in rows.tolist()) + "\n")
    return path


def build_labelled_brain(d: Path, regions: int, neurons: int, seed: int = 1,
                         labels: Sequence[int] | None = None) -> Path:
    """``d/brain.h5`` from ``dtb build --sc --lengths``: SC weights U(0.1, 1) symmetric,
    tracts 30 mm, region labels 1..R (or ``labels``)."""
    from dtb.cli.main import main

    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 1, (regions, regions))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    ln = np.full((regions, regions), 30.0)
    np.fill_diagonal(ln, 0)
    head = list(labels) if labels is not None else list(range(1, regions + 1))
    _csv(d / "sc.csv", head, w)
    _csv(d / "len.csv", head, ln)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["build", "--sc", str(d / "sc.csv"), "--lengths", str(d / "len.csv"),
                     "--neurons", str(neurons), "-o", str(d / "brain.h5"), "-q"]) == 0
    return d / "brain.h5"
