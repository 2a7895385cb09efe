"""Figures people would rather see than read, drawn with matplotlib (Agg, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uda3d.io.atomic import atomic_file


def save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Title, tighten and write ``fig`` as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal mid slices of an IPL-oriented (D=I, H=P, W=L) volume."""
    d, h, w = (s // 2 for s in volume.shape)
    return [volume[d], volume[:, h, :], volume[:, :, w]]


def synthesis_figure(path: str | Path, inputs: np.ndarray, target: np.ndarray | None, output: np.ndarray,
                     title: str = "") -> Path:
    """PNG of mid axial/coronal/sagittal slices: T2, FLAIR, true T1, synthesized T1 and |difference|.

    Args:
        inputs: (2, D, H, W) T2 and FLAIR; target: (D, H, W) true T1 or None; output: (D, H, W).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("T2", inputs[0], "gray", (0, 1)), ("FLAIR", inputs[1], "gray", (0, 1))]
    if target is not None:
        rows.append(("T1 (true)", target, "gray", (0, 1)))
    rows.append(("T1 (synth)", output, "gray", (0, 1)))
    if target is not None:
        rows.append(("|diff|", np.abs(output - target), "magma", (0, 0.5)))
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.4 * len(rows)), squeeze=False)
    for r, (name, vol, cmap, (lo, hi)) in enumerate(rows):
        for c, (plane, img) in enumerate(zip(("axial", "coronal", "sagittal"), mid_slices(vol))):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(plane)
            if c == 0:
                ax.set_ylabel(name)
    return save_figure(fig, path, title)


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
