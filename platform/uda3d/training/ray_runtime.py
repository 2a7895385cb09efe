"""Ray plumbing shared by every distributed stage: launch a stage, its run folder, worker helpers."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from uda3d.errors import ConfigError
from uda3d.training.ray_cluster import KEEP_CHECKPOINTS, ensure_ray, latest_checkpoint_on_disk, scaling_config

S = TypeVar("S")  # a stage's spec
C = TypeVar("C")  # its worker context

def run_folder(storage_path: str | Path, run_name: str, resume: bool) -> Path:
    """Check the run folder against ``resume``: a new run must not overwrite one, a resume needs one."""
    folder = Path(storage_path) / run_name
    exists = folder.is_dir() and any(folder.iterdir())
    if exists and not resume:
        raise ConfigError("--run-name", f"run {run_name!r} already exists under {storage_path}; pass --resume to "
                                        "continue it or choose another --run-name")
    if resume and not exists:
        raise ConfigError("--resume", f"no run {run_name!r} under {storage_path} to resume")
    return folder


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer, in order: equal digests mean bit-identical weights."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_strings(value: str) -> list[str]:
    """Every rank's ``value`` (all ranks must call it); just ``[value]`` without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


@dataclass(frozen=True)
class TrainResult:
    """What a finished distributed stage left: its last checkpoint, last metrics and MLflow run."""

    checkpoint: str
    metrics: dict[str, Any]
    mlflow_run_id: str | None


