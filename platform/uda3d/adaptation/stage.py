"""The adaptation stage on Ray Train: ``run_adapt`` (driver) and ``adapt_worker`` (each rank).

Starts from a backbone checkpoint and a slice-VAE checkpoint; adapts on the unlabeled target
volumes of ``<target_domain>_val`` (the method's adaptation set; ``target_subjects`` picks the first
N by id), pairing each with a real source T1 from ``<source_domain>_train``, while the guards watch
``<source_domain>_val``. Target volumes are dealt to ranks whole (ranks with one fewer repeat one).
Every epoch is checkpointed and logged to MLflow (objective, source-val PSNR, target output
statistics, and — for evaluation only — target-test metrics where T1 exists); the checkpoint also
holds the guard's history and the model it would roll back to, so a restarted worker group
(``max_failures``) or a ``resume`` goes on with the next epoch. The generator the guards keep is
written, with ``decision.json``, to ``WORKDIR/adapted/<run_name>/`` (one atomic folder) and logged
as the run's model.
"""

from __future__ import annotations

import dataclasses
import json
import platform as _platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uda3d.config import AdaptConfig, GuardConfig, StageRun, check_fields
from uda3d.data.layout import discover
from uda3d.data.prepare import preprocess_root
from uda3d.errors import DataError
from uda3d.tracking import ensure_experiment, git_commit
from uda3d.training.checkpoint import load_state
from uda3d.training.ray_runtime import StageJob, TrainResult, WorkerContext

ADAPTED = "adapted"
DECISION_FILE = "decision.json"


@dataclass(frozen=True)
class AdaptSpec:
    """Everything one adaptation needs.

    Attributes:
        stage: what every stage's run shares (data, folder, scaling, tracking, run name, ...).
        backbone_checkpoint, vae_checkpoint: the models adapted from (``train-backbone``, ``train-vae``).
        adapt: the adaptation's settings.
        guards: when to stop and which epoch to keep.
        source_domain, target_domain: the sites adapted from and to.
        target_split: the unlabeled volumes adapted on (default ``<target_domain>_val``).
    """

    stage: StageRun
    backbone_checkpoint: str
    vae_checkpoint: str
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    source_domain: str = "domain1"
    target_domain: str = "domain2"
    target_split: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def output_dir(self) -> Path:
        return (Path(self.stage.workdir) / ADAPTED / self.stage.run_name).resolve()


@dataclass(frozen=True)
class AdaptSplits:
    """The splits an adaptation reads: source train/val, the target adapted on, the target scored (if T1)."""

    source_train: str
    source_val: str
    target: str
    target_test: str | None


@dataclass(frozen=True)
class AdaptContext(WorkerContext):
    """What the adaptation driver found for its workers, beside the run folder and tags."""

    splits: AdaptSplits


@dataclass(frozen=True)
class AdaptOutcome:
    """The kept generator, the guard's decision and the per-epoch history."""

    checkpoint: str
    decision: dict[str, Any]
    history: list[dict[str, float]]
    mlflow_run_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The pipeline's record of the stage (``stages.json``, ``report.json``)."""
        return {"checkpoint": self.checkpoint, "mlflow_run_id": self.mlflow_run_id, "decision": self.decision,
                "history": self.history}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AdaptOutcome:
        """Back from ``to_json`` (the stage ledger's record, on ``--resume``)."""
        return cls(checkpoint=value["checkpoint"], decision=value["decision"], history=value["history"],
                   mlflow_run_id=value["mlflow_run_id"])


def run_adapt(spec: AdaptSpec) -> AdaptOutcome:
    """Adapt the backbone to the target site under the guards; returns the kept model and the story."""
    from uda3d.training.ray_runtime import launch, run_folder

    run = spec.stage
    src_train, src_val = f"{spec.source_domain}_train", f"{spec.source_domain}_val"
    tgt_adapt, tgt_test = spec.target_split or f"{spec.target_domain}_val", f"{spec.target_domain}_test"
    splits = discover(run.dataroot)
    for name in (src_train, src_val, tgt_adapt):
        if not splits.get(name):
            raise DataError(Path(run.dataroot) / name, "split is missing or empty; adaptation needs it")
    # a missing, damaged or unsafe checkpoint: one line now, not a worker's traceback
    backbone_run_id = load_state(spec.backbone_checkpoint).get("mlflow_run_id", "")
    vae_state = load_state(spec.vae_checkpoint)
    if "slice_config" not in vae_state:
        raise DataError(spec.vae_checkpoint, "VAE checkpoint has no slice_config; train it with 'uda3d train-vae'")
    folder = run_folder(run.storage_path, run.run_name, run.resume)
    # the target splits' inputs are loaded by the workers, which never open a target T1 for training
    preprocess_root(run.dataroot, run.preprocess, Path(run.workdir) / "cache", splits=(src_train, src_val),
                    progress=run.progress)
    scored = tgt_test in splits and any(s.has_target for s in splits[tgt_test])
    ensure_experiment(run.tracking)
    resolved = dataclasses.replace(
        spec, stage=run.resolved(),
        backbone_checkpoint=str(Path(spec.backbone_checkpoint).resolve()),
        vae_checkpoint=str(Path(spec.vae_checkpoint).resolve()))
    context = AdaptContext(
        run_folder=str(folder), splits=AdaptSplits(src_train, src_val, tgt_adapt, tgt_test if scored else None),
        tags={"git_commit": git_commit(Path(__file__).parent), "stage": "adapt", "python": _platform.python_version(),
              "backbone_run_id": backbone_run_id, "vae_run_id": vae_state.get("mlflow_run_id", "")})
    result: TrainResult = launch(adapt_worker, StageJob(resolved, context))
    decision = json.loads((spec.output_dir / DECISION_FILE).read_text())
    return AdaptOutcome(checkpoint=str(spec.output_dir), decision=decision["decision"], history=decision["history"],
                        mlflow_run_id=result.mlflow_run_id)


