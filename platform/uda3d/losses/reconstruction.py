"""Reconstruction terms: L1 over the volume or inside a mask."""

from __future__ import annotations

import torch


def l1_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error, over all voxels or over the voxels where ``mask`` is true."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
    error = (prediction - target).abs()
    if mask is None:
        return error.mean()
    mask = mask.to(error.dtype).expand_as(error)
    return (error * mask).sum() / mask.sum().clamp_min(1.0)
