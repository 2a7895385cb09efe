"""Building blocks shared by the networks, parameterised by ``spatial_dims`` (2D VAE, 3D GAN).

Convolution + normalisation + activation come from MONAI's ``Convolution`` (one tested block for
2D and 3D, with the padding/ordering options we need) instead of hand-written ``nn.Sequential``s.
The anti-aliased (blur) downsampling of the method's discriminator has no MONAI equivalent and is
written here: a fixed binomial filter applied depthwise with stride 2 (Zhang, "Making convolutional
networks shift-invariant again", ICML 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uda3d.errors import ConfigError


def conv_block(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
               padding: int | None = None, norm: str | None = "instance", act: str | tuple | None = "relu",
               transposed: bool = False, output_padding: int | None = None, bias: bool = True) -> nn.Module:
    """Conv -> norm -> act as one MONAI ``Convolution`` (InstanceNorm without affine, as the method)."""
    from monai.networks.blocks import Convolution

    norm_arg = None if norm is None else (norm, {"affine": False}) if norm == "instance" else norm
    return Convolution(spatial_dims, in_channels, out_channels, strides=stride, kernel_size=kernel_size,
                       padding=padding, norm=norm_arg, act=act, is_transposed=transposed,
                       output_padding=output_padding, conv_only=norm is None and act is None, bias=bias)


def checkpointed(function, *inputs: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``function(*inputs)``, its activations recomputed in the backward pass when ``enabled``.

    PyTorch's ``torch.utils.checkpoint`` (non-reentrant) keeps only the inputs and runs the forward
    again during backward: the same numbers and gradients for about one extra forward of the part,
    which is what lets a full-size (144x192x192) adaptation step fit in half the memory. Off when no
    gradient is recorded (inference, ``no_grad`` evaluation), where there is nothing to save.
    """
    if enabled and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(function, *inputs, use_reentrant=False)
    return function(*inputs)


def set_checkpointing(model: nn.Module, enabled: bool) -> int:
    """Turn activation checkpointing on or off in every block of ``model`` that offers it; returns how many."""
    blocks = [m for m in model.modules() if hasattr(m, "checkpointing")]
    for block in blocks:
        block.checkpointing = enabled
    return len(blocks)


def instance_norm(spatial_dims: int, channels: int) -> nn.Module:
    """InstanceNorm without affine parameters (the method's ``normG`` default)."""
    return (nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=False)


class BlurDownsample(nn.Module):
    """Low-pass filter then subsample by 2: a fixed separable [1, 2, 1] / 4 kernel, depthwise."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps
        for _ in range(spatial_dims - 1):
            kernel = kernel[..., None] * taps
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).clone(), persistent=False)
        self.spatial_dims = spatial_dims
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur and subsample ``x``: its ``channels`` or any leading group of them (the filter is the same
        for every channel, so the PatchGAN can run its first stage a few channels at a time)."""
        pad = [1, 1] * self.spatial_dims
        x = F.pad(x, pad, mode="reflect")
        conv = F.conv3d if self.spatial_dims == 3 else F.conv2d
        n = x.shape[1]
        return conv(x, self.kernel[:n].to(x.dtype), stride=2, groups=n)


def check_divisible(shape: tuple[int, ...], factor: int, network: str) -> None:
    """Raise a clear error when a spatial size cannot pass ``factor``-fold downsampling and back.

    Sizes must be multiples of ``factor`` and at least ``2 * factor``: the deepest level needs more
    than one voxel for InstanceNorm's statistics.
    """
    if any(s % factor or s < 2 * factor for s in shape):
        raise ConfigError("input shape", f"{network} needs every spatial size divisible by {factor} and >= "
                                         f"{2 * factor}, got {tuple(shape)}; crop/pad accordingly (--crop-shape)")
