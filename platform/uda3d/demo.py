"""``uda3d demo``: a synthetic cohort and every stage built so far, runnable on a laptop CPU.

Stages: generate the two-site cohort; validate it as a real BraTS root would be; load every split
through the preprocessing cache (twice, to show the cache at work); then ``uda3d pipeline`` with
small settings: backbone on the source site (Ray Train, MLflow), its robust fine-tune, slice store +
slice VAE (Ray Data), the method's adaptation under the guards, the supervised upper bound, the
label-free choice of ``uda`` and the evaluation on the target test split, printed as a before/after
table and written to ``WORKDIR/report.json``; last, a small ``uda3d tune`` run over the adaptation's
lr and ele_percent (``search_spaces/demo.yaml``: Optuna TPE, ASHA, nested MLflow runs, the
label-free best registered as ``champion``), and the ``mlflow ui`` command that shows it all.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uda3d.config import AdaptConfig, BackboneConfig, PreprocessConfig, ScalingOptions, VAEConfig, require_learning_rate
from uda3d.errors import ConfigError, DataError

if TYPE_CHECKING:
    from uda3d.pipeline import PipelineConfig

log = logging.getLogger(__name__)

# Small networks for 2 CPU cores, all chosen on the development cohort
# (benchmarks/results/backbone_convergence.md). Half the method's generator width and an eighth of
# its discriminator's: a step's cost is mostly the discriminator's k4 convolutions and the
# generator's small ones, so ngf 32 costs about 1.1x ngf 16 per epoch and learns more; ndf 8
# instead of 16 changed nothing but the time. The lr (60x the method's) beat 1e-3 and 3e-3 (1e-2
# diverged early). The generator trains on L1 alone (a step costs 0.4 of a GAN step and, from
# scratch, learns more) until the last 16 decaying epochs, which use the method's GAN losses:
# 384 epochs reach 26.77 dB source-val PSNR (2 training seeds), 0.6 dB above a per-voxel MLP,
# where 192 with the GAN losses over the last quarter reached 25.59 (below the MLP's 26.16).
# Scoring source val every 8th epoch instead of every one paid for 32 epochs.
# Not converged: doubling the epochs adds 0.7-1.2 dB.
DEMO_GAN_EPOCHS = 16


def demo_backbone(epochs: int) -> BackboneConfig:
    """The demo's backbone: ``epochs`` constant-lr epochs, then a third as many decaying; L1 alone
    but for the last ``DEMO_GAN_EPOCHS`` decaying ones, which use the method's losses (one rule for
    the default and ``uda3d demo --backbone-epochs``)."""
    decay = epochs // 3
    return BackboneConfig(ngf=32, ndf=8, lr=6e-3, epochs=epochs, epochs_decay=decay,
                          l1_warmup_epochs=epochs + decay - min(DEMO_GAN_EPOCHS, decay), val_every=8, seed=0)


DEMO_BACKBONE = demo_backbone(288)
# The fine-tunes that start from that annealed backbone (robust, source_ft, ttt_joint) run at this
# constant lr, chosen at ngf 16: at half the backbone's (3e-3, the pipeline's default ratio) 20
# epochs cost the development cohort's source_ft 1.0 dB of source-val PSNR, at 5e-4 +0.07 dB (at
# ngf 32 -0.16 dB).
DEMO_FINE_TUNE_LR = 5e-4
DEMO_VAE = VAEConfig(latent_channels=32, lr=2e-3, epochs=20)
DEMO_SLICE_SIZE = 64
# The method's adaptation as configured in its README run (lr 1e-6, ele_percent 55, 5 epochs).
DEMO_ADAPT = AdaptConfig()
DEMO_SUPERVISED_EPOCHS = 20
# Fine-tune epochs of the robust, source_ft and ttt_joint candidates: the backbone's time comes
# from here (40, 20, then 15 before; benchmarks/results/demo_time.md).
DEMO_ROBUST_EPOCHS = 12
# The closing tuning run: trials of search_spaces/demo.yaml (2 epochs on one target volume each).
DEMO_TUNE_TRIALS = 4


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes and how big its cohort and networks are.

    Attributes:
        workdir: the demo's own folder (a rerun replaces its runs; any other folder is refused).
        subjects_per_site: split 60/20/20 into train/val/test.
        shape: grid size of the synthetic volumes.
        seed: seeds the cohort.
        sites: site protocols, in domain order.
        backbone, vae, adapt: the stages' configs (small networks, see ``DEMO_BACKBONE``).
        supervised_epochs: epochs of the supervised upper bound.
        robust_epochs: epochs of the robust fine-tune (the default uda) and of its controls.
        fine_tune_lr: constant lr of those fine-tunes (the pipeline's ``robust_lr_factor`` x the backbone's lr).
        slice_size: VAE slice side (power of 2).
        tune_trials: trials of the closing tuning run (search_spaces/demo.yaml).
        address: Ray cluster address (None: start a local Ray).
    """

    workdir: Path = Path("uda3d-demo")
    subjects_per_site: int = 9
    shape: tuple[int, int, int] = (64, 64, 64)
    seed: int = 0
    sites: tuple[str, ...] = ("site-a", "site-b")
    backbone: BackboneConfig = DEMO_BACKBONE
    vae: VAEConfig = DEMO_VAE
    adapt: AdaptConfig = DEMO_ADAPT
    supervised_epochs: int = DEMO_SUPERVISED_EPOCHS
    robust_epochs: int = DEMO_ROBUST_EPOCHS
    fine_tune_lr: float = DEMO_FINE_TUNE_LR
    slice_size: int = DEMO_SLICE_SIZE
    tune_trials: int = DEMO_TUNE_TRIALS
    address: str | None = None

    def __post_init__(self) -> None:
        require_learning_rate(self, "fine_tune_lr")


