"""``uda3d demo``: a synthetic cohort and every stage built so far, runnable on a laptop CPU.

Stages today: generate the cohort; validate it as a real BraTS root would be; load every split
through the preprocessing cache (twice, to show the cache at work); train a small backbone on the
source site with Ray Train (tracked in MLflow); evaluate it on the source and the target test
splits, which shows the domain gap the later stages set out to close; slice the source T1 volumes
into a Parquet store and train a small slice VAE on it (Ray Train + Ray Data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import BackboneConfig, PreprocessConfig, ScalingOptions, VAEConfig
from uda3d.data.prepare import preprocess_root
from uda3d.data.validate import validate_root
from uda3d.errors import DataError
from uda3d.tracking import resolve_tracking

log = logging.getLogger(__name__)

# A small backbone that learns something in about a minute on 2 CPU cores: 10x the method's lr and
# a quarter of its width, since the demo has 5 training volumes instead of hundreds.
DEMO_BACKBONE = BackboneConfig(ngf=16, ndf=16, lr=1e-3, epochs=30, epochs_decay=10, seed=0)
# A small slice VAE: 64^2 slices, 32 latent channels, a higher lr than the method's 1e-4 for the same reason.
DEMO_VAE = VAEConfig(latent_channels=32, lr=2e-3, epochs=20)
DEMO_SLICE_SIZE = 64


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes and how big its cohort and backbone are."""

    workdir: Path = Path("uda3d-demo")
    subjects_per_site: int = 9
    shape: tuple[int, int, int] = (64, 64, 64)
    seed: int = 0
    sites: tuple[str, ...] = ("site-a", "site-b")
    backbone: BackboneConfig = DEMO_BACKBONE
    vae: VAEConfig = DEMO_VAE
    slice_size: int = DEMO_SLICE_SIZE
    address: str | None = None


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    """Run the demo; returns what it measured (also printed)."""
    from uda3d.data.slice_store import write_slice_store
    from uda3d.data.slices import SliceConfig
    from uda3d.evaluation import evaluate_generator, load_generator
    from uda3d.training.backbone_run import BackboneRun, run_backbone
    from uda3d.training.vae_run import VAERun, run_vae

    steps = 7
    cohort = CohortConfig(sites=config.sites, subjects_per_site=config.subjects_per_site,
                          shape=config.shape, seed=config.seed)
    root = config.workdir / "cohort"
    print(f"[1/{steps}] cohort: {len(cohort.sites)} sites x {cohort.subjects_per_site} subjects at {cohort.shape} "
          f"-> {root}")
    generate_cohort(root, cohort, overwrite=True, progress=progress)

    print(f"[2/{steps}] validate-data")
    report = validate_root(root, progress=progress)
    for line in report.summary_lines():
        print(f"  {line}")
    if not report.ok:
        raise DataError(root, f"generated cohort failed validation: {report.problems[0]}")

    print(f"[3/{steps}] preprocess (first pass decodes NIfTI, second reads the cache)")
    cache = config.workdir / "cache"
    pre = PreprocessConfig()
    first = preprocess_root(root, pre, cache, progress=progress)
    second = preprocess_root(root, pre, cache, progress=False)
    t1, t2 = sum(s.seconds for s in first), sum(s.seconds for s in second)
    for s in first:
        print(f"  {s.split}: {s.subjects} subjects, input {s.shape}")
    print(f"  load time: {t1:.2f} s decoding, {t2:.2f} s from cache ({t1 / max(t2, 1e-9):.1f}x)")

    b = config.backbone
    print(f"[4/{steps}] train-backbone: {b.generator} ngf={b.ngf}, {b.total_epochs} epochs on domain1_train "
          "(Ray Train, MLflow)")
    tracking = resolve_tracking(config.workdir, "uda3d-demo")
    run = BackboneRun(dataroot=str(root), workdir=str(config.workdir), backbone=b, preprocess=pre,
                      scaling=ScalingOptions(num_workers=1, cpus_per_worker=2.0, address=config.address),
                      tracking=tracking, run_name="demo-backbone", resume=False, progress=progress)
    _clear_previous_run(Path(run.storage_path) / run.run_name)
    result = run_backbone(run)
    print(f"  checkpoint: {result.checkpoint}")
    print(f"  MLflow: {tracking.uri} (experiment {tracking.experiment}, run {result.mlflow_run_id})")

    print(f"[5/{steps}] evaluate the backbone (no adaptation yet): source test vs target test")
    generator = load_generator(result.checkpoint)
    scores = {m.split: m.mean for m in evaluate_generator(generator, root, ("domain1_test", "domain2_test"), pre,
                                                            cache)}
    print(f"  {'split':<14}{'PSNR (dB)':>10}{'SSIM':>8}{'MAE':>8}   (inside the brain, data range 1)")
    for split, m in scores.items():
        print(f"  {split:<14}{m['psnr']:>10.2f}{m['ssim']:>8.3f}{m['mae']:>8.3f}")
    gap = scores["domain1_test"]["psnr"] - scores["domain2_test"]["psnr"]
    print(f"  domain gap: {gap:+.2f} dB PSNR from source to target site")

    store_path = config.workdir / "slices"
    print(f"[6/{steps}] slices: source T1 volumes -> {config.slice_size}^2 coronal slices in a Parquet store")
    store = write_slice_store(root, ("domain1_train", "domain1_val"), store_path, pre,
                              SliceConfig(size=config.slice_size), cache_dir=cache, overwrite=True,
                              progress=progress)
    print(f"  {len(store.volumes)} volumes x {store.slices_per_volume} slices -> {store_path}")

    v = config.vae
    print(f"[7/{steps}] train-vae: latent {v.latent_channels}x2x2 per slice, {v.epochs} epochs, one volume per "
          "batch (Ray Train + Ray Data, MLflow)")
    vae_run = VAERun(store=str(store_path), workdir=str(config.workdir), vae=v,
                     scaling=ScalingOptions(num_workers=1, cpus_per_worker=1.0, address=config.address),
                     tracking=tracking, run_name="demo-vae", progress=progress)
    _clear_previous_run(Path(vae_run.storage_path) / vae_run.run_name)
    vae_result = run_vae(vae_run)
    m = vae_result.metrics
    print(f"  validation reconstruction MSE {m['val_recon_mse']:.4f} vs {m['val_mse_mean_slice']:.4f} for the "
          "mean training slice")
    print(f"  checkpoint: {vae_result.checkpoint}")
    return {"root": str(root), "first_pass_s": t1, "cached_pass_s": t2, "backbone": result.checkpoint,
            "scores": scores, "vae": vae_result.checkpoint, "vae_metrics": m}


def _clear_previous_run(folder: Path) -> None:
    """The demo owns its workdir: a rerun replaces its previous backbone run instead of refusing."""
    import shutil

    if folder.is_dir():
        shutil.rmtree(folder)
