"""The pix2pix generator objective of the method: GAN + 100 x L1 + 1.5 x feature matching."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uda3d.losses.adversarial import feature_matching_loss, fm_weights, generator_adversarial_loss
from uda3d.losses.reconstruction import l1_loss


@dataclass(frozen=True)
class GeneratorLoss:
    """The total and its terms (unweighted), so each can be logged."""

    total: torch.Tensor
    gan: torch.Tensor
    l1: torch.Tensor
    feature_matching: torch.Tensor


def generator_loss(features_fake: list[torch.Tensor], features_real: list[torch.Tensor], fake: torch.Tensor,
                   real: torch.Tensor, lambda_l1: float = 100.0, lambda_fm: float = 1.5) -> GeneratorLoss:
    """G loss = LSGAN(D(fake pair), 1) + lambda_l1 L1(fake, real) + lambda_fm sum_i w_i L1(D_i(fake), D_i(real)).

    Args:
        features_fake: discriminator stage outputs on concat(input, fake), logits last.
        features_real: the same on concat(input, real).
        fake, real: generated and true T1, (B, 1, D, H, W).
    """
    gan = generator_adversarial_loss(features_fake[-1])
    l1 = l1_loss(fake, real)
    fm = feature_matching_loss(features_fake, features_real, fm_weights(len(features_fake)))
    return GeneratorLoss(total=gan + lambda_l1 * l1 + lambda_fm * fm, gan=gan, l1=l1, feature_matching=fm)
