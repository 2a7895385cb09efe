"""Ray plumbing shared by every distributed stage: start or join a cluster, storage, worker helpers."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from uda3d.config import ScalingOptions
from uda3d.errors import ConfigError

log = logging.getLogger(__name__)

S = TypeVar("S")  # a stage's spec
C = TypeVar("C")  # its worker context

LOOPBACK = "127.0.0.1"
# How often Ray Train's controller polls its workers. Ray's 2 s default makes a worker that reports
# checkpoints faster than that wait ~2 s per report (measured: 6 short epochs took 63 s instead of
# 51 s); a local Ray on one machine can poll far more often at no visible cost.
LOCAL_TRAIN_POLL_S = "0.2"
# Ray Train starts a preemption-watcher actor (one more process) for every run; a local Ray on one
# machine has no node that can be drained, and the process costs each stage about 1 s of start-up
# on 2 cores (benchmarks/results/stage_overhead.md).
LOCAL_PREEMPTION_WATCHER = "0"


def ensure_ray(address: str | None, train_cpus: float = 0.0) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``, set inside a Ray job), else start a local Ray on demand.

    A local Ray gets at least one logical CPU more than the training workers reserve: Ray Data's
    read tasks need a CPU slot of their own, and a cluster whose every CPU is held by a training
    worker deadlocks the moment a worker asks for data. On a real cluster, leave a CPU free per node.
    """
    import math
    import os

    import ray

    if ray.is_initialized():
        return
    job_cluster = os.environ.get("RAY_ADDRESS", "")  # set inside `ray job submit` (a GCS address, not http)
    if not address and job_cluster and not job_cluster.startswith("http"):
        address = job_cluster
    with _keep_sigterm_handler():
        if address:
            ray.init(address=address, log_to_driver=True)
        else:  # the dashboard of a local Ray listens on loopback only, whatever Ray's default becomes
            os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", LOCAL_TRAIN_POLL_S)  # inherited by its workers
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", LOCAL_PREEMPTION_WATCHER)
            ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(train_cpus) + 1), log_to_driver=True,
                     dashboard_host=LOOPBACK)


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """Keep a SIGTERM handler the caller installed (the CLI's): ``ray.init`` replaces it with ``sys.exit``.

    The CLI turns SIGTERM into the same clean interruption as Ctrl-C (temporary files removed,
    exit code 143, resumable); Ray's handler would skip that. Without a handler of the caller's,
    Ray's stays.
    """
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def scaling_config(options: ScalingOptions):
    """Ray Train's ``ScalingConfig`` from our validated options."""
    from ray.train import ScalingConfig

    resources = {"CPU": options.cpus_per_worker}
    if options.use_gpu:
        resources["GPU"] = options.gpus_per_worker or 1.0
    return ScalingConfig(num_workers=options.num_workers, use_gpu=options.use_gpu, resources_per_worker=resources)


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
        for name in ("", "ray.data", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)


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


def launch(worker: Callable[[StageJob], None], job: StageJob, datasets: dict | None = None,
           data_config=None) -> TrainResult:
    """Run ``worker(job)`` on a ``TorchTrainer`` (DDP over gloo on CPU, NCCL on GPUs).

    ``job.spec.stage`` (a ``StageRun``) gives the scaling, the run's name and storage and Ray's
    verbosity. Checkpoints go to ``storage_path/run_name`` (the two most recent are kept);
    ``max_failures`` restarts a failed worker group from the latest one. Raises the run's error if it failed.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    stage = job.spec.stage
    scaling = stage.scaling
    ensure_ray(scaling.address, scaling.num_workers * scaling.cpus_per_worker)
    trainer = TorchTrainer(
        worker, train_loop_config=job, scaling_config=scaling_config(scaling),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(name=stage.run_name, storage_path=stage.storage_path,
                             failure_config=FailureConfig(max_failures=scaling.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             logging_config=LoggingConfig(log_level="INFO" if stage.verbose else "WARNING")),
        datasets=datasets, dataset_config=data_config,
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return TrainResult(checkpoint=result.checkpoint.path, metrics=dict(result.metrics),
                       mlflow_run_id=result.metrics.get("mlflow_run_id") or None)


def latest_checkpoint_on_disk(folder: str | Path) -> str | None:
    """The newest ``checkpoint_*`` under a run folder whose state loads, or None.

    Ray registers a reported checkpoint in its run snapshot a moment after writing it; a run killed
    in between leaves the newest checkpoint on disk but not in the snapshot. Resuming considers both.
    """
    from uda3d.errors import DataError
    from uda3d.training.checkpoint import load_state

    candidates = sorted(Path(folder).glob("checkpoint_*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        try:
            load_state(candidate)
        except DataError:
            continue  # half-written by an interrupted run
        return str(candidate)
    return None


def restore_state(device, folder: str | None = None) -> dict | None:
    """The latest state of this run (inside a worker): Ray's checkpoint or the newest complete one in ``folder``.

    Ray hands a restarted worker group (``max_failures``) the last checkpoint it registered, and a
    ``--resume``d run none at all; a checkpoint whose files landed just before a worker died may
    not be registered yet. ``folder`` is this run's folder, empty when the run began (``run_folder``),
    so whatever complete checkpoint it holds is this run's: the later of the two wins.
    """
    import ray.train

    from uda3d.training.checkpoint import load_state

    states = []
    checkpoint = ray.train.get_checkpoint()
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

        import ray.train
        from ray.train import Checkpoint

        from uda3d.training.checkpoint import save_state

        self.tracker.log_metrics(metrics, step=int(metrics["epoch"]))
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if self.rank == 0:
                save_state(directory, {**state, "mlflow_run_id": self.run_id})
                checkpoint = Checkpoint.from_directory(directory)
            ray.train.report(dict(metrics, mlflow_run_id=self.run_id), checkpoint=checkpoint)


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
