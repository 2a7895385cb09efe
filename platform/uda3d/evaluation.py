"""Evaluate a trained generator checkpoint on labelled splits (per subject, then averaged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from uda3d.config import BackboneConfig, PreprocessConfig, from_dict
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.errors import DataError
from uda3d.metrics.image import mean_metrics, volume_metrics
from uda3d.models.factory import build_generator
from uda3d.training.checkpoint import load_state


@dataclass(frozen=True)
class SplitMetrics:
    """Per-subject metrics of one split and their means."""

    split: str
    per_subject: dict[str, dict[str, float]]

    @property
    def mean(self) -> dict[str, float]:
        return mean_metrics(self.per_subject.values())


def load_generator(checkpoint: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The generator of a checkpoint (its config travels in it), in eval mode.

    A checkpoint that also holds an input ``harmoniser`` (``uda3d.adaptation.input_maps``) loads as
    the harmoniser in front of the generator, so every consumer (evaluation, synthesis) uses both.
    """
    state = load_state(checkpoint, map_location=device)
    if not {"config", "generator"} <= set(state):
        raise DataError(checkpoint, "not a generator checkpoint; expected one from 'uda3d train-backbone', "
                                    "'uda3d adapt' or the pipeline (keys 'config' and 'generator')")
    generator = build_generator(from_dict(BackboneConfig, state["config"])).to(device)
    generator.load_state_dict(state["generator"])
    if "harmoniser" in state:
        from uda3d.adaptation.input_maps import InputMapped, MonotoneHarmoniser

        logits = state["harmoniser"]["logits"]
        harmoniser = MonotoneHarmoniser(logits.shape[0], logits.shape[1] + 1).to(device)
        harmoniser.load_state_dict(state["harmoniser"])
        generator = InputMapped(harmoniser, generator)
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


def comparison_figure(path: str | Path, dataroot: str | Path, split: str, generators: dict[str, torch.nn.Module],
                      preprocess: PreprocessConfig, cache_dir: str | Path | None = None, subjects: int = 2) -> Path:
    """PNG like the method's figure: per subject, inputs, truth, each model's output and its |difference|.

    Every difference map shares one scale, shown by one colour bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uda3d.viz import save_figure

    found = [s for s in discover(dataroot, (split,))[split] if s.has_target][:subjects]
    dataset = paired_dataset(found, preprocess, cache_dir)
    names = list(generators)
    cols = 3 + 2 * len(names)
    size = (1.9 * cols + 1.0, max(2.1 * len(dataset), 2.6))  # room for the colour bar and its label
    fig, axes = plt.subplots(len(dataset), cols, figsize=size, squeeze=False, layout="constrained")
    difference = None
    for r in range(len(dataset)):
        item = dataset[r]
        mid = item["input"].shape[1] // 2
        panels = [("T2", item["input"][0, mid], "gray", 1.0), ("FLAIR", item["input"][1, mid], "gray", 1.0),
                  ("T1 true", item["target"][0, mid], "gray", 1.0)]
        with torch.no_grad():
            for name in names:
                g = generators[name]
                out = g(item["input"][None].to(next(g.parameters()).device))[0, 0].float().cpu()
                panels.append((name, out[mid], "gray", 1.0))
                panels.append((f"|{name} - true|", (out[mid] - item["target"][0, mid]).abs(), "magma", 0.5))
        for c, (title, image, cmap, vmax) in enumerate(panels):
            ax = axes[r, c]
            shown = ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=vmax)
            difference = shown if cmap == "magma" else difference
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(item["id"], fontsize=8)
    if difference is not None:
        fig.colorbar(difference, ax=axes.ravel().tolist(), shrink=0.8, label="|output - true|")
    return save_figure(fig, path, f"{split}: mid-axial slices")
