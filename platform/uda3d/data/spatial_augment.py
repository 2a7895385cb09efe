"""Spatial augmentation applied with one random draw to the inputs and the T1 target alike.

Subjects and sites differ in head position, size and shape, which the method's rot90/flips
(``uda3d.data.augment``) do not cover: small random rotations, scalings and shifts do, and an
optional elastic warp adds local shape change. Input and target must move together or the
supervised L1 would teach the generator a misregistration, so both go through one MONAI dictionary
transform (``RandAffined``, or ``Rand3DElasticd`` whose own affine part then takes the same ranges,
so a volume is resampled once, not twice). MONAI was chosen over a hand-written grid sample: it
builds the affine about the volume centre, resamples every key with the same draw, and is the
library the robust intensity augmentation already uses. Its random state is seeded from our torch
generator on each call, so runs repeat. Both keys are resampled bilinearly with zero padding (the
background is 0).
"""

from __future__ import annotations

import math

import torch

from uda3d.config import SpatialAugmentConfig
from uda3d.data.monai_random import plain_tensor


def spatial_transform(config: SpatialAugmentConfig, keys: tuple[str, ...]) -> object:
    """The MONAI dictionary transform for ``keys``: a random affine, or an elastic warp with that affine."""
    from monai.transforms import Rand3DElasticd, RandAffined

    common = dict(keys=keys, prob=config.probability, rotate_range=(math.radians(config.rotate_deg),) * 3,
                  scale_range=(config.scale,) * 3, translate_range=(config.translate_vox,) * 3,
                  mode="bilinear", padding_mode="zeros")
    if config.elastic:
        return Rand3DElasticd(sigma_range=(config.elastic_sigma_low, config.elastic_sigma_high),
                              magnitude_range=(config.elastic_magnitude_low, config.elastic_magnitude_high),
                              **common)
    return RandAffined(**common)


def spatial_augment(inputs: torch.Tensor, target: torch.Tensor | None, generator: torch.Generator,
                    config: SpatialAugmentConfig = SpatialAugmentConfig()
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp one (C, D, H, W) input and its (1, D, H, W) target (or None) with the same random transform.

    Returns new tensors of the same shapes and dtypes; with probability ``1 - config.probability``
    they equal the originals.
    """
    data = {"input": inputs.float()}
    if target is not None:
        data["target"] = target.float()
    transform = spatial_transform(config, tuple(data))
    transform.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
    out = transform(data)

    def plain(key: str, like: torch.Tensor) -> torch.Tensor:
        return plain_tensor(out[key]).to(like.dtype).contiguous()

    return plain("input", inputs), (plain("target", target) if target is not None else None)


__all__ = ["SpatialAugmentConfig", "spatial_augment", "spatial_transform"]
