"""A 3D convolution that keeps small single-volume inputs on PyTorch's fast CPU kernel (oneDNN).

PyTorch picks a CPU convolution kernel by a size rule written for 2D images: a batch of one whose
``N * C * D * H`` is at most 20480 goes to its unfold-and-matmul kernel instead of oneDNN's. For
3D volumes that rule misfires: a 16-channel convolution on a 28x24x24 volume (the demo network's
upper dense blocks) took 33 ms forward and backward, against about 5 ms per volume on oneDNN, and
such layers were half of a demo training step (``benchmarks/results/cpu_conv.md``).

``DepthSplitConv3d`` is an ``nn.Conv3d`` (same parameters, same state dict) that, when the rule
would misfire, zero-pads the volume itself, cuts it along depth into two halves that overlap by the
kernel's halo, and convolves them as a batch of two, which the rule sends to oneDNN; the two outputs
joined along depth are the convolution of the whole volume. Only the summation order can differ
(fp32 rounding). Anything else (GPU, a batch > 1, large inputs, strides, groups) is a plain
``nn.Conv3d``. PyTorch's kernel choice is not exposed as a setting, so this is done here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NATIVE_KERNEL_LIMIT = 20480  # PyTorch's rule: N * C * D * H at or below this (N = 1, kernel <= 3) -> slow kernel


def takes_slow_cpu_kernel(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """Whether PyTorch would run ``conv(x)`` on its unfold kernel rather than oneDNN (CPU, fp32)."""
    n, c, d, h = x.shape[:4]
    return (x.device.type == "cpu" and x.dtype == torch.float32 and n == 1 and conv.groups == 1
            and min(conv.kernel_size[-2:]) <= 3 and n * c * d * h <= NATIVE_KERNEL_LIMIT)


def depth_split_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       padding: tuple[int, int, int]) -> torch.Tensor:
    """A stride-1, undilated 3D convolution with zero padding, computed as two depth halves in one batch.

    Args:
        x: (1, C, D, H, W).
        weight: (C_out, C, kD, kH, kW).
        bias: (C_out,) or None.
        padding: zero padding per spatial axis.

    Returns:
        (1, C_out, D_out, H_out, W_out), the same as ``F.conv3d(x, weight, bias, padding=padding)``.
    """
    pd, ph, pw = padding
    padded = F.pad(x, (pw, pw, ph, ph, pd, pd))
    halo = weight.shape[2] - 1
    out_depth = padded.shape[2] - halo
    if out_depth < 2:
        return F.conv3d(x, weight, bias, padding=padding)
    first = (out_depth + 1) // 2                     # output planes from the first half
    second = out_depth - first
    top = padded[:, :, :first + halo]
    bottom = padded[:, :, first:]
    if second < first:  # equal depths to stack: one zero plane below, its output plane dropped
        bottom = F.pad(bottom, (0, 0, 0, 0, 0, first - second))
    out = F.conv3d(torch.cat([top, bottom], 0), weight, bias)
    return torch.cat([out[:1], out[1:, :, :second]], 2)


class DepthSplitConv3d(nn.Conv3d):
    """``nn.Conv3d`` that sends small batch-1 CPU inputs to oneDNN (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = (self.padding_mode != "zeros" or isinstance(self.padding, str) or any(s != 1 for s in self.stride)
                 or any(d != 1 for d in self.dilation))
        if plain or not takes_slow_cpu_kernel(x, self):
            return super().forward(x)
        return depth_split_conv3d(x, self.weight, self.bias, tuple(self.padding))
