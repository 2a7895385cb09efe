"""``uda3d pipeline``: every stage on a BraTS-layout root, ending in one honest report.

backbone (domain1) -> slice store + slice VAE (domain1 T1) -> adaptation on domain2_val under the
guards -> supervised fine-tuning on labelled domain2_train (the upper bound, which needs target T1)
-> evaluation of no adaptation / UDA / supervised on domain2_test: per-subject CSV, a comparison
figure, and ``WORKDIR/report.json`` with means, bootstrap CIs, paired Wilcoxon tests between methods,
the guard's decision and the Spearman correlation between the unsupervised objective and the
target PSNR across adaptation checkpoints. Whatever the numbers say is what the report says.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uda3d.adaptation.guards import GuardConfig
from uda3d.config import AdaptConfig, BackboneConfig, PreprocessConfig, ScalingOptions, VAEConfig
from uda3d.data.layout import discover
from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file
from uda3d.tracking import TrackingConfig

REQUIRED_SPLITS = ("domain1_train", "domain1_val", "domain2_val", "domain2_test")
METHODS = ("no_adaptation", "uda", "supervised")
REPORT = "report.json"


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
    slice_size: int = 256
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    scaling: ScalingOptions = field(default_factory=ScalingOptions)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(uri=None))
    progress: bool = True


def check_root(dataroot: str | Path) -> None:
    """The splits the pipeline needs, with T1 on domain2_train and domain2_test for the bounds and scores."""
    found = discover(dataroot)
    for name in REQUIRED_SPLITS + ("domain2_train",):
        if not found.get(name):
            raise DataError(Path(dataroot) / name, "split is missing or empty; the pipeline needs it")
    for name in ("domain2_train", "domain2_test"):
        if not any(s.has_target for s in found[name]):
            raise DataError(Path(dataroot) / name, "no subject has a T1; the supervised bound and the scores need it")


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run every stage and write the report; returns it."""
    from uda3d.adaptation.run import AdaptRun, run_adapt
    from uda3d.data.slice_store import write_slice_store
    from uda3d.data.slices import SliceConfig
    from uda3d.training.backbone_run import BackboneRun, run_backbone
    from uda3d.training.vae_run import VAERun, run_vae

    check_root(config.dataroot)
    workdir = Path(config.workdir)
    common = {"workdir": str(workdir), "scaling": config.scaling, "tracking": config.tracking,
              "progress": config.progress}

    print("  backbone: supervised 3D pix2pix on domain1_train")
    backbone = run_backbone(BackboneRun(dataroot=config.dataroot, backbone=config.backbone,
                                        preprocess=config.preprocess, run_name="backbone", **common))
    print(f"  slices + VAE: {config.slice_size}^2 slices of domain1 T1")
    store = workdir / "slices"
    write_slice_store(config.dataroot, ("domain1_train", "domain1_val"), store, config.preprocess,
                      SliceConfig(size=config.slice_size), cache_dir=workdir / "cache", overwrite=True,
                      progress=config.progress)
    vae = run_vae(VAERun(store=str(store), vae=config.vae, run_name="vae", **common))
    a = config.adapt
    print(f"  adaptation: latent KL, ele_percent {a.ele_percent}, lr {a.lr}, {a.epochs} epochs, {a.slice_order} "
          "slices, guards on")
    adapted = run_adapt(AdaptRun(dataroot=config.dataroot, backbone_checkpoint=backbone.checkpoint,
                                 vae_checkpoint=vae.checkpoint, adapt=config.adapt, guards=config.guards,
                                 preprocess=config.preprocess, run_name="adapt", **common))
    print(f"  supervised upper bound: fine-tune on labelled domain2_train for {config.supervised_epochs} epochs")
    supervised_config = dataclasses.replace(config.backbone, epochs=config.supervised_epochs, epochs_decay=0)
    supervised = run_backbone(BackboneRun(dataroot=config.dataroot, backbone=supervised_config,
                                          preprocess=config.preprocess, source_domain="domain2",
                                          run_name="supervised", init_checkpoint=backbone.checkpoint, **common))
    models = {"no_adaptation": backbone.checkpoint, "uda": adapted.checkpoint, "supervised": supervised.checkpoint}
    report = evaluate_methods(models, config.dataroot, "domain2_test", config.preprocess, workdir)
    report["uda"]["guard"] = adapted.decision
    report["uda"]["config"] = asdict(config.adapt)
    report["spearman_objective_vs_target_psnr"] = adapted.decision["spearman_objective_vs_target_psnr"]
    report["adaptation_history"] = adapted.history
    report["runs"] = {"backbone": {"checkpoint": backbone.checkpoint, "mlflow_run_id": backbone.mlflow_run_id},
                      "vae": {"checkpoint": vae.checkpoint, "mlflow_run_id": vae.mlflow_run_id},
                      "adapt": {"checkpoint": adapted.checkpoint, "mlflow_run_id": adapted.mlflow_run_id},
                      "supervised": {"checkpoint": supervised.checkpoint, "mlflow_run_id": supervised.mlflow_run_id}}
    report["notes"] = ("Metrics inside the brain mask at data range 1 (psnr/ssim/mae); the method's whole-volume "
                       "convention as psnr_method/ssim_method. Slices for the VAE and the adaptation are anatomical "
                       f"(slice_order={config.adapt.slice_order}). Target T1 is used only for the supervised bound "
                       "and for evaluation, never for adaptation or checkpoint selection.")
    with atomic_file(workdir / REPORT) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


def evaluate_methods(models: dict[str, str], dataroot: str | Path, split: str, preprocess: PreprocessConfig,
                     workdir: str | Path) -> dict[str, Any]:
    """Score each checkpoint on ``split``: means, summaries, paired Wilcoxon vs no adaptation, CSV and figure."""
    from uda3d.evaluation import comparison_figure, evaluate_generator, load_generator
    from uda3d.metrics.summary import paired_wilcoxon, summarise, write_per_subject_csv

    workdir = Path(workdir)
    generators = {name: load_generator(path) for name, path in models.items()}
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
    baseline = "no_adaptation"
    report["wilcoxon"] = {
        f"{name}_vs_{baseline}": {k: paired_wilcoxon({s: m[k] for s, m in per_subject[name].items()},
                                                     {s: m[k] for s, m in per_subject[baseline].items()})
                                  for k in ("psnr", "ssim", "mae")}
        for name in per_subject if name != baseline}
    csv_path = write_per_subject_csv(workdir / "per_subject.csv", per_subject)
    figure = comparison_figure(workdir / "comparison.png", dataroot, split, generators, preprocess, workdir / "cache")
    report["files"] = {"per_subject_csv": str(csv_path), "figure": str(figure)}
    return report


def format_table(report: dict[str, Any]) -> str:
    """The before/after table the demo and the pipeline print."""
    lines = [f"{report['split']}: mean over subjects (inside the brain, data range 1)",
             f"  {'method':<16}{'PSNR (dB)':>10}{'SSIM':>8}{'MAE':>8}"]
    for name in METHODS:
        m = report[name]
        lines.append(f"  {name:<16}{m['psnr']:>10.2f}{m.get('ssim', float('nan')):>8.3f}{m['mae']:>8.3f}")
    for name, tests in report["wilcoxon"].items():
        lines.append(f"  Wilcoxon {name} (PSNR): p = {tests['psnr']['p_value']:.3g}, "
                     f"mean difference {tests['psnr']['mean_difference']:+.2f} dB over {tests['psnr']['n']} subjects")
    return "\n".join(lines)