def quiet_worker_logs(verbose: bool) -> None:
    """Inside a worker: hide Ray Train's per-report and Ray Data's per-epoch INFO lines unless ``verbose``.

    Some of them come from loggers outside ``ray.train`` (named by file path), which Ray's
    ``LoggingConfig`` does not reach, so the worker's root and ``ray.data`` loggers are raised too.
    """
    if not verbose:
        for name in ("", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
    quiet_ray_data_logs(verbose)


RAY_DATA_PROGRESS_LOGGER = "ray.data._internal.progress"  # the logger of Ray Data's "Progress bars disabled" warning


def quiet_ray_data_logs(verbose: bool) -> None:
    """Unless ``verbose``: hide Ray Data's per-dataset INFO lines and its warning that progress bars are off.

    The stages turn Ray Data's bars off on purpose (they pile up in a log file), and Ray Data then
    says so once per process, at WARNING, on the driver and in every worker.
    """
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger(RAY_DATA_PROGRESS_LOGGER).setLevel(logging.ERROR)


@dataclass(frozen=True)
class WorkerContext:
    """What only the driver knows, handed to every worker beside the spec.

    Attributes:
        run_folder: this run's folder under Ray's storage (checked against ``resume`` by ``run_folder``).
        tags: the MLflow run's tags (git commit, stage, Python version, inputs' fingerprints, ...).
    """

    run_folder: str
    tags: dict[str, str]


@dataclass(frozen=True)
class StageJob(Generic[S, C]):
    """A worker's whole input: the stage's validated spec and the driver's context (``train_loop_config``).

    Ray pickles it to every worker as it is; a worker never reads a raw dict.
    """

    spec: S
    context: C


def train_result(checkpoint: str, metrics: dict) -> TrainResult:
    """A stage's outcome as the caller sees it, whether a fresh fit or the pool ran it."""
    return TrainResult(checkpoint=checkpoint, metrics=metrics, mlflow_run_id=metrics.get("mlflow_run_id") or None)


def launch(worker: Callable[[StageJob], None], job: StageJob, datasets: dict | None = None,
           data_config=None) -> TrainResult:
    """Run ``worker(job)`` on a ``TorchTrainer`` (DDP over gloo on CPU, NCCL on GPUs), or on the open stage pool.

    ``job.spec.stage`` (a ``StageRun``) gives the scaling, the run's name and storage and Ray's
    verbosity. Checkpoints go to ``storage_path/run_name`` (the two most recent are kept);
    ``max_failures`` restarts a failed worker group from the latest one. Raises the run's error if it failed.
    Inside a ``stage_pool`` block, a stage of the pool's scaling runs on the pool's worker group
    instead (``uda3d.training.stage_pool``): same checkpoints, same errors, no start-up.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from uda3d.training.stage_pool import active_pool

    stage = job.spec.stage
    scaling = stage.scaling
    pool = active_pool()
    if pool is not None and pool.accepts(scaling, data_config):
        checkpoint, metrics = pool.run(worker, job, datasets)
        if checkpoint is None:
            raise RuntimeError(f"stage {stage.run_name!r} ended without a checkpoint")
        return train_result(checkpoint, metrics)
    ensure_ray(scaling.address, scaling.num_workers * scaling.cpus_per_worker)
    trainer = TorchTrainer(
        worker, train_loop_config=job, scaling_config=scaling_config(scaling),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(name=stage.run_name, storage_path=stage.storage_path,
                             failure_config=FailureConfig(max_failures=scaling.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                             logging_config=LoggingConfig(log_level="INFO" if stage.verbose else "WARNING")),
        datasets=datasets, dataset_config=data_config,
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return train_result(result.checkpoint.path, dict(result.metrics))


def restore_state(device, folder: str | None = None) -> dict | None:
    """The latest state of this run (inside a worker): Ray's checkpoint or the newest complete one in ``folder``.

    Ray hands a restarted worker group (``max_failures``) the last checkpoint it registered, and a
    ``--resume``d run none at all; a checkpoint whose files landed just before a worker died may
    not be registered yet. ``folder`` is this run's folder, empty when the run began (``run_folder``),
    so whatever complete checkpoint it holds is this run's: the later of the two wins.
    """
    import ray.train

    from uda3d.training.checkpoint import load_state
    from uda3d.training.stage_pool import current_job

    states = []
    checkpoint = ray.train.get_checkpoint() if current_job() is None else None  # a pool's checkpoints are on disk
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            states.append(load_state(directory, map_location=device))
    on_disk = latest_checkpoint_on_disk(folder) if folder else None
    if on_disk:
        states.append(load_state(on_disk, map_location=device))
    return max(states, key=lambda s: int(s["epoch"])) if states else None


class EpochReporter:
    """Per epoch, in a worker: metrics to MLflow (rank 0), then a checkpoint and ``ray.train.report``.

    MLflow goes first: an interruption between the two makes the resumed run redo an epoch MLflow
    already holds (the tracker skips it) rather than lose one.
    """

    def __init__(self, tracker, rank: int, run_id: str | None) -> None:
        self.tracker = tracker
        self.rank = rank
        self.run_id = run_id or ""

    def __call__(self, state: dict, metrics: dict[str, float]) -> None:
        import tempfile

        from uda3d.training.checkpoint import save_state

        self.tracker.log_metrics(metrics, step=int(metrics["epoch"]))
        with tempfile.TemporaryDirectory() as directory:
            if self.rank == 0:
                save_state(directory, {**state, "mlflow_run_id": self.run_id})
            report(dict(metrics, mlflow_run_id=self.run_id), directory if self.rank == 0 else None)


def report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
    """``ray.train.report`` of the metrics and a checkpoint folder, or the stage pool's equivalent inside a pool."""
    import ray.train
    from ray.train import Checkpoint

    from uda3d.training.stage_pool import current_job

    pooled = current_job()
    if pooled is not None:
        pooled.report(metrics, checkpoint_dir)
        return
    ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


def dataset_shard(name: str):
    """This rank's iterator over the stage's dataset ``name`` (Ray Train's shard, or the pool job's dataset)."""
    import ray.train

    from uda3d.training.stage_pool import current_job

    pooled = current_job()
    if pooled is not None:
        return pooled.datasets[name].iterator()
    return ray.train.get_dataset_shard(name)


RUN_ID_FILE = "mlflow_run_id"


def start_tracking(tracking, rank: int, run_name: str, params: dict, tags: dict, restored: dict | None,
                   folder: str | None = None):
    """Rank 0's MLflow run (continued when resuming); a no-op tracker elsewhere.

    The run continued is the one the restored checkpoint names or, when there is no checkpoint yet
    (a worker lost during the first epoch, or a resume of a run stopped then), the one recorded in
    ``folder/mlflow_run_id`` when it was created: one run per training, never an empty twin.
    Every rank must call it: it also records where each rank runs (tags ``worker.rank<i>`` =
    ``host:pid``), refreshed whenever Ray restarts the worker group, so a lost worker can be traced
    to its node and process.
    """
    import os
    import socket

    import ray
    import torch

    from uda3d.io.atomic import atomic_file
    from uda3d.tracking import Tracker

    tracker = Tracker(tracking if rank == 0 else None)
    recorded = Path(folder) / RUN_ID_FILE if folder else None
    previous = (restored or {}).get("mlflow_run_id") or None
    if previous is None and recorded is not None and recorded.is_file():
        previous = recorded.read_text().strip() or None
    run_id = tracker.start(run_name, params=params, tags=dict(tags, ray=ray.__version__, torch=torch.__version__),
                           run_id=previous) or previous
    if rank == 0 and run_id and recorded is not None and previous is None:
        with atomic_file(recorded) as tmp:
            tmp.write_text(run_id)
    places = gather_strings(f"{socket.gethostname()}:{os.getpid()}")
    tracker.set_tags({f"worker.rank{i}": place for i, place in enumerate(places)})
    if restored is not None:
        tracker.set_tags({"resumed_after_epoch": str(restored["epoch"])})
    return tracker, run_id