def demo_scaling(address: str | None) -> ScalingOptions:
    """One training worker that owns every core of this machine (Ray gives a worker as many torch
    threads as CPUs it reserves: one CPU made the demo ~1.5x slower on 2 cores). On a cluster
    (``address``), one CPU: this machine's core count says nothing about the cluster's nodes."""
    cpus = float(os.cpu_count() or 1) if address is None else 1.0
    return ScalingOptions(num_workers=1, cpus_per_worker=cpus, address=address)


DEMO_MARKER = ".uda3d-demo"


def claim_workdir(workdir: Path) -> None:
    """The demo replaces its own runs on a rerun; a folder holding anything else is refused, never cleared."""
    workdir = Path(workdir)
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / DEMO_MARKER).is_file():
        raise ConfigError("--workdir", f"{workdir} holds files the demo did not create, and a demo run replaces the "
                                       "runs in its workdir; choose a new or empty --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / DEMO_MARKER).write_text("this folder belongs to `uda3d demo`, which replaces its runs on a rerun\n")


DEMO_STEPS = 5


def demo_tracking(config: DemoConfig):
    """The demo's MLflow store: ``WORKDIR/mlflow.db``, experiment ``uda3d-demo``."""
    from uda3d.tracking import resolve_tracking

    return resolve_tracking(config.workdir, "uda3d-demo")


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    """Steps 1-4 of the demo: cohort, validation, preprocessing and the pipeline; narration is logged.

    Returns:
        The pipeline's report (also written to ``WORKDIR/report.json``); ``demo_tune`` is step 5.
    """
    from uda3d.cohort.generate import CohortConfig, generate_cohort
    from uda3d.data.prepare import preprocess_root
    from uda3d.data.validate import validate_root
    from uda3d.pipeline import run_pipeline

    claim_workdir(config.workdir)
    steps = DEMO_STEPS
    cohort = CohortConfig(sites=config.sites, subjects_per_site=config.subjects_per_site,
                          shape=config.shape, seed=config.seed)
    root = config.workdir / "cohort"
    log.info(f"[1/{steps}] cohort: {len(cohort.sites)} sites x {cohort.subjects_per_site} subjects at "
             f"{cohort.shape} -> {root}")
    generate_cohort(root, cohort, overwrite=True, progress=progress)

    log.info(f"[2/{steps}] validate-data")
    report = validate_root(root, progress=progress)
    for line in report.summary_lines():
        log.info(f"  {line}")
    if not report.ok:
        raise DataError(root, f"generated cohort failed validation: {report.problems[0]}")

    log.info(f"[3/{steps}] preprocess (first pass decodes NIfTI, second reads the cache)")
    cache = config.workdir / "cache"
    pre = PreprocessConfig()
    first = preprocess_root(root, pre, cache, progress=progress)
    second = preprocess_root(root, pre, cache, progress=False)
    t1, t2 = sum(s.seconds for s in first), sum(s.seconds for s in second)
    for s in first:
        log.info(f"  {s.split}: {s.subjects} subjects, input {s.shape}")
    log.info(f"  load time: {t1:.2f} s decoding, {t2:.2f} s from cache ({t1 / max(t2, 1e-9):.1f}x)")

    log.info(f"[4/{steps}] pipeline: backbone -> robust fine-tune -> slices + VAE -> KL adaptation -> supervised "
             "bound -> label-free choice -> evaluation")
    shutil.rmtree(config.workdir / "ray_results", ignore_errors=True)  # the demo owns its workdir
    (config.workdir / "stages.json").unlink(missing_ok=True)
    return run_pipeline(demo_pipeline_config(config, root, pre, progress)).to_json()


def demo_pipeline_config(config: DemoConfig, root: Path, preprocess: PreprocessConfig,
                         progress: bool) -> PipelineConfig:
    """The pipeline the demo runs on its cohort at ``root``: its small networks, epochs and fine-tune lr."""
    from uda3d.pipeline import PipelineConfig

    return PipelineConfig(
        dataroot=str(root), workdir=str(config.workdir), backbone=config.backbone, vae=config.vae,
        adapt=config.adapt, supervised_epochs=config.supervised_epochs, robust_epochs=config.robust_epochs,
        robust_lr_factor=config.fine_tune_lr / config.backbone.lr, slice_size=config.slice_size,
        preprocess=preprocess, scaling=demo_scaling(config.address),
        tracking=demo_tracking(config), progress=progress)


def demo_tune(config: DemoConfig, report: dict) -> dict:
    """Step 5 of the demo: ``search_spaces/demo.yaml`` over the pipeline's backbone and VAE.

    Args:
        config: the demo's config (``tune_trials`` trials).
        report: ``run_demo``'s report, whose backbone and VAE checkpoints are adapted.

    Returns:
        The tuning run's summary (``uda3d.tuning.tune.run_tune``).
    """
    import dataclasses

    from uda3d.config import ScalingOptions, StageRun
    from uda3d.tuning.space import load_space
    from uda3d.tuning.study import shipped_space
    from uda3d.tuning.tune import TuneSpec, run_tune

    log.info(f"[5/{DEMO_STEPS}] tune: {config.tune_trials} trials over the adaptation's lr and ele_percent "
             "(Optuna TPE, ASHA), ranked without target labels")
    space = dataclasses.replace(load_space(shipped_space("demo")), num_samples=config.tune_trials)
    shutil.rmtree(config.workdir / "tune", ignore_errors=True)
    stage = StageRun(dataroot=str(config.workdir / "cohort"), workdir=str(config.workdir),
                     scaling=ScalingOptions(address=config.address), tracking=demo_tracking(config))
    return run_tune(TuneSpec(stage=stage, space=space, backbone_checkpoint=report["runs"]["backbone"]["checkpoint"],
                             vae_checkpoint=report["runs"]["vae"]["checkpoint"]))
