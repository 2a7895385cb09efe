"""``uda3d pipeline``: every stage on a BraTS-layout root, with or without target T1, ending in one honest report.

Before the first stage, ``uda3d.root_plan`` checks the root once and logs what each optional part
needs and whether it is there. Then: backbone (domain1) -> robust fine-tune of it (random
input-intensity augmentation) and the budget-matched control ``source_ft`` (the same fine-tune
without it) and ``ttt_joint`` (with the auxiliary cross-contrast task) -> slice store + slice VAE
(domain1 T1) -> the method's latent-KL adaptation on the target's adaptation split under the guards
-> the input harmoniser fitted to that split's inputs -> the label-free choice of ``uda`` -> a
synthesized T1, an uncertainty map and label-free quality estimates for every subject of every
target split (``WORKDIR/synth/<split>/``) -> ``uda`` logged as a servable MLflow model and
registered. Only where target T1 exists: the supervised upper bound (labelled domain2_train and
domain2_val), the scores of no adaptation / source_ft / uda / method_kl / supervised on domain2_test
(per-subject CSV, figure, bootstrap CIs, paired Wilcoxon tests), and the Spearman correlation of
each quality estimate with the true per-subject PSNR. ``WORKDIR/report.json`` names every skipped
part and why. Target T1 is never read for training, selection or stopping.

``uda`` is chosen per run without target labels among the plain backbone, its robust fine-tune,
the robust fine-tune behind a monotone input harmoniser fitted to the unlabeled target inputs, and
``ttt_joint``: the one with the highest source-val PSNR, the signal that ranked candidates by target
PSNR on the development cohorts (Spearman +0.85 and +0.99, ``benchmarks/results/dev_signals.md``).

One MLflow parent run holds the pipeline (params, report, tables, figures, the registered model);
every stage's run is nested under it. ``resume=True`` skips each stage that finished with the same
config and reruns from the first changed one (``uda3d.stage_ledger``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uda3d.adaptation.selection import CandidateScore
from uda3d.config import (
    JOINT_AUX_WEIGHT,
    AdaptConfig,
    BackboneConfig,
    GuardConfig,
    HarmoniserConfig,
    PreprocessConfig,
    ScalingOptions,
    StageRun,
    TrackingConfig,
    VAEConfig,
)
from uda3d.data.layout import discover
from uda3d.inference import resolve_device
from uda3d.io.tables import write_json
from uda3d.root_plan import SCORE_SPLIT, RootPlan, plan_root

if TYPE_CHECKING:
    from uda3d.adaptation.stage import AdaptOutcome

log = logging.getLogger(__name__)

METHODS = ("no_adaptation", "source_ft", "uda", "method_kl", "supervised")
BASELINE, CONTROL = "no_adaptation", "source_ft"
REPORT = "report.json"
SYNTH_DIR = "synth"
QUALITY_ESTIMATES = ("tta_uncertainty", "input_shift", "ensemble_spread")
# the candidates whose disagreement with the chosen model is its ensemble_spread (the chosen one left out)
ENSEMBLE = ("backbone", "source_ft", "robust", "ttt_joint")
SELECTION_RULE = ("highest source-val PSNR: Spearman with target PSNR across candidates +0.85 and +0.99 on the "
                  "development cohorts, but +0.25 and +0.23 on the report cohort (benchmarks/results/dev_signals.md, "
                  "compare_report_*.md), where no candidate beat source_ft on the protocol shift: compare uda with "
                  "source_ft in this report before trusting it")


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's config; defaults are the method's (the demo passes small ones)."""

    dataroot: str
    workdir: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    supervised_epochs: int = 20
    robust_epochs: int = 60
    robust_lr_factor: float = 0.5
    harmoniser: HarmoniserConfig = field(default_factory=HarmoniserConfig)
    slice_size: int = 256
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    scaling: ScalingOptions = field(default_factory=ScalingOptions)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(uri=None))
    register_as: str = "uda3d"
    device: str = "auto"
    resume: bool = False
    progress: bool = True


@dataclass(frozen=True)
class UDASelection:
    """The label-free choice of ``uda``: the chosen candidate, why, and what each candidate scored."""

    chosen: str
    reason: str
    scores: tuple[CandidateScore, ...]
    rule: str = SELECTION_RULE

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "reason": self.reason, "scores": [asdict(s) for s in self.scores],
                "rule": self.rule}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> UDASelection:
        """Back from ``to_json`` (the stage ledger's record, on ``--resume``)."""
        return cls(value["chosen"], value["reason"], tuple(CandidateScore(**s) for s in value["scores"]),
                   value["rule"])


