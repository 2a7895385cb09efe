"""The self-supervised task test-time training adapts with: rebuild FLAIR and T2 from a damaged copy.

At the target site FLAIR and T2 exist and T1 does not, so the only supervision the target's own
images can give is about FLAIR and T2 themselves. Two corruptions, drawn from a seeded
``torch.Generator`` so a loss value repeats exactly for a given seed:

- *cross-contrast*: with probability ``drop_probability`` one whole modality is zeroed, so the
  head must predict it from the other (the contrast relation the T1 task also relies on);
- *masked patches*: a ``mask_ratio`` share of ``patch``^3 cubes is zeroed in both modalities.

The loss is the mean absolute error of the reconstruction over the damaged voxels inside the brain
(MAE-style: intact voxels are trivial to copy and would dominate). Pure torch; no library has this
exact task, and it is a few lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uda3d.config import TTTConfig


@dataclass(frozen=True)
class Corruption:
    """A damaged input and where it was damaged (1 = damaged voxel of that channel)."""

    inputs: torch.Tensor     # (B, C, D, H, W)
    damaged: torch.Tensor    # (B, C, D, H, W) float 0/1


def patch_mask(shape: tuple[int, int, int], patch: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """A (D, H, W) 0/1 mask made of ``patch``^3 cubes on a regular grid, each on with probability ``ratio``."""
    grid = [-(-s // patch) for s in shape]  # ceil
    cells = (torch.rand(grid, generator=generator) < ratio).float()
    full = cells.repeat_interleave(patch, 0).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return full[: shape[0], : shape[1], : shape[2]]


def corrupt(inputs: torch.Tensor, generator: torch.Generator, drop_probability: float = 0.5,
            mask_ratio: float = 0.3, patch: int = 8) -> Corruption:
    """Damage a (B, C, D, H, W) input: per volume, maybe drop one modality, then zero random cubes."""
    batch, channels = inputs.shape[:2]
    damaged = torch.zeros_like(inputs)
    for b in range(batch):
        if float(torch.rand((), generator=generator)) < drop_probability:
            damaged[b, int(torch.randint(channels, (1,), generator=generator))] = 1.0
        if mask_ratio > 0:
            cubes = patch_mask(tuple(inputs.shape[2:]), patch, mask_ratio, generator).to(inputs)
            damaged[b] = torch.maximum(damaged[b], cubes.expand_as(damaged[b]))
    return Corruption(inputs * (1.0 - damaged), damaged)


def masked_reconstruction_error(reconstruction: torch.Tensor, inputs: torch.Tensor, damaged: torch.Tensor,
                                brain: torch.Tensor) -> torch.Tensor:
    """Mean |reconstruction - inputs| over damaged voxels inside the brain (0 when there are none).

    Args:
        reconstruction, inputs, damaged: (B, C, D, H, W).
        brain: (B, 1, D, H, W) brain mask (bool or 0/1).
    """
    weight = damaged * brain.to(inputs.dtype).expand_as(damaged)
    total = weight.sum()
    error = ((reconstruction - inputs).abs() * weight).sum()
    return error / total.clamp_min(1.0)


def auxiliary_loss(model: torch.nn.Module, inputs: torch.Tensor, brain: torch.Tensor, generator: torch.Generator,
                   config: TTTConfig) -> torch.Tensor:
    """The auxiliary loss of ``model`` (a possibly DDP-wrapped ``TTTGenerator``) on one batch.

    The reconstruction goes through the model's ``forward(x, task="aux")`` so DDP sees it.
    """
    damage = corrupt(inputs, generator, config.drop_probability, config.mask_ratio, config.patch)
    reconstruction = model(damage.inputs, task="aux")
    return masked_reconstruction_error(reconstruction.float(), inputs, damage.damaged, brain)
