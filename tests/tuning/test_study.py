"""``uda3d study``: grid points, feasibility, seed statistics and figures (pure), then a tiny study end to end."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from uda3d.errors import ConfigError
from uda3d.tuning.space import load_space, parse_space
from uda3d.tuning.study import (
    baseline,
    curve,
    keep_feasible,
    shipped_space,
    study_figure,
    study_points,
    summarise_points,
    trial_configs,
)

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def _space(text: str, tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path)


def test_grid_design_crosses_every_value(tmp_path):
    space = _space("params:\n  lr: {type: choice, values: [1.0e-6, 1.0e-5]}\n"
                   "  ele_percent: {type: choice, values: [25, 55, 90]}\n", tmp_path)
    points = study_points(space)
    assert len(points) == 6 and len({tuple(p.items()) for p in points}) == 6
    assert {(p["lr"], p["ele_percent"]) for p in points} == {(a, b) for a in (1e-6, 1e-5) for b in (25, 55, 90)}


def test_shipped_sensitivity_varies_one_parameter_at_a_time_around_the_method():
    space = load_space(SPACES / "sensitivity.yaml")
    base = baseline(space)
    assert base == {"ele_percent": 55.0, "lr": 1e-6, "kl_weight": 1.0}  # the method's README run
    points = study_points(space)
    # 3 + 2 + 2: the baseline point is run once, not once per parameter
    assert len(points) == 7 and base in points
    for p in points:
        assert sum(p[k] != base[k] for k in base) <= 1
    assert len(trial_configs(points, space.seeds)) == 7 * len(space.seeds) == 21


def test_shipped_data_amount_is_a_grid_over_target_subjects():
    space = load_space(shipped_space("data_amount"))
    assert [p["target_subjects"] for p in study_points(space)] == [1, 2, 4, 8]
    assert len(space.seeds) >= 2


def test_a_study_needs_choice_values_and_a_baseline(tmp_path):
    with pytest.raises(ConfigError, match=r"space\.yaml: params\.lr\.type: a study needs a choice list"):
        study_points(_space("params:\n  lr: {type: loguniform, low: 1.0e-6, high: 1.0e-4}\n", tmp_path))
    oat = _space("design: one_at_a_time\nparams:\n  target_subjects: {type: choice, values: [1, 2]}\n"
                 "  lr: {type: choice, values: [1.0e-6]}\n", tmp_path)
    with pytest.raises(ConfigError, match=r"fixed\.target_subjects: a one_at_a_time study needs a baseline"):
        study_points(oat)
    with pytest.raises(ConfigError, match=r"design: expected one of"):
        _space("design: random\nparams:\n  lr: {type: choice, values: [1.0e-6]}\n", tmp_path)


def test_points_asking_for_more_target_volumes_than_exist_are_left_out_with_a_note():
    kept, notes = keep_feasible([{"target_subjects": n} for n in (1, 2, 4, 8)], 3)
    assert [p["target_subjects"] for p in kept] == [1, 2]
    assert len(notes) == 2 and "target_subjects 4 left out: domain2_val holds 3 volume(s)" in notes[0]


def test_point_summaries_are_the_seed_mean_and_sample_std():
    rows = [{"lr": 1e-5, "seed": s, "m": v, "guard_ok": ok} for s, v, ok in ((0, 20.0, True), (1, 21.0, True),
                                                                            (2, 23.5, False))]
    rows += [{"lr": 1e-4, "seed": 0, "m": 18.0, "guard_ok": False}]
    table = summarise_points(rows, ["lr"], "m")
    first, second = table
    assert first["lr"] == 1e-5 and first["seeds"] == 3 and first["guard_ok"] == 2
    assert first["m_mean"] == pytest.approx(statistics.mean([20.0, 21.0, 23.5]))
    assert first["m_std"] == pytest.approx(statistics.stdev([20.0, 21.0, 23.5]))
    assert second["m_std"] == 0.0 and second["seeds"] == 1


def test_curve_holds_the_other_parameters_at_the_baseline_in_one_at_a_time():
    rows = [{"lr": lr, "ele": ele, "m": m} for lr, ele, m in
            ((1e-6, 55, 10.0), (1e-6, 55, 12.0), (1e-5, 55, 9.0), (1e-6, 90, 30.0), (1e-4, 55, 5.0))]
    lr_curve = curve(rows, "lr", "m", {"lr": 1e-6, "ele": 55})
    assert [p["value"] for p in lr_curve] == [1e-6, 1e-5, 1e-4]
    assert lr_curve[0]["mean"] == 11.0 and lr_curve[0]["std"] == pytest.approx(statistics.stdev([10.0, 12.0]))
    # a grid averages over the other parameters instead
    assert curve(rows, "lr", "m")[0]["mean"] == pytest.approx((10 + 12 + 30) / 3)


def test_study_figure_is_a_png(tmp_path):
    path = study_figure(tmp_path / "f.png", "lr", [{"value": 1e-6, "mean": 18.0, "std": 0.1, "n": 3},
                                                   {"value": 1e-4, "mean": 16.0, "std": 0.4, "n": 3}],
                        "target_test_psnr", 18.2, "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    categorical = study_figure(tmp_path / "g.png", "prior", [{"value": "population", "mean": 1.0, "std": 0.0, "n": 1},
                                                            {"value": "subject", "mean": 2.0, "std": 0.0, "n": 1}],
                               "m", None, "t")
    assert categorical.stat().st_size > 1000


STUDY = """
name: tiny_amount
metric: target_test_psnr
mode: max
seeds: [0, 1]
fixed: {epochs: 1}
params:
  target_subjects: {type: choice, values: [1, 3]}
  lr: {type: choice, values: [1.0e-5, 1.0e-2]}
