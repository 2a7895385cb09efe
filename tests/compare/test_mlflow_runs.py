"""``uda3d compare``: the run table from hand-made run records (pure), and from a real MLflow store."""

from __future__ import annotations

import csv
import math

import pytest

from uda3d.compare.mlflow_runs import compare_runs, markdown, ranked, runs_table, varying_params
from uda3d.config import TrackingConfig
from uda3d.errors import ConfigError
from uda3d.tracking import RunRecord, Tracker


def _run(i: int, lr: str, psnr: float | None, **extra) -> RunRecord:
    metrics = {"objective": 10.0 - i, **({"target_test_psnr": psnr} if psnr is not None else {}), "loss_l1": 0.1}
    return RunRecord(run_id=f"{i:032x}", name=f"trial-{i}", status="FINISHED",
                     params={"adapt.lr": lr, "adapt.epochs": "5", "backbone_checkpoint": f"/x/{i}", **extra},
                     metrics=metrics, tags={"stage": "tune-trial"})


def test_only_params_that_differ_are_shown_and_locations_are_left_out():
    runs = [_run(0, "1e-06", 18.0), _run(1, "1e-05", 17.0, **{"adapt.prior": "population"})]
    assert varying_params(runs) == ["adapt.lr", "adapt.prior"]
    columns, rows = runs_table(runs)
    assert columns == ["run", "run_id", "stage", "status", "adapt.lr", "adapt.prior", "objective", "target_test_psnr"]
    assert rows[0]["adapt.prior"] == "" and rows[1]["adapt.prior"] == "population"
    assert rows[0]["run_id"] == "0" * 8 and rows[1]["objective"] == 9.0


def test_explicit_columns_and_missing_metrics():
    runs = [_run(0, "1e-06", 18.0), _run(1, "1e-05", None)]
    columns, rows = runs_table(runs, params=["adapt.epochs"], metrics=["target_test_psnr", "loss_l1"])
    assert columns[4:] == ["adapt.epochs", "target_test_psnr", "loss_l1"]
    assert math.isnan(rows[1]["target_test_psnr"])
    assert [r["run"] for r in ranked(rows, "target_test_psnr", higher_is_better=True)] == ["trial-0"]
    text = markdown(columns, rows)
    assert text.splitlines()[0].startswith("| run | run_id |") and "| 18 |" in text and len(text.splitlines()) == 4


def test_compare_reads_an_mlflow_store_and_writes_the_files(tmp_path):
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e",
                              artifact_root=(tmp_path / "art").as_uri())
    for i, (lr, psnr) in enumerate((("1e-06", 18.5), ("1e-04", 16.0), ("1e-05", 18.9))):
        tracker = Tracker(tracking)
        tracker.start(f"trial-{i}", params={"adapt": {"lr": lr, "epochs": 5}}, tags={"stage": "tune-trial"})
        tracker.log_metrics({"objective": 3.0 - i, "target_test_psnr": psnr}, step=1)
        tracker.end()
    other = Tracker(tracking)
    other.start("backbone", params={"backbone": {"lr": 1e-3}}, tags={"stage": "backbone"})
    other.end()
    result = compare_runs(tracking, tmp_path / "out", "tags.stage = 'tune-trial'")
    assert [r["run"] for r in result["rows"]] == ["trial-0", "trial-1", "trial-2"]
    assert [r["run"] for r in result["ranked"]] == ["trial-2", "trial-0", "trial-1"]
    with open(result["files"]["csv"]) as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["target_test_psnr"]) for r in table] == [18.5, 16.0, 18.9] and table[2]["adapt.lr"] == "1e-05"
    assert (tmp_path / "out" / "runs.png").read_bytes()[:4] == b"\x89PNG"
    assert "trial-1" in (tmp_path / "out" / "runs.md").read_text()
    # the comparison itself is a run, left out of the next comparison
    again = compare_runs(tracking, tmp_path / "out2")
    assert sorted(r["run"] for r in again["rows"]) == ["backbone", "trial-0", "trial-1", "trial-2"]
    with pytest.raises(ConfigError, match=r"--experiment: no experiment 'nope'"):
        compare_runs(TrackingConfig(uri=tracking.uri, experiment="nope"), tmp_path / "x")
    with pytest.raises(ConfigError, match=r"--filter: no run"):
        compare_runs(tracking, tmp_path / "x", "tags.stage = 'none'")
    with pytest.raises(ConfigError, match=r"--filter: MLflow rejected"):
        compare_runs(tracking, tmp_path / "x", "tags.stage ==== 1")
    assert not (tmp_path / "x").exists()
