"""Volume -> slice latents: the adaptation's view of a generated T1 through the slice VAE's encoder.

The models see plain tensors; slicing a volume as the slice store does (``uda3d.data.slices``) is data
code, so the encoder that combines the two lives here, with the adaptation that uses it.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.config import SliceConfig
from uda3d.data.slices import volume_to_slices
from uda3d.models.vae2d import SliceEncoder


class VolumeEncoder(nn.Module):
    """A whole (B, 1, D, H, W) volume -> slice latents (B, S, C, 2, 2) for mu and logsig.

    Each volume is sliced exactly as the slice store slices T1 (``volume_to_slices``) and encoded as
    one batch, so BatchNorm sees per-volume statistics as in training. Differentiable with respect
    to the volume: the adaptation backpropagates through it into the generator.
    """

    def __init__(self, encoder: SliceEncoder, slice_config: SliceConfig) -> None:
        super().__init__()
        if encoder.slice_size != slice_config.size:
            raise ValueError(f"encoder expects {encoder.slice_size}^2 slices, slice config makes {slice_config.size}^2")
        self.encoder = encoder
        self.slice_config = slice_config

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mus, logsigs = [], []
        for v in volume[:, 0]:                                   # (D, H, W) per volume
            mu, logsig = self.encoder(volume_to_slices(v, self.slice_config))  # (S, C, 2, 2)
            mus.append(mu)
            logsigs.append(logsig)
        return torch.stack(mus), torch.stack(logsigs)
