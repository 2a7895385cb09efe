"""``uda3d tune``: Ray Tune + Optuna over the adaptation's hyperparameters, every trial in MLflow.

Each trial adapts a backbone (the method's latent-KL adaptation, in the trial's process, one CPU)
with the sampled ``ele_percent`` / ``lr`` / ``kl_weight`` / ``target_subjects`` and reports every
epoch to Tune: the label-free selection signal (brain MAE on augmented source-validation volumes,
``uda3d.adaptation.selection``), the guards' inputs and verdict, the KL objective, and — as the
oracle, for reporting only — the target-test PSNR. Optuna's TPE sampler (seeded) proposes the
configs, ASHA stops weak trials early, and a trial whose guard breaks stops there.

Deployment selection uses no target labels: the best trial is the lowest (or highest, per the space)
label-free metric among trials that never broke a guard; its adapted generator is registered in the
MLflow Model Registry with the alias ``champion``. The report gives the Spearman correlation between
the label-free ranking and the oracle so users can see whether to trust it. MLflow holds one parent
run per study and one nested child run per trial. ``--resume`` continues an interrupted study with
``Tuner.restore`` (finished trials are kept; unfinished ones go on from their last epoch's checkpoint,
in the same MLflow child run).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uda3d.config import AdaptConfig, GuardConfig, StageRun, check_fields
from uda3d.data.layout import discover
from uda3d.errors import ConfigError
from uda3d.io.atomic import atomic_file
from uda3d.tuning.space import SearchSpace

if TYPE_CHECKING:
    from uda3d.training.ray_runtime import StageJob

TUNE_SPLITS = ("domain1_train", "domain1_val", "domain2_val", "domain2_test")
PARENT_FILE = "parent_run_id"


@dataclass(frozen=True)
class TuneSpec:
    """One study: the space, the models it adapts, where it writes.

    Attributes:
        stage: what every stage's run shares (``scaling.address`` is the Ray cluster the trials run on;
            ``run_name``, the other scaling options and ``progress`` are unused: the space sizes the trials).
        space: the search space (or a study's grid).
        backbone_checkpoint, vae_checkpoint: the models each trial adapts from.
        guards: when a trial stops and which epoch it keeps.
        registered_model: the MLflow registered model the champion joins.
        kind: ``tune`` (a search) or ``study`` (a grid of research runs, ``uda3d.tuning.study``).
    """

    stage: StageRun
    space: SearchSpace
    backbone_checkpoint: str
    vae_checkpoint: str
    guards: GuardConfig = field(default_factory=GuardConfig)
    registered_model: str = "uda3d-adapted"
    kind: str = "tune"

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def study_dir(self) -> Path:
        return (Path(self.stage.workdir) / self.kind / self.space.name).resolve()


@dataclass(frozen=True)
class TrialContext:
    """What the study's driver found for every trial.

    Attributes:
        parent_run_id: the study's MLflow run, each trial's run nested under it.
        splits: the splits a trial reads (``tune_splits``).
        scored: whether target T1 lets a trial log the oracle.
    """

    parent_run_id: str | None
    splits: tuple[str, ...]
    scored: bool


def adapt_trial(config: dict[str, Any], job: StageJob[TuneSpec, TrialContext]) -> None:
    """One Tune trial: adapt under the guards, reporting every epoch (with a checkpoint) to Tune and MLflow."""
    import ray.tune
    import torch

    from uda3d.adaptation.guards import EpochRecord, violation
    from uda3d.adaptation.selection import augmented_source_error, augmented_source_set
    from uda3d.adaptation.trainer import AdaptProgress, adaptation_trainer, fit_adapt
    from uda3d.config import from_dict
    from uda3d.data.in_memory import load_data
    from uda3d.evaluation import score
    from uda3d.inference import resolve_device
    from uda3d.tracking import Tracker
    from uda3d.training.checkpoint import inference_meta, load_state, save_state

    spec, context = job.spec, job.context
    run, space = spec.stage, spec.space
    torch.set_num_threads(max(1, int(space.cpus_per_trial)))
    adapt = from_dict(AdaptConfig, {**space.fixed, **flat_config(config)})
    guards = spec.guards
    data = load_data(run.dataroot, run.preprocess, Path(run.cache_dir), context.splits, ("domain2_val",), "tune")
    data.items["domain2_val"] = data.items["domain2_val"][: adapt.target_subjects]

    # a trial given GPUs (resources.gpu in the space) trains on its GPU; Ray sets CUDA_VISIBLE_DEVICES for it
    device = resolve_device("cuda" if space.gpus_per_trial > 0 else "cpu", "resources.gpu")
    state = load_state(spec.backbone_checkpoint)
    restored = _restored_trial_state()  # a resumed study: this trial goes on from its last epoch
    trainer = adaptation_trainer(state, load_state(spec.vae_checkpoint), adapt, device, restored=restored)
    backbone = trainer.backbone
    selection = augmented_source_set(data.items["domain1_val"])
    references = [item["target"][None] for item in data.items["domain1_train"]]

    trial = ray.tune.get_context()
    tracker = Tracker(run.tracking)
    tracker.start(f"trial-{trial.get_trial_id()}", params={"adapt": asdict(adapt), "guards": asdict(guards),
                                                         "target_volumes": len(data.items["domain2_val"])},
                  tags={"mlflow.parentRunId": context.parent_run_id or "", "stage": f"{spec.kind}-trial",
                        "study": space.name, "trial_id": trial.get_trial_id()},
                  run_id=(restored or {}).get("mlflow_run_id") or None)  # resumed: the same child run

    def report(metrics: dict[str, float]) -> None:
        if metrics["epoch"] == 0:
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=0)

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        record = EpochRecord(epoch, metrics["source_val_psnr"], metrics["target_mean"], metrics["target_std"],
                             metrics["target_hf"], metrics["target_background"])
        problem = violation(record, trainer.progress.start, guards)
        out = {**metrics, "augmented_source_mae": augmented_source_error(backbone.generator, selection),
               "guard_ok": 0.0 if problem else 1.0, "mlflow_run_id_set": 1.0}
        out["target_test_psnr"] = out.pop("eval_target_test_psnr")
        # "epoch" is logged too: a resumed trial's tracker skips the epochs its MLflow run already holds
        tracker.log_metrics({k: v for k, v in out.items() if k != "mlflow_run_id_set"}, step=epoch)
        with tempfile.TemporaryDirectory() as tmp:
            save_state(Path(tmp), {**backbone.state_dict(), **inference_meta(state), "adapt": asdict(adapt),
                                   "epoch": epoch,
                                   "adapt_progress": trainer.progress.to_state(),
                                   "mlflow_run_id": tracker.run_id or ""})
            ray.tune.report({**out, "mlflow_run_id": tracker.run_id or ""},
                            checkpoint=ray.tune.Checkpoint.from_directory(tmp))

    def oracle() -> dict[str, float]:
        if not context.scored:  # no target T1: the oracle stays empty, the label-free metric still ranks
            return {"target_test_psnr": float("nan")}
        return {"target_test_psnr": score(backbone.generator, data.items["domain2_test"])[0]["psnr"]}

    fit_adapt(trainer, lambda e: data.batches("domain1_train", adapt.seed * 1000 + e),
              lambda: data.batches("domain2_val"), lambda: data.batches("domain1_val"), references, guards,
              report=report, evaluate=oracle, on_epoch_end=on_epoch_end,
              resume=AdaptProgress.from_state(restored["adapt_progress"]) if restored is not None else None)
    tracker.end()


def _restored_trial_state() -> dict[str, Any] | None:
    """The state in this trial's last Tune checkpoint, when a resumed study restarts the trial."""
    import ray.tune

    from uda3d.training.checkpoint import load_state

    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_state(folder)


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config with a study's grid ``point`` (one dict per trial, ``tune.grid_search``) merged in."""
    return {**config.get("point", {}), **{k: v for k, v in config.items() if k != "point"}}


def _parent_run(spec: TuneSpec) -> str | None:
    """The study's MLflow parent run: created once, reused on ``--resume``."""
    from uda3d.tracking import Tracker

    path = spec.study_dir / PARENT_FILE
    if spec.stage.resume and path.is_file():
        return path.read_text().strip() or None
    tracker = Tracker(spec.stage.tracking)
    run_id = tracker.start(f"study-{spec.space.name}", params={"space": _jsonable(asdict(spec.space)),
                                                                "backbone_checkpoint": spec.backbone_checkpoint,
                                                                "vae_checkpoint": spec.vae_checkpoint},
                           tags={"stage": spec.kind, "study": spec.space.name})
    with atomic_file(path) as tmp:
        tmp.write_text(run_id or "")
    return run_id


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def tune_splits(dataroot: str | Path) -> tuple[tuple[str, ...], bool]:
    """The splits a trial reads, and whether target T1 lets it log the oracle (T1 on all of domain2_test).

    Without it the study still runs and ranks trials by the label-free metric; the oracle is NaN.
    """
    found = discover(dataroot)
    scored = bool(found.get("domain2_test")) and all(s.has_target for s in found["domain2_test"])
    return (TUNE_SPLITS if scored else tuple(s for s in TUNE_SPLITS if s != "domain2_test")), scored


def _trainable(spec: TuneSpec, parent_run_id: str | None):
    """``adapt_trial`` with everything but the sampled config bound, and the space's resources per trial."""
    from ray import tune

    from uda3d.training.ray_runtime import StageJob

    splits, scored = tune_splits(spec.stage.dataroot)
    resolved = dataclasses.replace(spec, stage=spec.stage.resolved(),
                                   backbone_checkpoint=str(Path(spec.backbone_checkpoint).resolve()),
                                   vae_checkpoint=str(Path(spec.vae_checkpoint).resolve()))
    job = StageJob(resolved, TrialContext(parent_run_id=parent_run_id, splits=splits, scored=scored))
    return tune.with_resources(tune.with_parameters(adapt_trial, job=job),
                               {"CPU": spec.space.cpus_per_trial, "GPU": spec.space.gpus_per_trial})


SNAPSHOT_WARNING_ENV = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"


def quiet_snapshot_warning(environ: MutableMapping[str, str] = os.environ) -> None:
    """Turn off Tune's warning about experiment-state snapshots taken less than 5 s apart, unless the user set it.

    Each trial keeps one checkpoint (``num_to_keep=1``, so a study's disk use does not grow with its
    epochs), and Tune then snapshots the experiment state after every trial checkpoint. Short trials
    checkpoint every few seconds, so the demo's four trials printed that three-line warning four
    times. Tune's slow-snapshot warning (a snapshot taking over 30 s) stays on.
    """
    environ.setdefault(SNAPSHOT_WARNING_ENV, "0")


def build_tuner(spec: TuneSpec, parent_run_id: str | None, param_space: dict[str, Any] | None = None):
    """The ``Tuner`` for a fresh study, or the restored one (``spec.stage.resume``).

    Without ``param_space`` it is a search: the space's distributions sampled by Optuna (TPE or
    random, seeded) under ASHA or FIFO. A study passes its own ``param_space`` (a grid of points) and
    runs every point with FIFO and Tune's own grid generator. Every trial asks for the same
    resources, so a finished trial's actor (its process, its imports) takes the next trial
    (``reuse_actors``) rather than Ray starting a new one.
    """
    from optuna.samplers import RandomSampler, TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from uda3d.tuning.space import to_tune

    space = spec.space
    quiet_snapshot_warning()
    trainable = _trainable(spec, parent_run_id)
    folder = os.path.join(spec.stage.storage_path, space.name)
    if spec.stage.resume:
        if not tune.Tuner.can_restore(folder):
            raise ConfigError("--resume", f"no study to resume at {folder}")
        return tune.Tuner.restore(folder, trainable, resume_unfinished=True, resume_errored=True)
    if param_space is None:
        epochs = int(space.fixed.get("epochs", AdaptConfig().epochs))
        sampler = (TPESampler(seed=space.sampler_seed, n_startup_trials=space.startup_trials)
                   if space.sampler == "tpe" else RandomSampler(seed=space.sampler_seed))
        searcher = ConcurrencyLimiter(OptunaSearch(sampler=sampler, seed=space.sampler_seed),
                                      max_concurrent=space.max_concurrent_trials)
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=space.grace_period,
                                   reduction_factor=space.reduction_factor)
                     if space.scheduler == "asha" else FIFOScheduler())
        tune_config = tune.TuneConfig(metric=space.metric, mode=space.mode, search_alg=searcher,
                                      scheduler=scheduler, num_samples=space.num_samples, reuse_actors=True)
        param_space = to_tune(space)
    else:
        tune_config = tune.TuneConfig(metric=space.metric, mode=space.mode, scheduler=FIFOScheduler(),
                                      num_samples=1, max_concurrent_trials=space.max_concurrent_trials,
                                      reuse_actors=True)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=tune.RunConfig(name=space.name, storage_path=spec.stage.storage_path, verbose=0,
                                                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))


