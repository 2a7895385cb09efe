"""``uda3d compare-methods`` on the tiny cohort: every method is scored, files and the MLflow run are written."""

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
                 "--finetune-epochs", "2", "--checkpoint-every", "1", "--supervised-epochs", "1",
                 "--slice-size", "32", "--latent-channels", "8", "--vae-epochs", "2", "--adapt-epochs", "1",
                 "--harmoniser-steps", "5", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = list(csv.DictReader((work / "comparison.csv").open()))
    methods = [r["method"] for r in rows]
    for expected in ("no_adaptation", "robust", "plain_ft", "supervised", "hist_match", "harmoniser_sw", "kl_subject",
                     "kl_population", "robust+hist_match", "robust+harmoniser_sw", "robust+kl_subject",
                     "robust+kl_population"):
        assert expected in methods
    base = next(r for r in rows if r["method"] == "no_adaptation")
    assert float(base["gain_db"]) == 0.0 and float(base["gap_share"]) == 0.0
    report = json.loads((work / "comparison.json").read_text())
    assert {"augmented source-val MAE", "latent objective"} == set(report["signals"])
    [pick] = report["picks"]
    assert pick["method"] in methods and pick["method"] != "supervised"
    assert (work / "comparison.png").stat().st_size > 1000 and "| robust+harmoniser_sw |" in (
        work / "comparison.md").read_text()
    client = MlflowClient(tracking_uri=f"sqlite:///{work.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert run.info.run_name == "compare-methods" and "robust/harmoniser_sw.target_psnr" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"comparison.csv", "comparison.png"}
