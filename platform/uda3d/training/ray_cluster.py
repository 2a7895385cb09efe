"""Start or join the Ray cluster a stage runs on, and find the newest complete checkpoint a run left.

The lowest layer of the Ray plumbing: ``ray_runtime`` (a stage's ``fit``) and ``stage_pool`` (one
worker group across stages) both build on it, and it imports neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from uda3d.config import ScalingOptions

LOOPBACK = "127.0.0.1"
# How often Ray Train's controller polls its workers. Ray's 2 s default makes a worker that reports
# checkpoints faster than that wait ~2 s per report (measured: 6 short epochs took 63 s instead of
# 51 s); a local Ray on one machine can poll far more often at no visible cost.
LOCAL_TRAIN_POLL_S = "0.2"
# Ray Train starts a preemption-watcher actor (one more process) for every run; a local Ray on one
# machine has no node that can be drained, and the process costs each stage about 1 s of start-up
# on 2 cores (benchmarks/results/stage_overhead.md).
LOCAL_PREEMPTION_WATCHER = "0"
# Checkpoints a stage's run folder keeps (the newest ones): a fresh fit's ``num_to_keep`` and the
# stage pool's own pruning alike, so ``--resume`` finds the same files either way.
KEEP_CHECKPOINTS = 2


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
