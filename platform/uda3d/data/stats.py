"""Label-free statistics that describe a site's images, for checking and reporting domain shift.

A subject's signature for one modality has two parts, both invariant to the stored intensity scale:
the brain-voxel quantiles divided by the brain median (contrast between tissues: TE/TR/TI choices,
bias field), and the median absolute difference between neighbouring voxels along each axis over the
median (texture: noise and thick-slice blur). ``site_separation`` compares signatures between and
within sites after scaling every feature by its pooled within-site spread (a Fisher-style
criterion), so no single feature's units dominate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SIGNATURE_QUANTILES = (0.05, 0.25, 0.75, 0.95)


def intensity_signature(volume: np.ndarray, mask: np.ndarray,
                        quantiles: Sequence[float] = SIGNATURE_QUANTILES) -> np.ndarray:
    """Contrast and texture features of one volume inside ``mask``: shape (len(quantiles) + ndim,)."""
    voxels = volume[mask].astype(np.float64)
    if voxels.size == 0:
        raise ValueError("mask selects no voxels")
    median = float(np.median(voxels))
    if median <= 0:
        raise ValueError("median brain intensity is not positive")
    contrast = np.quantile(voxels, quantiles) / median
    texture = []
    for axis in range(volume.ndim):
        n = volume.shape[axis]
        both = np.take(mask, range(n - 1), axis=axis) & np.take(mask, range(1, n), axis=axis)
        texture.append(np.median(np.abs(np.diff(volume.astype(np.float64), axis=axis))[both]) / median)
    return np.concatenate([contrast, texture])


def site_separation(signatures: Mapping[str, Sequence[np.ndarray]]) -> tuple[float, float]:
    """Mean distance between signatures of different sites, and within one site.

    Each feature is first divided by its pooled within-site standard deviation.

    Args:
        signatures: site name -> the signatures of its subjects (>= 2 sites, >= 2 subjects each).

    Returns:
        (between, within): between / within well above 1 means a measurable site shift.
    """
    groups = {k: np.asarray(v, dtype=np.float64) for k, v in signatures.items()}
    if len(groups) < 2 or any(len(g) < 2 for g in groups.values()):
        raise ValueError("need at least two sites with two subjects each")
    residuals = np.concatenate([g - g.mean(axis=0) for g in groups.values()])
    dof = len(residuals) - len(groups)
    spread = np.sqrt((residuals ** 2).sum(axis=0) / dof)
    spread[spread == 0] = 1.0
    scaled = {k: g / spread for k, g in groups.items()}
    names = list(scaled)
    within, between = [], []
    for i, a in enumerate(names):
        ga = scaled[a]
        within += [np.linalg.norm(ga[p] - ga[q]) for p in range(len(ga)) for q in range(p + 1, len(ga))]
        for b in names[i + 1:]:
            between += [np.linalg.norm(x - y) for x in ga for y in scaled[b]]
    return float(np.mean(between)), float(np.mean(within))
