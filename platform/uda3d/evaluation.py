"""Evaluate a trained generator checkpoint on labelled splits (per subject, then averaged)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from uda3d.config import BackboneConfig, PreprocessConfig, from_dict
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.metrics.image import volume_metrics
from uda3d.models.factory import build_generator
from uda3d.training.checkpoint import load_state


@dataclass(frozen=True)
class SplitMetrics:
    """Per-subject metrics of one split and their means."""

    split: str
    per_subject: dict[str, dict[str, float]]

    @property
    def mean(self) -> dict[str, float]:
        keys = next(iter(self.per_subject.values())).keys()
        return {k: sum(m[k] for m in self.per_subject.values()) / len(self.per_subject) for k in keys
                if all(math.isfinite(m[k]) for m in self.per_subject.values())}


def load_generator(checkpoint: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The generator of a backbone checkpoint (its config travels in the checkpoint), in eval mode."""
    state = load_state(checkpoint, map_location=device)
    generator = build_generator(from_dict(BackboneConfig, state["config"])).to(device)
    generator.load_state_dict(state["generator"])
    return generator.eval()


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
