"""Monotone piecewise-linear intensity curves: pure tensor maths shared by data augmentation and the harmonisers."""

from __future__ import annotations

import numpy as np
import torch


def apply_curve(values: torch.Tensor, curve: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """Map ``values`` in [0, 1] through a monotone piecewise-linear curve (order-preserving).

    Args:
        values: intensities; clamped to [0, 1] first.
        curve: (x knots, y knots), both increasing, arrays or tensors; x spans [0, 1].

    Returns:
        The mapped values, same shape, dtype and device as ``values``; differentiable in both.
    """
    x, y = (torch.as_tensor(a, dtype=values.dtype, device=values.device) for a in curve)
    v = values.clamp(0.0, 1.0)
    idx = torch.bucketize(v, x[1:-1])                # segment of each value
    x0, x1, y0, y1 = x[idx], x[idx + 1], y[idx], y[idx + 1]
    return y0 + (v - x0) * (y1 - y0) / (x1 - x0)
