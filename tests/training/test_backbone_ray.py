"""``uda3d train-backbone`` interrupted by SIGTERM, then ``--resume``d into the same MLflow run.

(2 DDP workers on CPU, MLflow params and artifacts: ``tests/training/test_worker_loss.py``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

TINY_TRAINING = ["--ngf", "4", "--ndf", "4", "--lr", "2e-3", "--epochs-decay", "0", "--quiet"]


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")


def _only_run(workdir: Path):
    client = _client(workdir)
    runs = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _checkpoints(workdir: Path) -> list[Path]:
    return sorted((workdir / "ray_results" / "backbone").glob("checkpoint_*"))


def test_interrupted_run_resumes_with_the_next_epoch(tiny_cohort, tmp_path, ray_address):
    epochs = 20  # long enough that SIGTERM after the second checkpoint lands mid-run
    workdir = tmp_path / "work"
    argv = [sys.executable, "-m", "uda3d.cli", "train-backbone", "--dataroot", str(tiny_cohort),
            "--workdir", str(workdir), "--epochs", str(epochs), *TINY_TRAINING,
            "--address", ray_address]  # both runs join the session's Ray, as runs on a cluster do
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while len(_checkpoints(workdir)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
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
