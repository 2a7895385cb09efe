"""The whole-volume encoder: a volume sliced as the slice store slices it, then the slice VAE's encoder."""

from __future__ import annotations

import pytest
import torch

from uda3d.adaptation.slice_latents import VolumeEncoder
from uda3d.config import SliceConfig
from uda3d.data.slices import volume_to_slices
from uda3d.models.vae2d import SliceVAE


def test_volume_encoder_matches_per_slice_encoding_and_passes_gradients():
    torch.manual_seed(0)
    config = SliceConfig(size=32)
    vae = SliceVAE(32, gf_dim=4, latent_channels=8)
    encoder = VolumeEncoder(vae.encoder, config)
    volume = torch.rand(2, 1, 24, 20, 28, requires_grad=True)
    mu, logsig = encoder(volume)
    assert mu.shape == (2, 32, 8, 2, 2)
    direct, _ = vae.encoder(volume_to_slices(volume[1, 0], config))
    torch.testing.assert_close(mu[1], direct)
    (mu.sum() + logsig.sum()).backward()
    assert volume.grad is not None and float(volume.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="slice config"):
        VolumeEncoder(vae.encoder, SliceConfig(size=64))
