"""Figures people would rather see than read, drawn with matplotlib (Agg, no display needed).

matplotlib is the project's one plotting library: it renders headless in Ray workers and writes PNGs
a paper can use. Every figure goes through ``save_figure``, which is where the house rules live:
``FIGURE_DPI`` (>= 150, legible when shrunk to a column) and plain tick numbers, because matplotlib's
offset notation (``+1.835e1``) makes differences of a few thousandths of a dB look large. Axis labels
come from ``metric_label`` / ``param_label``: words with units, not the raw keys of a results table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uda3d.io.atomic import atomic_file

if TYPE_CHECKING:
    import torch

    from uda3d.config import PreprocessConfig

FIGURE_DPI = 200

# results-table keys -> axis labels with units (PSNR in dB; SSIM, MAE and losses have none)
METRIC_LABELS = {
    "target_test_psnr": "target-test PSNR (dB)",
    "target_test_ssim": "target-test SSIM",
    "target_test_mae": "target-test MAE (intensity, [0, 1] scale)",
    "source_val_psnr": "source-val PSNR (dB)",
    "augmented_source_mae": "augmented source-val MAE (intensity, [0, 1] scale)",
    "objective": "latent KL objective",
}
PARAM_LABELS = {
    "lr": "learning rate",
    "ele_percent": "ele_percent (% of latent KL elements kept)",
    "kl_weight": "KL weight",
    "target_subjects": "target volumes used for adaptation",
    "epochs": "epochs",
}


def metric_label(key: str) -> str:
    """An axis label for a results key: the known ones with their unit, else the words, PSNR in dB."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    words = key.replace("_", " ").replace("psnr", "PSNR").replace("ssim", "SSIM").replace("mae", "MAE")
    return f"{words} (dB)" if "psnr" in key.lower() else words


def param_label(key: str) -> str:
    """An axis label for a configuration field (``lr`` -> ``learning rate``)."""
    return PARAM_LABELS.get(key, key.replace("_", " "))


def plain_numbers(fig: Any) -> None:
    """Turn off offset and scientific notation on every linear axis of ``fig`` (colour bars included)."""
    from matplotlib.ticker import ScalarFormatter

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, ScalarFormatter):
                formatter.set_useOffset(False)
                formatter.set_scientific(False)


def save_figure(fig, path: str | Path, title: str = "", dpi: int = FIGURE_DPI) -> Path:
    """Title, lay out and write ``fig`` as PNG atomically at ``dpi`` with plain tick numbers, then close it.

    A figure made with a layout engine (``layout="constrained"``, needed beside colour bars) keeps it;
    others get ``tight_layout``.
    """
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    plain_numbers(fig)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal mid slices of an IPL-oriented (D=I, H=P, W=L) volume."""
    d, h, w = (s // 2 for s in volume.shape)
    return [volume[d], volume[:, h, :], volume[:, :, w]]


def synthesis_plot(inputs: np.ndarray, target: np.ndarray | None, output: np.ndarray) -> Any:
    """The figure of ``synthesis_figure``, unsaved (tests read its axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("T2", inputs[0], "gray", (0, 1)), ("FLAIR", inputs[1], "gray", (0, 1))]
    if target is not None:
        rows.append(("T1 (true)", target, "gray", (0, 1)))
    rows.append(("T1 (synth)", output, "gray", (0, 1)))
    if target is not None:
        rows.append(("|diff|", np.abs(output - target), "magma", (0, 0.5)))
    fig, axes = plt.subplots(len(rows), 3, figsize=(8.2, 2.4 * len(rows)), squeeze=False, layout="constrained")
    for r, (name, vol, cmap, (lo, hi)) in enumerate(rows):
        for c, (plane, img) in enumerate(zip(("axial", "coronal", "sagittal"), mid_slices(vol))):
            ax = axes[r, c]
            image = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(plane)
            if c == 0:
                ax.set_ylabel(name)
        if name == "|diff|":
            fig.colorbar(image, ax=list(axes[r]), shrink=0.9, label="|synth - true| ([0, 1] scale)")
    return fig


def synthesis_figure(path: str | Path, inputs: np.ndarray, target: np.ndarray | None, output: np.ndarray,
                     title: str = "") -> Path:
    """PNG of mid axial/coronal/sagittal slices: T2, FLAIR, true T1, synthesized T1 and |difference|.

    The difference row has a colour bar, so its scale can be read off the figure.

    Args:
        inputs: (2, D, H, W) T2 and FLAIR; target: (D, H, W) true T1 or None; output: (D, H, W).
    """
    return save_figure(synthesis_plot(inputs, target, output), path, title)


def slice_grid(path: str | Path, rows: list[np.ndarray], labels: list[str], title: str = "") -> Path:
    """PNG of rows of 2D slices (each row an (N, H, W) array), labelled on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.9 * len(rows)), squeeze=False)
    for r, (row, label) in enumerate(zip(rows, labels)):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                ax.imshow(row[c], cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(label)
    return save_figure(fig, path, title)


def comparison_figure(path: str | Path, dataroot: str | Path, split: str, generators: dict[str, torch.nn.Module],
                      preprocess: PreprocessConfig, cache_dir: str | Path | None = None, subjects: int = 2) -> Path:
    """PNG like the method's figure: per subject, inputs, truth, each model's output and its |difference|.

    Every difference map shares one scale, shown by one colour bar.

    Args:
        path: the PNG to write.
        dataroot: the BraTS-layout root; ``split`` is read from it (subjects with a T1 only).
        generators: the models to show, by column title.
        preprocess, cache_dir: how volumes become network inputs, and where the preprocessed ones are cached.
        subjects: rows (the first subjects of ``split`` by id).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from uda3d.data.datasets import paired_dataset
    from uda3d.data.layout import discover

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
