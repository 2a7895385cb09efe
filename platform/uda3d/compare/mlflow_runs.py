"""``uda3d compare --experiment NAME``: tracked runs side by side, from MLflow's search API.

Users who have run the backbone, adaptations, tuning trials and studies want one table: which
config, what the unsupervised objective and the label-free signal said, and what the target
metrics were. Rows come from ``uda3d.tracking.search_runs`` (MLflow's filter syntax passes
through, e.g. ``tags.stage = 'tune-trial'``); params shown are those that *differ* between the
selected runs (a constant column tells nothing); metrics are the adaptation ones users compare
(objective, augmented source-val MAE, source-val and target-test PSNR/SSIM/MAE, guard verdict)
wherever a run has them, or the ones named with ``--metrics``. Writes ``runs.csv``, ``runs.md``
and ``runs.png`` (the chosen metric per run, best first), and logs them to an MLflow run of the
same experiment. Tables go through ``uda3d.io.tables``, the chart through matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uda3d.config import TrackingConfig
from uda3d.errors import ConfigError
from uda3d.tracking import RunRecord

DEFAULT_METRICS = ("objective", "augmented_source_mae", "source_val_psnr", "val_psnr", "target_test_psnr",
                   "eval_target_test_psnr", "target_test_ssim", "eval_target_test_ssim", "target_test_mae",
                   "eval_target_test_mae", "guard_ok")
IDENTITY = ("run", "run_id", "stage", "status")
# params that name where things are, not how they were configured
LOCATION_PARAMS = ("backbone_checkpoint", "vae_checkpoint", "dataroot", "workdir", "store", "init_checkpoint")
MAX_PARAMS = 16


def varying_params(runs: Sequence[RunRecord]) -> list[str]:
    """Params whose value differs between ``runs`` (missing counts as a value), locations left out."""
    names = sorted({k for r in runs for k in r.params})
    keep = [n for n in names if len({r.params.get(n) for r in runs}) > 1
            and n.rsplit(".", 1)[-1] not in LOCATION_PARAMS]
    return keep[:MAX_PARAMS]


def runs_table(runs: Sequence[RunRecord], params: Sequence[str] | None = None,
               metrics: Sequence[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): one row per run with its identity, the chosen params and the latest metric values."""
    params = list(params) if params is not None else varying_params(runs)
    if metrics is None:
        present = {k for r in runs for k in r.metrics}
        metrics = [m for m in DEFAULT_METRICS if m in present] or sorted(present)[:MAX_PARAMS]
    rows = [{"run": r.name, "run_id": r.run_id[:8], "stage": r.tags.get("stage", ""), "status": r.status,
             **{p: r.params.get(p, "") for p in params}, **{m: r.metrics.get(m, math.nan) for m in metrics}}
            for r in runs]
    return [*IDENTITY, *params, *metrics], rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "/")


def markdown(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def ranked(rows: Sequence[dict[str, Any]], metric: str, higher_is_better: bool) -> list[dict[str, Any]]:
    """Rows holding ``metric``, best first."""
    have = [r for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
    return sorted(have, key=lambda r: r[metric], reverse=higher_is_better)


def runs_chart(path: str | Path, rows: Sequence[dict[str, Any]], metric: str, title: str) -> Path:
    """Horizontal bars of ``metric`` per run (rows already ranked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uda3d.viz import metric_label, save_figure

    labels = [f"{r['run']} ({r['run_id']})" for r in rows]
    values = [r[metric] for r in rows]
    fig, ax = plt.subplots(figsize=(7.0, 1.0 + 0.32 * len(rows)))
    ax.barh(range(len(rows)), values, color="#3b78c2")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    span = max(values) - min(values)
    ax.set_xlim(min(values) - 0.1 * span - 1e-9, max(values) + 0.1 * span + 1e-9)
    ax.set_xlabel(metric_label(metric))
    return save_figure(fig, path, title)


def compare_runs(tracking: TrackingConfig, out: str | Path, filter_string: str = "", metric: str | None = None,
                 metrics: Sequence[str] | None = None, params: Sequence[str] | None = None,
                 log: bool = True) -> dict[str, Any]:
    """Build the table of the experiment's runs and write it as CSV, Markdown and a PNG; returns paths and rows."""
    from uda3d.io.atomic import atomic_file
    from uda3d.io.tables import write_csv
    from uda3d.tracking import Tracker, search_runs

    runs = [r for r in search_runs(tracking, filter_string) if r.tags.get("stage") != "compare"]
    if not runs:
        raise ConfigError("--filter", f"no run of experiment {tracking.experiment!r} matches {filter_string!r}")
    columns, rows = runs_table(runs, params, metrics)
    metric = metric or next((m for m in ("target_test_psnr", "eval_target_test_psnr", "objective")
                             if m in columns), None)
    out = Path(out)
    files = {"csv": str(write_csv(out / "runs.csv", rows, columns))}
    ordered = ranked(rows, metric, higher_is_better=not metric.endswith(("mae", "objective"))) if metric else []
    with atomic_file(out / "runs.md") as tmp:
        tmp.write_text(f"Runs of MLflow experiment {tracking.experiment!r}"
                       f"{f' matching {filter_string!r}' if filter_string else ''}, oldest first.\n\n"
                       + markdown(columns, rows) + "\n")
    files["markdown"] = str(out / "runs.md")
    if ordered:
        files["figure"] = str(runs_chart(out / "runs.png", ordered, metric,
                                         f"{tracking.experiment}: {metric} per run, best first"))
    if log and tracking.uri:
        tracker = Tracker(tracking)
        tracker.start("compare", params={"filter": filter_string or "(all)", "metric": metric or ""},
                      tags={"stage": "compare"})
        for path in files.values():
            tracker.log_artifact(path)
        tracker.end()
    return {"columns": columns, "rows": rows, "metric": metric, "ranked": ordered, "files": files}


__all__ = ["compare_runs", "markdown", "ranked", "runs_table", "varying_params"]