def adapt_worker(job: StageJob[AdaptSpec, AdaptContext]) -> None:
    """The per-rank adaptation loop (inside a Ray Train worker)."""
    import ray.train
    from torch.utils.data import DataLoader

    from uda3d.adaptation.trainer import AdaptProgress, adaptation_trainer, fit_adapt
    from uda3d.data.datasets import input_dataset, paired_dataset
    from uda3d.data.slice_store import steps_per_epoch
    from uda3d.evaluation import evaluate_generator
    from uda3d.io.atomic import atomic_dir
    from uda3d.metrics.summary import spearman
    from uda3d.training.checkpoint import inference_meta, save_state
    from uda3d.training.ray_runtime import EpochReporter, quiet_worker_logs, restore_state, start_tracking
    from uda3d.training.runtime import unwrap

    spec, context = job.spec, job.context
    run = spec.stage
    quiet_worker_logs(run.verbose)
    adapt, guards, preprocess = spec.adapt, spec.guards, run.preprocess
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    backbone_state = load_state(spec.backbone_checkpoint, map_location=device)
    restored = restore_state(device, context.run_folder)  # a restarted worker group, or --resume
    trainer = adaptation_trainer(backbone_state, load_state(spec.vae_checkpoint, map_location=device), adapt, device,
                                 restored=restored, wrap=ray.train.torch.prepare_model, rank=rank)
    backbone = trainer.backbone

    names = context.splits
    found = discover(run.dataroot)
    cache = run.cache_dir
    source_train = paired_dataset(found[names.source_train], preprocess, cache)
    source_val = paired_dataset(found[names.source_val], preprocess, cache)
    targets = sorted(found[names.target], key=lambda s: s.id)[: adapt.target_subjects]
    steps = steps_per_epoch(len(targets), world)
    # Rank r takes volumes r, r + W, ... and wraps around, so every rank takes the same number of steps.
    mine = [targets[i % len(targets)] for i in range(rank, steps * world, world)]
    target_set = input_dataset(mine, preprocess, cache)
    all_targets = input_dataset(targets, preprocess, cache)
    references = [source_train[i]["target"][None] for i in range(len(source_train))]

    params = {"adapt": asdict(adapt), "guards": asdict(guards), "target_volumes": len(targets),
              "world_size": world, "backbone_checkpoint": spec.backbone_checkpoint,
              "vae_checkpoint": spec.vae_checkpoint}
    tracker, run_id = start_tracking(run.tracking, rank, run.run_name, params, context.tags, restored,
                                     context.run_folder)
    report_epoch = EpochReporter(tracker, rank, run_id)

    def target_test_metrics() -> dict[str, float]:
        if rank != 0 or not names.target_test:
            return {}
        [scores] = evaluate_generator(unwrap(backbone.generator), run.dataroot, (names.target_test,),
                                      preprocess, cache)
        return {f"target_test_{k}": v for k, v in scores.mean.items() if k in ("psnr", "ssim", "mae")}

    history: list[dict[str, float]] = list(restored["history"]) if restored is not None else []

    def report(metrics: dict[str, float]) -> None:
        history.append(metrics)
        if metrics["epoch"] == 0:  # the starting model; later epochs are logged with their checkpoints
            tracker.log_metrics(metrics, step=0)

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        state = {**backbone.state_dict(), "epoch": epoch, "adapt_progress": trainer.progress.to_state(),
                 "history": history} if rank == 0 else {}
        report_epoch(state, dict(metrics))

    result = fit_adapt(trainer, lambda e: DataLoader(source_train, batch_size=1, shuffle=True),
                       lambda: DataLoader(target_set, batch_size=1), lambda: DataLoader(source_val, batch_size=1),
                       references, guards, report=report, evaluate=target_test_metrics,
                       on_epoch_end=on_epoch_end, target_monitor=lambda: DataLoader(all_targets, batch_size=1),
                       resume=AdaptProgress.from_state(restored["adapt_progress"]) if restored is not None else None)
    if rank == 0:
        objective = [h["objective"] for h in history]
        psnr = [h.get("eval_target_test_psnr") for h in history]
        rho = spearman(objective, psnr) if all(p is not None for p in psnr) else float("nan")
        decision = {"kept_epoch": result.decision.kept_epoch, "reason": result.decision.reason,
                    "stopped_at": result.decision.stopped_at,
                    "spearman_objective_vs_target_psnr": rho}
        tracker.set_tags({"guard_kept_epoch": str(result.decision.kept_epoch),
                          "guard_reason": result.decision.reason[:4000]})
        tracker.log_metrics({"spearman_objective_vs_target_psnr": rho}, step=len(history))
        out = spec.output_dir
        with atomic_dir(out, overwrite=True) as staged:  # the kept model and its decision appear together
            save_state(staged, {**backbone.state_dict(), **inference_meta(backbone_state), "adapt": asdict(adapt),
                                "kept_epoch": result.decision.kept_epoch})
            (staged / DECISION_FILE).write_text(json.dumps({"decision": decision, "history": history}, indent=2)
                                                + "\n")
        tracker.log_artifact(out / "state.pt", "checkpoint")
        tracker.log_artifact(out / DECISION_FILE)
    tracker.end()
