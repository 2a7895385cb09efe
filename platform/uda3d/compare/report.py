"""Writing the comparison: CSV and Markdown tables and a two-panel PNG of gains over the control.

matplotlib draws the chart (the project's figure library, through ``uda3d.viz.save_figure``); files
are written atomically. The Markdown headline is the gain over ``source_ft`` with its subject-level
95% CI and Wilcoxon p, because that is the comparison that separates a method from extra training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uda3d.compare.table import BASELINE, CONTROL, REFERENCES, ROW_KEYS
from uda3d.io.atomic import atomic_file
from uda3d.io.tables import write_csv as write_table
from uda3d.viz import save_figure

COLUMNS = ROW_KEYS

HEADLINE = f"**gain vs {CONTROL} (dB) [95% CI]**"


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Every row key: ``COLUMNS`` first, then any extra (the ``signal_<name>`` columns) in first-seen order."""
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
    return write_table(path, rows, [*COLUMNS, *extra])


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2g}"


def _ci(row: Mapping[str, Any], metric: str, digits: int) -> str:
    low, high = row.get(f"ci_low_{metric}_vs_control", math.nan), row.get(f"ci_high_{metric}_vs_control", math.nan)
    return "" if math.isnan(low) or math.isnan(high) else f" [{low:+.{digits}f}, {high:+.{digits}f}]"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table people read: one line per method, the gain over the control (with CI and p) as headline."""
    lines = [f"| method | target PSNR (dB) +- seed sd | gain vs {BASELINE} (dB) | {HEADLINE} | p (subjects) | "
             f"SSIM | SSIM gain vs {CONTROL} | whole-vol PSNR gain vs {CONTROL} (dB) | "
             f"whole-vol SSIM gain vs {CONTROL} | source kept (dB) | source-val PSNR (dB) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_fmt(r['target_psnr'])} +- {_fmt(r['target_psnr_seed_std'])} | "
            f"{_fmt(r['gain_psnr_vs_none'], signed=True)} | "
            f"{_fmt(r['gain_psnr_vs_control'], signed=True)}{_ci(r, 'psnr', 2)} | "
            f"{_p(r['p_psnr_vs_control'])} | {_fmt(r['target_ssim'], 4)} | "
            f"{_fmt(r['gain_ssim_vs_control'], 4, signed=True)} | "
            f"{_fmt(r['gain_psnr_method_vs_control'], signed=True)} | "
            f"{_fmt(r['gain_ssim_method_vs_control'], 4, signed=True)} | {_fmt(r['source_kept_db'], signed=True)} | "
            f"{_fmt(r['source_val_psnr'])} | {r['verdict']} |")
    return "\n".join(lines)


def write_markdown(path: str | Path, rows: Sequence[Mapping[str, Any]], header: str = "",
                   footer: str = "") -> Path:
    text = "\n\n".join(part for part in (header, markdown_table(rows), footer) if part) + "\n"
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def bar_chart(path: str | Path, rows: Sequence[Mapping[str, Any]], title: str) -> Path:
    """Two panels, gain in PSNR (dB) and in SSIM over the control, bootstrap 95% CIs as error bars.

    Falls back to gains over no adaptation (no CI) when the control is absent. Horizontal bars keep long
    method names readable; the figure is drawn large with large fonts so it stays legible shrunk to a
    paper column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_control = any(math.isfinite(r.get("gain_psnr_vs_control", math.nan)) for r in rows)
    ref, suffix = (CONTROL, "control") if has_control else (BASELINE, "none")
    names = [r["method"] for r in rows]
    colors = ["#9a9a9a" if n in REFERENCES else "#2f6db5" for n in names]
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(12.0, 0.45 * len(rows) + 2.2))
    for ax, metric, unit in ((axes[0], "psnr", " (dB)"), (axes[1], "ssim", "")):
        gains = [_nan_to(r.get(f"gain_{metric}_vs_{suffix}", math.nan), 0.0) for r in rows]
        lows = [_nan_to(r.get(f"ci_low_{metric}_vs_{suffix}", math.nan), g) for g, r in zip(gains, rows)]
        highs = [_nan_to(r.get(f"ci_high_{metric}_vs_{suffix}", math.nan), g) for g, r in zip(gains, rows)]
        errors = [[max(0.0, g - lo) for g, lo in zip(gains, lows)], [max(0.0, hi - g) for g, hi in zip(gains, highs)]]
        ax.barh(range(len(rows)), gains, xerr=errors, capsize=4, color=colors, error_kw={"linewidth": 1.2})
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set_xlabel(f"{metric.upper()} gain over {ref}{unit}", fontsize=13)
        ax.tick_params(labelsize=12)
        ax.locator_params(axis="x", nbins=6)  # SSIM gains have long tick labels
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=12)
    axes[0].invert_yaxis()
    note = ", 95% bootstrap CI over subjects" if has_control else f" (no {CONTROL} run: no CI)"
    axes[0].set_title(f"brain PSNR{note}", fontsize=12)
    axes[1].set_title(f"brain SSIM{note}", fontsize=12)
    if title:
        fig.suptitle(title, fontsize=14)
    return save_figure(fig, path)


def _nan_to(value: float, default: float) -> float:
    return default if math.isnan(value) else float(value)
