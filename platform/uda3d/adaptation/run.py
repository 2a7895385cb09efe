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

from uda3d.config import AdaptConfig, GuardConfig, PreprocessConfig, ScalingOptions, TrackingConfig, from_dict
from uda3d.data.layout import discover
from uda3d.data.prepare import preprocess_root
from uda3d.errors import DataError
from uda3d.tracking import ensure_experiment, git_commit
from uda3d.training.checkpoint import load_state
from uda3d.training.ray_runtime import TrainResult

ADAPTED = "adapted"
DECISION_FILE = "decision.json"


@dataclass(frozen=True)
class AdaptRun:
    """Everything one adaptation needs."""

    dataroot: str
    workdir: str
    backbone_checkpoint: str
    vae_checkpoint: str
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    scaling: ScalingOptions = field(default_factory=ScalingOptions)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(uri=None))
    source_domain: str = "domain1"
    target_domain: str = "domain2"
    run_name: str = "adapt"
    target_split: str | None = None  # the unlabeled volumes adapted on (default <target_domain>_val)
    resume: bool = False
    progress: bool = True
    verbose: bool = False

    @property
    def storage_path(self) -> str:
        return str((Path(self.workdir) / "ray_results").resolve())

    @property
    def output_dir(self) -> Path:
        return (Path(self.workdir) / ADAPTED / self.run_name).resolve()


@dataclass(frozen=True)
class AdaptOutcome:
    """The kept generator, the guard's decision and the per-epoch history."""

    checkpoint: str
    decision: dict[str, Any]
    history: list[dict[str, float]]
    mlflow_run_id: str | None


def run_adapt(run: AdaptRun) -> AdaptOutcome:
    """Adapt the backbone to the target site under the guards; returns the kept model and the story."""
    from uda3d.training.ray_runtime import launch, run_folder

    src_train, src_val = f"{run.source_domain}_train", f"{run.source_domain}_val"
    tgt_adapt, tgt_test = run.target_split or f"{run.target_domain}_val", f"{run.target_domain}_test"
    splits = discover(run.dataroot)
    for name in (src_train, src_val, tgt_adapt):
        if not splits.get(name):
            raise DataError(Path(run.dataroot) / name, "split is missing or empty; adaptation needs it")
    for path, what in ((run.backbone_checkpoint, "backbone"), (run.vae_checkpoint, "VAE")):
        state = load_state(path)
        if what == "VAE" and "slice_config" not in state:
            raise DataError(path, "VAE checkpoint has no slice_config; train it with 'uda3d train-vae'")
    folder = run_folder(run.storage_path, run.run_name, run.resume)
    # the target splits' inputs are loaded by the workers, which never open a target T1 for training
    preprocess_root(run.dataroot, run.preprocess, Path(run.workdir) / "cache", splits=(src_train, src_val),
                    progress=run.progress)
    scored = tgt_test in splits and any(s.has_target for s in splits[tgt_test])
    ensure_experiment(run.tracking)
    payload = {
        "dataroot": str(Path(run.dataroot).resolve()), "cache_dir": str((Path(run.workdir) / "cache").resolve()),
        "splits": {"source_train": src_train, "source_val": src_val, "target": tgt_adapt,
                   "target_test": tgt_test if scored else None},
        "backbone_checkpoint": str(Path(run.backbone_checkpoint).resolve()),
        "vae_checkpoint": str(Path(run.vae_checkpoint).resolve()),
        "adapt": asdict(run.adapt), "guards": asdict(run.guards), "preprocess": asdict(run.preprocess),
        "tracking": asdict(run.tracking), "run_name": run.run_name, "output_dir": str(run.output_dir),
        "run_folder": str(folder),
        "progress": run.progress, "verbose": run.verbose,
        "tags": {"git_commit": git_commit(Path(__file__).parent), "stage": "adapt",
                 "python": _platform.python_version(),
                 "backbone_run_id": load_state(run.backbone_checkpoint).get("mlflow_run_id", ""),
                 "vae_run_id": load_state(run.vae_checkpoint).get("mlflow_run_id", "")},
    }
    result: TrainResult = launch(adapt_worker, payload, run.scaling, run.run_name, run.storage_path, run.verbose)
    decision = json.loads((run.output_dir / DECISION_FILE).read_text())
    return AdaptOutcome(checkpoint=str(run.output_dir), decision=decision["decision"], history=decision["history"],
                        mlflow_run_id=result.mlflow_run_id)


