"""One MLflow run per training, whatever restarts it: the run id is kept beside the checkpoints."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from uda3d.config import TrackingConfig
from uda3d.training.ray_runtime import RUN_ID_FILE, start_tracking


def test_a_restart_before_the_first_checkpoint_continues_the_same_run(tmp_path):
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e",
                              artifact_root=(tmp_path / "art").as_uri())
    folder = tmp_path / "ray_results" / "backbone"
    tracker, first = start_tracking(tracking, 0, "backbone", {"lr": 1e-3}, {"stage": "backbone"}, None, str(folder))
    tracker.log_metrics({"epoch": 1.0}, step=1)
    assert (folder / RUN_ID_FILE).read_text() == first
    # the worker group is replaced during epoch 2, before any checkpoint was registered
    again, second = start_tracking(tracking, 0, "backbone", {"lr": 1e-3}, {"stage": "backbone"}, None, str(folder))
    again.log_metrics({"epoch": 1.0}, step=1)   # epoch 1 redone: already held, not logged twice
    again.log_metrics({"epoch": 2.0}, step=2)
    assert second == first
    client = MlflowClient(tracking_uri=tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert [r.info.run_id for r in runs] == [first]
    assert [m.step for m in client.get_metric_history(first, "epoch")] == [1, 2]
    # a checkpoint's own run id wins over the file (a resumed run keeps the run it was checkpointed in)
    _, third = start_tracking(tracking, 0, "backbone", {}, {}, {"mlflow_run_id": first, "epoch": 2}, str(folder))
    assert third == first
    # ranks other than 0 track nothing and write nothing
    other = tmp_path / "other"
    _, none = start_tracking(tracking, 1, "backbone", {}, {}, None, str(other))
    assert none is None and not other.exists()
