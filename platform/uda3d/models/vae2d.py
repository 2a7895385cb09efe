"""The 2D slice VAE of the method (docs/method.md section 2); it sees slices, never volumes.

Encoder: Conv3x3 (1 -> gf) + BN + LeakyReLU(0.2); residual down blocks (main path conv s2 in->in
-> BN -> LReLU -> conv in->out -> BN, shortcut conv s2 -> BN) with outputs gf, gf, 2gf, 4gf, ...;
the last block twice, as the mean and log-sigma heads (to ``latent_channels``), so the latent is
``latent_channels`` x 2 x 2 per slice: 1,726,296 parameters at gf 4, latent 256, 256^2 slices, the
method's layout (docs/method.md section 2; an earlier layout here widened to 256 channels before the
heads and put the first convolution at in->out, 5.1M). Decoder: the mirror with
nearest-upsampling residual blocks, Conv + BN + LReLU, and a linear Conv3x3 to one channel.
The number of down blocks is log2(slice_size / 2): 7 for 256^2 BraTS slices, 5 for 64^2 demo
slices. The conv/BN/activation triplets are MONAI ``Convolution`` blocks (``spatial_dims=2``).
BatchNorm sees one volume per batch, as the method trains, so its statistics are per volume.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from uda3d.models.blocks import checkpointed, conv_block

LEAKY = ("leakyrelu", {"negative_slope": 0.2})
LATENT_SIZE = 2


def n_blocks(slice_size: int) -> int:
    """Down (and up) blocks taking a ``slice_size`` slice to a 2 x 2 latent."""
    n = math.log2(slice_size / LATENT_SIZE)
    if slice_size < 8 or n != int(n):
        raise ValueError(f"slice size must be a power of two >= 8, got {slice_size}")
    return int(n)


class ResidualDown(nn.Module):
    """conv s2 in->in -> BN -> LReLU -> conv in->out -> BN, plus conv s2 -> BN shortcut; LReLU unless ``head``."""

    def __init__(self, in_ch: int, out_ch: int, head: bool = False) -> None:
        super().__init__()
        self.main = nn.Sequential(conv_block(2, in_ch, in_ch, 3, 2, 1, norm="batch", act=LEAKY),
                                  conv_block(2, in_ch, out_ch, 3, 1, 1, norm="batch", act=None))
        self.skip = conv_block(2, in_ch, out_ch, 3, 2, 1, norm="batch", act=None)
        self.act = nn.Identity() if head else nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.main(x) + self.skip(x))


class ResidualUp(nn.Module):
    """nearest x2 -> conv in->in -> BN -> LReLU -> conv in->out -> BN, plus nearest x2 -> conv -> BN shortcut; LReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.main = nn.Sequential(conv_block(2, in_ch, in_ch, 3, 1, 1, norm="batch", act=LEAKY),
                                  conv_block(2, in_ch, out_ch, 3, 1, 1, norm="batch", act=None))
        self.skip = conv_block(2, in_ch, out_ch, 3, 1, 1, norm="batch", act=None)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.act(self.main(x) + self.skip(x))


def channel_plan(slice_size: int, gf_dim: int) -> list[int]:
    """Channels after the stem and each body block: gf, gf, 2gf, 4gf, ... (the heads output latent_channels).

    ``n_blocks`` stride-2 blocks in all: the body's ``n_blocks - 1`` and the heads.
    """
    return [gf_dim] + [gf_dim * 2 ** i for i in range(n_blocks(slice_size) - 1)]


class SliceEncoder(nn.Module):
    """(S, 1, size, size) slices -> (mu, logsig), each (S, latent_channels, 2, 2)."""

    def __init__(self, slice_size: int = 256, gf_dim: int = 4, latent_channels: int = 256) -> None:
        super().__init__()
        plan = channel_plan(slice_size, gf_dim)
        self.stem = conv_block(2, 1, plan[0], 3, 1, 1, norm="batch", act=LEAKY)
        self.body = nn.Sequential(*(ResidualDown(a, b) for a, b in zip(plan[:-1], plan[1:])))
        self.mu_head = ResidualDown(plan[-1], latent_channels, head=True)
        self.logsig_head = ResidualDown(plan[-1], latent_channels, head=True)
        self.slice_size = slice_size
        self.checkpointing = False  # ``models.blocks.set_checkpointing``: recompute each block in backward

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        on = self.checkpointing
        h = checkpointed(self.stem, x, enabled=on)
        for block in self.body:
            h = checkpointed(block, h, enabled=on)
        return checkpointed(self.mu_head, h, enabled=on), checkpointed(self.logsig_head, h, enabled=on)


class SliceDecoder(nn.Module):
    """(S, latent_channels, 2, 2) -> (S, 1, size, size), linear output (no sigmoid), as the method."""

    def __init__(self, slice_size: int = 256, gf_dim: int = 4, latent_channels: int = 256) -> None:
        super().__init__()
        plan = channel_plan(slice_size, gf_dim)[::-1]
        ups = [ResidualUp(latent_channels, plan[0])] + [ResidualUp(a, b) for a, b in zip(plan[:-1], plan[1:])]
        self.body = nn.Sequential(*ups)
        self.out = nn.Sequential(conv_block(2, plan[-1], plan[-1], 3, 1, 1, norm="batch", act=LEAKY),
                                 nn.Conv2d(plan[-1], 1, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))


class SliceVAE(nn.Module):
    """Encoder + decoder; ``forward`` returns (reconstruction, mu, logsig, z)."""

    def __init__(self, slice_size: int = 256, gf_dim: int = 4, latent_channels: int = 256) -> None:
        super().__init__()
        self.encoder = SliceEncoder(slice_size, gf_dim, latent_channels)
        self.decoder = SliceDecoder(slice_size, gf_dim, latent_channels)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        from uda3d.losses.kl import reparameterise

        mu, logsig = self.encoder(x)
        z = reparameterise(mu, logsig, generator)
        return self.decoder(z), mu, logsig, z