NOTES = ("Metrics inside the brain mask at data range 1 (psnr/ssim/mae); the method's whole-volume convention as "
         "psnr_method/ssim_method. Target T1 is read only for the supervised bound, the scores and the "
         "quality-vs-PSNR check, never for adaptation, selection or stopping.")


@dataclass(frozen=True)
class PipelineReport:
    """What ``run_pipeline`` found; ``to_json()`` is ``WORKDIR/report.json``.

    Attributes:
        dataroot: the root the pipeline ran on.
        plan, skipped: the root check's lines, and each skipped part with its reason.
        adaptation_split: the target split adapted on (inputs only).
        selection, uda_checkpoint: the label-free choice of ``uda`` and its checkpoint.
        method_kl: the latent-KL adaptation's outcome (guard decision, history, kept checkpoint).
        adapt_config: the adaptation's settings.
        synthesis: the synthesized targets (``synthesize_targets``).
        runs: every trained model's checkpoint and MLflow run.
        scores: ``evaluate_methods`` on the scored split (only with target T1).
        quality_vs_psnr: each quality estimate against the true PSNR (only with target T1).
        registered_model: the MLflow model ``uda`` was registered as (only when tracking).
    """

    dataroot: str
    plan: tuple[str, ...]
    skipped: dict[str, str]
    adaptation_split: str
    selection: UDASelection
    uda_checkpoint: str
    method_kl: AdaptOutcome
    adapt_config: AdaptConfig
    synthesis: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    scores: dict[str, Any] | None = None
    quality_vs_psnr: dict[str, Any] | None = None
    registered_model: dict[str, Any] | None = None
    notes: str = NOTES

    def to_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "dataroot": self.dataroot, "plan": list(self.plan), "skipped": self.skipped,
            "adaptation_split": self.adaptation_split,
            "uda": {"selection": self.selection.to_json(), "checkpoint": self.uda_checkpoint},
            "method_kl": {"guard": self.method_kl.decision, "config": asdict(self.adapt_config),
                          "checkpoint": self.method_kl.checkpoint},
            "synthesis": self.synthesis,
            "adaptation_history": self.method_kl.history,
            "runs": self.runs,
        }
        if self.scores is not None:  # each method's scores join its entry; the rest are keys of their own
            for key, value in self.scores.items():
                report[key] = {**report[key], **value} if key in report and isinstance(value, dict) else value
            report["spearman_objective_vs_target_psnr"] = self.method_kl.decision["spearman_objective_vs_target_psnr"]
        if self.quality_vs_psnr is not None:
            report["quality_vs_psnr"] = self.quality_vs_psnr
        if self.registered_model is not None:
            report["registered_model"] = self.registered_model
        report["notes"] = self.notes
        return report


def _trained(result) -> dict[str, Any]:
    return {"checkpoint": result.checkpoint, "mlflow_run_id": result.mlflow_run_id}


def _checkpoint_exists(record: dict[str, Any]) -> list[str]:
    return [record["checkpoint"]]


