"""Writing the comparison: CSV and Markdown tables and a PNG bar chart with seed error bars.

matplotlib draws the chart (the project's figure library); files are written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uda3d.io.atomic import atomic_file
from uda3d.io.tables import write_csv as write_table
from uda3d.viz import save_figure

COLUMNS = ("method", "seeds", "target_psnr", "target_psnr_std", "target_ssim", "target_mae", "gain_db", "gap_share",
           "gap_share_std", "source_psnr", "source_kept_db", "wilcoxon_p", "pairs", "beats_spread", "label_free",
           "note")


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    return write_table(path, rows, COLUMNS)


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table people read: target PSNR mean +- seed std, gap share, source kept, p-value, signal."""
    lines = ["| method | target PSNR (dB) | gain (dB) | gap share | source PSNR kept (dB) | Wilcoxon p | "
             "beats spread | aug. source-val MAE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {_fmt(r['target_psnr'])} +- {_fmt(r['target_psnr_std'])} | "
                     f"{_fmt(r['gain_db'], 2)} | {_fmt(r['gap_share'])} +- {_fmt(r['gap_share_std'])} | "
                     f"{_fmt(r['source_kept_db'])} | {_fmt(r['wilcoxon_p'], 3)} | "
                     f"{'yes' if r['beats_spread'] else 'no'} | {_fmt(r['label_free'], 4)} |")
    return "\n".join(lines)


def write_markdown(path: str | Path, rows: Sequence[Mapping[str, Any]], header: str = "",
                   footer: str = "") -> Path:
    text = "\n\n".join(part for part in (header, markdown_table(rows), footer) if part) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def bar_chart(path: str | Path, rows: Sequence[Mapping[str, Any]], title: str) -> Path:
    """Target-test PSNR per method with its seed std as error bars; the two bounds as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    means = [r["target_psnr"] for r in rows]
    stds = [r["target_psnr_std"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(rows) + 2), 4.2))
    colors = ["#888888" if n in ("no_adaptation", "supervised") else "#3b78c2" for n in names]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors)
    for name, style in (("no_adaptation", "--"), ("supervised", ":")):
        ref = next((r["target_psnr"] for r in rows if r["method"] == name), None)
        if ref is not None:
            ax.axhline(ref, color="black", linestyle=style, linewidth=1, label=name)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    low = min(m - s for m, s in zip(means, stds))
    high = max(m + s for m, s in zip(means, stds))
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_ylabel("target-test PSNR inside the brain (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, title)
