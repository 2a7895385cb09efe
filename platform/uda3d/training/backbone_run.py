"""The backbone stage on Ray Train: ``run_backbone`` (driver) and ``backbone_worker`` (each DDP rank).

The driver fills the preprocessing cache once, creates the MLflow experiment, and launches a
``TorchTrainer`` whose workers wrap the networks with ``prepare_model`` (DDP) and the loader with
``prepare_data_loader`` (distributed sampler). Every epoch rank 0 writes a checkpoint (networks,
optimisers, schedulers, scaler, epoch, config, MLflow run id) and ``ray.train.report``s it; a rerun
with ``resume=True`` and the same run name finds the newest complete one in the run folder, restores
it and continues with the next epoch in the same MLflow run. ``FailureConfig(max_failures)``
restarts a failed worker group from the same checkpoint (``restore_state``).
"""

from __future__ import annotations

import functools
import logging
import platform as _platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uda3d.config import BackboneConfig, PreprocessConfig, ScalingOptions, TrackingConfig, from_dict
from uda3d.data.layout import discover, fingerprint
from uda3d.data.prepare import preprocess_root
from uda3d.errors import DataError
from uda3d.tracking import Tracker, ensure_experiment, git_commit
from uda3d.training.ray_runtime import TrainResult

log = logging.getLogger(__name__)

TRAIN_PHASE, VAL_PHASE = "train", "val"
CHECKPOINT_DIR_FIGURE = "synthesis.png"


@dataclass(frozen=True)
class BackboneRun:
    """Everything one backbone training needs; built once by the CLI or a script."""

    dataroot: str
    workdir: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    scaling: ScalingOptions = field(default_factory=ScalingOptions)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(uri=None))
    source_domain: str = "domain1"
    run_name: str = "backbone"
    resume: bool = False
    progress: bool = True
    verbose: bool = False
    init_checkpoint: str | None = None  # start from these networks (e.g. fine-tune a source backbone)

    @property
    def storage_path(self) -> str:
        return str((Path(self.workdir) / "ray_results").resolve())

    @property
    def cache_dir(self) -> str:
        return str((Path(self.workdir) / "cache").resolve())


def run_backbone(run: BackboneRun) -> TrainResult:
    """Train the backbone on ``run.source_domain``'s train split, validating on its val split."""
    from uda3d.training.checkpoint import load_state
    from uda3d.training.ray_runtime import launch, run_folder

    splits = (f"{run.source_domain}_{TRAIN_PHASE}", f"{run.source_domain}_{VAL_PHASE}")
    subjects = discover(run.dataroot, splits)
    for name in splits:
        if not subjects[name]:
            raise DataError(Path(run.dataroot) / name, "split is empty; expected subject folders")
    if run.init_checkpoint:  # a missing, damaged, unsafe or foreign one: one line now, not a worker's traceback
        if not {"generator", "discriminator"} <= set(load_state(run.init_checkpoint)):
            raise DataError(run.init_checkpoint, "not a backbone checkpoint; expected one from 'uda3d train-backbone' "
                                                 "(keys 'generator' and 'discriminator')")
    folder = run_folder(run.storage_path, run.run_name, run.resume)
    preprocess_root(run.dataroot, run.preprocess, run.cache_dir, splits=splits, progress=run.progress)
    ensure_experiment(run.tracking)
    payload = {
        "dataroot": str(Path(run.dataroot).resolve()), "splits": list(splits), "cache_dir": run.cache_dir,
        "backbone": asdict(run.backbone), "preprocess": asdict(run.preprocess),
        "tracking": asdict(run.tracking), "run_name": run.run_name, "progress": run.progress,
        "verbose": run.verbose,
        "tags": {"git_commit": git_commit(Path(__file__).parent), "dataset_fingerprint": fingerprint(subjects),
                 "stage": "backbone", "python": _platform.python_version()},
        "run_folder": str(folder),
        "init_checkpoint": str(Path(run.init_checkpoint).resolve()) if run.init_checkpoint else None,
    }
    return launch(backbone_worker, payload, run.scaling, run.run_name, run.storage_path, run.verbose)


def backbone_worker(payload: dict[str, Any]) -> None:
    """The per-rank training loop (runs inside a Ray Train worker)."""
    import ray.train
    import torch
    from torch.utils.data import DataLoader

    from uda3d.data.datasets import paired_dataset
    from uda3d.models.ttt import load_generator_state
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

    quiet_worker_logs(payload["verbose"])
    config = from_dict(BackboneConfig, payload["backbone"])
    preprocess = from_dict(PreprocessConfig, payload["preprocess"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    seed_everything(config.seed + rank)
    device = ray.train.torch.get_device()
    # With the auxiliary head, each of the T1 and auxiliary passes leaves the other head's parameters
    # unused: DDP must be told, or it waits for their gradients.
    wrap = (functools.partial(ray.train.torch.prepare_model, parallel_strategy_kwargs={"find_unused_parameters": True})
            if config.aux_weight > 0 else ray.train.torch.prepare_model)
    trainer = Pix2PixTrainer(config, device, wrap=wrap, rank=rank)
    restored = restore_state(device, payload["run_folder"])
    if restored is not None:
        trainer.load_state_dict(restored)
    elif payload.get("init_checkpoint"):
        initial = load_state(payload["init_checkpoint"], map_location=device)
        load_generator_state(unwrap(trainer.generator), initial["generator"])  # a plain one may grow the head
        unwrap(trainer.discriminator).load_state_dict(initial["discriminator"])
    params = {"backbone": asdict(config), "preprocess": asdict(preprocess), "world_size": ctx.get_world_size(),
              "init_checkpoint": payload.get("init_checkpoint") or ""}
    tracker, run_id = start_tracking(TrackingConfig(**payload["tracking"]), rank, payload["run_name"], params,
                                     payload["tags"], restored, payload["run_folder"])
    report_epoch = EpochReporter(tracker, rank, run_id)

    subjects = discover(payload["dataroot"], tuple(payload["splits"]))
    train_name, val_name = payload["splits"]
    train_set = paired_dataset(subjects[train_name], preprocess, payload["cache_dir"])
    val_set = paired_dataset(subjects[val_name], preprocess, payload["cache_dir"])
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
                 report=lambda m: None, on_epoch_end=on_epoch_end, progress=payload["progress"] and rank == 0)
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
