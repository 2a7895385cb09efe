"""One Ray Train worker group kept across a pipeline's stages, so only the first stage pays start-up.

Ray Train 2.60 starts a controller and a new worker group for every ``TorchTrainer.fit`` and tears
both down after it: 7-11 s of start-up and 5-7 s of teardown per stage on 2 cores
(``benchmarks/results/stage_overhead.md``), six or seven times per pipeline; in the pool a later
stage starts in 0.3 s. Ray Train has no public way to hand a running worker group a second
training function, so a pool is itself one long ``TorchTrainer.fit`` (run from a driver thread)
whose training loop takes stage jobs from a small job-board actor, runs each one as ``launch``
would, and posts its result back:

- every rank takes the same job in the same order (the driver posts one job at a time), so the
  process group, the ranks and DDP behave as in a fresh ``fit``;
- a job's checkpoints go to its own run folder (``storage_path/run_name/checkpoint_<time>``, the
  two newest kept), not to the pool's run, and a job resumes from that folder
  (``ray_runtime.restore_state``): ``--resume`` and the stage ledger see the same files as after
  a fresh ``fit``;
- an error in a job fails the pool's ``fit`` exactly as it fails a fresh one (the same exception,
  after the same ``max_failures`` restarts, which re-run the unfinished job from its folder); a
  later stage then starts a fresh ``fit``;
- datasets travel with the job (a materialised Ray dataset is a list of object references) and
  each rank iterates its named dataset, as Ray Train's ``datasets_to_split=[]`` hands it over.

The pool's scaling is the pipeline's; a job whose scaling differs, or that wants its datasets
split across ranks, gets a fresh ``fit``. ``launch`` consults ``active_pool()``; the workers reach the
job they serve through ``current_job()`` (``ray_runtime.report`` and friends).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uda3d.config import ScalingOptions
from uda3d.training.ray_cluster import KEEP_CHECKPOINTS

POLL_S = 0.2  # how often the driver checks that the pool's fit is still alive while a job runs
POOL_RUN_PREFIX = ".stage-pool-"


def checkpoint_name(now: datetime.datetime | None = None) -> str:
    """``checkpoint_<date>_<time>.<ms>``: Ray Train's naming, so names sort in the order they were written."""
    now = now or datetime.datetime.now()
    return f"checkpoint_{now.strftime('%Y-%m-%d_%H-%M-%S')}.{now.microsecond // 1000:03d}"


