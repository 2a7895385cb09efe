"""The method's training augmentation (docs/method.md section 1), as one pure function of a generator.

Input and target get the same random rot90 in each of the three planes (k = 0 with probability
12/15, else 1, 2 or 3) and the same random flips; the inputs alone get brightness and contrast
jitter with factors U(0.3, 1.5), clamped to [0, 1]. The T1 target is never jittered. Unlike the
original code, the jitter acts inside the brain only: the skull-stripped background stays 0.
"""

from __future__ import annotations

import torch

PLANES = ((1, 2), (1, 3), (2, 3))  # spatial planes of a (C, D, H, W) tensor
ROT_CHOICES = (0,) * 12 + (1, 2, 3)


def augment_pair(inputs: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                 jitter: tuple[float, float] = (0.3, 1.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one (C, D, H, W) input and its (1, D, H, W) target; returns new tensors."""

    def draw(n: int) -> int:
        return int(torch.randint(n, (1,), generator=generator))

    for plane in PLANES:
        k = ROT_CHOICES[draw(len(ROT_CHOICES))]
        if k:
            inputs, target = torch.rot90(inputs, k, plane), torch.rot90(target, k, plane)
    axes = [a for a in (1, 2, 3) if draw(2)]
    if axes:
        inputs, target = torch.flip(inputs, axes), torch.flip(target, axes)
    lo, hi = jitter
    brightness, contrast = (lo + (hi - lo) * torch.rand(2, generator=generator)).tolist()
    mean = inputs.mean(dim=(1, 2, 3), keepdim=True)
    # The background stays 0: a contrast factor below 1 would lift it to mean * (1 - contrast), and
    # every later step (the robust augmentation, the losses' brain mask) reads the brain as "> 0".
    brain = (inputs > 0).any(dim=0, keepdim=True)
    inputs = torch.where(brain, ((inputs - mean) * contrast + mean) * brightness, torch.zeros_like(inputs))
    return inputs.clamp(0.0, 1.0).contiguous(), target.contiguous()
