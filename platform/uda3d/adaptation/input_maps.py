"""Input-side adaptation: monotone per-modality intensity maps in front of a frozen generator.

docs/method.md section 8 found that when the site shift lives in the inputs (contrast, bias, noise,
blur of FLAIR/T2) the cheap input-side fixes were the only adaptations that helped. Three live here,
all as per-modality *monotone* piecewise-linear maps (so tissue order is never inverted and the
background, 0, stays 0), reusing ``uda3d.data.robust_augment.apply_curve``:

- ``HistogramMatch``: each target volume's brain histogram, per modality, mapped onto the pooled
  source histogram (quantile mapping at ``levels`` quantiles, as histogram matching does; scikit-image's
  ``match_histograms`` is the reference in the tests, but it matches whole images, not brain voxels).
- ``MonotoneHarmoniser``: a learned curve per modality (``knots`` parameters each: softmax increments,
  so it is increasing by construction and the identity at initialisation), fitted with
  ``fit_harmoniser`` by minimising the sliced Wasserstein distance between harmonised target brain
  voxels and source brain voxels (joint (T2, FLAIR) distribution), no labels involved.
- ``InputMapped``: the frozen generator behind any such map, usable wherever a generator is.

``sliced_wasserstein`` is a pure function: the mean over random unit directions of the 1-D
Wasserstein-1 distance between the projected samples, taken between their quantile functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from uda3d.config import HarmoniserConfig
from uda3d.data.robust_augment import apply_curve
from uda3d.errors import ConfigError


def brain_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Voxels where any input channel is non-zero: (B, C, D, H, W) -> (B, D, H, W), as preprocessing leaves them."""
    return (inputs > 0).any(dim=1)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int, generator: torch.Generator,
                       quantiles: int = 256) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between samples ``x`` (N, d) and ``y`` (M, d).

    Each random unit direction projects both samples to 1-D; their W1 distance is the mean absolute
    difference of their quantile functions at ``quantiles`` evenly spaced levels (exact for
    N = M = quantiles). Differentiable in ``x`` and ``y``.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, d) and (M, d) samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    directions = torch.randn(x.shape[1], projections, generator=generator).to(x)
    directions = directions / directions.norm(dim=0, keepdim=True)
    levels = torch.linspace(0.0, 1.0, quantiles, dtype=x.dtype, device=x.device)
    qx = torch.quantile(x @ directions, levels, dim=0)
    qy = torch.quantile(y @ directions, levels, dim=0)
    return (qx - qy).abs().mean()


def brain_quantiles(volume: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Quantiles of each channel's brain voxels: (C, D, H, W) -> (C, len(levels))."""
    return torch.stack([torch.quantile(channel[mask].float(), levels) for channel in volume])


def pooled_source_quantiles(volumes: Sequence[torch.Tensor], levels: int = 64) -> torch.Tensor:
    """Per-channel quantiles of all source brain voxels pooled: list of (C, D, H, W) -> (C, levels)."""
    q = torch.linspace(0.0, 1.0, levels)
    per_channel = []
    for c in range(volumes[0].shape[0]):
        voxels = torch.cat([v[c][brain_mask(v[None])[0]].float() for v in volumes])
        step = max(1, voxels.numel() // 2_000_000)  # torch.quantile's input limit
        per_channel.append(torch.quantile(voxels.sort().values[::step], q))
    return torch.stack(per_channel)


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


def brain_voxels(volumes: Sequence[torch.Tensor]) -> torch.Tensor:
    """All brain voxels of (C, D, H, W) volumes as (N, C) rows."""
    rows = [v.movedim(0, -1)[brain_mask(v[None])[0]] for v in volumes]
    return torch.cat(rows).float()


def fit_harmoniser(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor],
                   config: HarmoniserConfig = HarmoniserConfig()) -> tuple[MonotoneHarmoniser, list[float]]:
    """Fit a ``MonotoneHarmoniser`` mapping target inputs towards the source inputs' joint distribution.

    Returns the harmoniser and the loss of every step (the label-free objective's history).
    """
    generator = torch.Generator().manual_seed(config.seed)
    target_rows, source_rows = brain_voxels(target), brain_voxels(source)
    harmoniser = MonotoneHarmoniser(target_rows.shape[1], config.knots)
    optimiser = torch.optim.Adam(harmoniser.parameters(), lr=config.lr)
    history = []
    for _ in range(config.steps):
        t = target_rows[torch.randint(len(target_rows), (config.voxels,), generator=generator)]
        s = source_rows[torch.randint(len(source_rows), (config.voxels,), generator=generator)]
        y = harmoniser.y_knots()
        mapped = torch.stack([apply_curve(t[:, c], (harmoniser.x_knots, y[c])) for c in range(t.shape[1])], 1)
        loss = sliced_wasserstein(mapped, s, config.projections, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
    return harmoniser.eval(), history


@torch.no_grad()
def reestimate_norm_statistics(model: nn.Module, batches: Sequence[torch.Tensor]) -> int:
    """AdaBN: recompute every running-statistics normalisation layer's statistics on ``batches``.

    Returns how many layers had running statistics. The SIT and MONAI generators use InstanceNorm
    *without* running statistics, which already normalises each target volume by its own statistics,
    so for them AdaBN is the identity and this returns 0 (the comparison reports it as such).
    """
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    if not layers:
        return 0
    was_training = model.training
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the batches
    model.train()
    for batch in batches:
        model(batch)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    model.train(was_training)
    return len(layers)


__all__ = ["HarmoniserConfig", "HistogramMatch", "InputMapped", "MonotoneHarmoniser", "fit_harmoniser",
           "pooled_source_quantiles", "reestimate_norm_statistics", "sliced_wasserstein"]