def run_pipeline(config: PipelineConfig) -> PipelineReport:
    """Run every stage the root allows and write the report (``WORKDIR/report.json``); returns it."""
    from uda3d.adaptation.stage import AdaptOutcome
    from uda3d.stage_ledger import StageLedger

    plan = plan_root(config.dataroot)
    log.info("  root check:")
    for line in plan.lines():
        log.info(f"    {line}")
    workdir = Path(config.workdir)
    ledger = StageLedger(workdir, config.resume)
    parent = _parent_run(config, ledger)
    tracking = dataclasses.replace(config.tracking, parent_run_id=parent) if parent else config.tracking
    models = train_models(config, plan, ledger, tracking)
    log.info("  label-free choice of uda: the highest source-val PSNR among the candidates")
    candidates = {"no_adaptation": models["backbone"]["checkpoint"], "robust": models["robust"]["checkpoint"],
                  "robust+harmoniser": models["robust+harmoniser"]["checkpoint"],
                  "ttt_joint": models["ttt_joint"]["checkpoint"]}
    selection = UDASelection.from_json(ledger.run(
        "select", {"dataroot": config.dataroot}, ("backbone", "robust", "harmoniser", "ttt_joint"),
        lambda resume: select_uda(candidates, config).to_json()))
    chosen = candidates[selection.chosen]
    log.info(f"  synthesis: a T1, an uncertainty map and quality estimates for every subject of "
             f"{', '.join(plan.target_splits)} with uda ({selection.chosen})")
    members = [m["checkpoint"] for name, m in models.items()
               if name in ENSEMBLE and m["checkpoint"] != chosen]
    synthesis = ledger.run("synthesis", {"splits": plan.target_splits, "dataroot": config.dataroot},
                           ("select", "source_ft"),
                           lambda resume: synthesize_targets(chosen, plan, config, members),
                           outputs=lambda r: [row["t1_file"] for rows in r["splits"].values() for row in rows])
    scores = None
    if plan.available("scores"):
        evaluated = {"no_adaptation": models["backbone"]["checkpoint"],
                     "source_ft": models["source_ft"]["checkpoint"], "uda": chosen,
                     "method_kl": models["adapt"]["checkpoint"]}
        if "supervised" in models:
            evaluated["supervised"] = models["supervised"]["checkpoint"]
        scores = evaluate_methods(evaluated, config.dataroot, SCORE_SPLIT, config.preprocess, workdir,
                                  device=resolve_device(config.device))
    quality = quality_vs_psnr(chosen, plan, config, synthesis) if plan.available("quality_vs_psnr") else None
    registered = None
    if parent:
        registered = ledger.run("register", {"name": config.register_as}, ("select",),
                                lambda resume: _register(tracking, parent, chosen, config.register_as,
                                                         selection.chosen))
    report = PipelineReport(
        dataroot=config.dataroot, plan=tuple(plan.lines()), skipped=plan.skipped(), adaptation_split=plan.adapt_split,
        selection=selection, uda_checkpoint=chosen, method_kl=AdaptOutcome.from_json(models["adapt"]),
        adapt_config=config.adapt, synthesis=synthesis,
        runs={name: {k: v for k, v in m.items() if k in ("checkpoint", "mlflow_run_id")} for name, m in models.items()},
        scores=scores, quality_vs_psnr=quality, registered_model=registered)
    written = report.to_json()
    write_json(workdir / REPORT, written)
    if parent:
        _log_to_parent(tracking, parent, workdir, written)
    return report


def train_models(config: PipelineConfig, plan: RootPlan, ledger, tracking: TrackingConfig) -> dict[str, dict]:
    """Every training stage through the ledger, the Ray Train ones on one worker group started by the first.

    The stage pool (``uda3d.training.stage_pool``) saves each later stage Ray Train's 10-15 s of
    start-up and teardown; a stage the ledger skips starts nothing.
    """
    from uda3d.training.stage_pool import stage_pool

    with stage_pool(config.scaling, Path(config.workdir) / "ray_results"):
        return _train_stages(config, plan, ledger, tracking)


