"""Robust source training: random intensity augmentation of the *inputs* (domain randomisation).

METHOD.md section 8 measured that a backbone trained with strong random intensity augmentation of
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

from dataclasses import dataclass

import numpy as np
import torch

from uda3d.errors import ConfigError


@dataclass(frozen=True)
class RobustAugmentConfig:
    """Strengths of the input-intensity augmentation (each transform fires with ``probability``)."""

    probability: float = 0.5
    bias_coeff: float = 0.4          # RandBiasField coefficient range (0, bias_coeff)
    gamma_low: float = 0.6           # RandAdjustContrast gamma range
    gamma_high: float = 1.6
    noise_std: float = 0.05          # RandGaussianNoise std (fraction of the [0, 1] range)
    blur_sigma: float = 2.0          # RandGaussianSmooth sigma range (0.5, blur_sigma) along one axis, voxels
    histogram_points: int = 8        # RandHistogramShift control points
    remap_knots: int = 6             # knots of the random monotone curve (0 disables it)

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ConfigError("probability", f"expected 0 <= p <= 1, got {self.probability}")
        if self.bias_coeff < 0 or self.noise_std < 0 or self.blur_sigma < 0.5:
            raise ConfigError("robust augmentation", "bias_coeff and noise_std >= 0, blur_sigma >= 0.5 expected")
        if not 0 < self.gamma_low <= self.gamma_high:
            raise ConfigError("gamma", f"expected 0 < gamma_low <= gamma_high, got {self.gamma_low}, {self.gamma_high}")
        if self.histogram_points < 4 or self.remap_knots < 0 or self.remap_knots == 1:
            raise ConfigError("robust augmentation", "histogram_points >= 4 and remap_knots 0 or >= 2 expected")


def monotone_curve(rng: np.random.Generator, knots: int) -> tuple[np.ndarray, np.ndarray]:
    """A random increasing piecewise-linear map of [0, 1] onto [0, 1]: (x knots, y knots)."""
    x = np.linspace(0.0, 1.0, knots)
    steps = rng.dirichlet(np.ones(knots - 1))
    y = np.concatenate([[0.0], np.cumsum(steps)])
    return x, y / y[-1]


def apply_curve(values: torch.Tensor, curve: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """Map ``values`` in [0, 1] through a monotone piecewise-linear curve (order-preserving)."""
    x, y = (torch.as_tensor(a, dtype=values.dtype, device=values.device) for a in curve)
    v = values.clamp(0.0, 1.0)
    idx = torch.bucketize(v, x[1:-1])                # segment of each value
    x0, x1, y0, y1 = x[idx], x[idx + 1], y[idx], y[idx + 1]
    return y0 + (v - x0) * (y1 - y0) / (x1 - x0)


def _rescale_in_mask(channel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inside = channel[mask]
    if inside.numel() == 0:
        return torch.zeros_like(channel)
    lo, hi = inside.min(), inside.max()
    out = (channel - lo) / (hi - lo).clamp_min(1e-8)
    return torch.where(mask, out.clamp(0.0, 1.0), torch.zeros_like(out))


def robust_augment(inputs: torch.Tensor, generator: torch.Generator,
                   config: RobustAugmentConfig = RobustAugmentConfig()) -> torch.Tensor:
    """Augment a (C, D, H, W) input volume in [0, 1]; the brain is where any channel is non-zero."""
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandHistogramShift,
    )

    mask = (inputs > 0).any(dim=0)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    p = config.probability
    out = []
    for c in range(inputs.shape[0]):
        x = inputs[c:c + 1].float()
        axis = int(rng.integers(3))
        sigmas = [(0.0, 0.0)] * 3
        sigmas[axis] = (0.5, config.blur_sigma)
        transforms = [RandBiasField(prob=p, coeff_range=(0.0, config.bias_coeff)),
                      RandAdjustContrast(prob=p, gamma=(config.gamma_low, config.gamma_high)),
                      RandHistogramShift(prob=p, num_control_points=config.histogram_points),
                      RandGaussianSmooth(prob=p, sigma_x=sigmas[0], sigma_y=sigmas[1], sigma_z=sigmas[2]),
                      RandGaussianNoise(prob=p, std=config.noise_std)]
        for t in transforms:
            t.set_random_state(seed=int(rng.integers(2**31 - 1)))
            x = torch.as_tensor(t(x)).float()
            x = _rescale_in_mask(x[0], mask)[None]
        if config.remap_knots and rng.random() < p:
            x = _rescale_in_mask(apply_curve(x[0], monotone_curve(rng, config.remap_knots)), mask)[None]
        out.append(x[0])
    return torch.stack(out).to(inputs.dtype)
