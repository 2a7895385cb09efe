"""Score generators on labelled subjects (per subject, then averaged): in-memory items or a root's splits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from uda3d.config import PreprocessConfig
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.metrics.image import mean_metrics, volume_metrics


@dataclass(frozen=True)
class SplitMetrics:
    """Per-subject metrics of one split and their means."""

    split: str
    per_subject: dict[str, dict[str, float]]

    @property
    def mean(self) -> dict[str, float]:
        return mean_metrics(self.per_subject.values())


@torch.no_grad()
def score(generator: torch.nn.Module, items: Iterable[dict]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Brain-masked PSNR/SSIM/MAE (and the method's whole-volume ones) of ``generator`` on labelled items.

    Args:
        generator: the model; the items' inputs are moved to its device.
        items: dataset items with ``id``, ``input`` (C, D, H, W), ``target`` and ``mask`` (1, D, H, W).

    Returns:
        (mean metrics, per-subject metrics by id).
    """
    device = next(generator.parameters()).device
    per = {}
    for item in items:
        fake = generator(item["input"][None].to(device))[0, 0].float().cpu()
        per[item["id"]] = volume_metrics(fake, item["target"][0], item["mask"][0])
    return mean_metrics(per.values()), per


@torch.no_grad()
def evaluate_generator(generator: torch.nn.Module, dataroot: str | Path, splits: tuple[str, ...],
                       preprocess: PreprocessConfig, cache_dir: str | Path | None = None) -> list[SplitMetrics]:
    """Brain-masked PSNR/SSIM/MAE (and the method's whole-volume ones) of every subject with a T1."""
    results = []
    for name, subjects in discover(dataroot, splits).items():
        dataset = paired_dataset([s for s in subjects if s.has_target], preprocess, cache_dir)
        results.append(SplitMetrics(name, score(generator, (dataset[i] for i in range(len(dataset))))[1]))
    return results
