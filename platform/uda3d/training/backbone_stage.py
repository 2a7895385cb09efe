"""The backbone stage on Ray Train: ``run_backbone`` (driver) and ``backbone_worker`` (each DDP rank).

The driver hands each worker the validated ``BackboneSpec`` itself (paths resolved) and a
``WorkerContext`` (run folder, tags), as one ``StageJob`` in Ray's ``train_loop_config``.

The driver fills the preprocessing cache once, creates the MLflow experiment, and launches a
``TorchTrainer`` whose workers wrap the networks with ``prepare_model`` (DDP) and the loader with
``prepare_data_loader`` (distributed sampler). Every epoch rank 0 writes a checkpoint (networks,
optimisers, schedulers, scaler, epoch, config, MLflow run id) and ``ray.train.report``s it; a rerun
with ``resume=True`` and the same run name finds the newest complete one in the run folder, restores
it and continues with the next epoch in the same MLflow run. ``FailureConfig(max_failures)``
restarts a failed worker group from the same checkpoint (``restore_state``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import platform as _platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uda3d.config import BackboneConfig, PreprocessConfig, StageRun, check_fields
from uda3d.data.layout import discover, fingerprint
from uda3d.data.prepare import preprocess_root
from uda3d.errors import DataError
from uda3d.tracking import Tracker, ensure_experiment, git_commit
from uda3d.training.ray_runtime import StageJob, TrainResult, WorkerContext

log = logging.getLogger(__name__)

TRAIN_PHASE, VAL_PHASE = "train", "val"
CHECKPOINT_DIR_FIGURE = "synthesis.png"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything one backbone training needs; built once by the CLI, the pipeline or a script.

    Attributes:
        stage: what every stage's run shares (data, folder, scaling, tracking, run name, ...).
        backbone: the networks and their training.
        source_domain: trains on ``<source_domain>_train``, validates on ``<source_domain>_val``.
        init_checkpoint: start from these networks (e.g. fine-tune a source backbone).
    """

    stage: StageRun
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    source_domain: str = "domain1"
    init_checkpoint: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def splits(self) -> tuple[str, str]:
        return f"{self.source_domain}_{TRAIN_PHASE}", f"{self.source_domain}_{VAL_PHASE}"


def run_backbone(spec: BackboneSpec) -> TrainResult:
    """Train the backbone on ``spec.source_domain``'s train split, validating on its val split."""
    from uda3d.training.checkpoint import load_state
    from uda3d.training.ray_runtime import launch, run_folder

    run = spec.stage
    splits = spec.splits
    subjects = discover(run.dataroot, splits)
    for name in splits:
        if not subjects[name]:
            raise DataError(Path(run.dataroot) / name, "split is empty; expected subject folders")
    if spec.init_checkpoint:  # a missing, damaged, unsafe or foreign one: one line now, not a worker's traceback
        if not {"generator", "discriminator"} <= set(load_state(spec.init_checkpoint)):
            raise DataError(spec.init_checkpoint, "not a backbone checkpoint; expected one from 'uda3d train-backbone' "
                                                  "(keys 'generator' and 'discriminator')")
    folder = run_folder(run.storage_path, run.run_name, run.resume)
    preprocess_root(run.dataroot, run.preprocess, run.cache_dir, splits=splits, progress=run.progress)
    ensure_experiment(run.tracking)
    resolved = dataclasses.replace(
        spec, stage=run.resolved(),
        init_checkpoint=str(Path(spec.init_checkpoint).resolve()) if spec.init_checkpoint else None)
    context = WorkerContext(run_folder=str(folder), tags={
        "git_commit": git_commit(Path(__file__).parent), "dataset_fingerprint": fingerprint(subjects),
        "stage": "backbone", "python": _platform.python_version()})
    return launch(backbone_worker, StageJob(resolved, context))


def backbone_worker(job: StageJob[BackboneSpec, WorkerContext]) -> None:
    """The per-rank training loop (runs inside a Ray Train worker)."""
    import ray.train
    import torch
    from torch.utils.data import DataLoader

    from uda3d.data.datasets import paired_dataset
    from uda3d.training.checkpoint import load_state
    from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone
    from uda3d.training.ray_runtime import (
        EpochReporter,
        gather_strings,
        quiet_worker_logs,
        restore_state,
        start_tracking,
        weights_digest,
    )
    from uda3d.training.runtime import seed_everything, unwrap

    spec, context = job.spec, job.context
    run = spec.stage
    quiet_worker_logs(run.verbose)
    config, preprocess = spec.backbone, run.preprocess
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    seed_everything(config.seed + rank)
    device = ray.train.torch.get_device()
    # With the auxiliary head, each of the T1 and auxiliary passes leaves the other head's parameters
    # unused: DDP must be told, or it waits for their gradients.
    wrap = (functools.partial(ray.train.torch.prepare_model, parallel_strategy_kwargs={"find_unused_parameters": True})
            if config.aux_weight > 0 else ray.train.torch.prepare_model)
    restored = restore_state(device, context.run_folder)
    initial = (load_state(spec.init_checkpoint, map_location=device)
               if restored is None and spec.init_checkpoint else None)  # a plain one may grow the auxiliary head
    trainer = Pix2PixTrainer.from_state(config, initial, device, wrap=wrap, rank=rank)
    if restored is not None:
        trainer.load_state_dict(restored)
    params = {"backbone": asdict(config), "preprocess": asdict(preprocess), "world_size": ctx.get_world_size(),
              "init_checkpoint": spec.init_checkpoint or ""}
    tracker, run_id = start_tracking(run.tracking, rank, run.run_name, params, context.tags, restored,
                                     context.run_folder)
    report_epoch = EpochReporter(tracker, rank, run_id)

    train_name, val_name = spec.splits
    subjects = discover(run.dataroot, spec.splits)
    train_set = paired_dataset(subjects[train_name], preprocess, run.cache_dir)
    val_set = paired_dataset(subjects[val_name], preprocess, run.cache_dir)
    meta = inference_record(train_set, preprocess) if rank == 0 else {}
    loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=1, shuffle=True, generator=torch.Generator().manual_seed(config.seed)))

    def train_batches(epoch: int):
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        return loader

    def on_epoch_end(t: Pix2PixTrainer, metrics: dict[str, float]) -> None:
        digests = gather_strings(weights_digest(unwrap(t.generator)))
        metrics["ranks_in_sync"] = float(len(set(digests)) == 1)
        report_epoch({**t.state_dict(), **meta} if rank == 0 else {}, metrics)
        if int(metrics["epoch"]) == config.total_epochs:
            tracker.set_tags({f"weights_sha1_rank{i}": d for i, d in enumerate(digests)})

    fit_backbone(trainer, train_batches, (lambda: DataLoader(val_set, batch_size=1)) if rank == 0 else None,
                 report=lambda m: None, on_epoch_end=on_epoch_end, progress=run.progress and rank == 0)
    if rank == 0 and tracker.enabled:
        _log_final_artifacts(tracker, trainer, val_set, run_id, meta)
    tracker.end()


def inference_record(train_set, preprocess: PreprocessConfig) -> dict[str, Any]:
    """What a checkpoint needs to be run alone: preprocessing, the trained crop, the source intensity reference."""
    from uda3d.quality import intensity_quantiles, source_reference

    quantiles = []
    for i in range(len(train_set)):
        item = train_set.load(i)
        quantiles.append(intensity_quantiles(item.inputs, item.mask))
    return {"preprocess": asdict(preprocess), "input_shape": list(train_set.load(0).inputs.shape[1:]),
            "source_reference": source_reference(quantiles)}


def _log_final_artifacts(tracker: Tracker, trainer, val_set, run_id: str | None, meta: dict[str, Any]) -> None:
    """The final checkpoint and a slice figure of the first validation subject, to MLflow."""
    from uda3d.training.checkpoint import save_state
    from uda3d.viz import synthesis_figure

    item = val_set[0]
    output = trainer.predict(item["input"][None])[0, 0].numpy()
    with tempfile.TemporaryDirectory() as directory:
        save_state(directory, {**trainer.state_dict(), **meta, "mlflow_run_id": run_id or ""})
        tracker.log_artifacts(directory, "checkpoint")
        figure = synthesis_figure(Path(directory) / CHECKPOINT_DIR_FIGURE, item["input"].numpy(),
                                  item["target"][0].numpy(), output,
                                  title=f"{item['id']} (source val), epoch {trainer.epoch}")
        tracker.log_artifact(figure, "figures")
