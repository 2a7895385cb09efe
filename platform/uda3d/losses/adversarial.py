"""LSGAN adversarial and discriminator feature-matching losses (docs/method.md section 1).

LSGAN (Mao et al., ICCV 2017) regresses patch logits to 1 (real) or 0 (fake) with a mean squared
error; the discriminator's loss is 0.5 x (real + fake). The method's "perceptual" term is an L1
between the discriminator's features of the fake pair and of the real pair, weighted per stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

METHOD_FM_WEIGHTS = (5.0, 1.5, 1.5, 1.0)  # discriminator layers 0, 3, 6, 9 of the method's code


def lsgan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """mean((logits - t)^2) with t = 1 for real and 0 for fake."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.mse_loss(logits, target)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 x (LSGAN(real, 1) + LSGAN(fake, 0))."""
    return 0.5 * (lsgan_loss(logits_real, True) + lsgan_loss(logits_fake, False))


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator wants its fakes scored as real: LSGAN(fake, 1)."""
    return lsgan_loss(logits_fake, True)


def fm_weights(n_features: int) -> tuple[float, ...]:
    """The method's per-stage weights (5, 1.5, 1.5, 1), stretched with 1.5s for deeper discriminators."""
    if n_features == len(METHOD_FM_WEIGHTS):
        return METHOD_FM_WEIGHTS
    return (METHOD_FM_WEIGHTS[0],) + (1.5,) * (n_features - 2) + (METHOD_FM_WEIGHTS[-1],)


def feature_matching_loss(features_fake: Sequence[torch.Tensor], features_real: Sequence[torch.Tensor],
                          weights: Sequence[float]) -> torch.Tensor:
    """sum_i w_i x L1(features_fake[i], features_real[i]); the real features are treated as constants."""
    if not (len(features_fake) == len(features_real) == len(weights)):
        raise ValueError(f"got {len(features_fake)} fake features, {len(features_real)} real, {len(weights)} weights")
    total = features_fake[0].new_zeros(())
    for w, f, r in zip(weights, features_fake, features_real):
        total = total + w * F.l1_loss(f, r.detach())
    return total