def _train_stages(config: PipelineConfig, plan: RootPlan, ledger, tracking: TrackingConfig) -> dict[str, dict]:
    """Backbone, its fine-tunes, VAE, KL adaptation, harmoniser, bound, in order."""
    from uda3d.adaptation.stage import AdaptSpec, run_adapt
    from uda3d.config import SliceConfig
    from uda3d.data.slice_store import write_slice_store
    from uda3d.training.backbone_stage import BackboneSpec, run_backbone
    from uda3d.training.vae_stage import VAESpec, run_vae

    workdir = Path(config.workdir)
    ray_results = workdir / "ray_results"
    stage = StageRun(dataroot=config.dataroot, workdir=str(workdir), preprocess=config.preprocess,
                     scaling=config.scaling, tracking=tracking, progress=config.progress)
    data = {"dataroot": config.dataroot, "preprocess": asdict(config.preprocess)}
    models: dict[str, dict] = {}

    def run_of(name: str, resume: bool) -> StageRun:
        return dataclasses.replace(stage, run_name=name, resume=resume)

    def backbone_stage(name: str, backbone: BackboneConfig, init: str | None, upstream: tuple[str, ...] = (),
                       domain: str = "domain1") -> dict:
        return ledger.run(name, {**data, "backbone": asdict(backbone), "domain": domain}, upstream,
                          lambda resume: _trained(run_backbone(BackboneSpec(
                              stage=run_of(name, resume), backbone=backbone, source_domain=domain,
                              init_checkpoint=init))),
                          outputs=_checkpoint_exists, run_folder=ray_results / name)

    log.info("  backbone: supervised 3D pix2pix on domain1_train")
    models["backbone"] = backbone_stage("backbone", config.backbone, None)
    start = models["backbone"]["checkpoint"]
    robust = config.backbone.fine_tune(config.robust_epochs, robust_augment=True,
                                       lr=config.backbone.lr * config.robust_lr_factor)
    log.info(f"  robust fine-tune: {config.robust_epochs} epochs of random input-intensity augmentation on "
             "domain1_train")
    models["robust"] = backbone_stage("robust", robust, start, ("backbone",))
    log.info(f"  source_ft control: the same {config.robust_epochs}-epoch fine-tune without robust augmentation")
    models["source_ft"] = backbone_stage("source_ft", dataclasses.replace(robust, robust_augment=False), start,
                                         ("backbone",))
    log.info("  ttt_joint: the same fine-tune with the auxiliary cross-contrast task (FLAIR/T2 rebuilt from a damaged "
             "copy) beside T1")
    models["ttt_joint"] = backbone_stage(
        "ttt_joint", dataclasses.replace(robust, robust_augment=False, aux_weight=JOINT_AUX_WEIGHT), start,
        ("backbone",))
    log.info(f"  slices + VAE: {config.slice_size}^2 slices of domain1 T1")
    store = workdir / "slices"
    ledger.run("slices", {**data, "slice_size": config.slice_size}, (),
               lambda resume: {"store": str(write_slice_store(
                   config.dataroot, ("domain1_train", "domain1_val"), store, config.preprocess,
                   SliceConfig(size=config.slice_size), cache_dir=workdir / "cache", overwrite=True,
                   progress=config.progress).path)},
               outputs=lambda r: [r["store"]])
    models["vae"] = ledger.run("vae", {"vae": asdict(config.vae)}, ("slices",),
                               lambda resume: _trained(run_vae(VAESpec(
                                   stage=dataclasses.replace(run_of("vae", resume), dataroot=""), store=str(store),
                                   vae=config.vae))),
                               outputs=_checkpoint_exists, run_folder=ray_results / "vae")
    a = config.adapt
    log.info(f"  adaptation: latent KL on {plan.adapt_split} (inputs only), ele_percent {a.ele_percent}, lr {a.lr}, "
             f"{a.epochs} epochs, {a.slice_order} slices, guards on")

    def adapt(resume: bool) -> dict:
        return run_adapt(AdaptSpec(stage=run_of("adapt", resume), backbone_checkpoint=start,
                                   vae_checkpoint=models["vae"]["checkpoint"], adapt=a, guards=config.guards,
                                   target_split=plan.adapt_split)).to_json()

    models["adapt"] = ledger.run("adapt", {**data, "adapt": asdict(a), "guards": asdict(config.guards),
                                           "split": plan.adapt_split}, ("backbone", "vae"), adapt,
                                 outputs=_checkpoint_exists, run_folder=ray_results / "adapt")
    if plan.available("supervised"):
        log.info(f"  supervised upper bound: fine-tune on labelled domain2_train for {config.supervised_epochs} "
                 "epochs")
        models["supervised"] = backbone_stage(
            "supervised", config.backbone.fine_tune(config.supervised_epochs),
            start, ("backbone",), domain="domain2")
    else:
        log.info(f"  supervised upper bound: skipped ({plan.skipped()['supervised']})")
    log.info(f"  input harmoniser for the robust backbone: monotone curves fitted to {plan.adapt_split} inputs "
             "(no labels)")
    models["robust+harmoniser"] = ledger.run(
        "harmoniser", {**data, "harmoniser": asdict(config.harmoniser), "split": plan.adapt_split}, ("robust",),
        lambda resume: {"checkpoint": harmonise(models["robust"]["checkpoint"], config, plan.adapt_split),
                        "mlflow_run_id": models["robust"]["mlflow_run_id"]},
        outputs=_checkpoint_exists)
    return models


def synthesize_targets(checkpoint: str, plan: RootPlan, config: PipelineConfig,
                       members: list[str] = ()) -> dict[str, Any]:
    """Synthesize every target subject of every target split into ``WORKDIR/synth/<split>/``.

    ``members`` (the other candidates) give each subject an ``ensemble_spread`` quality estimate.
    """
    from uda3d.inference import load_members, load_model
    from uda3d.synthesis import SynthesisJob, run_synthesis

    model = load_model(checkpoint, resolve_device(config.device))
    ensemble = load_members(list(members), model)
    found = discover(config.dataroot, plan.target_splits)
    splits = {}
    for name in plan.target_splits:
        job = SynthesisJob(subjects=tuple(found[name]), out=Path(config.workdir) / SYNTH_DIR / name, overwrite=True)
        splits[name] = run_synthesis(model, job, progress=config.progress, members=ensemble)
    flagged = [row["subject"] for rows in splits.values() for row in rows if row.get("outside_source_range")]
    return {"checkpoint": checkpoint, "folder": str(Path(config.workdir) / SYNTH_DIR), "splits": splits,
            "outside_source_range": flagged}


