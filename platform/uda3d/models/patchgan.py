"""The method's 3D PatchGAN discriminator (docs/method.md section 1), returning every stage's features.

On concat(input, T1) (3 channels): Conv k4 s1 p1 -> IN -> LeakyReLU(0.2) -> blur downsample, then
``n_layers - 1`` more such downsampling stages, then two Conv k4 s1 p1 -> IN -> LeakyReLU stages and
a final Conv k4 s1 p1 to one channel of patch logits. With ``n_layers=1`` (the method's setting)
that is the four convolutions whose outputs (code layers 0, 3, 6, 9) feed the feature-matching loss.
MONAI's ``PatchDiscriminator`` has no anti-aliased downsampling, so the stages are built here from
MONAI ``Convolution`` blocks. Biases as in the method's count: the first and the last convolution
have one, the normalised ones after the first do not (pix2pix's ``use_bias`` compares the norm
layer with ``InstanceNorm2d``, which a 3D InstanceNorm never equals): 540,737 parameters at ndf 64.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.models.blocks import BlurDownsample, checkpointed, conv_block

KERNEL = 4
PADDING = 1


def feature_channels(ndf: int, n_layers: int) -> list[int]:
    """Output channels of each stage: ndf * min(2^i, 8) per downsampling stage, the last twice more, then 1."""
    down = [ndf * min(2 ** i, 8) for i in range(n_layers)]
    return down + [down[-1], down[-1], 1]


class PatchDiscriminator3D(nn.Module):
    """3D PatchGAN: ``forward`` returns the list of stage outputs, patch logits last.

    Args:
        in_channels: input + output channels (2 + 1).
        ndf: channels of the first stage (64 in the method).
        n_layers: number of downsampling stages (``n_layers_D``, 1 in the method).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 1) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        chans = feature_channels(ndf, n_layers)
        act = ("leakyrelu", {"negative_slope": 0.2, "inplace": True})  # in place: one full-size tensor less
        stages: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(chans[:n_layers]):
            stages.append(nn.Sequential(conv_block(3, prev, c, KERNEL, 1, PADDING, act=act, bias=i == 0),
                                        BlurDownsample(3, c)))
            prev = c
        for c in chans[n_layers:-1]:
            stages.append(conv_block(3, prev, c, KERNEL, 1, PADDING, act=act, bias=False))
            prev = c
        stages.append(conv_block(3, prev, 1, KERNEL, 1, PADDING, norm=None, act=None))
        self.stages = nn.ModuleList(stages)
        self.n_layers = n_layers
        # ``models.blocks.set_checkpointing``: the first stage's full-resolution ndf-channel
        # activations are the largest tensors of a training step; recompute them in backward
        self.checkpointing = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            if self.checkpointing and isinstance(stage[-1], BlurDownsample):  # without gradients too: the peak
                x = _in_channel_groups(stage, x)
            else:
                x = checkpointed(stage, x, enabled=self.checkpointing)
            features.append(x)
        return features


CHANNEL_GROUP = 8


def _in_channel_groups(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A conv -> IN -> LReLU -> blur stage run CHANNEL_GROUP output channels at a time, each recomputed in backward.

    Every op after the convolution acts on each channel alone (InstanceNorm without affine, an
    elementwise activation, a depthwise blur), and a convolution's output channels are independent,
    so the groups give exactly the stage's output while a pass (or, recomputing, its backward) holds
    one group's full-resolution activations instead of ndf channels' (the largest tensors of a
    full-size training step).
    """
    from torch.nn import functional as F
    from torch.utils.checkpoint import checkpoint

    block, blur = stage[0], stage[1]
    conv, norm, act = block.conv, block.adn.N, block.adn.A

    def group(inputs: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        bias = None if conv.bias is None else conv.bias[lo:hi]
        y = F.conv3d(inputs, conv.weight[lo:hi], bias, conv.stride, conv.padding, conv.dilation)
        return blur(F.leaky_relu(F.instance_norm(y, eps=norm.eps), act.negative_slope, inplace=True))

    n, record = conv.out_channels, torch.is_grad_enabled()
    return torch.cat([checkpoint(group, x, lo, min(lo + CHANNEL_GROUP, n), use_reentrant=False) if record
                      else group(x, lo, min(lo + CHANNEL_GROUP, n)) for lo in range(0, n, CHANNEL_GROUP)], 1)


def output_size(size: int, n_layers: int = 1) -> int:
    """Patch-logit size along one axis for an input of ``size`` (each k4 s1 p1 conv shrinks by 1)."""
    for _ in range(n_layers):
        size = (size - 1 + 2 - 3) // 2 + 1  # conv: size - 1; blur (reflect pad 1, k3, s2)
    return size - 3  # three more k4 s1 p1 convolutions


def receptive_field(n_layers: int = 1) -> int:
    """Receptive field (voxels per axis) of one patch logit, by composing the layers backwards."""
    layers = []  # (kernel, stride) from input to output
    for _ in range(n_layers):
        layers += [(KERNEL, 1), (3, 2)]
    layers += [(KERNEL, 1)] * 3
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf
