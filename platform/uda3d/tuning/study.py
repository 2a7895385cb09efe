"""``uda3d study data-amount|sensitivity``: the paper's empirical studies, as Ray Tune trials with seed spread.

A study is a *grid*, not a search: every point of a search space whose parameters are all
``choice`` lists runs once per seed (``seeds`` in the YAML), each run the same trial as ``uda3d
tune`` (``uda3d.tuning.tune.adapt_trial``: the method's adaptation under the guards, one nested
MLflow run per trial). ``design: grid`` crosses every value of every parameter (the data-amount
study has one parameter); ``design: one_at_a_time`` varies one parameter at a time with the others
at the baseline (the config's defaults with the space's ``fixed`` values), which is how a
sensitivity study stays affordable: 3 + 2 + 2 points instead of 27.

Studies are research runs and, as the paper's studies did, their outcome is an oracle metric that
needs target labels (``target_test_psnr`` by default); they never choose a model for deployment.
Each point is the model at the end of its trial (where a guard stopped it, if one did; the trial's
``guard_ok`` says so). The outputs: ``trials.csv`` (one row per trial), ``points.csv`` (mean, seed
std and n per point), one PNG per parameter (the metric against its values, error bars = seed std,
the unadapted backbone as a dashed line) and ``summary.json``, all logged to the study's MLflow run.
Plots use matplotlib, tables the shared writers of ``uda3d.io.tables``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from uda3d.config import AdaptConfig
from uda3d.errors import ConfigError
from uda3d.tuning.space import SearchSpace
from uda3d.tuning.tune import TuneSpec
from uda3d.viz import param_label

STUDIES = {"data-amount": "data_amount", "sensitivity": "sensitivity"}
SPACES_FOLDER = "search_spaces"


def shipped_space(name: str) -> Path:
    """``search_spaces/NAME.yaml`` of the current folder (a Ray job's working_dir), else the one the package ships."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        path = base / SPACES_FOLDER / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError("--space", f"no {SPACES_FOLDER}/{name}.yaml here or in the package; pass --space FILE")


def baseline(space: SearchSpace) -> dict[str, Any]:
    """Each searched parameter's value when it is not the one varied: the config default, or ``fixed``."""
    defaults = {**asdict(AdaptConfig()), **space.fixed}
    return {p.name: defaults[p.name] for p in space.params}


def study_points(space: SearchSpace) -> list[dict[str, Any]]:
    """The grid points of ``space`` (every parameter must be a ``choice``), in a stable order, no duplicates."""
    for p in space.params:
        if p.distribution != "choice":
            raise ConfigError(f"params.{p.name}.type", f"a study needs a choice list of values, got {p.distribution}",
                              space.source)
    if space.design == "grid":
        names = [p.name for p in space.params]
        return [dict(zip(names, values)) for values in itertools.product(*(p.values for p in space.params))]
    base = baseline(space)
    for name, value in base.items():
        if value is None:
            raise ConfigError(f"fixed.{name}", "a one_at_a_time study needs a baseline value here (the default is "
                                               "None)", space.source)
    points: list[dict[str, Any]] = []
    for p in space.params:
        for value in p.values:
            point = {**base, p.name: value}
            if point not in points:
                points.append(point)
    return points


def keep_feasible(points: list[dict[str, Any]], target_volumes: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Leave out points asking for more unlabeled target volumes than the split holds (they would repeat
    the all-volumes point under another label); returns the kept points and a note per dropped one."""
    kept, notes = [], []
    for point in points:
        wanted = point.get("target_subjects")
        if wanted is not None and wanted > target_volumes:
            notes.append(f"target_subjects {wanted} left out: domain2_val holds {target_volumes} volume(s)")
        else:
            kept.append(point)
    return kept, notes


def trial_configs(points: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One trial per (point, seed), point-major so a point's seeds sit together."""
    return [{**point, "seed": seed} for point in points for seed in seeds]


def format_value(value: Any) -> str:
    """A grid value as people write it (1e-06, 55, subject)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _stats(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    mean = sum(finite) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def summarise_points(rows: Sequence[Mapping[str, Any]], params: Sequence[str], metric: str) -> list[dict[str, Any]]:
    """Per grid point: the metric's mean and seed std (sample std, 0 for one seed), seeds run, guards kept."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[p] for p in params), []).append(row)
    out = []
    for key, members in groups.items():
        stats = _stats([float(r[metric]) for r in members])
        out.append({**dict(zip(params, key)), f"{metric}_mean": stats["mean"], f"{metric}_std": stats["std"],
                    "seeds": stats["n"], "guard_ok": sum(bool(r["guard_ok"]) for r in members)})
    return out


def curve(rows: Sequence[Mapping[str, Any]], param: str, metric: str,
          others: Mapping[str, Any] | None = None) -> list[dict[str, float]]:
    """The metric against ``param``'s values: mean and std over the rows with that value, sorted by value.

    With ``others`` (one-at-a-time), only rows whose other parameters sit at those values count, so the
    spread is the seeds'; without it (a grid), the other parameters are averaged over too.
    """
    values: dict[Any, list[float]] = {}
    for row in rows:
        if others and any(row[k] != v for k, v in others.items() if k != param):
            continue
        values.setdefault(row[param], []).append(float(row[metric]))
    return [{"value": v, **_stats(values[v])} for v in sorted(values)]


def study_plot(param: str, points: Sequence[Mapping[str, float]], metric: str, reference: float | None) -> Any:
    """The figure of ``study_figure``, unsaved (tests read its axes).

    With a finite ``reference`` (the unadapted model) the y axis is the change from it, so a flat line
    at 0 reads "adaptation did nothing" whatever the absolute level; otherwise the metric itself.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uda3d.viz import metric_label, param_label

    numeric = all(isinstance(p["value"], (int, float)) for p in points)
    x = [float(p["value"]) for p in points] if numeric else list(range(len(points)))
    change = reference is not None and math.isfinite(reference)
    y = [p["mean"] - reference if change else p["mean"] for p in points]
    seeds = max(int(p["n"]) for p in points)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.errorbar(x, y, yerr=[p["std"] for p in points], fmt="o-", capsize=4, color="#3b78c2",
                label=f"adapted: mean ± seed std ({seeds} seed{'s' if seeds != 1 else ''})")
    if change:
        unit = " dB" if "psnr" in metric else ""
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1, label=f"no adaptation ({reference:.3f}{unit})")
    if numeric and min(x) > 0 and max(x) / min(x) >= 20:
        ax.set_xscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([format_value(p["value"]) for p in points])
    ax.set_xlabel(param_label(param))
    label = metric_label(metric)
    if change:  # "target-test PSNR (dB)" -> "change in target-test PSNR from no adaptation (dB)"
        name, bracket, unit = label.partition(" (")
        label = f"change in {name} from no adaptation" + (f" ({unit}" if bracket else "")
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def study_figure(path: str | Path, param: str, points: Sequence[Mapping[str, float]], metric: str,
                 reference: float | None, title: str) -> Path:
    """PNG of ``metric`` against ``param``: the change from the unadapted model, seed-std error bars."""
    from uda3d.viz import save_figure

    return save_figure(study_plot(param, points, metric, reference), path, title)


def run_study(spec: TuneSpec) -> dict[str, Any]:
    """Run (or resume) the study's grid as Tune trials; write the tables and figures; return the summary."""
    from ray import tune

    from uda3d.data.in_memory import load_data
    from uda3d.evaluation import score
    from uda3d.io.tables import write_csv, write_json
    from uda3d.tracking import Tracker
    from uda3d.training.checkpoint import load_generator
    from uda3d.training.ray_cluster import ensure_ray
    from uda3d.tuning.tune import TUNE_SPLITS, _parent_run, build_tuner, trial_rows

    run, space = spec.stage, spec.space
    data = load_data(run.dataroot, run.preprocess, Path(run.workdir) / "cache", TUNE_SPLITS, ("domain2_val",), "study")
    points, notes = keep_feasible(study_points(space), len(data.items["domain2_val"]))
    if not points:
        raise ConfigError("params", "; ".join(notes), space.source)
    configs = trial_configs(points, space.seeds)
    reference = score(load_generator(spec.backbone_checkpoint), data.items["domain2_test"])[0]["psnr"]
    ensure_ray(run.scaling.address, space.cpus_per_trial * space.max_concurrent_trials)
    parent_run_id = _parent_run(spec)
    results = build_tuner(spec, parent_run_id, param_space={"point": tune.grid_search(configs)}).fit()
    if results.num_terminated + results.num_errors < len(configs):
        return {"study": space.name, "interrupted": True, "trials": results.num_terminated, "planned": len(configs)}
    names = [p.name for p in space.params]
    order = {tuple(point[n] for n in names): i for i, point in enumerate(points)}
    rows = sorted(trial_rows(results, space), key=lambda r: (order.get(tuple(r[n] for n in names), len(order)),
                                                             r["seed"]))
    table = summarise_points(rows, names, space.metric)
    folder = spec.study_dir
    base = baseline(space) if space.design == "one_at_a_time" else None
    figures = {}
    for name in names:
        points_of = curve(rows, name, space.metric, base)
        if len(points_of) > 1:
            figures[name] = str(study_figure(folder / f"{space.name}_{name}.png", name, points_of, space.metric,
                                             reference if space.metric == "target_test_psnr" else None,
                                             f"{space.name}: {param_label(name)}"))
    files = {"trials": str(write_csv(folder / "trials.csv", rows)),
             "points": str(write_csv(folder / "points.csv", table)), **{f"figure_{k}": v for k, v in figures.items()}}
    summary = {"study": space.name, "design": space.design, "metric": space.metric, "trials": len(rows),
               "planned": len(configs), "seeds": list(space.seeds), "no_adaptation_target_test_psnr": reference,
               "notes": notes, "points": table, "parent_run_id": parent_run_id, "files": files, "rows": rows}
    files["summary"] = str(write_json(folder / "summary.json", summary))
    if parent_run_id:
        tracker = Tracker(run.tracking)
        tracker.start("", run_id=parent_run_id)
        tracker.log_metrics({"trials": len(rows), "no_adaptation_target_test_psnr": reference}, step=0)
        for path in files.values():
            tracker.log_artifact(path)
        tracker.end()
    return summary


__all__ = ["STUDIES", "baseline", "curve", "format_value", "keep_feasible", "run_study", "shipped_space",
           "study_plot", "study_points", "summarise_points", "trial_configs"]
