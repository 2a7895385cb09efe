"""Slice VAE shapes at demo and BraTS sizes and the method's layout."""

from __future__ import annotations

import pytest
import torch

from uda3d.models.vae2d import SliceVAE, n_blocks


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


def test_encoder_matches_the_method_layout_and_size():
    """docs/method.md section 2: blocks out 4, 8, ..., 128 (first 4 -> 4), heads 128 -> 256, main path in->in then
    in->out: about 1.7M parameters at gf_dim 4, latent 256 (the earlier layout had 5.1M)."""
    from torch import nn

    from uda3d.models.vae2d import SliceEncoder

    encoder = SliceEncoder(256, 4, 256)
    assert sum(p.numel() for p in encoder.parameters()) == 1_726_296
    strided = [m for m in encoder.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    mains = strided[0::2][:6]  # each body block: main-path strided conv, then its shortcut
    assert [(c.in_channels, c.out_channels) for c in mains] == [(4, 4), (4, 4), (8, 8), (16, 16), (32, 32), (64, 64)]
