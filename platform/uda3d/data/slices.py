"""Volume -> slice stack, as the slice VAE sees it (docs/method.md section 2), in torch so it is differentiable.

The method pads every axis of a T1 volume to a cube of ``size`` (256 for BraTS), maps the 1st and
99th percentiles of the whole padded cube to [0, 1] with clipping, and takes every slice along one
axis (empty padding slices included), so one volume = ``size`` slices = one training batch.
Here the volume is the *preprocessed* generator-space volume (IPL: axes I, P, L), and slices are
taken along P, i.e. coronal planes: the intended slicing of the method (its code reached it with a
raw ``view`` that scrambles voxels, docs/method.md section 7). The slice store, the VAE and the
adaptation's volume encoder all call ``volume_to_slices``, so they cannot disagree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uda3d.config import SliceConfig


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-th percentile of all elements with linear interpolation (numpy's default).

    Uses ``kthvalue`` so it works on 256^3 tensors (``torch.quantile`` refuses > 2^24 elements).
    """
    flat = x.reshape(-1)
    pos = (flat.numel() - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, flat.numel() - 1)
    v_lo = torch.kthvalue(flat, lo + 1).values
    v_hi = torch.kthvalue(flat, hi + 1).values if hi != lo else v_lo
    return v_lo + (v_hi - v_lo) * (pos - lo)


def pad_to_cube(volume: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop or zero-pad each of the last three axes to ``size``."""
    out = volume
    for axis in (-3, -2, -1):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = out.narrow(axis, start, size)
        elif n < size:
            before = (size - n) // 2
            pad = [0, 0] * 3
            pad[2 * (-axis - 1)] = before
            pad[2 * (-axis - 1) + 1] = size - n - before
            out = F.pad(out, pad)
    return out


def volume_to_slices(volume: torch.Tensor, config: SliceConfig) -> torch.Tensor:
    """(D, H, W) volume -> (size, 1, size, size) normalised slices along ``config.plane``.

    Differentiable with respect to ``volume`` (the percentiles are treated as the order statistics
    they are: gradients flow through the selected elements).
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (D, H, W) volume, got shape {tuple(volume.shape)}")
    cube = pad_to_cube(volume.float(), config.size)
    lo, hi = percentile(cube, config.low), percentile(cube, config.high)
    scaled = ((cube - lo) / (hi - lo).clamp_min(1e-8)).clamp(0.0, 1.0)
    slices = scaled.movedim(config.axis, 0)           # (S, size, size)
    return slices.unsqueeze(1).contiguous()           # (S, 1, size, size)
