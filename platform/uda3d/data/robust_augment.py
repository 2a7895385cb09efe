"""Robust source training: random intensity augmentation of the *inputs* (domain randomisation).

docs/method.md section 8 measured that a backbone trained with strong random intensity augmentation of
its inputs reached the supervised-on-target level on the target site with no target data. The
transforms mimic the ways scanners differ: a smooth multiplicative bias field, a gamma/contrast
change, Gaussian noise, blur along one random axis (thick slices), a histogram shift, and a random
*monotone* remapping of each modality's intensities (a different TE/TR/TI changes tissue
brightness but keeps their order only roughly; a monotone curve is the safe part of that). MONAI
provides the first five (its ``Rand*`` array transforms, seeded per call from our generator so runs
repeat); the monotone remapping is a pure function here. Each modality is augmented independently,
then min-max rescaled inside the brain (as preprocessing does) and zeroed outside it. The T1
target is never touched.
"""

from __future__ import annotations

import numpy as np
import torch

from uda3d.config import RobustAugmentConfig
from uda3d.curves import apply_curve
from uda3d.data.monai_random import apply_seeded


def monotone_curve(rng: np.random.Generator, knots: int) -> tuple[np.ndarray, np.ndarray]:
    """A random increasing piecewise-linear map of [0, 1] onto [0, 1]: (x knots, y knots)."""
    x = np.linspace(0.0, 1.0, knots)
    steps = rng.dirichlet(np.ones(knots - 1))
    y = np.concatenate([[0.0], np.cumsum(steps)])
    return x, y / y[-1]


def rescale_in_mask(channel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Min-max rescale one channel inside the brain and zero it outside, as preprocessing does."""
    inside = channel[mask]
    if inside.numel() == 0:
        return torch.zeros_like(channel)
    lo, hi = inside.min(), inside.max()
    out = (channel - lo) / (hi - lo).clamp_min(1e-8)
    return torch.where(mask, out.clamp(0.0, 1.0), torch.zeros_like(out))


def intensity_transforms(config: RobustAugmentConfig, blur_axis: int,
                         p: float | None = None) -> list[tuple[str, object]]:
    """The MONAI transforms of one channel's augmentation, named, in the order they are applied.

    ``blur_axis`` is the one spatial axis (0-2) the Gaussian blur acts along (thick slices).
    """
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandHistogramShift,
    )

    p = config.probability if p is None else p
    sigmas = [(0.0, 0.0)] * 3
    sigmas[blur_axis] = (0.5, config.blur_sigma)
    return [("bias_field", RandBiasField(prob=p, coeff_range=(0.0, config.bias_coeff))),
            ("contrast", RandAdjustContrast(prob=p, gamma=(config.gamma_low, config.gamma_high))),
            ("histogram_shift", RandHistogramShift(prob=p, num_control_points=config.histogram_points)),
            ("blur", RandGaussianSmooth(prob=p, sigma_x=sigmas[0], sigma_y=sigmas[1], sigma_z=sigmas[2])),
            ("noise", RandGaussianNoise(prob=p, std=config.noise_std))]


def robust_augment(inputs: torch.Tensor, generator: torch.Generator,
                   config: RobustAugmentConfig = RobustAugmentConfig()) -> torch.Tensor:
    """Augment a (C, D, H, W) input volume in [0, 1]; the brain is where any channel is non-zero."""
    mask = (inputs > 0).any(dim=0)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    p = config.probability
    out = []
    for c in range(inputs.shape[0]):
        x = inputs[c:c + 1].float()
        for _, t in intensity_transforms(config, int(rng.integers(3))):
            x = rescale_in_mask(apply_seeded(t, x, rng)[0], mask)[None]
        if config.remap_knots and rng.random() < p:
            x = rescale_in_mask(apply_curve(x[0], monotone_curve(rng, config.remap_knots)), mask)[None]
        out.append(x[0])
    return torch.stack(out).to(inputs.dtype)


__all__ = ["RobustAugmentConfig", "intensity_transforms", "monotone_curve", "rescale_in_mask",
           "robust_augment"]
