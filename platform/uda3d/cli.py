"""The ``uda3d`` command line: one subcommand per stage, each a thin call into the library.

Parsing lives here and nowhere else; heavy libraries are imported inside the handlers so
``uda3d --help`` stays instant. Any ``Uda3dError`` (bad data, bad option) is printed as one line
and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from uda3d import __version__
from uda3d.errors import ConfigError, Uda3dError

EXIT_BAD_INPUT = 2
# uda3d.demo's defaults, repeated here so --help needs no heavy import (a test keeps them equal)
DEMO_BACKBONE_EPOCHS = 30
DEMO_VAE_EPOCHS = 20
DEMO_SLICE_SIZE = 64
DEMO_SUPERVISED_EPOCHS = 20
DEMO_ROBUST_EPOCHS = 40
DEMO_TUNE_TRIALS = 4


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a message that says which kind was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


_CHECKPOINTING_HELP = ("recompute activations in backward (torch.utils.checkpoint): the same numbers in about half "
                       "the memory, for more time (benchmarks/results/memory.md)")


def _add_preprocess_options(p: argparse.ArgumentParser, stored: bool = False) -> None:
    """Crop and normalisation flags; ``stored``: a checkpoint's own preprocessing is the default."""
    p.add_argument("--crop-shape", type=_positive_int, nargs=3, metavar=("D", "H", "W"), default=None,
                   help="crop/pad size after reorientation to IPL (multiples of 8); default: "
                        + ("the checkpoint's" if stored else "the method's 144x192x192-of-155x240x240 ratios "
                                                               "scaled to the input"))
    p.add_argument("--normalisation", choices=["minmax", "percentile"], default=None if stored else "minmax",
                   help="per-volume intensity scaling (default: " + ("the checkpoint's" if stored else
                                                                     "minmax, as the method") + ")")
    p.add_argument("--crop", choices=["brain", "fixed"], default=None if stored else "brain",
                   help="crop window: centred on each brain, or one fixed window as the method (default: "
                        + ("the checkpoint's" if stored else "brain") + ")")
    p.add_argument("--spacing", type=_positive_float, nargs=3, metavar=("MM", "MM", "MM"), default=None,
                   help="resample every subject to this voxel size (mm along the IPL axes) before the crop, "
                        "outputs back to each file's grid (default: " + ("the checkpoint's" if stored else
                                                                         "off, each file's own grid") + ")")


@contextlib.contextmanager
def _flags(**names: str) -> Iterator[None]:
    """Name the flag a config value came from: ``shape: ...`` becomes ``--crop-shape: ...``.

    Configs check their fields by their own names; where a command's flag has another name (or one
    config field has several flags, as ``lr`` in the pipeline), the error names the flag typed.
    """
    try:
        yield
    except ConfigError as exc:
        if exc.source is None and exc.field in names:
            raise ConfigError(names[exc.field], exc.problem) from None
        raise


def _preprocess_config(args: argparse.Namespace):
    from uda3d.config import PreprocessConfig

    shape = tuple(args.crop_shape) if args.crop_shape else None
    spacing = tuple(args.spacing) if args.spacing else None
    with _flags(shape="--crop-shape", normalisation="--normalisation", crop="--crop", spacing="--spacing"):
        return PreprocessConfig(shape=shape, normalisation=args.normalisation or "minmax", crop=args.crop or "brain",
                                spacing=spacing)


def _add_scaling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray")
    g.add_argument("--num-workers", type=_positive_int, default=1, help="DDP workers (default 1)")
    g.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    g.add_argument("--cpus-per-worker", type=float, default=1.0)
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="fractional GPUs per worker (with --use-gpu)")
    g.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    g.add_argument("--max-failures", type=int, default=0, help="restart failed workers from the last checkpoint")


def _scaling_options(args: argparse.Namespace):
    from uda3d.config import ScalingOptions

    return ScalingOptions(num_workers=args.num_workers, use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker,
                          gpus_per_worker=args.gpus_per_worker, address=args.address, max_failures=args.max_failures)


def _add_run_options(p: argparse.ArgumentParser, default_name: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--workdir", type=Path, default=Path("uda3d-runs"),
                   help="cache, Ray results and the default MLflow store (sqlite) live here")
    g.add_argument("--run-name", default=default_name, help=f"Ray/MLflow run name (default {default_name})")
    g.add_argument("--resume", action="store_true", help="continue the run of this name from its last checkpoint")
    g.add_argument("--experiment", default="uda3d", help="MLflow experiment")
    g.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db)")
    g.add_argument("--no-tracking", action="store_true", help="do not record the run in MLflow")
    g.add_argument("--verbose", action="store_true", help="show Ray Train's own per-report logs")


def _tracking(args: argparse.Namespace):
    from uda3d.config import TrackingConfig
    from uda3d.tracking import resolve_tracking

    if args.no_tracking:
        return TrackingConfig(uri=None)
    return resolve_tracking(args.workdir, args.experiment, args.tracking_uri)


def _print_result(stage: str, result, keys: list[str]) -> None:
    shown = {k: round(result.metrics[k], 5) for k in ["epoch", *keys] if k in result.metrics}
    print(f"{stage} checkpoint: {result.checkpoint}")
    print(f"final metrics: {shown}")
    if result.mlflow_run_id:
        print(f"MLflow run: {result.mlflow_run_id}")


# --- handlers -------------------------------------------------------------------------------------

