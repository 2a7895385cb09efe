"""Shapes, ranges and receptive field of the generators and the PatchGAN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from uda3d.errors import ConfigError
from uda3d.models.patchgan import PatchDiscriminator3D, feature_channels, output_size, receptive_field
from uda3d.models.sit import SITGenerator
from uda3d.models.unet import UNetGenerator


@pytest.mark.parametrize("shape", [(16, 16, 16), (16, 24, 32), (32, 16, 24)])
@pytest.mark.parametrize("cls", [SITGenerator, UNetGenerator])
def test_generators_keep_the_input_size_and_output_unit_range(cls, shape):
    torch.manual_seed(0)
    net = cls(2, 1, ngf=4)
    with torch.no_grad():
        out = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, 1, *shape)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("shape", [(20, 16, 16), (16, 16, 7), (8, 16, 16)])
@pytest.mark.parametrize("cls", [SITGenerator, UNetGenerator])
def test_generators_reject_sizes_they_cannot_take(cls, shape):
    with pytest.raises(ConfigError, match="divisible by 8") as err:
        cls(2, 1, ngf=4)(torch.rand(1, 2, *shape))
    assert str(shape) in str(err.value)


def test_sit_matches_the_method_layout():
    net = SITGenerator(2, 1, ngf=64)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d) and m.kernel_size == (4, 4, 4)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(2, 64, (2, 2, 2)), (64, 64, (2, 2, 2)),
                                                                          (64, 64, (2, 2, 2))]
    assert not any(isinstance(m, nn.InstanceNorm3d) and m.affine for m in net.modules())
    assert isinstance(list(net.head.modules())[-1], nn.Sigmoid)


@pytest.mark.parametrize("n_layers,size", [(1, 24), (1, 33), (2, 40), (3, 48)])
def test_patchgan_feature_shapes(n_layers, size):
    d = PatchDiscriminator3D(3, ndf=4, n_layers=n_layers)
    feats = d(torch.rand(1, 3, size, size + 2, size + 4))
    assert len(feats) == n_layers + 3
    assert [f.shape[1] for f in feats] == feature_channels(4, n_layers)
    assert feats[-1].shape[2:] == tuple(output_size(s, n_layers) for s in (size, size + 2, size + 4))


def test_method_discriminator_has_four_feature_stages():
    assert feature_channels(64, 1) == [64, 64, 64, 1]


def _without_norm(d: nn.Module) -> nn.Module:
    """InstanceNorm couples every voxel through its statistics; drop it to expose the conv geometry."""
    for module in list(d.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.InstanceNorm3d):
                setattr(module, name, nn.Identity())
    return d


@pytest.mark.parametrize("n_layers", [1, 2])
def test_receptive_field_matches_gradient_support(n_layers):
    torch.manual_seed(0)
    rf = receptive_field(n_layers)
    d = _without_norm(PatchDiscriminator3D(3, ndf=2, n_layers=n_layers)).double()
    size = 2 * rf + 8
    x = torch.rand(1, 3, size, size, size, dtype=torch.double, requires_grad=True)
    logits = d(x)[-1]
    centre = tuple(s // 2 for s in logits.shape[2:])
    logits[(0, 0) + centre].backward()
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = support.any(dim=other).nonzero().flatten()
        assert int(hits.max() - hits.min() + 1) == rf


def test_receptive_field_closed_form():
    # n=1: conv4 (+3), blur3 (+2), then three conv4 at stride 2 (+6 each): 1 + 3 + 2 + 18 = 24.
    assert receptive_field(1) == 24
    # n=2: 1 + 3 + 2 | conv4 at jump 2 (+6), blur at jump 2 (+4) | three conv4 at jump 4 (+12 each) = 52.
    assert receptive_field(2) == 52


def test_method_discriminator_parameter_count_and_biases():
    """540,737 at ndf 64: biases on the first and the last convolution only (the method's count)."""
    d = PatchDiscriminator3D(3, ndf=64, n_layers=1)
    assert sum(p.numel() for p in d.parameters()) == 540_737
    convs = [m for m in d.modules() if isinstance(m, nn.Conv3d)]
    assert [c.bias is not None for c in convs] == [True, False, False, True]
