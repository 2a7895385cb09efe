"""``uda3d adapt`` on Ray Train (2 CPU workers): guards decide, the history and the kept model are written."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

from uda3d.cli import main
from uda3d.config import BackboneConfig, PreprocessConfig, VAEConfig
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.data.slices import SliceConfig, volume_to_slices
from uda3d.training.checkpoint import load_state, save_state
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone
from uda3d.training.vae import VAETrainer, fit_vae

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoints(tiny_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("adapt")
    train = paired_dataset(discover(tiny_cohort, ("domain1_train",))["domain1_train"], PreprocessConfig(),
                           base / "cache")
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=3, epochs_decay=0, augment=False), CPU)
    fit_backbone(backbone, lambda e: DataLoader(train, batch_size=1), None, lambda m: None)
    save_state(base / "backbone", backbone.state_dict())
    slices = SliceConfig(size=32)
    vae = VAETrainer(VAEConfig(latent_channels=8, lr=3e-3, epochs=3), 32, CPU)
    fit_vae(vae, lambda e: [volume_to_slices(train[i]["target"][0], slices) for i in range(len(train))], None,
            lambda m: None)
    save_state(base / "vae", {**vae.state_dict(), "slice_config": {"size": 32, "plane": "coronal", "low": 1.0,
                                                                   "high": 99.0}})
    return base / "backbone", base / "vae"


def test_adapt_with_a_destructive_lr_keeps_a_safe_model(tiny_cohort, checkpoints, tmp_path, capsys):
    import ray

    backbone, vae = checkpoints
    workdir = tmp_path / "work"
    try:
        code = main(["adapt", "--dataroot", str(tiny_cohort), "--backbone", str(backbone), "--vae", str(vae),
                     "--workdir", str(workdir), "--num-workers", "2", "--lr", "0.05", "--epochs", "3", "--quiet"])
    finally:
        ray.shutdown()
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
