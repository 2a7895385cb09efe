"""Evaluate a trained generator checkpoint on labelled splits (per subject, then averaged)."""

from __future__ import annotations

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
def evaluate_generator(generator: torch.nn.Module, dataroot: str | Path, splits: tuple[str, ...],
                       preprocess: PreprocessConfig, cache_dir: str | Path | None = None) -> list[SplitMetrics]:
    """Brain-masked PSNR/SSIM/MAE (and the method's whole-volume ones) of every subject with a T1."""
    device = next(generator.parameters()).device
    results = []
    for name, subjects in discover(dataroot, splits).items():
        dataset = paired_dataset([s for s in subjects if s.has_target], preprocess, cache_dir)
        per_subject = {}
        for i in range(len(dataset)):
            item = dataset[i]
            fake = generator(item["input"][None].to(device))[0, 0].float().cpu()
            per_subject[item["id"]] = volume_metrics(fake, item["target"][0], item["mask"][0])
        results.append(SplitMetrics(name, per_subject))
    return results