def keep_newest(folder: Path, keep: int = KEEP_CHECKPOINTS) -> list[Path]:
    """Delete all but the ``keep`` newest ``checkpoint_*`` folders of a run; returns the ones deleted."""
    found = sorted(folder.glob("checkpoint_*"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    gone = [p for p in found[keep:] if p.is_dir()]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


@dataclass
class PooledJob:
    """What a pool worker knows about the job it serves: where its checkpoints go, its data, what it reported."""

    run_folder: Path
    rank: int
    datasets: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        """Keep the metrics; rank 0 copies the checkpoint into the run folder (temporary name, then renamed)."""
        self.metrics = dict(metrics)
        if checkpoint_dir is None or self.rank != 0:
            return
        self.run_folder.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now()
        while (final := self.run_folder / checkpoint_name(now)).exists():  # two reports within a millisecond
            now += datetime.timedelta(milliseconds=1)
        staging = self.run_folder / f".{final.name}.tmp"
        shutil.copytree(checkpoint_dir, staging)
        staging.rename(final)
        self.checkpoint = str(final)
        keep_newest(self.run_folder)


_CURRENT: PooledJob | None = None  # inside a pool worker, while a job runs


def current_job() -> PooledJob | None:
    """Inside a pool worker: the job being served; None in a fresh ``fit`` (and on the driver)."""
    return _CURRENT


@contextlib.contextmanager
def serving(job: PooledJob) -> Iterator[PooledJob]:
    """Make ``job`` the current one for the duration of the stage's worker function."""
    global _CURRENT
    _CURRENT = job
    try:
        yield job
    finally:
        _CURRENT = None


def _job_board():
    """The job-board actor class (defined lazily: importing this module must not import Ray)."""
    import asyncio

    import ray

    @ray.remote(num_cpus=0)
    class JobBoard:
        """Jobs in order, their results, and whether the pool is closing; every wait is an ``asyncio`` wait."""

        def __init__(self) -> None:
            self.jobs: list[Any] = []
            self.results: dict[int, Any] = {}
            self.closed = False
            self.workers: list[Any] = []
            self._changed: asyncio.Condition | None = None

        def _condition(self) -> asyncio.Condition:
            if self._changed is None:
                self._changed = asyncio.Condition()
            return self._changed

        async def _notify(self) -> None:
            async with self._condition():
                self._condition().notify_all()

        async def post(self, payload: Any) -> int:
            self.jobs.append(payload)
            await self._notify()
            return len(self.jobs) - 1

        async def next_job(self, after: int) -> tuple[int, Any] | None:
            """The first unfinished job after ``after`` (-1: from the start, as a restarted group asks)."""
            async with self._condition():
                while True:
                    for index in range(after + 1, len(self.jobs)):
                        if index not in self.results:
                            return index, self.jobs[index]
                    if self.closed:
                        return None
                    await self._condition().wait()

        async def finish(self, index: int, result: Any) -> None:
            self.results[index] = result
            self.jobs[index] = None  # the payload (and its datasets' references) can go
            await self._notify()

        async def result(self, index: int) -> Any:
            async with self._condition():
                while index not in self.results:
                    await self._condition().wait()
                return self.results[index]

        async def close(self) -> None:
            self.closed = True
            await self._notify()

        def join(self, worker: Any) -> None:
            self.workers.append(worker)

        def members(self) -> list[Any]:
            return list(self.workers)

    return JobBoard


def serve_jobs(config: dict[str, Any]) -> None:
    """The pool's training loop, on every rank: take a job, run it as a fresh ``fit`` would, post its result."""
    import ray
    import ray.train
    import torch

    from uda3d.training.ray_cluster import latest_checkpoint_on_disk

    board = config["board"]
    rank = ray.train.get_context().get_world_rank()
    ray.get(board.join.remote(ray.get_runtime_context().current_actor))
    last = -1
    while (taken := ray.get(board.next_job.remote(last))) is not None:
        index, (worker, job, datasets) = taken
        run = job.spec.stage
        pooled = PooledJob(run_folder=Path(run.storage_path) / run.run_name, rank=rank, datasets=datasets or {})
        pooled.run_folder.mkdir(parents=True, exist_ok=True)
        with serving(pooled):
            worker(job)
        if rank == 0:
            checkpoint = pooled.checkpoint or latest_checkpoint_on_disk(pooled.run_folder)
            ray.get(board.finish.remote(index, (checkpoint, pooled.metrics)))
        last = index
        del taken, worker, job, datasets, pooled
        gc.collect()  # the stage's models and data go before the next stage's arrive
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class StagePool:
    """A running pool: ``run`` a stage's worker on it; ``close`` ends its ``fit``."""

    def __init__(self, scaling: ScalingOptions, storage_path: str | Path, verbose: bool = False) -> None:
        self.scaling = scaling
        # absolute: Ray reads a relative storage path as a URI with no scheme and fails (`uda3d demo`'s default)
        self.storage_path = Path(storage_path).resolve()
        self.verbose = verbose
        self.run_name = f"{POOL_RUN_PREFIX}{uuid.uuid4().hex[:8]}"
        self._board = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.jobs_run = 0

    def accepts(self, scaling: ScalingOptions, data_config: Any = None) -> bool:
        """Whether a stage with this scaling and these Ray Data options can run here rather than in a fresh ``fit``.

        A pool hands each rank the job's datasets whole (a ``DataConfig`` splitting none), each with
        the Ray Data context it was created under (where a stage sets e.g. ``preserve_order``).
        """
        unsplit = data_config is None or getattr(data_config, "_datasets_to_split", None) == []
        return self.alive and scaling == self.scaling and unsplit

    @property
    def alive(self) -> bool:
        return self._error is None and (self._thread is None or self._thread.is_alive())

    def _start(self) -> None:
        from ray.train import FailureConfig, LoggingConfig, RunConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        from uda3d.training.ray_cluster import ensure_ray, scaling_config

        scaling = self.scaling
        ensure_ray(scaling.address, scaling.num_workers * scaling.cpus_per_worker)
        self._board = _job_board().remote()
        trainer = TorchTrainer(
            serve_jobs, train_loop_config={"board": self._board}, scaling_config=scaling_config(scaling),
            torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
            run_config=RunConfig(name=self.run_name, storage_path=str(self.storage_path),
                                 failure_config=FailureConfig(max_failures=scaling.max_failures),
                                 logging_config=LoggingConfig(log_level="INFO" if self.verbose else "WARNING")))

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as error:  # noqa: BLE001 - handed to the driver's waiting stage
                self._error = error

        self._thread = threading.Thread(target=fit, name="uda3d-stage-pool", daemon=True)
        self._thread.start()

    def run(self, worker: Callable, job: Any, datasets: dict | None = None) -> tuple[str, dict[str, Any]]:
        """Run ``worker(job)`` on every rank of the pool: (last checkpoint, last metrics), or its error raised."""
        import ray

        if self._thread is None:
            self._start()
        index = ray.get(self._board.post.remote((worker, job, datasets)))
        pending = self._board.result.remote(index)
        while True:
            ready, _ = ray.wait([pending], timeout=POLL_S)
            if ready:
                self.jobs_run += 1
                return ray.get(pending)
            if not self._thread.is_alive():
                raise self._error if self._error is not None else RuntimeError(
                    "the stage pool's Ray Train run ended while a stage was running")

    def close(self, abort: bool = False) -> None:
        """End the pool's ``fit``: let the workers finish (or, with ``abort``, kill them) and remove its run folder."""
        import ray

        if self._thread is None:
            return
        if self._board is not None and ray.is_initialized():
            members = []
            if abort:
                with contextlib.suppress(Exception):
                    members = ray.get(self._board.members.remote(), timeout=10)
            for member in members:  # workers of an earlier, restarted group may be gone already
                with contextlib.suppress(Exception):
                    ray.kill(member)
            with contextlib.suppress(Exception):
                ray.get(self._board.close.remote(), timeout=10)
        self._thread.join(timeout=60)
        if self._board is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.kill(self._board)
        shutil.rmtree(self.storage_path / self.run_name, ignore_errors=True)
        self._thread = None


_ACTIVE: StagePool | None = None


def active_pool() -> StagePool | None:
    """The pool ``launch`` hands its jobs to (driver side), if a ``stage_pool`` block is open."""
    return _ACTIVE


@contextlib.contextmanager
def stage_pool(scaling: ScalingOptions, storage_path: str | Path, verbose: bool = False) -> Iterator[StagePool]:
    """Within the block, ``launch`` runs compatible stages on one worker group, started by the first of them.

    Nothing starts until a stage needs it (a fully resumed pipeline starts no pool). An exception
    leaving the block kills the pool's workers rather than waiting for a stage they may be in.
    """
    global _ACTIVE
    pool = StagePool(scaling, storage_path, verbose)
    previous, _ACTIVE = _ACTIVE, pool
    try:
        yield pool
    except BaseException:
        _ACTIVE = previous
        pool.close(abort=True)
        raise
    _ACTIVE = previous
    pool.close()