def cmd_cohort(args: argparse.Namespace) -> int:
    from uda3d.cohort.generate import CohortConfig, generate_cohort

    config = CohortConfig(sites=tuple(args.sites), subjects_per_site=args.subjects_per_site,
                          shape=tuple(args.shape), seed=args.seed)
    summary = generate_cohort(args.out, config, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(config.sites) * config.subjects_per_site} subjects to {args.out} ({summary.name})")
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    from uda3d.data.validate import validate_root

    report = validate_root(args.root, splits=args.splits, progress=not args.quiet)
    for line in report.summary_lines():
        print(line)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if report.ok:
        print(f"{args.root}: OK")
        return 0
    # the summary (stdout) says where the problems went, so a log of either stream is not silently half
    print(f"{args.root}: {len(report.problems)} problem(s), one line each on stderr")
    print(f"{args.root}: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_ingest_brats(args: argparse.Namespace) -> int:
    from uda3d.config import IngestConfig
    from uda3d.data.ingest import ingest_brats

    config = IngestConfig(source=args.source, target=args.target, fractions=tuple(args.fractions),
                          seed=args.seed, copy=args.copy)
    membership = ingest_brats(args.src, args.out, config, mapping=args.mapping, overwrite=args.overwrite)
    for split, ids in membership.items():
        print(f"{split}: {len(ids)} subjects")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from uda3d.data.prepare import preprocess_root

    summaries = preprocess_root(args.root, _preprocess_config(args), args.cache_dir,
                                splits=tuple(args.splits) if args.splits else None, progress=not args.quiet)
    for s in summaries:
        print(f"{s.split}: {s.subjects} subjects ({s.labeled} with T1), input {s.shape}, {s.seconds:.2f} s")
    return 0


def _add_robust_options(p: argparse.ArgumentParser) -> None:
    from uda3d.config import RobustAugmentConfig

    r = RobustAugmentConfig()
    g = p.add_argument_group("robust augmentation strengths (with --robust-augment)")
    g.add_argument("--robust-probability", type=float, default=r.probability, help="chance each transform fires")
    g.add_argument("--robust-bias", type=float, default=r.bias_coeff, help="bias-field coefficient range (0, X)")
    g.add_argument("--robust-gamma", type=float, nargs=2, default=[r.gamma_low, r.gamma_high],
                   metavar=("LOW", "HIGH"), help="contrast gamma range")
    g.add_argument("--robust-noise", type=float, default=r.noise_std, help="Gaussian noise std ([0, 1] scale)")
    g.add_argument("--robust-blur", type=float, default=r.blur_sigma, help="largest one-axis blur sigma (voxels)")
    g.add_argument("--robust-histogram-points", type=int, default=r.histogram_points)
    g.add_argument("--robust-remap-knots", type=int, default=r.remap_knots, help="monotone remapping knots (0: off)")


def _robust_config(args: argparse.Namespace):
    from uda3d.config import RobustAugmentConfig

    return RobustAugmentConfig(probability=args.robust_probability, bias_coeff=args.robust_bias,
                               gamma_low=args.robust_gamma[0], gamma_high=args.robust_gamma[1],
                               noise_std=args.robust_noise, blur_sigma=args.robust_blur,
                               histogram_points=args.robust_histogram_points, remap_knots=args.robust_remap_knots)


def cmd_train_backbone(args: argparse.Namespace) -> int:
    from uda3d.config import BackboneConfig, StageRun
    from uda3d.training.backbone_stage import BackboneSpec, run_backbone

    backbone = BackboneConfig(generator=args.generator, ngf=args.ngf, ndf=args.ndf, n_layers_d=args.n_layers_d,
                              lr=args.lr, epochs=args.epochs, epochs_decay=args.epochs_decay,
                              grad_accum=args.grad_accum, amp=args.amp, checkpointing=args.checkpointing,
                              augment=not args.no_augment,
                              robust_augment=args.robust_augment, robust=_robust_config(args),
                              spatial_augment=args.spatial_augment, aux_weight=args.aux_weight, seed=args.seed)
    stage = StageRun(dataroot=str(args.dataroot), workdir=str(args.workdir), preprocess=_preprocess_config(args),
                     scaling=_scaling_options(args), tracking=_tracking(args), run_name=args.run_name,
                     resume=args.resume, progress=not args.quiet, verbose=args.verbose)
    spec = BackboneSpec(stage=stage, backbone=backbone, source_domain=args.source_domain,
                        init_checkpoint=str(args.init_checkpoint) if args.init_checkpoint else None)
    result = run_backbone(spec)
    _print_result("backbone", result, [k for k in result.metrics if k.startswith("val_")])
    return 0


def cmd_slices(args: argparse.Namespace) -> int:
    from uda3d.config import SliceConfig
    from uda3d.data.slice_store import write_slice_store

    splits = tuple(args.splits) if args.splits else (f"{args.domain}_train", f"{args.domain}_val")
    cache = args.cache_dir or args.out.parent / "cache"
    store = write_slice_store(args.root, splits, args.out, _preprocess_config(args),
                              SliceConfig(size=args.slice_size, plane=args.plane), cache_dir=cache,
                              volumes_per_shard=args.volumes_per_shard, overwrite=args.overwrite,
                              progress=not args.quiet)
    m = store.manifest
    print(f"wrote {len(m['volumes'])} volumes x {m['slices_per_volume']} slices of {m['slice_shape']} "
          f"in {len(m['shards'])} shard(s) to {args.out}")
    return 0


def cmd_train_vae(args: argparse.Namespace) -> int:
    from uda3d.config import StageRun, VAEConfig
    from uda3d.training.vae_stage import VAESpec, run_vae

    vae = VAEConfig(gf_dim=args.gf_dim, latent_channels=args.latent_channels, kl_weight=args.kl_weight,
                    lr=args.lr, epochs=args.epochs, seed=args.seed)
    stage = StageRun(dataroot="", workdir=str(args.workdir), scaling=_scaling_options(args), tracking=_tracking(args),
                     run_name=args.run_name, resume=args.resume, progress=not args.quiet, verbose=args.verbose)
    spec = VAESpec(stage=stage, store=str(args.store), vae=vae, train_split=f"{args.domain}_train",
                   val_split=f"{args.domain}_val")
    result = run_vae(spec)
    _print_result("VAE", result, ["recon_mse", "kl_per_element", "val_recon_mse", "val_mse_mean_slice"])
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from uda3d.adaptation.stage import AdaptSpec, run_adapt
    from uda3d.config import AdaptConfig, StageRun

    adapt = AdaptConfig(ele_percent=args.ele_percent, kl_weight=args.kl_weight, lr=args.lr, epochs=args.epochs,
                        target_subjects=args.target_subjects, slice_order=args.slice_order,
                        source_step=not args.no_source_step, prior=args.prior, amp=args.amp,
                        checkpointing=args.checkpointing, seed=args.seed)
    guards = _guards(args)
    stage = StageRun(dataroot=str(args.dataroot), workdir=str(args.workdir), preprocess=_preprocess_config(args),
                     scaling=_scaling_options(args), tracking=_tracking(args), run_name=args.run_name,
                     resume=args.resume, progress=not args.quiet, verbose=args.verbose)
    spec = AdaptSpec(stage=stage, backbone_checkpoint=str(args.backbone), vae_checkpoint=str(args.vae), adapt=adapt,
                     guards=guards, source_domain=args.source_domain, target_domain=args.target_domain)
    outcome = run_adapt(spec)
    print(f"{'epoch':>5}{'objective':>12}{'source-val PSNR':>17}{'target-test PSNR (eval only)':>30}")
    for h in outcome.history:
        target = h.get("eval_target_test_psnr")
        print(f"{int(h['epoch']):>5}{h['objective']:>12.4f}{h['source_val_psnr']:>17.2f}"
              f"{'' if target is None else f'{target:.2f}':>30}")
    print(f"guard: {outcome.decision['reason']}")
    print(f"Spearman(objective, target-test PSNR) across checkpoints: "
          f"{outcome.decision['spearman_objective_vs_target_psnr']:.2f}")
    print(f"adapted model: {outcome.checkpoint}")
    return 0


def _guards(args: argparse.Namespace):
    from uda3d.config import GuardConfig

    return GuardConfig(max_source_drop=args.max_source_drop, max_intensity_drift=args.max_intensity_drift,
                       max_hf_rise=args.max_hf_rise, max_background_rise=args.max_background_rise)


def _add_guard_options(g, defaults) -> None:
    g.add_argument("--max-source-drop", type=float, default=defaults.max_source_drop, help="dB of source-val PSNR")
    g.add_argument("--max-intensity-drift", type=float, default=defaults.max_intensity_drift,
                   help="relative change of the target outputs' mean/std in the brain")
    g.add_argument("--max-hf-rise", type=float, default=defaults.max_hf_rise,
                   help="relative rise of the target outputs' high-frequency energy (noise)")
    g.add_argument("--max-background-rise", type=float, default=defaults.max_background_rise,
                   help="rise of the mean |output| outside the brain (background fill-in)")


def cmd_pipeline(args: argparse.Namespace) -> int:
    from uda3d.config import AdaptConfig, BackboneConfig, VAEConfig
    from uda3d.pipeline import PipelineConfig, format_table, run_pipeline

    with _flags(lr="--backbone-lr", epochs="--backbone-epochs", epochs_decay="--backbone-epochs-decay"):
        backbone = BackboneConfig(ngf=args.ngf, ndf=args.ngf, lr=args.backbone_lr, epochs=args.backbone_epochs,
                                  epochs_decay=args.backbone_epochs_decay, amp=args.amp,
                                  checkpointing=args.checkpointing)
    with _flags(lr="--vae-lr", epochs="--vae-epochs", latent_channels="--latent-channels"):
        vae = VAEConfig(latent_channels=args.latent_channels, lr=args.vae_lr, epochs=args.vae_epochs)
    with _flags(lr="--adapt-lr", epochs="--adapt-epochs", ele_percent="--ele-percent", kl_weight="--kl-weight"):
        adapt = AdaptConfig(ele_percent=args.ele_percent, lr=args.adapt_lr, epochs=args.adapt_epochs,
                            kl_weight=args.kl_weight, checkpointing=args.checkpointing)
    config = PipelineConfig(
        dataroot=str(args.dataroot), workdir=str(args.workdir), backbone=backbone, vae=vae, adapt=adapt,
        guards=_guards(args),
        supervised_epochs=args.supervised_epochs, robust_epochs=args.robust_epochs, slice_size=args.slice_size,
        preprocess=_preprocess_config(args), scaling=_scaling_options(args), tracking=_tracking(args),
        register_as=args.register_as, device=args.device, resume=args.resume, progress=not args.quiet)
    report = run_pipeline(config).to_json()
    print(format_table(report))
    print(f"uda (label-free choice): {report['uda']['selection']['reason']}")
    print(f"method_kl guard: {report['method_kl']['guard']['reason']}")
    synthesis = report["synthesis"]
    print(f"synthesized T1 + uncertainty maps: {synthesis['folder']}/<split>/ (quality.csv in each)")
    if synthesis["outside_source_range"]:
        print(f"outside the source's intensity range: {', '.join(synthesis['outside_source_range'])}")
    for part, reason in report["skipped"].items():
        print(f"skipped {part}: {reason}")
    if report.get("registered_model"):
        print(f"registered model: {report['registered_model']['uri']}")
    print(f"report: {Path(args.workdir) / 'report.json'}")
    return 0


def cmd_compare_methods(args: argparse.Namespace) -> int:
    from uda3d.compare.methods import compare_methods
    from uda3d.compare.report import markdown_table
    from uda3d.config import AdaptConfig, BackboneConfig, CompareConfig, SelfTrainConfig, TTTConfig, VAEConfig

    config = CompareConfig(
        dataroot=str(args.dataroot), workdir=str(args.workdir), seeds=args.seeds,
        extra_dataroots=tuple(str(p) for p in args.extra_dataroots),
        backbone=BackboneConfig(ngf=args.ngf, ndf=args.ngf, lr=args.backbone_lr, epochs=args.backbone_epochs,
                                epochs_decay=args.backbone_epochs_decay),
        finetune_epochs=args.finetune_epochs, supervised_epochs=args.supervised_epochs,
        methods=tuple(args.methods),
        vae=VAEConfig(latent_channels=args.latent_channels, lr=args.vae_lr, epochs=args.vae_epochs),
        slice_size=args.slice_size, adapt=AdaptConfig(lr=args.adapt_lr, epochs=args.adapt_epochs),
        ttt=TTTConfig(epochs=args.ttt_epochs, subject_steps=args.ttt_subject_steps),
        self_train=SelfTrainConfig(epochs=args.self_train_epochs),
        selection_signal=args.selection_signal, signal_usable=args.signal_usable,
        preprocess=_preprocess_config(args), tracking=_tracking(args), progress=not args.quiet,
        use_gpu=args.use_gpu)
    report = compare_methods(config)
    for name, site in report["sites"].items():
        print(f"target site {name}:")
        print(markdown_table(site["rows"]))
        for signal, s in site["signals"].items():
            print(f"Spearman({signal}, target PSNR) across candidates: {s['rho_oriented']:+.2f} (n={s['n']})")
    print(f"tables and figures: {Path(args.workdir)}/<site>/comparison.{{md,csv,png}}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from uda3d.cluster.submit import load_runtime_env, stage_command, submit

    runtime_env = load_runtime_env(args.runtime_env, base=Path.cwd())
    entrypoint = stage_command(args.stage, args.stage_args, args.num_workers, args.gpus_per_worker)
    print(f"submitting to {args.address}: {entrypoint}", flush=True)
    job_id, status = submit(args.address, entrypoint, runtime_env, wait=not args.no_wait)
    print(f"\njob {job_id}: {status}")
    return 0 if status == "SUCCEEDED" or (args.no_wait and status in ("PENDING", "RUNNING")) else 1


def _tune_run(args: argparse.Namespace, space, kind: str):
    from uda3d.config import ScalingOptions, StageRun
    from uda3d.tuning.tune import TuneSpec

    guards = _guards(args)
    stage = StageRun(dataroot=str(args.dataroot), workdir=str(args.workdir), preprocess=_preprocess_config(args),
                     scaling=ScalingOptions(address=args.address), tracking=_tracking(args), resume=args.resume)
    return TuneSpec(stage=stage, space=space, backbone_checkpoint=str(args.backbone), vae_checkpoint=str(args.vae),
                    guards=guards, registered_model=getattr(args, "register_as", "uda3d-adapted"), kind=kind)


def _interrupted(kind: str, summary: dict) -> int:
    print(f"{kind} {summary['study']} interrupted after {summary['trials']} of {summary['planned']} trials; "
          "run the same command with --resume to finish it")
    return 130


def cmd_tune(args: argparse.Namespace) -> int:
    import math

    from uda3d.tuning.space import load_space
    from uda3d.tuning.tune import check_selection_metric, run_tune

    space = load_space(args.space)  # validated before anything starts
    check_selection_metric(space)
    run = _tune_run(args, space, "tune")
    summary = run_tune(run)
    if summary.get("interrupted"):
        return _interrupted("study", summary)
    print(f"study {space.name}: {summary['trials']} of {summary['planned']} trials, "
          f"{summary['stopped_early']} stopped early (ASHA or a guard)")
    best = summary["best"]
    if best:
        shown = {p.name: best[p.name] for p in space.params}
        oracle = best["target_test_psnr"]
        print(f"best without target labels ({space.metric}, {space.mode}): {shown} -> {best[space.metric]:.4f}; "
              + (f"oracle target-test PSNR {oracle:.2f} dB" if not math.isnan(oracle) else "no oracle (no T1 on "
                 "domain2_test)"))
    else:
        print("no trial kept every guard: nothing registered")
    if summary["registered_model"]:
        print(f"registered: {summary['registered_model']['uri']}")
    print(f"Spearman(label-free metric, target-test PSNR) across trials: "
          f"{summary['spearman_label_free_vs_target_psnr']:.2f}")
    print(f"trials: {run.study_dir / 'trials.csv'}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from uda3d.tuning.space import load_space
    from uda3d.tuning.study import STUDIES, format_value, run_study, shipped_space, study_points

    space = load_space(args.space or shipped_space(STUDIES[args.study]))
    study_points(space)  # a space that is not a grid of choices fails here, before anything starts
    summary = run_study(_tune_run(args, space, "study"))
    if summary.get("interrupted"):
        return _interrupted("study", summary)
    for note in summary["notes"]:
        print(f"note: {note}")
    metric = summary["metric"]
    names = [p.name for p in space.params]
    print(f"study {space.name} ({summary['design']}): {summary['trials']} trials, seeds {summary['seeds']}; "
          f"no adaptation: target-test PSNR {summary['no_adaptation_target_test_psnr']:.2f} dB")
    print("  " + "".join(f"{n:>16}" for n in names) + f"{metric + ' (mean +- seed std)':>36}{'guards kept':>13}")
    for point in summary["points"]:
        print("  " + "".join(f"{format_value(point[n]):>16}" for n in names)
              + f"{point[f'{metric}_mean']:>27.3f} +- {point[f'{metric}_std']:<6.3f}"
              + f"{point['guard_ok']:>9}/{point['seeds']}")
    print(f"tables and figures: {Path(summary['files']['points']).parent}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from uda3d.compare.mlflow_runs import compare_runs, markdown

    tracking = _tracking(args)
    if tracking.uri is None:
        raise ConfigError("--no-tracking", "compare reads MLflow; give --tracking-uri or a --workdir with mlflow.db")
    result = compare_runs(tracking, args.out or Path(args.workdir) / "compare" / args.experiment, args.filter,
                          metric=args.metric, metrics=args.metrics, params=args.params, log=not args.no_log)
    print(markdown(result["columns"], result["rows"]))
    print(f"files: {', '.join(result['files'].values())}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from uda3d.io.tables import write_json
    from uda3d.pipeline import evaluate_methods

    models = dict(item.split("=", 1) if "=" in item else (Path(item).name, item) for item in args.model)
    if "no_adaptation" not in models:
        raise ConfigError("--model", "name one model no_adaptation=CKPT; the others are compared with it")
    report = evaluate_methods(models, args.dataroot, args.split, _preprocess_config(args), args.out)
    for name in models:
        m = report[name]
        print(f"{name:<16} PSNR {m['psnr']:.2f}  SSIM {m.get('ssim', float('nan')):.3f}  MAE {m['mae']:.3f}")
    path = Path(args.out) / "evaluation.json"
    write_json(path, report)
    print(f"per-subject CSV, figure and summary in {args.out}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from uda3d.inference import load_members, load_model, resolve_device
    from uda3d.synthesis import SynthesisJob, find_subjects, run_synthesis

    subjects = find_subjects(args.path, args.dataroot, tuple(args.split))
    job = SynthesisJob(subjects=tuple(subjects), out=args.out, overwrite=args.overwrite,
                       uncertainty=not args.no_uncertainty, scale=args.scale, batch_size=args.batch_size)
    model = load_model(args.model, resolve_device(args.device),
                       crop_shape=tuple(args.crop_shape) if args.crop_shape else None,
                       normalisation=args.normalisation, crop=args.crop,
                       spacing=tuple(args.spacing) if args.spacing else None)
    rows = run_synthesis(model, job, progress=not args.quiet, members=load_members(args.ensemble, model))
    flagged = [r["subject"] for r in rows if r.get("outside_source_range")]
    print(f"wrote {len(rows)} synthesized T1 volume(s) to {args.out} ({model.device}); quality estimates in "
          f"{args.out / 'quality.csv'}")
    if flagged:
        print(f"outside the source's intensity range (check these first): {', '.join(flagged)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import dataclasses

    from uda3d.demo import DEMO_BACKBONE, DEMO_VAE, DemoConfig, run_demo

    backbone = dataclasses.replace(DEMO_BACKBONE, epochs=args.backbone_epochs, epochs_decay=args.backbone_epochs // 3)
    vae = dataclasses.replace(DEMO_VAE, epochs=args.vae_epochs)
    config = DemoConfig(workdir=Path(args.workdir), subjects_per_site=args.subjects_per_site,
                        shape=tuple(args.shape), seed=args.seed, backbone=backbone, vae=vae,
                        supervised_epochs=args.supervised_epochs, robust_epochs=args.robust_epochs,
                        slice_size=args.slice_size, tune_trials=args.tune_trials, address=args.address)
    run_demo(config, progress=not args.quiet)
    return 0


# --- parser ---------------------------------------------------------------------------------------

STAGES = ("cohort", "ingest-brats", "validate-data", "preprocess", "train-backbone", "slices", "train-vae", "adapt",
          "pipeline", "compare-methods", "tune", "study", "compare", "evaluate", "synthesize", "demo")


def build_parser() -> argparse.ArgumentParser:
    # Stage defaults come from the config dataclasses (cheap imports), so the CLI cannot drift from them.
    from uda3d.config import AdaptConfig, BackboneConfig, CompareConfig, GuardConfig, VAEConfig
    from uda3d.pipeline import PipelineConfig
    from uda3d.tuning.study import STUDIES

    _BACKBONE, _VAE, _ADAPT, _GUARDS = BackboneConfig(), VAEConfig(), AdaptConfig(), GuardConfig()
    _COMPARE = CompareConfig(dataroot="", workdir="")
    _PIPELINE = PipelineConfig(dataroot="", workdir="")
    parser = _Parser(prog="uda3d", description="Unsupervised domain adaptation of 3D MRI synthesis "
                                               "(FLAIR + T2 -> T1) on Ray.")
    parser.add_argument("--version", action="version", version=f"uda3d {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parser.command_parsers = sub.choices  # type: ignore[attr-defined]  # to name flags in errors

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(handler=handler)
        return p

    p = add("cohort", cmd_cohort, "generate a synthetic multi-site cohort as a BraTS-layout root")
    p.add_argument("out", type=Path, help="output root (created atomically)")
    p.add_argument("--sites", nargs="+", default=["site-a", "site-b"],
                   help="site protocols, in domain order (domain1 = first); known: site-a site-b site-c, and "
                        "site-a-atrophy (site-a's protocol, atrophic anatomy)")
    p.add_argument("--subjects-per-site", type=_positive_int, default=9, help="split 60/20/20 into train/val/test")
    p.add_argument("--shape", type=_positive_int, nargs=3, default=[64, 64, 64], metavar=("X", "Y", "Z"),
                   help="grid size over BraTS's 240x240x155 mm field of view (240 240 155 = 1 mm)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output root")

    p = add("ingest-brats", cmd_ingest_brats,
            "arrange a BraTS download into domain1_* (source site) and domain2_* (target site) splits")
    p.add_argument("src", type=Path, help="a BraTS release folder (subject folders anywhere below it)")
    p.add_argument("out", type=Path, help="the two-site root to create (links to the subject folders)")
    p.add_argument("--source", default="CBICA", help="institution prefix of the source site (default CBICA)")
    p.add_argument("--target", default="TCIA", help="institution prefix of the target site (default TCIA)")
    p.add_argument("--fractions", type=float, nargs=3, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--mapping", type=Path, default=None, help="CSV with columns subject,site for ids without one")
    p.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    p.add_argument("--overwrite", action="store_true")

    p = add("validate-data", cmd_validate_data, "check a BraTS-layout root and report every problem (exit 2 if any)")
    p.add_argument("root", type=Path)
    p.add_argument("--splits", nargs="+", default=None, help="only these split folders (e.g. domain2_val)")

    p = add("preprocess", cmd_preprocess, "reorient, crop and normalise every subject into the cache")
    p.add_argument("root", type=Path)
    p.add_argument("--cache-dir", type=Path, required=True, help="where preprocessed arrays are cached")
    p.add_argument("--splits", nargs="+", default=None)
    _add_preprocess_options(p)

    p = add("train-backbone", cmd_train_backbone,
            "train the 3D pix2pix backbone (FLAIR+T2 -> T1) on the source site with Ray Train, tracked in MLflow")
    p.add_argument("--dataroot", type=Path, required=True, help="BraTS-layout root")
    _add_run_options(p, "backbone")
    p.add_argument("--source-domain", default="domain1", help="trains on <domain>_train, validates on <domain>_val")
    g = p.add_argument_group("model and optimisation (defaults: the method's)")
    g.add_argument("--generator", choices=["sit", "unet"], default="sit")
    g.add_argument("--ngf", type=_positive_int, default=_BACKBONE.ngf)
    g.add_argument("--ndf", type=_positive_int, default=_BACKBONE.ndf)
    g.add_argument("--n-layers-d", type=_positive_int, default=_BACKBONE.n_layers_d)
    g.add_argument("--lr", type=float, default=_BACKBONE.lr)
    g.add_argument("--epochs", type=_non_negative_int, default=_BACKBONE.epochs, help="epochs at constant lr")
    g.add_argument("--epochs-decay", type=_non_negative_int, default=_BACKBONE.epochs_decay,
                   help="then epochs of linear decay to 0")
    g.add_argument("--grad-accum", type=_positive_int, default=_BACKBONE.grad_accum)
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16, or fp16 + scaler)")
    g.add_argument("--checkpointing", action="store_true", help=_CHECKPOINTING_HELP)
    g.add_argument("--no-augment", action="store_true", help="turn off the method's rot/flip/jitter augmentation")
    g.add_argument("--robust-augment", action="store_true",
                   help="robust source training: random bias/contrast/blur/noise/monotone remapping of the inputs")
    g.add_argument("--spatial-augment", action="store_true",
                   help="random rotation/scaling/shift of inputs and T1 together (anatomy randomisation)")
    g.add_argument("--aux-weight", type=float, default=_BACKBONE.aux_weight,
                   help="> 0: grow the auxiliary FLAIR/T2 reconstruction head (test-time-training ready) and train it "
                        "with this weight (50 in compare-methods' ttt_joint)")
    g.add_argument("--init-checkpoint", type=Path, default=None,
                   help="start from this backbone's networks (e.g. fine-tune a plain backbone with --robust-augment)")
    g.add_argument("--seed", type=_non_negative_int, default=0)
    _add_robust_options(p)
    _add_preprocess_options(p)
    _add_scaling_options(p)

    p = add("slices", cmd_slices, "extract T1 slices of the source site into a Parquet slice store")
    p.add_argument("root", type=Path, help="BraTS-layout root")
    p.add_argument("--out", type=Path, required=True, help="store folder (created atomically)")
    p.add_argument("--domain", default="domain1", help="slices <domain>_train and <domain>_val (default domain1)")
    p.add_argument("--splits", nargs="+", default=None, help="explicit split folders instead of --domain")
    p.add_argument("--slice-size", type=_positive_int, default=256, help="cube/slice side, a power of two")
    p.add_argument("--plane", choices=["coronal", "axial", "sagittal"], default="coronal")
    p.add_argument("--volumes-per-shard", type=_positive_int, default=4)
    p.add_argument("--cache-dir", type=Path, default=None, help="preprocessing cache (default: OUT/../cache)")
    p.add_argument("--overwrite", action="store_true")
    _add_preprocess_options(p)

    p = add("train-vae", cmd_train_vae, "train the 2D slice VAE prior on a slice store with Ray Train + Ray Data")
    p.add_argument("--store", type=Path, required=True, help="slice store from 'uda3d slices'")
    p.add_argument("--domain", default="domain1", help="trains on <domain>_train volumes, validates on <domain>_val")
    _add_run_options(p, "vae")
    g = p.add_argument_group("model and optimisation (defaults: the method's)")
    g.add_argument("--gf-dim", type=_positive_int, default=_VAE.gf_dim)
    g.add_argument("--latent-channels", type=_positive_int, default=_VAE.latent_channels)
    g.add_argument("--kl-weight", type=float, default=_VAE.kl_weight)
    g.add_argument("--lr", type=float, default=_VAE.lr)
    g.add_argument("--epochs", type=_positive_int, default=_VAE.epochs)
    g.add_argument("--seed", type=_non_negative_int, default=_VAE.seed)
    _add_scaling_options(p)

    p = add("adapt", cmd_adapt, "adapt a backbone to the target site with the slice-VAE latent KL, under guards")
    p.add_argument("--dataroot", type=Path, required=True, help="BraTS-layout root")
    p.add_argument("--backbone", type=Path, required=True, help="backbone checkpoint (folder or state.pt)")
    p.add_argument("--vae", type=Path, required=True, help="slice-VAE checkpoint (folder or state.pt)")
    p.add_argument("--source-domain", default="domain1")
    p.add_argument("--target-domain", default="domain2", help="adapts on <target>_val, reports on <target>_test")
    _add_run_options(p, "adapt")
    g = p.add_argument_group("objective (defaults: the method's README run)")
    g.add_argument("--ele-percent", type=float, default=_ADAPT.ele_percent)
    g.add_argument("--kl-weight", type=float, default=_ADAPT.kl_weight)
    g.add_argument("--lr", type=float, default=_ADAPT.lr)
    g.add_argument("--epochs", type=_positive_int, default=_ADAPT.epochs)
    g.add_argument("--target-subjects", type=_positive_int, default=None, help="first N target volumes by id")
    g.add_argument("--slice-order", choices=["intended", "faithful"], default="intended",
                   help="anatomical slices (default) or the original code's raw view")
    g.add_argument("--no-source-step", action="store_true", help="skip the supervised source step")
    g.add_argument("--prior", choices=["subject", "population"], default=_ADAPT.prior,
                   help="reference latents: one source subject (the method) or a per-element population Gaussian")
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16, or fp16 + scaler)")
    g.add_argument("--checkpointing", action="store_true", help=_CHECKPOINTING_HELP)
    g.add_argument("--seed", type=_non_negative_int, default=0)
    g = p.add_argument_group("guards (no target labels needed)")
    _add_guard_options(g, _GUARDS)
    _add_preprocess_options(p)
    _add_scaling_options(p)

    p = add("pipeline", cmd_pipeline, "every stage on a BraTS-layout root, with or without target T1: backbone, "
                                      "adaptation, a synthesized T1 + uncertainty map for every target subject, "
                                      "a registered MLflow model; bound and scores where target T1 exists; "
                                      "writes WORKDIR/report.json")
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"))
    p.add_argument("--resume", action="store_true",
                   help="continue a run in --workdir: stages finished with the same config are skipped")
    p.add_argument("--register-as", default=_PIPELINE.register_as, help="MLflow registered model name of uda")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="evaluation and synthesis device (auto: CUDA if present); training: --use-gpu")
    p.add_argument("--experiment", default="uda3d")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--no-tracking", action="store_true")
    g = p.add_argument_group("stages (defaults: the method's)")
    g.add_argument("--ngf", type=_positive_int, default=_BACKBONE.ngf)
    g.add_argument("--backbone-lr", type=float, default=_BACKBONE.lr)
    g.add_argument("--backbone-epochs", type=_non_negative_int, default=_BACKBONE.epochs)
    g.add_argument("--backbone-epochs-decay", type=_non_negative_int, default=_BACKBONE.epochs_decay)
    g.add_argument("--amp", action="store_true")
    g.add_argument("--checkpointing", action="store_true", help=_CHECKPOINTING_HELP)
    g.add_argument("--slice-size", type=_positive_int, default=256)
    g.add_argument("--latent-channels", type=_positive_int, default=_VAE.latent_channels)
    g.add_argument("--vae-lr", type=float, default=_VAE.lr)
    g.add_argument("--vae-epochs", type=_positive_int, default=_VAE.epochs)
    g.add_argument("--ele-percent", type=float, default=_ADAPT.ele_percent)
    g.add_argument("--kl-weight", type=float, default=_ADAPT.kl_weight)
    g.add_argument("--adapt-lr", type=float, default=_ADAPT.lr)
    g.add_argument("--adapt-epochs", type=_positive_int, default=_ADAPT.epochs)
    _add_guard_options(g, _GUARDS)
    g.add_argument("--supervised-epochs", type=_positive_int, default=_PIPELINE.supervised_epochs)
    g.add_argument("--robust-epochs", type=_positive_int, default=_PIPELINE.robust_epochs,
                   help="epochs of the robust fine-tune (the default uda)")
    _add_preprocess_options(p)
    _add_scaling_options(p)

    p = add("compare-methods", cmd_compare_methods,
            "every adaptation method against the budget-matched control source_ft, subjects as the unit: "
            "tables (CSV, Markdown) and figures per target site")
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--extra-dataroots", type=Path, nargs="*", default=[],
                   help="more target sites sharing --dataroot's source splits (same seed and source site)")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-compare"))
    p.add_argument("--seeds", type=_positive_int, default=3)
    p.add_argument("--methods", nargs="+", default=list(_COMPARE.methods),
                   help="candidates besides no_adaptation, source_ft and supervised")
    p.add_argument("--selection-signal", default=_COMPARE.selection_signal)
    p.add_argument("--use-gpu", action="store_true", help="train and score on the GPU (CUDA) in this process")
    p.add_argument("--no-signal", dest="signal_usable", action="store_false",
                   help="do not trust the selection signal on this data: uda = the documented fallback method")
    p.add_argument("--experiment", default="uda3d")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--no-tracking", action="store_true")
    g = p.add_argument_group("budgets (defaults: the method's backbone; small ones for a quick look)")
    g.add_argument("--ngf", type=_positive_int, default=_BACKBONE.ngf)
    g.add_argument("--backbone-lr", type=float, default=_BACKBONE.lr)
    g.add_argument("--backbone-epochs", type=_non_negative_int, default=_BACKBONE.epochs)
    g.add_argument("--backbone-epochs-decay", type=_non_negative_int, default=_BACKBONE.epochs_decay)
    g.add_argument("--finetune-epochs", type=_positive_int, default=_COMPARE.finetune_epochs)
    g.add_argument("--supervised-epochs", type=_positive_int, default=_COMPARE.supervised_epochs)
    g.add_argument("--slice-size", type=_positive_int, default=256)
    g.add_argument("--latent-channels", type=_positive_int, default=_VAE.latent_channels)
    g.add_argument("--vae-lr", type=float, default=_VAE.lr)
    g.add_argument("--vae-epochs", type=_positive_int, default=_VAE.epochs)
    g.add_argument("--adapt-lr", type=float, default=_ADAPT.lr)
    g.add_argument("--adapt-epochs", type=_positive_int, default=_ADAPT.epochs)
    g.add_argument("--ttt-epochs", type=_positive_int, default=_COMPARE.ttt.epochs)
    g.add_argument("--ttt-subject-steps", type=_non_negative_int, default=_COMPARE.ttt.subject_steps)
    g.add_argument("--self-train-epochs", type=_positive_int, default=_COMPARE.self_train.epochs)
    _add_preprocess_options(p)

    def add_trial_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataroot", type=Path, required=True)
        p.add_argument("--backbone", type=Path, required=True, help="backbone checkpoint to adapt")
        p.add_argument("--vae", type=Path, required=True, help="slice-VAE checkpoint")
        p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"))
        p.add_argument("--resume", action="store_true", help="continue an interrupted study of this space's name")
        p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
        p.add_argument("--experiment", default="uda3d")
        p.add_argument("--tracking-uri", default=None)
        p.add_argument("--no-tracking", action="store_true")
        _add_guard_options(p, _GUARDS)
        _add_preprocess_options(p)

    p = add("tune", cmd_tune, "Ray Tune + Optuna (TPE) + ASHA over the adaptation's hyperparameters from a "
                              "search_spaces/*.yaml; trials in MLflow, the label-free best registered as champion")
    p.add_argument("--space", type=Path, required=True, help="search space YAML (search_spaces/adaptation.yaml)")
    p.add_argument("--register-as", default="uda3d-adapted", help="MLflow registered model name")
    add_trial_options(p)

    p = add("study", cmd_study, "the paper's studies as Tune trials with seeds: target-data amount or sensitivity "
                                "to ele_percent/lr/KL weight; CSV and PNGs with seed error bars, in MLflow")
    p.add_argument("study", choices=sorted(STUDIES), help="which study (its grid: search_spaces/<study>.yaml)")
    p.add_argument("--space", type=Path, default=None,
                   help="a grid of choice values instead (default search_spaces/data_amount.yaml or sensitivity.yaml)")
    add_trial_options(p)

    p = add("compare", cmd_compare, "a table of an MLflow experiment's runs (differing params, objective, "
                                    "label-free signal, target metrics) as CSV, Markdown and a PNG")
    p.add_argument("--experiment", default="uda3d", help="MLflow experiment to read")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"), help="holds the default mlflow.db")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--no-tracking", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--filter", default="", help="MLflow filter, e.g. \"tags.stage = 'tune-trial'\"")
    p.add_argument("--metric", default=None, help="metric of the chart (default target_test_psnr where present)")
    p.add_argument("--metrics", nargs="+", default=None, help="metric columns (default: the adaptation ones)")
    p.add_argument("--params", nargs="+", default=None, help="param columns (default: those that differ)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default WORKDIR/compare/EXPERIMENT)")
    p.add_argument("--no-log", action="store_true", help="do not log the table to MLflow")

    p = add("submit", cmd_submit, "run a stage on a Ray cluster as a Ray job (ships the code, streams the logs); "
                                  "options go before STAGE")
    p.add_argument("--address", required=True, help="the cluster's dashboard/job server, e.g. http://HEAD:8265")
    p.add_argument("--runtime-env", type=Path, default=Path("cluster/runtime_env.yaml"),
                   help="runtime env YAML, paths relative to the current folder (default cluster/runtime_env.yaml)")
    p.add_argument("--num-workers", type=_positive_int, default=None, help="Ray Train workers of the stage")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per Ray Train worker (implies --use-gpu)")
    p.add_argument("--no-wait", action="store_true", help="return once submitted (exit 0 while it runs)")
    p.add_argument("stage", choices=sorted(STAGES), help="the uda3d command to run on the cluster")
    p.add_argument("stage_args", nargs=argparse.REMAINDER, help="that command's options")

    p = add("evaluate", cmd_evaluate, "score generator checkpoints on a split: per-subject CSV, summary with "
                                      "bootstrap CIs, paired Wilcoxon vs no_adaptation, comparison figure")
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--model", nargs="+", required=True, metavar="NAME=CKPT",
                   help="checkpoints to compare, e.g. no_adaptation=runs/backbone uda=runs/adapted/adapt")
    p.add_argument("--split", default="domain2_test")
    p.add_argument("--out", type=Path, required=True)
    _add_preprocess_options(p)

    p = add("synthesize", cmd_synthesize,
            "write the missing T1 (<prefix>_t1_synth.nii.gz, on each subject's own grid) of a subject, a split or "
            "a root's splits under --out, with an uncertainty map each and quality.csv")
    p.add_argument("path", type=Path, nargs="?", default=None, help="a subject folder or a split folder")
    p.add_argument("--dataroot", type=Path, default=None, help="a BraTS-layout root (with --split)")
    p.add_argument("--split", nargs="+", default=[], help="the root's split(s) to synthesize, e.g. domain2_test")
    p.add_argument("--model", type=Path, required=True, help="a uda3d checkpoint (folder or state.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (never inside the dataset)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if present")
    p.add_argument("--batch-size", type=_positive_int, default=2, help="subjects per forward pass")
    p.add_argument("--ensemble", type=Path, nargs="+", default=[], metavar="CKPT",
                   help="other checkpoints (same preprocessing); their disagreement with --model is ensemble_spread")
    p.add_argument("--no-uncertainty", action="store_true",
                   help="skip the flip test-time-augmentation uncertainty map (4x faster)")
    p.add_argument("--scale", type=float, default=1000.0, help="multiplier for the model's [0, 1] output")
    _add_preprocess_options(p, stored=True)

    p = add("demo", cmd_demo, "synthetic cohort + every stage built so far, on CPU, no download")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-demo"))
    p.add_argument("--subjects-per-site", type=_positive_int, default=9)
    p.add_argument("--shape", type=_positive_int, nargs=3, default=[64, 64, 64], metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--backbone-epochs", type=_positive_int, default=DEMO_BACKBONE_EPOCHS,
                   help="constant-lr backbone epochs (a third as many decay epochs follow)")
    p.add_argument("--vae-epochs", type=_positive_int, default=DEMO_VAE_EPOCHS)
    p.add_argument("--supervised-epochs", type=_positive_int, default=DEMO_SUPERVISED_EPOCHS)
    p.add_argument("--robust-epochs", type=_positive_int, default=DEMO_ROBUST_EPOCHS,
                   help="epochs of the robust fine-tune (the default uda)")
    p.add_argument("--slice-size", type=_positive_int, default=DEMO_SLICE_SIZE, help="VAE slice side (power of 2)")
    p.add_argument("--tune-trials", type=_positive_int, default=DEMO_TUNE_TRIALS,
                   help="trials of the closing tuning run (search_spaces/demo.yaml)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    return parser


def _as_typed(exc: Uda3dError, parser: argparse.ArgumentParser, command: str) -> Uda3dError:
    """A config field the user set by a flag of the same name is named as that flag (``lr`` -> ``--lr``)."""
    if not isinstance(exc, ConfigError) or exc.source is not None or exc.field.startswith("-"):
        return exc
    flag = "--" + exc.field.replace("_", "-")
    options = {o for action in parser.command_parsers[command]._actions for o in action.option_strings}
    return ConfigError(flag, exc.problem) if flag in options else exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input: one line, exit 2. Ctrl-C: exit 130; SIGTERM (a scheduler's kill): exit 143.

    SIGTERM is turned into the same ``KeyboardInterrupt`` as Ctrl-C, so every stage unwinds the
    same way: temporary files are removed, nothing half-written is left, and ``--resume`` goes on.
    """
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    received: list[int] = []

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None
    try:
        return int(args.handler(args) or 0)
    except Uda3dError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"uda3d {args.command}: error: {_as_typed(exc, parser, args.command)}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if received else "interrupted"
        sys.stderr.write(f"uda3d {args.command}: {how}; partial outputs were removed, rerun (with --resume "
                         "for training stages) to continue\n")
        return 128 + signal.SIGTERM if received else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    raise SystemExit(main())
