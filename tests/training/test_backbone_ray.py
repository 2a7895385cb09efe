"""``uda3d train-backbone`` on a real local Ray: 2 DDP workers on CPU (gloo), MLflow, interruption + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from uda3d.cli import main

pytestmark = pytest.mark.slow

TINY_TRAINING = ["--ngf", "4", "--ndf", "4", "--lr", "2e-3", "--epochs-decay", "0", "--quiet"]


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")


def _only_run(workdir: Path):
    client = _client(workdir)
    runs = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_two_worker_cpu_run_is_tracked_and_in_sync(tiny_cohort, tmp_path, local_ray, capsys):
    workdir = tmp_path / "work"
    code = main(["train-backbone", "--dataroot", str(tiny_cohort), "--workdir", str(workdir),
                 "--num-workers", "2", "--epochs", "4", *TINY_TRAINING])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "backbone checkpoint:" in out

    client, run = _only_run(workdir)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["backbone.generator"] == "sit" and params["world_size"] == "2" and params["backbone.lr"] == "0.002"
    tags = run.data.tags
    assert tags["weights_sha1_rank0"] == tags["weights_sha1_rank1"]  # DDP kept both ranks bit-identical
    assert {"git_commit", "dataset_fingerprint", "ray", "torch"} <= set(tags)
    l1 = client.get_metric_history(run.info.run_id, "loss_l1")
    assert [m.step for m in l1] == [1, 2, 3, 4]
    assert l1[-1].value < l1[0].value
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_psnr")] == [1, 2, 3, 4]
    assert all(m.value == 1.0 for m in client.get_metric_history(run.info.run_id, "ranks_in_sync"))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} | {
        a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {"checkpoint/state.pt", "figures/synthesis.png"}
    png = Path(run.info.artifact_uri.removeprefix("file://")) / "figures" / "synthesis.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Re-running under the same name without --resume is refused (no silent overwrite).
    code = main(["train-backbone", "--dataroot", str(tiny_cohort), "--workdir", str(workdir), "--epochs", "1",
                 *TINY_TRAINING])
    assert code == 2 and "already exists" in capsys.readouterr().err


def _checkpoints(workdir: Path) -> list[Path]:
    return sorted((workdir / "ray_results" / "backbone").glob("checkpoint_*"))


def test_interrupted_run_resumes_with_the_next_epoch(tiny_cohort, tmp_path):
    epochs = 20  # long enough that Ctrl-C after the second checkpoint lands mid-run
    workdir = tmp_path / "work"
    argv = [sys.executable, "-m", "uda3d.cli", "train-backbone", "--dataroot", str(tiny_cohort),
            "--workdir", str(workdir), "--epochs", str(epochs), *TINY_TRAINING]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while len(_checkpoints(workdir)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "the first run ended before it could be interrupted"
    first.send_signal(signal.SIGTERM)  # what a scheduler sends a pre-empted job (Ctrl-C: tests/test_interrupt.py)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "uda3d train-backbone: terminated" in err, err[-3000:]
    assert list(workdir.rglob(".*.tmp")) == []  # no half-written file of ours

    client, run = _only_run(workdir)
    before = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
    assert 1 <= len(before) < epochs

    resumed = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client, run = _only_run(workdir)  # the same MLflow run continued
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
    assert steps == list(range(1, epochs + 1)), steps  # no epoch repeated or skipped
    assert 1 <= int(run.data.tags["resumed_after_epoch"]) <= len(before)
    assert run.info.status == "FINISHED"
