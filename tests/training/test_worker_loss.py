"""Worker loss: a Ray Train worker killed mid-epoch is replaced, the run resumes from its last checkpoint.

The test plays the node that goes away: it waits for the first epoch's checkpoint of a 2-worker,
4-epoch CPU run, then kills rank 0 (the MLflow writer) by its pid — found in the run's own
``worker.rank0`` tag — while a later epoch trains. With ``--max-failures 1`` Ray starts a new worker
group, which restores the newest checkpoint on disk when rank 0 died (epoch 1, or 2 where the machine
is fast enough to write it while the test looks up the pid); MLflow must hold epochs 1..4 once each,
in the same run.
The same run checks what any 2-worker DDP run must show: params, ranks in sync, the loss going down,
the checkpoint and figure artifacts, and that rerunning under the same name is refused.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from uda3d.cli import main
from uda3d.training.checkpoint import load_state
from uda3d.training.ray_cluster import latest_checkpoint_on_disk

pytestmark = pytest.mark.slow

TINY_TRAINING = ["--ngf", "4", "--ndf", "4", "--lr", "2e-3", "--epochs-decay", "0", "--quiet"]


def _kill_rank0_after_first_checkpoint(workdir: Path, killed: dict, stop: threading.Event) -> None:
    """Wait for epoch 1's complete checkpoint, then SIGKILL rank 0 (found through MLflow's tags)."""
    folder = workdir / "ray_results" / "backbone"
    while not stop.is_set():
        newest = latest_checkpoint_on_disk(folder) if folder.is_dir() else None
        if newest is not None and int(load_state(newest)["epoch"]) == 1:
            break
        time.sleep(0.05)
    else:
        return
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    pid = int(run.data.tags["worker.rank0"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # no clean-up, no goodbye: as a lost node
    time.sleep(0.5)  # let the process die; rank 0 writes the checkpoints, so none lands after this
    killed.update(pid=pid, run_id=run.info.run_id, epoch=int(load_state(latest_checkpoint_on_disk(folder))["epoch"]))


def test_killed_worker_is_replaced_and_the_run_resumes_from_its_checkpoint(local_ray, tiny_cohort, tmp_path,
                                                                          capsys):
    import ray

    workdir = tmp_path / "work"
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_rank0_after_first_checkpoint, args=(workdir, killed, stop), daemon=True)
    killer.start()
    try:
        code = main(["train-backbone", "--dataroot", str(tiny_cohort), "--workdir", str(workdir),
                     "--num-workers", "2", "--epochs", "4", "--max-failures", "1", *TINY_TRAINING])
        dashboard = ray._private.worker.get_dashboard_url()
    finally:
        stop.set()
        killer.join(timeout=10)
    out = capsys.readouterr().out
    assert killed, "the run ended before a worker could be killed"
    assert code == 0, out

    # The final checkpoint exists and holds epoch 4.
    final = Path(re.search(r"backbone checkpoint: (\S+)", out).group(1))
    assert int(load_state(final)["epoch"]) == 4

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    assert run.info.run_id == killed["run_id"] and run.info.status == "FINISHED"
    tags = run.data.tags
    assert killed["epoch"] < 4, "the kill came after the last epoch: nothing to resume"
    assert tags["resumed_after_epoch"] == str(killed["epoch"])  # the newest checkpoint when rank 0 died
    assert int(tags["worker.rank0"].rsplit(":", 1)[1]) != killed["pid"]  # ...on new processes
    for metric in ("epoch", "loss_l1", "val_psnr"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert sorted(steps) == [1, 2, 3, 4], (metric, steps)  # no gap, no duplicate
    assert all(m.value == 1.0 for m in client.get_metric_history(run.info.run_id, "ranks_in_sync"))
    assert tags["weights_sha1_rank0"] == tags["weights_sha1_rank1"]  # DDP kept both ranks bit-identical
    assert {"git_commit", "dataset_fingerprint", "ray", "torch"} <= set(tags)
    params = run.data.params
    assert params["backbone.generator"] == "sit" and params["world_size"] == "2" and params["backbone.lr"] == "0.002"
    l1 = sorted(client.get_metric_history(run.info.run_id, "loss_l1"), key=lambda m: m.step)
    assert l1[-1].value < l1[0].value
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} | {
        a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {"checkpoint/state.pt", "figures/synthesis.png"}
    png = Path(run.info.artifact_uri.removeprefix("file://")) / "figures" / "synthesis.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The local Ray this stage started serves its dashboard on loopback only.
    assert not dashboard or dashboard.split(":")[0] in ("127.0.0.1", "localhost")

    # Re-running under the same name without --resume is refused (no silent overwrite).
    code = main(["train-backbone", "--dataroot", str(tiny_cohort), "--workdir", str(workdir), "--epochs", "1",
                 *TINY_TRAINING])
    assert code == 2 and "already exists" in capsys.readouterr().err
