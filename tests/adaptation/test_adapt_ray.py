"""``uda3d adapt`` on Ray Train (2 CPU workers): guards decide, the history and the kept model are written."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from uda3d.cli import main
from uda3d.training.checkpoint import load_state

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


def test_adapt_with_a_destructive_lr_keeps_a_safe_model(local_ray, tiny_cohort, tiny_trained, tmp_path, capsys):
    backbone, vae = tiny_trained
    workdir = tmp_path / "work"
    code = main(["adapt", "--dataroot", str(tiny_cohort), "--backbone", str(backbone), "--vae", str(vae),
                 "--workdir", str(workdir), "--num-workers", "2", "--lr", "0.05", "--epochs", "3", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "guard: stopped at epoch" in out and "rolled back" in out
    assert "Spearman(objective, target-test PSNR) across checkpoints:" in out
    saved = json.loads((workdir / "adapted" / "adapt" / "decision.json").read_text())
    history = saved["history"]
    assert history[0]["epoch"] == 0 and "eval_target_test_psnr" in history[0]
    kept = saved["decision"]["kept_epoch"]
    start_psnr = history[0]["source_val_psnr"]
    kept_psnr = history[kept]["source_val_psnr"]
    assert kept_psnr >= start_psnr - 0.2
    state = load_state(workdir / "adapted" / "adapt")
    assert state["kept_epoch"] == kept
    if kept == 0:  # rolled back to the starting model: the generator is the backbone's, bit for bit
        original = load_state(backbone)["generator"]
        assert all(torch.equal(state["generator"][k], original[k]) for k in original)
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert run.data.tags["guard_kept_epoch"] == str(kept)
    assert {"backbone_run_id", "vae_run_id"} <= set(run.data.tags)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "objective")][0] == 0


def test_adaptation_resumes_from_its_last_epoch_checkpoint(local_ray, tiny_cohort, tiny_trained, tmp_path):
    """The restore path a restarted worker group takes: checkpoint -> backbone, guard history, MLflow run."""

    from uda3d.adaptation.stage import AdaptSpec, run_adapt
    from uda3d.config import AdaptConfig, GuardConfig, StageRun
    from uda3d.tracking import resolve_tracking

    backbone, vae = tiny_trained
    workdir = tmp_path / "work"
    guards = GuardConfig(max_source_drop=5.0, max_intensity_drift=1.0)

    def adapt(epochs: int, resume: bool):
        stage = StageRun(dataroot=str(tiny_cohort), workdir=str(workdir), tracking=resolve_tracking(workdir, "uda3d"),
                         run_name="adapt", resume=resume, progress=False)
        return run_adapt(AdaptSpec(stage=stage, backbone_checkpoint=str(backbone), vae_checkpoint=str(vae),
                                   adapt=AdaptConfig(lr=1e-3, epochs=epochs, ele_percent=90), guards=guards))

    first = adapt(epochs=1, resume=False)
    second = adapt(epochs=2, resume=True)  # as if the first run had been cut short after epoch 1
    assert [h["epoch"] for h in second.history] == [0, 1, 2]
    assert second.history[:2] == first.history  # epochs 0 and 1 restored, not redone
    assert second.decision["kept_epoch"] == 2 and second.mlflow_run_id == first.mlflow_run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "objective")] == [0, 1, 2]
    assert run.data.tags["resumed_after_epoch"] == "1"
    assert load_state(workdir / "adapted" / "adapt")["kept_epoch"] == 2
