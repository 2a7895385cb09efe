"""The slice-VAE stage on Ray Train: ``run_vae`` (driver) and ``vae_worker`` (each DDP rank).

Workers read the Parquet slice store through Ray Data. A volume is one batch and is never split
across workers (BatchNorm statistics are per volume, as the method trains), so the driver gives
each rank its own dataset of whole volumes (``volume_index`` filter pushed down to the Parquet
reader, ``preserve_order`` on) instead of letting Ray split rows; ranks with one volume fewer
repeat their first volume so every rank takes the same number of DDP steps. Rank 0 validates on
the store's validation volumes and logs, at the end, a PNG of slices and reconstructions and a PNG
of samples from the prior.
"""

from __future__ import annotations

import dataclasses
import platform as _platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uda3d.config import StageRun, VAEConfig, check_fields
from uda3d.data.slice_store import SliceStore, open_slice_store, rank_volumes, steps_per_epoch
from uda3d.errors import DataError
from uda3d.progress import is_terminal
from uda3d.tracking import ensure_experiment, git_commit
from uda3d.training.ray_runtime import StageJob, TrainResult, WorkerContext

RECON_FIGURE, PRIOR_FIGURE = "reconstructions.png", "prior_samples.png"
MATERIALIZE_BELOW_BYTES = 2 * 2**30


@dataclass(frozen=True)
class VAESpec:
    """Everything one slice-VAE training needs.

    Attributes:
        stage: what every stage's run shares (its ``dataroot`` unused: the VAE reads ``store``).
        store: the Parquet slice store (``uda3d slices``).
        vae: the network and its training.
        train_split, val_split: the store's splits trained and validated on.
    """

    stage: StageRun
    store: str
    vae: VAEConfig = field(default_factory=VAEConfig)
    train_split: str = "domain1_train"
    val_split: str = "domain1_val"

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class VAEContext(WorkerContext):
    """What the VAE driver found for its workers, beside the run folder and tags.

    Attributes:
        val_ids: the store's validation volumes (rank 0 validates on them).
        steps_per_epoch: DDP steps every rank takes per epoch.
        baseline_mse: the mean-slice baseline's validation MSE.
        train_volumes: how many volumes train.
    """

    val_ids: tuple[int, ...]
    steps_per_epoch: int
    baseline_mse: float
    train_volumes: int


def split_volumes(store: SliceStore, split: str) -> list[int]:
    return [v["volume_index"] for v in store.volumes if v["split"] == split]


def store_volumes(store: SliceStore, volume_ids: list[int]):
    """Yield (S, 1, size, size) tensors of the given volumes, read with pyarrow (validation, baselines)."""
    import pyarrow.dataset as ds
    import torch

    size = store.slice_config.size
    dataset = ds.dataset(store.shard_paths, format="parquet")
    for vid in volume_ids:
        table = dataset.to_table(columns=["slice"], filter=ds.field("volume_index") == vid)
        values = table.column("slice").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        yield torch.from_numpy(values.reshape(-1, 1, size, size).copy())


def run_vae(spec: VAESpec) -> TrainResult:
    """Train the slice VAE on the store's ``train_split`` volumes with Ray Train + Ray Data."""
    import ray.data
    from ray.data import ExecutionOptions
    from ray.data.expressions import col
    from ray.train import DataConfig

    from uda3d.training.ray_cluster import ensure_ray
    from uda3d.training.ray_runtime import launch, quiet_ray_data_logs, run_folder
    from uda3d.training.vae import mean_slice_baseline

    run = spec.stage

    store = open_slice_store(spec.store, verify=True)
    train_ids, val_ids = split_volumes(store, spec.train_split), split_volumes(store, spec.val_split)
    if not train_ids:
        raise DataError(spec.store, f"no volumes of split {spec.train_split!r} in the slice store")
    world = run.scaling.num_workers
    if world > len(train_ids):
        raise DataError(spec.store, f"{len(train_ids)} training volumes cannot feed {world} workers (one volume "
                                   "per batch); use fewer --num-workers")
    folder = run_folder(run.storage_path, run.run_name, run.resume)
    ensure_experiment(run.tracking)
    _, baseline = mean_slice_baseline(store_volumes(store, train_ids), store_volumes(store, val_ids or train_ids))

    ensure_ray(run.scaling.address, run.scaling.num_workers * run.scaling.cpus_per_worker)
    data_context = ray.data.DataContext.get_current()
    data_context.enable_progress_bars = run.verbose and is_terminal(sys.stderr)  # bars pile up in a log file
    quiet_ray_data_logs(run.verbose)
    data_context.execution_options.preserve_order = True  # rows stay volume by volume, slice by slice
    store_bytes = sum(Path(p).stat().st_size for p in store.shard_paths)
    datasets = {}
    for rank in range(world):
        ids = [train_ids[i] for i in rank_volumes(len(train_ids), world, rank)]
        ds = ray.data.read_parquet(store.shard_paths).select_columns(["volume_index", "slice"]).filter(
            expr=col("volume_index").is_in(ids))
        # A store that fits comfortably in the object store is read once, not once per epoch.
        datasets[f"train_rank{rank}"] = ds.materialize() if store_bytes < MATERIALIZE_BELOW_BYTES else ds
    store_path = str(Path(spec.store).resolve())
    context = VAEContext(
        run_folder=str(folder), val_ids=tuple(val_ids), steps_per_epoch=steps_per_epoch(len(train_ids), world),
        baseline_mse=baseline, train_volumes=len(train_ids),
        tags={"git_commit": git_commit(Path(__file__).parent), "stage": "vae", "python": _platform.python_version(),
              "slice_store": store_path})
    job = StageJob(dataclasses.replace(spec, stage=run.resolved(), store=store_path), context)
    return launch(vae_worker, job, datasets=datasets,
                  data_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)))


