"""Input harmonisers: monotone per-modality intensity maps placed in front of a frozen generator.

All are *monotone* piecewise-linear maps per modality (``uda3d.curves.apply_curve``), so tissue order
is never inverted and the background, 0, stays 0 (docs/method.md section 8):

- ``HistogramMatch``: each volume's brain histogram, per modality, mapped onto fixed reference
  (pooled source) quantiles at ``levels`` quantiles, as histogram matching does.
- ``MonotoneHarmoniser``: a learned curve per modality (``knots`` parameters each: softmax increments,
  so it is increasing by construction and the identity at initialisation); fitted label-free by
  ``uda3d.adaptation.input_maps.fit_harmoniser``.
- ``InputMapped``: the frozen generator behind any such map, usable wherever a generator is.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.curves import apply_curve
from uda3d.errors import ConfigError


def brain_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Voxels where any input channel is non-zero: (B, C, D, H, W) -> (B, D, H, W), as preprocessing leaves them."""
    return (inputs > 0).any(dim=1)


def brain_quantiles(volume: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Quantiles of each channel's brain voxels: (C, D, H, W) -> (C, len(levels))."""
    return torch.stack([torch.quantile(channel[mask].float(), levels) for channel in volume])


def _strictly_increasing(knots: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Tied quantiles (flat histograms) nudged apart so a piecewise-linear map is defined."""
    steps = torch.arange(knots.numel(), dtype=knots.dtype, device=knots.device) * eps
    return torch.cummax(knots + steps, dim=0).values


class HistogramMatch(nn.Module):
    """Map each volume's per-modality brain quantiles onto fixed reference (source) quantiles."""

    def __init__(self, reference: torch.Tensor) -> None:
        super().__init__()
        if reference.ndim != 2 or reference.shape[1] < 2:
            raise ValueError(f"expected (C, levels >= 2) reference quantiles, got {tuple(reference.shape)}")
        self.register_buffer("reference", reference.float())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        levels = torch.linspace(0.0, 1.0, self.reference.shape[1], device=inputs.device)
        masks = brain_mask(inputs)
        out = torch.zeros_like(inputs)
        for b in range(inputs.shape[0]):
            own = brain_quantiles(inputs[b], masks[b], levels)
            for c in range(inputs.shape[1]):
                curve = (_strictly_increasing(own[c]), self.reference[c])
                mapped = apply_curve(inputs[b, c], curve)
                out[b, c] = torch.where(masks[b], mapped, torch.zeros_like(mapped))
        return out


class MonotoneHarmoniser(nn.Module):
    """A learned increasing map of [0, 1] onto [0, 1] per input channel (identity at initialisation)."""

    def __init__(self, channels: int = 2, knots: int = 8) -> None:
        super().__init__()
        if knots < 2:
            raise ConfigError("harmoniser knots", f"expected >= 2, got {knots}")
        self.register_buffer("x_knots", torch.linspace(0.0, 1.0, knots))
        self.logits = nn.Parameter(torch.zeros(channels, knots - 1))

    def y_knots(self) -> torch.Tensor:
        """(C, knots) increasing values from 0 to 1 (softmax increments keep it monotone)."""
        steps = torch.softmax(self.logits, dim=1)
        return torch.cat([torch.zeros_like(steps[:, :1]), steps.cumsum(1)], dim=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        y = self.y_knots()
        mask = brain_mask(inputs)
        mapped = torch.stack([apply_curve(inputs[:, c], (self.x_knots, y[c])) for c in range(inputs.shape[1])], 1)
        return torch.where(mask[:, None], mapped, torch.zeros_like(mapped))


class InputMapped(nn.Module):
    """``generator(input_map(x))``: a frozen generator behind an input map, used like any generator."""

    def __init__(self, input_map: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.input_map = input_map
        self.generator = generator

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.generator(self.input_map(inputs))
