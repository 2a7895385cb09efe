"""``uda3d compare-methods`` on the tiny cohort: every method is scored against the control, per subject,
files and the MLflow run are written, and target-side methods never see a target T1."""

from __future__ import annotations

import csv
import json

import pytest

from uda3d.cli import main

pytestmark = pytest.mark.slow


def test_compare_methods_end_to_end(tiny_cohort, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    work = tmp_path / "cmp"
    code = main(["compare-methods", "--dataroot", str(tiny_cohort), "--workdir", str(work), "--seeds", "1",
                 "--ngf", "4", "--backbone-lr", "2e-3", "--backbone-epochs", "2", "--backbone-epochs-decay", "0",
                 "--finetune-epochs", "1", "--supervised-epochs", "1", "--ttt-epochs", "1",
                 "--ttt-subject-steps", "1", "--self-train-epochs", "1",
                 "--slice-size", "32", "--latent-channels", "8", "--vae-epochs", "1", "--adapt-epochs", "1",
                 "--methods", "robust", "robust_spatial", "ttt_joint", "ttt_site", "ttt_subject", "ttt_site+subject",
                 "self_train", "kl", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    site = tiny_cohort.name
    rows = list(csv.DictReader((work / site / "comparison.csv").open()))
    methods = [r["method"] for r in rows]
    for expected in ("no_adaptation", "source_ft", "robust", "robust_spatial", "ttt_joint", "ttt_site", "ttt_subject",
                     "ttt_site+subject", "self_train", "kl", "supervised", "uda"):
        assert expected in methods
    control = next(r for r in rows if r["method"] == "source_ft")
    assert float(control["gain_psnr_vs_control"]) == 0.0
    report = json.loads((work / "comparison.json").read_text())
    # the control trained the candidates' epoch plus the target-side methods' source steps (1 x 2 / 2 = 1)
    assert report["control_epochs"] == 2
    signals = report["sites"][site]["signals"]
    assert set(signals) == {"kspace_source_mae", "aug_source_mae", "source_val_psnr", "held_out_aux_loss"}
    assert not signals["aug_source_mae"]["eligible"] and "robust" in signals["aug_source_mae"]["excluded_by"]
    assert signals["kspace_source_mae"]["eligible"]
    # uda: the highest source-val PSNR among the candidates (the signal validated on the dev cohorts)
    [pick] = report["sites"][site]["picks"]
    candidates = {r["method"]: float(r["source_val_psnr"]) for r in rows
                  if r["method"] not in ("supervised", "uda", "source_ft") and r["source_val_psnr"]}
    assert pick["method"] == max(candidates, key=candidates.get) and "source_val_psnr" in pick["reason"]
    uda = next(r for r in rows if r["method"] == "uda")
    assert uda["target_psnr"] == next(r for r in rows if r["method"] == pick["method"])["target_psnr"]
    md = (work / site / "comparison.md").read_text()
    assert "| ttt_site+subject |" in md and "source_ft" in md
    assert (work / site / "comparison.png").stat().st_size > 1000
    client = MlflowClient(tracking_uri=f"sqlite:///{work.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert run.info.run_name == "compare-methods" and f"{site}.ttt_site_and_subject.target_psnr" in run.data.metrics
