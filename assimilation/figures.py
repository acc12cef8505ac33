"""Figures shared by ``dtb assimilate`` and ``dtb fit`` (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def fc_figure(plt: Any, path: Path, panels: Sequence[tuple[np.ndarray, str]],
              width_in: float) -> None:
    """Side-by-side FC matrices (R, R) with their titles (each prefixed "FC, "), on one
    Pearson-r colour scale from -1 to 1, saved to ``path``.  ``plt``: matplotlib.pyplot
    (imported by the caller, lazily)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(width_in, 4.6))
    for ax, (mat, title) in zip(axes, panels, strict=True):
        img = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(f"FC, {title}")
        ax.set_xlabel("region")
    axes[0].set_ylabel("region")
    fig.colorbar(img, ax=axes, label="Pearson r", shrink=0.8)
    fig.savefig(path, dpi=90)
    plt.close(fig)