def adapt_worker(payload: dict[str, Any]) -> None:
    """The per-rank adaptation loop (inside a Ray Train worker)."""
    import ray.train
    from torch.utils.data import DataLoader

    from uda3d.adaptation.trainer import AdaptProgress, AdaptTrainer, fit_adapt
    from uda3d.config import BackboneConfig, SliceConfig, VAEConfig
    from uda3d.data.datasets import input_dataset, paired_dataset
    from uda3d.data.slice_store import steps_per_epoch
    from uda3d.evaluation import evaluate_generator
    from uda3d.io.atomic import atomic_dir
    from uda3d.metrics.summary import spearman
    from uda3d.models.vae2d import SliceVAE
    from uda3d.training.checkpoint import inference_meta, save_state
    from uda3d.training.pix2pix import Pix2PixTrainer
    from uda3d.training.ray_runtime import EpochReporter, quiet_worker_logs, restore_state, start_tracking
    from uda3d.training.runtime import unwrap

    quiet_worker_logs(payload["verbose"])
    adapt = from_dict(AdaptConfig, payload["adapt"])
    guards = GuardConfig(**payload["guards"])
    preprocess = from_dict(PreprocessConfig, payload["preprocess"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    backbone_state = load_state(payload["backbone_checkpoint"], map_location=device)
    backbone_config = dataclasses.replace(from_dict(BackboneConfig, backbone_state["config"]), amp=adapt.amp)
    backbone = Pix2PixTrainer(backbone_config, device, wrap=ray.train.torch.prepare_model, rank=rank)
    unwrap(backbone.generator).load_state_dict(backbone_state["generator"])
    unwrap(backbone.discriminator).load_state_dict(backbone_state["discriminator"])
    restored = restore_state(device, payload["run_folder"])  # a restarted worker group, or --resume
    if restored is not None:
        backbone.load_state_dict(restored)
    vae_state = load_state(payload["vae_checkpoint"], map_location=device)
    vae_config = from_dict(VAEConfig, vae_state["config"])
    vae = SliceVAE(int(vae_state["slice_size"]), vae_config.gf_dim, vae_config.latent_channels)
    vae.encoder.load_state_dict(vae_state["encoder"])
    trainer = AdaptTrainer(backbone, vae.encoder, from_dict(SliceConfig, vae_state["slice_config"]), adapt)

    names = payload["splits"]
    found = discover(payload["dataroot"])
    cache = payload["cache_dir"]
    source_train = paired_dataset(found[names["source_train"]], preprocess, cache)
    source_val = paired_dataset(found[names["source_val"]], preprocess, cache)
    targets = sorted(found[names["target"]], key=lambda s: s.id)[: adapt.target_subjects]
    steps = steps_per_epoch(len(targets), world)
    # Rank r takes volumes r, r + W, ... and wraps around, so every rank takes the same number of steps.
    mine = [targets[i % len(targets)] for i in range(rank, steps * world, world)]
    target_set = input_dataset(mine, preprocess, cache)
    all_targets = input_dataset(targets, preprocess, cache)
    references = [source_train[i]["target"][None] for i in range(len(source_train))]

    params = {"adapt": asdict(adapt), "guards": asdict(guards), "target_volumes": len(targets),
              "world_size": world, "backbone_checkpoint": payload["backbone_checkpoint"],
              "vae_checkpoint": payload["vae_checkpoint"]}
    tracker, run_id = start_tracking(TrackingConfig(**payload["tracking"]), rank, payload["run_name"], params,
                                     payload["tags"], restored, payload["run_folder"])
    report_epoch = EpochReporter(tracker, rank, run_id)

    def target_test_metrics() -> dict[str, float]:
        if rank != 0 or not names["target_test"]:
            return {}
        [scores] = evaluate_generator(unwrap(backbone.generator), payload["dataroot"], (names["target_test"],),
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
        out = Path(payload["output_dir"])
        with atomic_dir(out, overwrite=True) as staged:  # the kept model and its decision appear together
            save_state(staged, {**backbone.state_dict(), **inference_meta(backbone_state), "adapt": asdict(adapt),
                                "kept_epoch": result.decision.kept_epoch})
            (staged / DECISION_FILE).write_text(json.dumps({"decision": decision, "history": history}, indent=2)
                                                + "\n")
        tracker.log_artifact(out / "state.pt", "checkpoint")
        tracker.log_artifact(out / DECISION_FILE)
    tracker.end()
