"""Input-side adaptation: fitting the input harmonisers (``uda3d.models.harmoniser``) and AdaBN.

docs/method.md section 8 found that when the site shift lives in the inputs (contrast, bias, noise,
blur of FLAIR/T2) the cheap input-side fixes were the only adaptations that helped. The maps
themselves (``HistogramMatch``, ``MonotoneHarmoniser``, ``InputMapped``) are networks and live with
the models; what needs data lives here:

- ``pooled_source_quantiles``: the source histogram ``HistogramMatch`` maps target volumes onto
  (scikit-image's ``match_histograms`` is the reference in the tests, but it matches whole images,
  not brain voxels).
- ``fit_harmoniser``: fits a ``MonotoneHarmoniser`` by minimising the sliced Wasserstein distance
  between harmonised target brain voxels and source brain voxels (joint (T2, FLAIR) distribution),
  no labels involved.
- ``reestimate_norm_statistics``: AdaBN.

``sliced_wasserstein`` is a pure function: the mean over random unit directions of the 1-D
Wasserstein-1 distance between the projected samples, taken between their quantile functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from uda3d.config import HarmoniserConfig
from uda3d.curves import apply_curve
from uda3d.models.harmoniser import MonotoneHarmoniser, brain_mask


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


def pooled_source_quantiles(volumes: Sequence[torch.Tensor], levels: int = 64) -> torch.Tensor:
    """Per-channel quantiles of all source brain voxels pooled: list of (C, D, H, W) -> (C, levels)."""
    q = torch.linspace(0.0, 1.0, levels)
    per_channel = []
    for c in range(volumes[0].shape[0]):
        voxels = torch.cat([v[c][brain_mask(v[None])[0]].float() for v in volumes])
        step = max(1, voxels.numel() // 2_000_000)  # torch.quantile's input limit
        per_channel.append(torch.quantile(voxels.sort().values[::step], q))
    return torch.stack(per_channel)


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


__all__ = ["fit_harmoniser", "pooled_source_quantiles", "reestimate_norm_statistics", "sliced_wasserstein"]