def quality_vs_psnr(checkpoint: str, plan: RootPlan, config: PipelineConfig,
                    synthesis: dict[str, Any]) -> dict[str, Any]:
    """Spearman of each label-free quality estimate with uda's true per-subject PSNR (target T1 read here only)."""
    from uda3d.evaluation import evaluate_generator
    from uda3d.metrics.summary import spearman
    from uda3d.training.checkpoint import load_generator

    generator = load_generator(checkpoint, resolve_device(config.device))
    psnr = {}
    for scores in evaluate_generator(generator, config.dataroot, plan.target_splits, config.preprocess,
                                     Path(config.workdir) / "cache"):
        psnr.update({s: m["psnr"] for s, m in scores.per_subject.items()})
    rows = [row for rows in synthesis["splits"].values() for row in rows if row["subject"] in psnr]
    out: dict[str, Any] = {"subjects": len(rows), "expected_sign": "negative (higher estimate, lower PSNR)"}
    for estimate in QUALITY_ESTIMATES:
        pairs = [(float(r[estimate]), psnr[r["subject"]]) for r in rows if r.get(estimate) is not None]
        if len(pairs) >= 3:
            out[estimate] = {"spearman": spearman([p[0] for p in pairs], [p[1] for p in pairs]), "n": len(pairs)}
    return out


def _parent_run(config: PipelineConfig, ledger) -> str | None:
    """The pipeline's MLflow run (continued on --resume); its params go in one batch."""
    from uda3d.tracking import Tracker

    if config.tracking.uri is None:
        return None
    recorded = ledger.records.get("mlflow_parent", {}).get("result", {}).get("run_id")
    tracker = Tracker(config.tracking)
    params = {k: v for k, v in asdict(config).items() if k not in ("tracking", "progress", "resume")}
    run_id = tracker.start("pipeline", params=None if recorded else params, tags={"stage": "pipeline"},
                           run_id=recorded)
    if not recorded:
        ledger.note("mlflow_parent", {"run_id": run_id})
    return run_id


def _register(tracking: TrackingConfig, run_id: str, checkpoint: str, name: str, chosen: str) -> dict[str, str]:
    from uda3d.serving import log_servable_model

    log.info(f"  registering uda ({chosen}) as an MLflow pyfunc model: {name}")
    return log_servable_model(tracking, run_id, checkpoint, name, tags={"candidate": chosen})


def _log_to_parent(tracking: TrackingConfig, run_id: str, workdir: Path, report: dict[str, Any]) -> None:
    """The report, tables and figures on the parent run, which then ends."""
    from uda3d.tracking import Tracker

    tracker = Tracker(tracking)
    tracker.start("pipeline", run_id=run_id)
    for name in (REPORT, "per_subject.csv", "comparison.png"):
        if (workdir / name).is_file():
            tracker.log_artifact(workdir / name)
    for folder in sorted((workdir / SYNTH_DIR).glob("*/quality.csv")):
        tracker.log_artifact(folder, f"quality/{folder.parent.name}")
    metrics = {f"{m}_{k}": report[m][k] for m in METHODS if m in report and isinstance(report[m], dict)
               for k in ("psnr", "ssim", "mae") if k in report[m]}
    if metrics:
        tracker.log_metrics(metrics, step=0)
    tracker.end()


def harmonise(checkpoint: str, config: PipelineConfig, target_split: str = "domain2_val") -> str:
    """Fit the SW input harmoniser (``target_split`` inputs -> domain1_train inputs) and save it with ``checkpoint``."""
    from uda3d.adaptation.input_maps import fit_harmoniser
    from uda3d.data.datasets import input_dataset
    from uda3d.training.checkpoint import load_state, save_state

    cache = Path(config.workdir) / "cache"
    found = discover(config.dataroot, ("domain1_train", target_split))
    inputs = {name: [d[i]["input"] for i in range(len(d))]
              for name, d in ((n, input_dataset(found[n], config.preprocess, cache)) for n in found)}
    harmoniser, history = fit_harmoniser(inputs[target_split], inputs["domain1_train"], config.harmoniser)
    out = Path(config.workdir) / "adapted" / "robust+harmoniser"
    save_state(out, {**load_state(checkpoint), "harmoniser": harmoniser.state_dict(),
                     "harmoniser_config": asdict(config.harmoniser), "harmoniser_loss": history[-1]})
    return str(out)