REPORTED = ("augmented_source_mae", "objective", "source_val_psnr", "target_test_psnr")


def trial_rows(results, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial: its config and seed, last reported metrics, epochs run, guard verdict, checkpoint."""
    rows = []
    for r in results:
        if r.metrics is None or space.metric not in (r.metrics or {}):
            continue
        config = flat_config(r.config)
        rows.append({"trial_id": r.metrics.get("trial_id", ""), **{p.name: config.get(p.name) for p in space.params},
                     "seed": int(config.get("seed", space.fixed.get("seed", 0))),
                     "epochs_run": int(r.metrics.get("training_iteration", 0)),
                     "finished_at": float(r.metrics.get("timestamp", math.nan)),
                     **{k: float(r.metrics.get(k, math.nan)) for k in REPORTED},
                     space.metric: float(r.metrics[space.metric]),
                     "guard_ok": bool(r.metrics.get("guard_ok", 0.0)),
                     "checkpoint": r.checkpoint.path if r.checkpoint else "",
                     "mlflow_run_id": r.metrics.get("mlflow_run_id", "")})
    return rows


def choose_best(rows: list[dict[str, Any]], space: SearchSpace) -> dict[str, Any] | None:
    """The best label-free metric among trials that kept every guard (None if none did)."""
    eligible = [r for r in rows if r["guard_ok"] and r["checkpoint"]]
    if not eligible:
        return None
    sign = 1.0 if space.mode == "min" else -1.0
    return min(eligible, key=lambda r: sign * r[space.metric])


def register_champion(spec: TuneSpec, best: dict[str, Any]) -> dict[str, Any]:
    """Log the best trial's model to its MLflow run as a servable pyfunc and register it with the alias ``champion``."""
    from uda3d.serving import log_servable_model

    tracking = spec.stage.tracking
    if tracking.uri is None or not best["mlflow_run_id"]:
        return {}
    return log_servable_model(tracking, best["mlflow_run_id"], best["checkpoint"], spec.registered_model,
                              alias="champion", tags={"study": spec.space.name})


# What a trial reports that no target T1 went into: the metrics `uda3d tune` may choose a champion by.
LABEL_FREE_METRICS = ("augmented_source_mae", "source_val_psnr", "objective")


def check_selection_metric(space: SearchSpace) -> None:
    """``uda3d tune`` registers a model "chosen without target labels": its metric must be label-free."""
    if space.metric in LABEL_FREE_METRICS:
        return
    why = ("is computed from target T1 (an oracle); a champion chosen by it would be chosen with target labels"
           if space.metric.startswith(("target_test", "eval_")) else "is not a metric the trials report")
    raise ConfigError("metric", f"{space.metric!r} {why}; expected one of {list(LABEL_FREE_METRICS)} (uda3d study "
                                "may measure target_test_psnr)", space.source)


def run_tune(spec: TuneSpec) -> dict[str, Any]:
    """Run (or resume) the study; writes ``WORKDIR/tune/NAME/{trials.csv,summary.json}`` and returns the summary."""
    from uda3d.data.in_memory import load_data
    from uda3d.metrics.summary import spearman
    from uda3d.tracking import Tracker, finish_open_runs
    from uda3d.training.ray_cluster import ensure_ray

    run = spec.stage
    check_selection_metric(spec.space)
    load_data(run.dataroot, run.preprocess, Path(run.workdir) / "cache", tune_splits(run.dataroot)[0],
              ("domain2_val",), "tune")
    ensure_ray(run.scaling.address, spec.space.cpus_per_trial * spec.space.max_concurrent_trials)
    parent_run_id = _parent_run(spec)
    results = build_tuner(spec, parent_run_id).fit()
    if results.num_terminated + results.num_errors < spec.space.num_samples:
        # Ctrl-C (Tune saves the study and returns early): nothing is chosen from a partial study
        return {"study": spec.space.name, "interrupted": True, "trials": results.num_terminated,
                "planned": spec.space.num_samples}
    rows = trial_rows(results, spec.space)
    planned_epochs = int(spec.space.fixed.get("epochs", AdaptConfig().epochs))
    # Runs a trial could not end itself: stopped by the scheduler, or cut by an interruption after its
    # last report (a resumed study then has nothing left to run for it).
    stopped = {"stopped_early": f"by the {spec.space.scheduler} scheduler"}
    finish_open_runs(run.tracking, {r["mlflow_run_id"]: stopped if r["epochs_run"] < planned_epochs else {}
                                    for r in rows if r["mlflow_run_id"]})
    best = choose_best(rows, spec.space)
    registered = register_champion(spec, best) if best else {}
    rho = spearman([r[spec.space.metric] for r in rows], [r["target_test_psnr"] for r in rows])
    summary = {"study": spec.space.name, "trials": len(rows), "planned": spec.space.num_samples,
               "best": best, "registered_model": registered, "parent_run_id": parent_run_id,
               "spearman_label_free_vs_target_psnr": rho,
               "stopped_early": sum(r["epochs_run"] < planned_epochs for r in rows),
               "rows": rows}
    _write(spec, summary)
    tracker = Tracker(run.tracking)
    if parent_run_id:
        tracker.start("", run_id=parent_run_id)
        tracker.log_metrics({"trials": len(rows), "spearman_label_free_vs_target_psnr": rho}, step=0)
        tracker.log_artifact(spec.study_dir / "trials.csv")
        tracker.log_artifact(spec.study_dir / "summary.json")
        tracker.end()
    return summary


def _write(spec: TuneSpec, summary: dict[str, Any]) -> None:
    from uda3d.io.tables import write_csv, write_json

    write_csv(spec.study_dir / "trials.csv", summary["rows"])
    write_json(spec.study_dir / "summary.json", summary)


__all__ = ["TrialContext", "TuneSpec", "adapt_trial", "build_tuner", "choose_best", "register_champion", "run_tune",
           "trial_rows"]
