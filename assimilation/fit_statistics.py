"""The summary statistics a fit compares: FC (Fisher z, upper triangle), FCD quantiles,
regional variance and mean (FC and the variances optionally reduced to the prior
ensemble's leading principal axes, ``BlockBasis``),
computed from BOLD (T, R) by dtb.assimilation.summary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtb.assimilation import summary
from dtb.errors import ConfigError


@dataclass(frozen=True)
class StatisticsConfig:
    """Which statistics of a BOLD series (T, R) are fitted: the Fisher-z FC upper triangle
    (``fc``), ``fcd_quantiles`` quantiles of the FCD distribution (windows ``window`` TRs,
    ``step`` TRs apart; 0: none), log regional variances (``variance``) and log regional
    means (``mean``: for ``observable="rates"``, the log rates in Hz; BOLD's mean is 0).
    ``detrend``: each region detrended first (``summary.detrend``: "none", "constant",
    "linear"), the data's as the model's.

    ``fc_components``: 0 fits the whole FC triangle (R(R-1)/2 numbers); k > 0 fits its
    projection on the k leading principal components of the prior ensemble's FC triangles
    (``FcBasis``, found by ``Fitter`` from the first iteration's forward runs; at most N - 1
    for N members).  With thousands of FC numbers and a few members, the Kalman gain reads
    structure into sampling noise and the ensemble collapses; a few components carry what
    the parameters change.  ``variance_components``: the same for the R log regional
    variances (0: all R; k > 0: their projection on the prior ensemble's k leading axes).
    A twin at 80 regions fitted FC and all 80 variances with 8 members, and the ensemble
    collapsed as it once did on the whole FC triangle (benchmarks/README.md, "Regional
    parameters in a twin")."""

    fc: bool = True
    fcd_quantiles: int = 0
    window: int = 30
    step: int = 3
    variance: bool = False
    mean: bool = False
    fc_components: int = 0
    variance_components: int = 0
    detrend: str = "none"

    def __post_init__(self) -> None:
        bad = []
        if self.detrend not in ("none", "constant", "linear"):
            bad.append(f"detrend: {self.detrend!r} -- expected 'none', 'constant' or "
                       "'linear'")
        elif self.mean and self.detrend != "none":
            bad.append(f"mean: with detrend {self.detrend!r} -- expected detrend 'none' "
                       "(a detrended series has mean 0)")
        if not (isinstance(self.fc_components, int | np.integer) and self.fc_components >= 0):
            bad.append(f"fc_components: {self.fc_components!r} -- expected a whole number "
                       ">= 0 (0: the whole FC triangle)")
        elif self.fc_components and not self.fc:
            bad.append(f"fc_components: {self.fc_components} -- expected 0 when FC is not "
                       "fitted (fc=False)")
        if not (isinstance(self.variance_components, int | np.integer)
                and self.variance_components >= 0):
            bad.append(f"variance_components: {self.variance_components!r} -- expected a "
                       "whole number >= 0 (0: every region's log variance)")
        elif self.variance_components and not self.variance:
            bad.append(f"variance_components: {self.variance_components} -- expected 0 when "
                       "variances are not fitted (variance=False)")
        if not (isinstance(self.fcd_quantiles, int | np.integer) and self.fcd_quantiles >= 0):
            bad.append(f"fcd_quantiles: {self.fcd_quantiles!r} -- expected a whole number "
                       ">= 0")
        if bad:
            raise ConfigError(bad, "fit statistics")


@dataclass(frozen=True)
class BlockBasis:
    """A reduction of one block of the statistics, the ``centre.size`` (m_b) columns from
    ``start``: ``block (m_b,) -> components @ (block - centre)`` (k,).  ``centre`` (m_b,)
    the prior ensemble's mean of the block, ``components`` (k, m_b) orthonormal rows, its
    leading principal axes; ``explained`` (k,) the fraction of the ensemble's variance
    of the block along each.  ``name``: which block ("fc": the Fisher-z FC triangle, first
    in ``statistics``; "variance": the log regional variances).  The other columns pass
    unchanged."""

    centre: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    start: int = 0
    name: str = "fc"

    @property
    def size(self) -> int:
        """m_b, the length of the block it reduces."""
        return int(self.centre.size)

    def apply(self, S: np.ndarray) -> np.ndarray:
        """Statistics ``S`` (..., m) with the block projected: (..., m - m_b + k)."""
        S = np.asarray(S, float)
        a, b = self.start, self.start + self.size
        z = (S[..., a:b] - self.centre) @ self.components.T
        return np.concatenate([S[..., :a], z, S[..., b:]], axis=-1)

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"centre": self.centre, "components": self.components,
                "explained": self.explained, "start": np.array(self.start)}


#: the FC block's basis (start 0), the name it had before other blocks could be reduced
FcBasis = BlockBasis


def block_basis(S: np.ndarray, start: int, size: int, k: int, name: str) -> BlockBasis:
    """The ``BlockBasis`` of columns ``start:start + size`` of ``S`` (N runs, m
    statistics): their mean and the ``min(k, N - 1)`` leading right singular vectors of
    the centred block (the principal axes; signs fixed so that each axis' largest entry
    is positive)."""
    S = np.asarray(S, float)
    if S.ndim != 2 or S.shape[0] < 2 or not (size > 0 and 0 <= start
                                             and start + size <= S.shape[1]):
        raise ConfigError([f"statistics: shape {S.shape} -- expected (N >= 2 runs, m >= "
                           f"{start + size} statistics)"], "fit statistics")
    block = S[:, start:start + size]
    centre = block.mean(axis=0)
    _, sv, vt = np.linalg.svd(block - centre, full_matrices=False)
    k = min(int(k), S.shape[0] - 1, size)
    comps = vt[:k].copy()
    flip = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps *= flip[:, None]
    var = sv ** 2
    explained = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    return BlockBasis(centre, comps, explained, int(start), name)


def fc_basis(S: np.ndarray, n_fc: int, k: int) -> BlockBasis:
    """The ``BlockBasis`` of the FC block, the first ``n_fc`` columns of ``S``."""
    return block_basis(S, 0, n_fc, k, "fc")


def bases(S: np.ndarray, n_regions: int, cfg: StatisticsConfig) -> tuple[BlockBasis, ...]:
    """The reductions ``cfg`` asks for, found from the unreduced statistics ``S`` (N, m)
    of a prior ensemble: the FC block's (``fc_components``) and the log variances'
    (``variance_components``), in the order of the columns."""
    out = []
    if cfg.fc_components:
        out.append(fc_basis(S, n_fc(n_regions, cfg), cfg.fc_components))
    if cfg.variance_components:
        out.append(block_basis(S, n_fc(n_regions, cfg) + cfg.fcd_quantiles, n_regions,
                               cfg.variance_components, "variance"))
    return tuple(out)


def find(reductions: tuple[BlockBasis, ...], name: str) -> BlockBasis | None:
    """The reduction of block ``name`` ("fc", "variance") among ``reductions``, or None."""
    return next((b for b in reductions if b.name == name), None)


def reduce(S: np.ndarray, reductions: tuple[BlockBasis, ...]) -> np.ndarray:
    """Statistics ``S`` (..., m) with every block of ``reductions`` projected (the last
    block first, so that each ``start`` still counts unreduced columns)."""
    for b in sorted(reductions, key=lambda b: -b.start):
        S = b.apply(S)
    return np.asarray(S, float)


def n_fc(n_regions: int, cfg: StatisticsConfig) -> int:
    """How many statistics the FC block holds: R(R-1)/2, 0 without FC."""
    return n_regions * (n_regions - 1) // 2 if cfg.fc else 0


def statistics(bold: np.ndarray, cfg: StatisticsConfig = StatisticsConfig()) -> np.ndarray:
    """The fitted statistics of one BOLD series ``bold`` (T, R), concatenated (m,), before
    any ``BlockBasis`` reduction (FC first, then FCD quantiles, variances, means)."""
    if cfg.detrend != "none":
        bold = summary.detrend(bold, cfg.detrend)
    parts = []
    if cfg.fc:
        parts.append(summary.upper(summary.fc(bold, fisher_z=True)))
    if cfg.fcd_quantiles:
        q = (np.arange(cfg.fcd_quantiles) + 0.5) / cfg.fcd_quantiles
        parts.append(np.quantile(summary.fcd_values(bold, cfg.window, cfg.step), q))
    if cfg.variance:
        parts.append(np.log(summary.regional_variance(bold)))
    if cfg.mean:
        parts.append(np.log(np.maximum(bold.mean(axis=0), 1e-3)))
    if not parts:
        raise ConfigError(["statistics: none selected -- expected fc, fcd_quantiles, "
                           "variance or mean"], "fit statistics")
    return np.concatenate(parts)
