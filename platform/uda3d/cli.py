"""The ``uda3d`` command line: one subcommand per stage, each a thin call into the library.

The parser (``uda3d.cli_parser``) generates most flags from the config dataclasses, and builds a
command's flags only when that command runs, so ``uda3d --help`` imports no heavy library. Here each
command's flags become its config (an error names the flag a value came from), the library is called,
and ``uda3d.cli_output`` shows the result. Any ``Uda3dError`` (bad data, bad option) is printed as one
line and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from uda3d import cli_output as show
from uda3d.cli_flags import config_from, tracking_from
from uda3d.cli_parser import EXIT_BAD_INPUT, build_parser
from uda3d.config import (
    AdaptConfig,
    BackboneConfig,
    CompareConfig,
    GuardConfig,
    IngestConfig,
    PreprocessConfig,
    RobustAugmentConfig,
    ScalingOptions,
    SelfTrainConfig,
    SliceConfig,
    StageRun,
    TTTConfig,
    VAEConfig,
)
from uda3d.errors import ConfigError, Uda3dError

__all__ = ["build_parser", "main"]


# --- the configs and specs of each command (one function each) ------------------------------------

def _guards(args: argparse.Namespace) -> GuardConfig:
    return config_from(args, GuardConfig)


def _stage(args: argparse.Namespace, **given) -> StageRun:
    """What every training command's run shares, from its run, preprocessing, Ray and tracking flags;
    ``given`` fields replace the flags (a command without such flags passes them: train-vae reads no volumes)."""
    def field(name: str, from_flags):
        return given[name] if name in given else from_flags()

    return StageRun(dataroot=field("dataroot", lambda: str(args.dataroot)), workdir=str(args.workdir),
                    preprocess=field("preprocess", lambda: config_from(args, PreprocessConfig)),
                    scaling=field("scaling", lambda: config_from(args, ScalingOptions)),
                    tracking=tracking_from(args), run_name=getattr(args, "run_name", "run"), resume=args.resume,
                    progress=not args.quiet, verbose=getattr(args, "verbose", False))


def _backbone_spec(args: argparse.Namespace):
    from uda3d.training.backbone_stage import BackboneSpec

    low, high = args.robust_gamma
    robust = config_from(args, RobustAugmentConfig, gamma_low=low, gamma_high=high)
    return BackboneSpec(stage=_stage(args), backbone=config_from(args, BackboneConfig, robust=robust),
                        init_checkpoint=str(args.init_checkpoint) if args.init_checkpoint else None,
                        source_domain=args.source_domain)


def _vae_spec(args: argparse.Namespace):
    from uda3d.training.vae_stage import VAESpec

    stage = _stage(args, dataroot="", preprocess=PreprocessConfig())  # the slice store is already preprocessed
    return VAESpec(stage=stage, store=str(args.store), vae=config_from(args, VAEConfig),
                   train_split=f"{args.domain}_train", val_split=f"{args.domain}_val")


def _adapt_spec(args: argparse.Namespace):
    from uda3d.adaptation.stage import AdaptSpec

    return AdaptSpec(stage=_stage(args), backbone_checkpoint=str(args.backbone), vae_checkpoint=str(args.vae),
                     adapt=config_from(args, AdaptConfig), guards=_guards(args), source_domain=args.source_domain,
                     target_domain=args.target_domain)


def _tune_spec(args: argparse.Namespace, space, kind: str):
    from uda3d.tuning.tune import TuneSpec

    return TuneSpec(stage=_stage(args, scaling=ScalingOptions(address=args.address)), space=space,
                    backbone_checkpoint=str(args.backbone), vae_checkpoint=str(args.vae), guards=_guards(args),
                    registered_model=getattr(args, "register_as", "uda3d-adapted"), kind=kind)


def _stage_configs(args: argparse.Namespace, **adapt_extra) -> dict:
    """The backbone, VAE and adaptation configs of ``pipeline`` and ``compare-methods`` (one ``--ngf`` for both
    networks' widths, as the method)."""
    return {"backbone": config_from(args, BackboneConfig, ndf=args.ngf), "vae": config_from(args, VAEConfig),
            "adapt": config_from(args, AdaptConfig, **adapt_extra)}


def _pipeline_config(args: argparse.Namespace):
    from uda3d.pipeline import PipelineConfig

    return config_from(args, PipelineConfig, dataroot=str(args.dataroot), workdir=str(args.workdir),
                       **_stage_configs(args, checkpointing=args.checkpointing), guards=_guards(args),
                       preprocess=config_from(args, PreprocessConfig), scaling=config_from(args, ScalingOptions),
                       tracking=tracking_from(args), progress=not args.quiet)


def _compare_config(args: argparse.Namespace):
    return config_from(args, CompareConfig, dataroot=str(args.dataroot), workdir=str(args.workdir),
                       extra_dataroots=tuple(str(p) for p in args.extra_dataroots), **_stage_configs(args),
                       ttt=config_from(args, TTTConfig), self_train=config_from(args, SelfTrainConfig),
                       preprocess=config_from(args, PreprocessConfig), tracking=tracking_from(args),
                       progress=not args.quiet)


def _demo_config(args: argparse.Namespace):
    import dataclasses

    from uda3d.demo import DemoConfig, demo_backbone

    defaults = DemoConfig()
    return config_from(args, DemoConfig, vae=dataclasses.replace(defaults.vae, epochs=args.vae_epochs),
                       backbone=demo_backbone(args.backbone_epochs))


# --- handlers: call the library, print what it returns ----------------------------------------------

def cmd_cohort(args: argparse.Namespace) -> int:
    from uda3d.cohort.generate import CohortConfig, generate_cohort

    config = config_from(args, CohortConfig)
    summary = generate_cohort(args.out, config, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(config.sites) * config.subjects_per_site} subjects to {args.out} ({summary.name})")
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    from uda3d.data.validate import validate_root

    return show.validation(args.root, validate_root(args.root, splits=args.splits, progress=not args.quiet))


def cmd_ingest_brats(args: argparse.Namespace) -> int:
    from uda3d.data.ingest import ingest_brats

    membership = ingest_brats(args.src, args.out, config_from(args, IngestConfig), mapping=args.mapping,
                              overwrite=args.overwrite)
    for split, ids in membership.items():
        print(f"{split}: {len(ids)} subjects")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from uda3d.data.prepare import preprocess_root

    summaries = preprocess_root(args.root, config_from(args, PreprocessConfig), args.cache_dir,
                                splits=tuple(args.splits) if args.splits else None, progress=not args.quiet)
    for s in summaries:
        print(f"{s.split}: {s.subjects} subjects ({s.labeled} with T1), input {s.shape}, {s.seconds:.2f} s")
    return 0


def cmd_train_backbone(args: argparse.Namespace) -> int:
    from uda3d.training.backbone_stage import run_backbone

    result = run_backbone(_backbone_spec(args))
    show.stage_result("backbone", result, [k for k in result.metrics if k.startswith("val_")])
    return 0


def cmd_slices(args: argparse.Namespace) -> int:
    from uda3d.data.slice_store import write_slice_store

    splits = tuple(args.splits) if args.splits else (f"{args.domain}_train", f"{args.domain}_val")
    store = write_slice_store(args.root, splits, args.out, config_from(args, PreprocessConfig),
                              config_from(args, SliceConfig), cache_dir=args.cache_dir or args.out.parent / "cache",
                              volumes_per_shard=args.volumes_per_shard, overwrite=args.overwrite,
                              progress=not args.quiet)
    m = store.manifest
    print(f"wrote {len(m['volumes'])} volumes x {m['slices_per_volume']} slices of {m['slice_shape']} "
          f"in {len(m['shards'])} shard(s) to {args.out}")
    return 0


def cmd_train_vae(args: argparse.Namespace) -> int:
    from uda3d.training.vae_stage import run_vae

    result = run_vae(_vae_spec(args))
    show.stage_result("VAE", result, ["recon_mse", "kl_per_element", "val_recon_mse", "val_mse_mean_slice"])
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from uda3d.adaptation.stage import run_adapt

    show.adaptation(run_adapt(_adapt_spec(args)))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from uda3d.pipeline import run_pipeline

    show.pipeline(run_pipeline(_pipeline_config(args)).to_json(), Path(args.workdir))
    return 0


def cmd_compare_methods(args: argparse.Namespace) -> int:
    from uda3d.compare.methods import compare_methods

    show.method_comparison(compare_methods(_compare_config(args)), Path(args.workdir))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from uda3d.cluster.submit import load_runtime_env, stage_command, submit

    runtime_env = load_runtime_env(args.runtime_env, base=Path.cwd())
    entrypoint = stage_command(args.stage, args.stage_args, args.num_workers, args.gpus_per_worker)
    print(f"submitting to {args.address}: {entrypoint}", flush=True)
    job_id, status = submit(args.address, entrypoint, runtime_env, wait=not args.no_wait)
    print(f"\njob {job_id}: {status}")
    return 0 if status == "SUCCEEDED" or (args.no_wait and status in ("PENDING", "RUNNING")) else 1


def cmd_tune(args: argparse.Namespace) -> int:
    from uda3d.tuning.space import load_space
    from uda3d.tuning.tune import check_selection_metric, run_tune

    space = load_space(args.space)  # validated before anything starts
    check_selection_metric(space)
    spec = _tune_spec(args, space, "tune")
    return show.tuning(space, run_tune(spec), spec.study_dir)


def cmd_study(args: argparse.Namespace) -> int:
    from uda3d.tuning.space import load_space
    from uda3d.tuning.study import STUDIES, run_study, shipped_space, study_points

    space = load_space(args.space or shipped_space(STUDIES[args.study]))
    study_points(space)  # a space that is not a grid of choices fails here, before anything starts
    return show.study(space, run_study(_tune_spec(args, space, "study")))


def cmd_compare(args: argparse.Namespace) -> int:
    from uda3d.compare.mlflow_runs import compare_runs, markdown

    tracking = tracking_from(args)
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
    report = evaluate_methods(models, args.dataroot, args.split, config_from(args, PreprocessConfig), args.out)
    for name in models:
        m = report[name]
        print(f"{name:<16} PSNR {m['psnr']:.2f}  SSIM {m.get('ssim', float('nan')):.3f}  MAE {m['mae']:.3f}")
    write_json(Path(args.out) / "evaluation.json", report)
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
    show.synthesis(rows, args.out, model.device)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from uda3d.demo import demo_tracking, demo_tune, run_demo

    config = _demo_config(args)
    report = run_demo(config, progress=not args.quiet)
    show.demo_pipeline(report, config.workdir)
    show.demo_tuning(demo_tune(config, report), demo_tracking(config), config.workdir)
    return 0


# --- main ----------------------------------------------------------------------------------------

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

    parser = build_parser(lazy=True)
    args = parser.parse_args(argv)
    show.setup_logging(args.debug)
    received: list[int] = []

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None
    try:
        handler = globals()[f"cmd_{args.command.replace('-', '_')}"]  # command x-y is handled by cmd_x_y
        return int(handler(args) or 0)
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
