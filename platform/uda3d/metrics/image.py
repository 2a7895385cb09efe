"""PSNR, SSIM and MAE of a synthesized volume against the true one, over the brain or the whole volume.

Two conventions are reported (docs/method.md section 4): the method's (whole cropped volume, background
included, PSNR with the *prediction's* range) so numbers compare with the paper's code, and the
honest one (brain mask, fixed data range 1 because inputs and targets are min-max scaled to [0, 1]).
SSIM uses MONAI's implementation (3D Gaussian window 11^3, sigma 1.5, K1 0.01, K2 0.03, the method's
settings) and averages its SSIM map over the valid region, or over the mask.

    PSNR = 10 log10(R^2 / MSE);  MAE = mean |x - y|
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5


def _as_tensor(x) -> torch.Tensor:
    return x.detach().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")


def mae(pred, target, mask=None) -> float:
    """Mean absolute error over all voxels or over ``mask``."""
    p, t = _as_tensor(pred), _as_tensor(target)
    _check(p, t)
    err = (p - t).abs()
    return float(err[_as_tensor(mask) > 0].mean() if mask is not None else err.mean())


def psnr(pred, target, data_range: float | None = 1.0, mask=None) -> float:
    """PSNR in dB; ``data_range=None`` uses the prediction's max - min (the method's convention).

    Identical volumes give ``math.inf`` (MSE = 0), which callers must treat explicitly.
    """
    p, t = _as_tensor(pred), _as_tensor(target)
    _check(p, t)
    diff = (p - t) ** 2
    mse = float(diff[_as_tensor(mask) > 0].mean() if mask is not None else diff.mean())
    r = float(p.max() - p.min()) if data_range is None else float(data_range)
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(r * r / mse)


def ssim_map(pred, target, data_range: float = 1.0) -> torch.Tensor:
    """MONAI's SSIM map of two 3D volumes (valid region: shrinks by kernel - 1 per axis)."""
    from monai.metrics.regression import KernelType, compute_ssim_and_cs

    p, t = _as_tensor(pred), _as_tensor(target)
    _check(p, t)
    if p.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {tuple(p.shape)}")
    if min(p.shape) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs every size >= {SSIM_KERNEL}, got {tuple(p.shape)}")
    full, _ = compute_ssim_and_cs(p[None, None], t[None, None], spatial_dims=3,
                                  kernel_size=[SSIM_KERNEL] * 3, kernel_sigma=[SSIM_SIGMA] * 3,
                                  data_range=data_range, kernel_type=KernelType.GAUSSIAN, k1=0.01, k2=0.03)
    return full[0, 0]


def ssim(pred, target, data_range: float = 1.0, mask=None) -> float:
    """Mean SSIM over the valid region, or over the part of ``mask`` inside it."""
    return mean_ssim(ssim_map(pred, target, data_range), mask)


def mean_ssim(smap: torch.Tensor, mask=None) -> float:
    """The mean of an SSIM map (``ssim_map``) over its valid region, or over the part of ``mask`` inside it."""
    if mask is None:
        return float(smap.mean())
    half = SSIM_KERNEL // 2
    m = _as_tensor(mask)[half:-half, half:-half, half:-half] > 0
    return float(smap[m].mean()) if bool(m.any()) else float("nan")


def finite(values: Iterable[float]) -> list[float]:
    """The finite values: the one rule for every mean over subjects.

    PSNR is infinite for an exact reconstruction (and NaN for a degenerate one); such a subject is
    left out of that metric's mean, and only of that metric's. A metric with no finite value is NaN.
    """
    return [float(v) for v in values if math.isfinite(float(v))]


def mean_metrics(records: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over volumes, by the rule of ``finite`` (every metric present stays a key)."""
    values: dict[str, list[float]] = {}
    for record in records:
        for k, v in record.items():
            values.setdefault(k, []).append(float(v))
    means = {k: finite(v) for k, v in values.items()}
    return {k: sum(v) / len(v) if v else math.nan for k, v in means.items()}


def volume_metrics(pred, target, mask=None) -> dict[str, float]:
    """Brain-masked PSNR/SSIM/MAE at data range 1, plus the method's whole-volume PSNR/SSIM."""
    out = {"psnr": psnr(pred, target, 1.0, mask), "mae": mae(pred, target, mask),
           "psnr_method": psnr(pred, target, None)}
    if min(_as_tensor(pred).shape) >= SSIM_KERNEL:
        smap = ssim_map(pred, target, 1.0)  # one map, two means: the map is the costly part
        out["ssim"] = mean_ssim(smap, mask)
        out["ssim_method"] = mean_ssim(smap)
    return out