def select_uda(candidates: dict[str, str], config: PipelineConfig) -> UDASelection:
    """Score each candidate checkpoint without target labels and choose ``uda`` (see the module docstring)."""
    from uda3d.adaptation.selection import augmented_source_error, augmented_source_set, choose_by_source_psnr
    from uda3d.data.datasets import paired_dataset
    from uda3d.evaluation import evaluate_generator
    from uda3d.training.checkpoint import load_generator

    val = paired_dataset(discover(config.dataroot, ("domain1_val",))["domain1_val"], config.preprocess,
                         Path(config.workdir) / "cache")
    augmented = augmented_source_set([val[i] for i in range(len(val))])
    scores = []
    for name, checkpoint in candidates.items():
        generator = load_generator(checkpoint)
        [source_val] = evaluate_generator(generator, config.dataroot, ("domain1_val",), config.preprocess,
                                          Path(config.workdir) / "cache")
        scores.append(CandidateScore(name, augmented_source_error(generator, augmented), source_val.mean["psnr"]))
    chosen, reason = choose_by_source_psnr(scores)
    return UDASelection(chosen, reason, tuple(scores))


def evaluate_methods(models: dict[str, str], dataroot: str | Path, split: str, preprocess: PreprocessConfig,
                     workdir: str | Path, device: str | Any = "cpu") -> dict[str, Any]:
    """Score each checkpoint on ``split``: means, summaries, paired Wilcoxon vs no adaptation, CSV and figure."""
    from uda3d.evaluation import evaluate_generator
    from uda3d.metrics.summary import paired_wilcoxon, summarise, write_per_subject_csv
    from uda3d.training.checkpoint import load_generator
    from uda3d.viz import comparison_figure

    workdir = Path(workdir)
    generators = {name: load_generator(path, device) for name, path in models.items()}
    per_subject = {}
    for name, generator in generators.items():
        [scores] = evaluate_generator(generator, dataroot, (split,), preprocess, workdir / "cache")
        per_subject[name] = scores.per_subject
    report: dict[str, Any] = {"split": split}
    for name, per in per_subject.items():
        summary = summarise(per)
        report[name] = {k: summary[k]["mean"] for k in ("psnr", "ssim", "mae") if k in summary}
        report[name]["summary"] = summary
        report[name]["checkpoint"] = models[name]
    report["wilcoxon"] = {
        f"{name}_vs_{reference}": {k: paired_wilcoxon({s: m[k] for s, m in per_subject[name].items()},
                                                      {s: m[k] for s, m in per_subject[reference].items()})
                                   for k in ("psnr", "ssim", "mae")}
        for reference in (BASELINE, CONTROL) if reference in per_subject
        for name in per_subject if name not in (BASELINE, reference)}
    csv_path = write_per_subject_csv(workdir / "per_subject.csv", per_subject)
    figure = comparison_figure(workdir / "comparison.png", dataroot, split, generators, preprocess, workdir / "cache")
    report["files"] = {"per_subject_csv": str(csv_path), "figure": str(figure)}
    return report


def format_table(report: dict[str, Any]) -> str:
    """The before/after table the demo and the pipeline print (or why there are no scores)."""
    if "split" not in report:
        return f"scores: skipped ({report['skipped'].get('scores', 'no target T1')})"
    lines = [f"{report['split']}: mean over subjects (inside the brain, data range 1)",
             f"  {'method':<16}{'PSNR (dB)':>10}{'SSIM':>8}{'MAE':>8}"]
    for name in (n for n in METHODS if n in report):
        m = report[name]
        lines.append(f"  {name:<16}{m['psnr']:>10.2f}{m.get('ssim', float('nan')):>8.3f}{m['mae']:>8.3f}")
    for name, tests in report["wilcoxon"].items():
        lines.append(f"  Wilcoxon {name} (PSNR): p = {tests['psnr']['p_value']:.3g}, "
                     f"mean difference {tests['psnr']['mean_difference']:+.2f} dB over {tests['psnr']['n']} subjects")
    return "\n".join(lines)
