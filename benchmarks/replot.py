"""Redraw the committed figures of ``benchmarks/results/`` from the committed tables, in seconds.

The figures follow the library's plotting code (``uda3d.compare.report.bar_chart``,
``uda3d.tuning.study.study_figure``); when that changes, this brings the committed PNGs up to date
without rerunning the hours of training behind them. The studies' no-adaptation level is read from
``studies.md``, where it is given to 0.001 dB (the seed std of the points is about the same).

    python benchmarks/replot.py
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from uda3d.compare.report import bar_chart
from uda3d.tuning.space import load_space
from uda3d.tuning.study import baseline, curve, study_figure
from uda3d.viz import param_label

HERE = Path(__file__).resolve().parent
RESULTS, SPACES = HERE / "results", HERE.parent / "search_spaces"


def _value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def replot_comparisons() -> list[Path]:
    out = []
    for table in sorted(RESULTS.glob("compare_*_*.csv")):
        rows = read_rows(table)
        site = table.stem.split("_", 2)[-1]
        seeds = max(int(r["seeds"]) for r in rows if isinstance(r.get("seeds"), float) and math.isfinite(r["seeds"]))
        out.append(bar_chart(table.with_suffix(".png"), rows,
                             f"{site}: gain over source_ft, {seeds} seeds, 95% CI over subjects"))
    return out


def replot_studies() -> list[Path]:
    reference = float(re.search(r"No adaptation: ([0-9.]+) dB", (RESULTS / "studies.md").read_text()).group(1))
    out = []
    for name in ("data_amount", "sensitivity"):
        space = load_space(SPACES / f"{name}.yaml")
        rows = read_rows(RESULTS / f"study_{name}_trials.csv")
        base = baseline(space) if space.design == "one_at_a_time" else None
        for param in (p.name for p in space.params):
            points = curve(rows, param, space.metric, base)
            if len(points) > 1:
                out.append(study_figure(RESULTS / f"study_{space.name}_{param}.png", param, points, space.metric,
                                        reference, f"{space.name}: {param_label(param)}"))
    return out


def main() -> None:
    for path in replot_comparisons() + replot_studies():
        print(path.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