def _volume_batches(shard, slices_per_volume: int, size: int, steps: int):
    """Per-volume (S, 1, size, size) batches from this rank's Ray Data shard, padded to ``steps``."""
    first = None
    taken = 0
    for batch in shard.iter_torch_batches(batch_size=slices_per_volume, drop_last=False):
        ids = batch["volume_index"]
        if len(ids) != slices_per_volume or bool((ids != ids[0]).any()):
            raise DataError("slice store", f"a batch mixed volumes or was short ({len(ids)} rows); expected "
                                           f"{slices_per_volume} rows of one volume")
        slices = batch["slice"].reshape(-1, 1, size, size).float()
        first = slices if first is None else first
        taken += 1
        yield slices
    while taken < steps and first is not None:  # equal DDP steps on every rank
        taken += 1
        yield first


def vae_worker(job: StageJob[VAESpec, VAEContext]) -> None:
    """The per-rank VAE training loop (inside a Ray Train worker)."""
    import ray.data
    import ray.train

    from uda3d.training.ray_runtime import (
        EpochReporter,
        dataset_shard,
        quiet_worker_logs,
        restore_state,
        start_tracking,
    )
    from uda3d.training.vae import VAETrainer, fit_vae

    spec, context = job.spec, job.context
    run = spec.stage
    quiet_worker_logs(run.verbose)
    ray.data.DataContext.get_current().enable_progress_bars = run.progress and run.verbose and is_terminal(sys.stderr)
    config = spec.vae
    store = open_slice_store(spec.store)
    size, per_volume = store.slice_config.size, store.slices_per_volume
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    trainer = VAETrainer(config, size, device, wrap=ray.train.torch.prepare_model)
    restored = restore_state(device, context.run_folder)
    if restored is not None:
        trainer.load_state_dict(restored)
    params = {"vae": asdict(config), "slice_config": store.manifest["slice_config"],
              "world_size": ctx.get_world_size(), "train_volumes": context.train_volumes}
    tracker, run_id = start_tracking(run.tracking, rank, run.run_name, params, context.tags, restored,
                                     context.run_folder)
    report_epoch = EpochReporter(tracker, rank, run_id)
    shard = dataset_shard(f"train_rank{rank}")
    val_ids = list(context.val_ids)

    def on_epoch_end(t: VAETrainer, metrics: dict[str, float]) -> None:
        if rank == 0:
            metrics["val_mse_mean_slice"] = context.baseline_mse
        report_epoch({**t.state_dict(), "slice_config": store.manifest["slice_config"]} if rank == 0 else {}, metrics)

    fit_vae(trainer, lambda epoch: _volume_batches(shard, per_volume, size, context.steps_per_epoch),
            (lambda: store_volumes(store, val_ids)) if rank == 0 and val_ids else None,
            report=lambda m: None, on_epoch_end=on_epoch_end, progress=run.progress and rank == 0)
    if rank == 0 and tracker.enabled:
        _log_figures(tracker, trainer, store, val_ids)
    tracker.end()


def _log_figures(tracker, trainer, store: SliceStore, val_ids: list[int]) -> None:
    """Five slices around the centre of a validation volume with their reconstructions; prior samples."""
    import torch

    from uda3d.viz import slice_grid

    ids = val_ids or split_volumes(store, store.volumes[0]["split"])
    slices = next(store_volumes(store, ids[:1]))
    recon = trainer.reconstruct(slices)
    keep = slices.shape[0] // 2 + (slices.shape[0] // 8) * torch.arange(-2, 3)
    prior = trainer.sample_prior(10, torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as directory:
        a = slice_grid(Path(directory) / RECON_FIGURE, [slices[keep, 0].numpy(), recon[keep, 0].numpy()],
                       ["slice", "reconstruction"], title=f"slice VAE, epoch {trainer.epoch}")
        b = slice_grid(Path(directory) / PRIOR_FIGURE, [prior[:5, 0].numpy(), prior[5:, 0].numpy()],
                       ["prior sample", "prior sample"], title="samples from N(0, I)")
        tracker.log_artifact(a, "figures")
        tracker.log_artifact(b, "figures")
        from uda3d.training.checkpoint import save_state

        save_state(directory, {**trainer.state_dict(), "slice_config": store.manifest["slice_config"]})
        tracker.log_artifact(Path(directory) / "state.pt", "checkpoint")
