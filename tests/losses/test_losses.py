"""Loss functions against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from uda3d.losses.adversarial import (
    METHOD_FM_WEIGHTS,
    discriminator_loss,
    feature_matching_loss,
    fm_weights,
    generator_adversarial_loss,
    lsgan_loss,
)
from uda3d.losses.pix2pix import generator_loss
from uda3d.losses.reconstruction import l1_loss

T = torch.tensor


def test_lsgan_targets():
    logits = T([0.5, 1.5])
    assert float(lsgan_loss(logits, True)) == pytest.approx((0.25 + 0.25) / 2)
    assert float(lsgan_loss(logits, False)) == pytest.approx((0.25 + 2.25) / 2)


def test_discriminator_and_generator_losses():
    real, fake = T([1.0, 0.0]), T([0.5, -1.0])
    # real vs 1: (0 + 1)/2 = 0.5; fake vs 0: (0.25 + 1)/2 = 0.625; D = 0.5 * (0.5 + 0.625)
    assert float(discriminator_loss(real, fake)) == pytest.approx(0.5625)
    # fake vs 1: (0.25 + 4)/2
    assert float(generator_adversarial_loss(fake)) == pytest.approx(2.125)


def test_l1_whole_and_masked():
    pred, target = T([[1.0, 2.0, 3.0, 4.0]]), T([[1.0, 0.0, 3.0, 8.0]])
    assert float(l1_loss(pred, target)) == pytest.approx((0 + 2 + 0 + 4) / 4)
    mask = T([[True, True, False, False]])
    assert float(l1_loss(pred, target, mask)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        l1_loss(pred, target[:, :2])


def test_feature_matching_weights_and_values():
    fake = [T([1.0, 1.0]), T([0.0, 2.0]), T([3.0]), T([0.5])]
    real = [T([0.0, 1.0]), T([0.0, 0.0]), T([1.0]), T([0.5])]
    # L1 per stage: 0.5, 1.0, 2.0, 0.0; weighted 5 * 0.5 + 1.5 * 1 + 1.5 * 2 + 1 * 0
    assert float(feature_matching_loss(fake, real, METHOD_FM_WEIGHTS)) == pytest.approx(2.5 + 1.5 + 3.0)
    assert fm_weights(4) == (5.0, 1.5, 1.5, 1.0)
    assert fm_weights(6) == (5.0, 1.5, 1.5, 1.5, 1.5, 1.0)
    with pytest.raises(ValueError):
        feature_matching_loss(fake, real[:3], METHOD_FM_WEIGHTS)


def test_real_features_get_no_gradient():
    fake = [torch.ones(2, requires_grad=True)]
    real = [torch.zeros(2, requires_grad=True)]
    feature_matching_loss(fake, real, (1.0,)).backward()
    assert fake[0].grad is not None and real[0].grad is None


def test_generator_objective_combines_terms_with_method_weights():
    fake_vol, real_vol = T([[0.2, 0.4]]), T([[0.0, 0.0]])
    feats_fake = [T([1.0]), T([1.0]), T([1.0]), T([0.0])]
    feats_real = [T([0.0]), T([0.0]), T([0.0]), T([0.0])]
    g = generator_loss(feats_fake, feats_real, fake_vol, real_vol)
    gan = 1.0                     # logits 0 vs target 1
    l1 = 0.3
    fm = 5 * 1 + 1.5 * 1 + 1.5 * 1 + 0
    assert float(g.gan) == pytest.approx(gan)
    assert float(g.l1) == pytest.approx(l1)
    assert float(g.feature_matching) == pytest.approx(fm)
    assert float(g.total) == pytest.approx(gan + 100 * l1 + 1.5 * fm)