"""


@pytest.mark.slow
def test_study_end_to_end_writes_tables_and_figures_with_seed_spread(local_ray, tiny_cohort, tiny_trained, tmp_path,
                                                                    capsys):
    from mlflow.tracking import MlflowClient

    from uda3d.cli import main

    backbone, vae = tiny_trained
    space = tmp_path / "study.yaml"
    space.write_text(STUDY)
    work = tmp_path / "work"
    code = main(["study", "data-amount", "--space", str(space), "--dataroot", str(tiny_cohort), "--backbone",
                 str(backbone), "--vae", str(vae), "--workdir", str(work), "--max-source-drop", "100",
                 "--max-intensity-drift", "100", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: target_subjects 3 left out: domain2_val holds 1 volume(s)" in out
    folder = work / "study" / "tiny_amount"
    trials = list(csv.DictReader((folder / "trials.csv").open()))
    assert len(trials) == 4 and sorted((t["lr"], t["seed"]) for t in trials) == sorted(
        (lr, s) for lr in ("1e-05", "0.01") for s in ("0", "1"))
    points = list(csv.DictReader((folder / "points.csv").open()))
    assert len(points) == 2
    for point in points:
        values = [float(t["target_test_psnr"]) for t in trials if t["lr"] == point["lr"]]
        assert float(point["target_test_psnr_mean"]) == pytest.approx(statistics.mean(values))
        assert float(point["target_test_psnr_std"]) == pytest.approx(statistics.stdev(values))
        assert point["seeds"] == "2"
    assert (folder / "tiny_amount_lr.png").read_bytes()[:4] == b"\x89PNG"
    assert not (folder / "tiny_amount_target_subjects.png").exists()  # one value left: nothing to plot
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == summary["planned"] == 4
    client = MlflowClient(tracking_uri=f"sqlite:///{work.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert len(children) == 4 and all(r.data.tags["stage"] == "study-trial" for r in children)
    parent = client.get_run(summary["parent_run_id"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "points.csv", "tiny_amount_lr.png", "summary.json"} <= logged


def test_parse_space_keeps_the_design():
    assert parse_space({"design": "one_at_a_time", "params": {"lr": {"type": "choice", "values": [1e-6]}}},
                       "x.yaml").design == "one_at_a_time"
