"""Slice VAE shapes at demo and BraTS sizes, and the whole-volume encoder."""

from __future__ import annotations

import pytest
import torch

from uda3d.data.slices import SliceConfig, volume_to_slices
from uda3d.models.vae2d import SliceVAE, VolumeEncoder, n_blocks


@pytest.mark.parametrize("size,blocks", [(8, 2), (32, 4), (64, 5), (256, 7)])
def test_depth_follows_slice_size(size, blocks):
    assert n_blocks(size) == blocks


@pytest.mark.parametrize("size", [32, 64])
def test_vae_shapes(size):
    vae = SliceVAE(size, gf_dim=4, latent_channels=8)
    x = torch.rand(3, 1, size, size)
    recon, mu, logsig, z = vae(x, torch.Generator().manual_seed(0))
    assert recon.shape == x.shape
    assert mu.shape == logsig.shape == z.shape == (3, 8, 2, 2)


def test_method_size_latent_is_256_by_2_by_2():
    vae = SliceVAE(256)
    with torch.no_grad():
        mu, logsig = vae.encoder(torch.rand(2, 1, 256, 256))
    assert mu.shape == (2, 256, 2, 2)  # 1024 values per slice, as the method


def test_bad_slice_size():
    with pytest.raises(ValueError, match="power of two"):
        SliceVAE(48)


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
