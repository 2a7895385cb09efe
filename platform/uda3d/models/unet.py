"""A 3D U-Net generator, the common alternative backbone, taken from MONAI.

MONAI's ``UNet`` (residual units, strided convolutions, InstanceNorm) is a well-tested 3D U-Net;
we only add the sigmoid so outputs lie in [0, 1] like the SIT generator's and the targets.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.models.blocks import check_divisible


class UNetGenerator(nn.Module):
    """(B, in_channels, D, H, W) -> (B, out_channels, D, H, W) in [0, 1]; sizes divisible by 2^levels."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1, ngf: int = 32, levels: int = 3) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        channels = tuple(ngf * 2 ** i for i in range(levels + 1))
        self.factor = 2 ** levels
        self.net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=channels,
                        strides=(2,) * levels, num_res_units=1, norm="instance")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(tuple(x.shape[2:]), self.factor, "the U-Net generator")
        return torch.sigmoid(self.net(x))
