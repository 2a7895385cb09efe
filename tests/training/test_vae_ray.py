"""``uda3d train-vae`` with 2 Ray Train workers on CPU reading the slice store through Ray Data."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from uda3d.cli import main
from uda3d.cohort.generate import CohortConfig, generate_cohort

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slice_store(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("vae")
    root = base / "cohort"
    generate_cohort(root, CohortConfig(sites=("site-a",), subjects_per_site=8, shape=(32, 32, 32), seed=7),
                    progress=False)
    assert main(["slices", str(root), "--out", str(base / "store"), "--slice-size", "32", "--quiet"]) == 0
    return base / "store"


def test_two_worker_vae_beats_the_mean_slice_and_logs_figures(local_ray, slice_store, tmp_path, capsys):
    workdir = tmp_path / "work"
    code = main(["train-vae", "--store", str(slice_store), "--workdir", str(workdir), "--num-workers", "2",
                 "--latent-channels", "16", "--lr", "3e-3", "--epochs", "15", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    recon = [m.value for m in client.get_metric_history(run.info.run_id, "val_recon_mse")]
    baseline = run.data.metrics["val_mse_mean_slice"]
    assert len(recon) == 15
    assert recon[-1] < recon[0]
    assert recon[-1] < baseline, (recon[-1], baseline)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "kl_per_element")] == list(range(1, 16))
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/reconstructions.png", "figures/prior_samples.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} == {"checkpoint/state.pt"}


def test_more_workers_than_volumes_is_refused(slice_store, tmp_path, capsys):
    code = main(["train-vae", "--store", str(slice_store), "--workdir", str(tmp_path), "--num-workers", "9",
                 "--quiet"])
    assert code == 2 and "cannot feed 9 workers" in capsys.readouterr().err
