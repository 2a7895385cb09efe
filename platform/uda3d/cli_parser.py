"""The ``uda3d`` parser: its commands and each command's flags, most of them generated from the configs.

A command's flags are added only when the command is chosen (``build_parser(lazy=True)``, as ``main``
does), so ``uda3d --help`` imports only the cheap ``uda3d.config``, never torch, Ray or MLflow. The
handlers are in ``uda3d.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from uda3d import __version__
from uda3d.cli_flags import (
    add_fields,
    add_preprocess_options,
    add_run_options,
    add_scaling_options,
    add_tracking_options,
    non_negative_int,
    positive_int,
)
from uda3d.config import (
    GENERATORS,
    PRIORS,
    SLICE_ORDERS,
    AdaptConfig,
    BackboneConfig,
    CompareConfig,
    GuardConfig,
    IngestConfig,
    RobustAugmentConfig,
    SelfTrainConfig,
    SliceConfig,
    TTTConfig,
    VAEConfig,
)

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit code 2 (no usage dump)."""
    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


# --- the commands' flags (only the hand-made ones are written out) ---------------------------------

# The backbone's epoch counts may be 0 (e.g. no decay, no warm-up); the config checks that some remain.
_BACKBONE_EPOCH_TYPES = {"epochs": non_negative_int, "epochs_decay": non_negative_int,
                         "l1_warmup_epochs": non_negative_int}


def _backbone_flags(p: argparse.ArgumentParser) -> None:
    """train the 3D pix2pix backbone (FLAIR+T2 -> T1) on the source site with Ray Train, tracked in MLflow"""
    p.add_argument("--dataroot", type=Path, required=True, help="BraTS-layout root")
    add_run_options(p, "backbone")
    p.add_argument("--source-domain", default="domain1", help="trains on <domain>_train, validates on <domain>_val")
    g = p.add_argument_group("model and optimisation (defaults: the method's)")
    add_fields(g, BackboneConfig, exclude=("beta1", "lambda_l1", "lambda_fm", "robust", "spatial"),
               types_=_BACKBONE_EPOCH_TYPES, choices={"generator": GENERATORS})
    g.add_argument("--init-checkpoint", type=Path, default=None,
                   help="start from this backbone's networks (e.g. fine-tune a plain backbone with --robust-augment)")
    g = p.add_argument_group("robust augmentation strengths (with --robust-augment)")
    add_fields(g, RobustAugmentConfig, exclude=("gamma_low", "gamma_high"), prefix="robust-",
               flags={"bias_coeff": "--robust-bias", "noise_std": "--robust-noise", "blur_sigma": "--robust-blur"},
               types_={"histogram_points": int, "remap_knots": int})
    r = RobustAugmentConfig()
    g.add_argument("--robust-gamma", type=float, nargs=2, default=[r.gamma_low, r.gamma_high],
                   metavar=("LOW", "HIGH"), help="contrast gamma range (default: %(default)s)")
    add_preprocess_options(p)
    add_scaling_options(p)


def _vae_flags(p: argparse.ArgumentParser) -> None:
    """train the 2D slice VAE prior on a slice store with Ray Train + Ray Data"""
    p.add_argument("--store", type=Path, required=True, help="slice store from 'uda3d slices'")
    p.add_argument("--domain", default="domain1", help="trains on <domain>_train volumes, validates on <domain>_val")
    add_run_options(p, "vae")
    add_fields(p.add_argument_group("model and optimisation (defaults: the method's)"), VAEConfig)
    add_scaling_options(p)


def _adapt_flags(p: argparse.ArgumentParser) -> None:
    """adapt a backbone to the target site with the slice-VAE latent KL, under guards"""
    p.add_argument("--dataroot", type=Path, required=True, help="BraTS-layout root")
    p.add_argument("--backbone", type=Path, required=True, help="backbone checkpoint (folder or state.pt)")
    p.add_argument("--vae", type=Path, required=True, help="slice-VAE checkpoint (folder or state.pt)")
    p.add_argument("--source-domain", default="domain1")
    p.add_argument("--target-domain", default="domain2", help="adapts on <target>_val, reports on <target>_test")
    add_run_options(p, "adapt")
    add_fields(p.add_argument_group("objective (defaults: the method's README run)"), AdaptConfig,
               choices={"slice_order": SLICE_ORDERS, "prior": PRIORS})
    add_fields(p.add_argument_group("guards (no target labels needed)"), GuardConfig)
    add_preprocess_options(p)
    add_scaling_options(p)


def _stage_flags(g: argparse._ArgumentGroup) -> None:
    """The backbone, VAE and adaptation flags ``pipeline`` and ``compare-methods`` share."""
    add_fields(g, BackboneConfig, fields=("ngf", "lr", "epochs", "epochs_decay", "l1_warmup_epochs", "val_every"),
               prefix="backbone-", flags={"ngf": "--ngf"}, types_=_BACKBONE_EPOCH_TYPES)
    add_fields(g, VAEConfig, fields=("latent_channels", "lr", "epochs"), prefix="vae-",
               flags={"latent_channels": "--latent-channels"})
    add_fields(g, AdaptConfig, fields=("lr", "epochs"), prefix="adapt-")


def _pipeline_flags(p: argparse.ArgumentParser) -> None:
    """every stage on a BraTS-layout root, with or without target T1: backbone, adaptation, a synthesized T1 +
    uncertainty map for every target subject, a registered MLflow model; bound and scores where target T1 exists;
    writes WORKDIR/report.json
    """
    from uda3d.pipeline import PipelineConfig

    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"))
    add_fields(p, PipelineConfig, fields=("resume", "register_as", "device"), choices={"device": DEVICES},
               helps={"resume": "continue a run in --workdir: stages finished with the same config are skipped",
                      "register_as": "MLflow registered model name of uda",
                      "device": "evaluation and synthesis device (auto: CUDA if present); training: --use-gpu"})
    add_tracking_options(p)
    g = p.add_argument_group("stages (defaults: the method's)")
    _stage_flags(g)
    add_fields(g, BackboneConfig, fields=("amp", "checkpointing"))
    add_fields(g, AdaptConfig, fields=("ele_percent", "kl_weight"))
    add_fields(g, GuardConfig)
    add_fields(g, PipelineConfig, fields=("slice_size", "supervised_epochs", "robust_epochs"),
               helps={"slice_size": "VAE slice side",
                      "robust_epochs": "epochs of the robust fine-tune (the default uda)"})
    add_preprocess_options(p)
    add_scaling_options(p)


def _compare_methods_flags(p: argparse.ArgumentParser) -> None:
    """every adaptation method against the budget-matched control source_ft, subjects as the unit: tables (CSV,
    Markdown) and figures per target site
    """
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--extra-dataroots", type=Path, nargs="*", default=[],
                   help="more target sites sharing --dataroot's source splits (same seed and source site)")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-compare"))
    add_fields(p, CompareConfig, fields=("seeds", "methods", "selection_signal", "use_gpu", "signal_usable"),
               flags={"signal_usable": "--no-signal"},
               helps={"methods": "candidates besides no_adaptation, source_ft and supervised",
                      "signal_usable": "do not trust the selection signal on this data: uda = the documented "
                                       "fallback method"})
    add_tracking_options(p)
    g = p.add_argument_group("budgets (defaults: the method's backbone; small ones for a quick look)")
    _stage_flags(g)
    add_fields(g, CompareConfig, fields=("finetune_epochs", "supervised_epochs", "slice_size"))
    add_fields(g, TTTConfig, fields=("epochs", "subject_steps"), prefix="ttt-",
               types_={"subject_steps": non_negative_int})
    add_fields(g, SelfTrainConfig, fields=("epochs",), prefix="self-train-")
    add_preprocess_options(p)


def _trial_flags(p: argparse.ArgumentParser) -> None:
    """What ``tune`` and ``study`` share: the checkpoints to adapt, where, guards and preprocessing."""
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--backbone", type=Path, required=True, help="backbone checkpoint to adapt")
    p.add_argument("--vae", type=Path, required=True, help="slice-VAE checkpoint")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"))
    p.add_argument("--resume", action="store_true", help="continue an interrupted study of this space's name")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    add_tracking_options(p)
    add_fields(p, GuardConfig)
    add_preprocess_options(p)


def _cohort_flags(p: argparse.ArgumentParser) -> None:
    """generate a synthetic multi-site cohort as a BraTS-layout root"""
    from uda3d.cohort.generate import CohortConfig

    p.add_argument("out", type=Path, help="output root (created atomically)")
    add_fields(p, CohortConfig, fields=("sites", "subjects_per_site", "shape", "seed"),
               metavars={"shape": ("X", "Y", "Z")}, helps={
        "sites": "site protocols, in domain order (domain1 = first); known: site-a site-b site-c, and site-a-atrophy "
                 "(site-a's protocol, atrophic anatomy)",
        "subjects_per_site": "split 60/20/20 into train/val/test",
        "shape": "grid size over BraTS's 240x240x155 mm field of view (240 240 155 = 1 mm)"})
    p.add_argument("--overwrite", action="store_true", help="replace an existing output root")


def _ingest_flags(p: argparse.ArgumentParser) -> None:
    """arrange a BraTS download into domain1_* (source site) and domain2_* (target site) splits"""
    p.add_argument("src", type=Path, help="a BraTS release folder (subject folders anywhere below it)")
    p.add_argument("out", type=Path, help="the two-site root to create (links to the subject folders)")
    add_fields(p, IngestConfig, metavars={"fractions": ("TRAIN", "VAL", "TEST")}, helps={
        "source": "institution prefix of the source site", "target": "institution prefix of the target site",
        "copy": "copy the files instead of linking them"})
    p.add_argument("--mapping", type=Path, default=None, help="CSV with columns subject,site for ids without one")
    p.add_argument("--overwrite", action="store_true")


def _validate_flags(p: argparse.ArgumentParser) -> None:
    """check a BraTS-layout root and report every problem (exit 2 if any)"""
    p.add_argument("root", type=Path)
    p.add_argument("--splits", nargs="+", default=None, help="only these split folders (e.g. domain2_val)")


def _preprocess_flags(p: argparse.ArgumentParser) -> None:
    """reorient, crop and normalise every subject into the cache"""
    p.add_argument("root", type=Path)
    p.add_argument("--cache-dir", type=Path, required=True, help="where preprocessed arrays are cached")
    p.add_argument("--splits", nargs="+", default=None)
    add_preprocess_options(p)


def _slices_flags(p: argparse.ArgumentParser) -> None:
    """extract T1 slices of the source site into a Parquet slice store"""
    p.add_argument("root", type=Path, help="BraTS-layout root")
    p.add_argument("--out", type=Path, required=True, help="store folder (created atomically)")
    p.add_argument("--domain", default="domain1", help="slices <domain>_train and <domain>_val (default domain1)")
    p.add_argument("--splits", nargs="+", default=None, help="explicit split folders instead of --domain")
    add_fields(p, SliceConfig, fields=("size", "plane"), flags={"size": "--slice-size"},
               choices={"plane": ("coronal", "axial", "sagittal")})
    p.add_argument("--volumes-per-shard", type=positive_int, default=4)
    p.add_argument("--cache-dir", type=Path, default=None, help="preprocessing cache (default: OUT/../cache)")
    p.add_argument("--overwrite", action="store_true")
    add_preprocess_options(p)


def _tune_flags(p: argparse.ArgumentParser) -> None:
    """Ray Tune + Optuna (TPE) + ASHA over the adaptation's hyperparameters from a search_spaces/*.yaml; trials in
    MLflow, the label-free best registered as champion
    """
    p.add_argument("--space", type=Path, required=True, help="search space YAML (search_spaces/adaptation.yaml)")
    p.add_argument("--register-as", default="uda3d-adapted", help="MLflow registered model name")
    _trial_flags(p)


def _study_flags(p: argparse.ArgumentParser) -> None:
    """the paper's studies as Tune trials with seeds: target-data amount or sensitivity to ele_percent/lr/KL weight;
    CSV and PNGs with seed error bars, in MLflow
    """
    from uda3d.tuning.study import STUDIES

    p.add_argument("study", choices=sorted(STUDIES), help="which study (its grid: search_spaces/<study>.yaml)")
    p.add_argument("--space", type=Path, default=None,
                   help="a grid of choice values instead (default search_spaces/data_amount.yaml or sensitivity.yaml)")
    _trial_flags(p)


def _compare_flags(p: argparse.ArgumentParser) -> None:
    """a table of an MLflow experiment's runs (differing params, objective, label-free signal, target metrics) as
    CSV, Markdown and a PNG
    """
    p.add_argument("--workdir", type=Path, default=Path("uda3d-runs"), help="holds the default mlflow.db")
    add_tracking_options(p, suppress_off=True, experiment_help="MLflow experiment to read")
    p.add_argument("--filter", default="", help="MLflow filter, e.g. \"tags.stage = 'tune-trial'\"")
    p.add_argument("--metric", default=None, help="metric of the chart (default target_test_psnr where present)")
    p.add_argument("--metrics", nargs="+", default=None, help="metric columns (default: the adaptation ones)")
    p.add_argument("--params", nargs="+", default=None, help="param columns (default: those that differ)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default WORKDIR/compare/EXPERIMENT)")
    p.add_argument("--no-log", action="store_true", help="do not log the table to MLflow")


def _submit_flags(p: argparse.ArgumentParser) -> None:
    """run a stage on a Ray cluster as a Ray job (ships the code, streams the logs); options go before STAGE"""
    p.add_argument("--address", required=True, help="the cluster's dashboard/job server, e.g. http://HEAD:8265")
    p.add_argument("--runtime-env", type=Path, default=Path("cluster/runtime_env.yaml"),
                   help="runtime env YAML, paths relative to the current folder (default cluster/runtime_env.yaml)")
    p.add_argument("--num-workers", type=positive_int, default=None, help="Ray Train workers of the stage")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per Ray Train worker (implies --use-gpu)")
    p.add_argument("--no-wait", action="store_true", help="return once submitted (exit 0 while it runs)")
    p.add_argument("stage", choices=sorted(STAGES), help="the uda3d command to run on the cluster")
    p.add_argument("stage_args", nargs=argparse.REMAINDER, help="that command's options")


def _evaluate_flags(p: argparse.ArgumentParser) -> None:
    """score generator checkpoints on a split: per-subject CSV, summary with bootstrap CIs, paired Wilcoxon vs
    no_adaptation, comparison figure
    """
    p.add_argument("--dataroot", type=Path, required=True)
    p.add_argument("--model", nargs="+", required=True, metavar="NAME=CKPT",
                   help="checkpoints to compare, e.g. no_adaptation=runs/backbone uda=runs/adapted/adapt")
    p.add_argument("--split", default="domain2_test")
    p.add_argument("--out", type=Path, required=True)
    add_preprocess_options(p)


def _synthesize_flags(p: argparse.ArgumentParser) -> None:
    """write the missing T1 (<prefix>_t1_synth.nii.gz, on each subject's own grid) of a subject, a split or a root's
    splits under --out, with an uncertainty map each and quality.csv
    """
    p.add_argument("path", type=Path, nargs="?", default=None, help="a subject folder or a split folder")
    p.add_argument("--dataroot", type=Path, default=None, help="a BraTS-layout root (with --split)")
    p.add_argument("--split", nargs="+", default=[], help="the root's split(s) to synthesize, e.g. domain2_test")
    p.add_argument("--model", type=Path, required=True, help="a uda3d checkpoint (folder or state.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (never inside the dataset)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA if present")
    p.add_argument("--batch-size", type=positive_int, default=2, help="subjects per forward pass")
    p.add_argument("--ensemble", type=Path, nargs="+", default=[], metavar="CKPT",
                   help="other checkpoints (same preprocessing); their disagreement with --model is ensemble_spread")
    p.add_argument("--no-uncertainty", action="store_true",
                   help="skip the flip test-time-augmentation uncertainty map (4x faster)")
    p.add_argument("--scale", type=float, default=1000.0, help="multiplier for the model's [0, 1] output")
    add_preprocess_options(p, stored=True)


def _demo_flags(p: argparse.ArgumentParser) -> None:
    """synthetic cohort + every stage built so far, on CPU, no download"""
    from uda3d.demo import DEMO_GAN_EPOCHS, DemoConfig

    defaults = DemoConfig()
    add_fields(p, DemoConfig, exclude=("sites", "backbone", "vae", "adapt"), metavars={"shape": ("X", "Y", "Z")})
    p.add_argument("--backbone-epochs", type=positive_int, default=defaults.backbone.epochs,
                   help="constant-lr backbone epochs (a third as many decaying ones follow; L1 alone but for the "
                        f"last {DEMO_GAN_EPOCHS} decaying ones, which use the method's GAN losses; "
                        "default: %(default)s)")
    p.add_argument("--vae-epochs", type=positive_int, default=defaults.vae.epochs,
                   help="VAE epochs (default: %(default)s)")


# --- the parser ----------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda")
COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {  # a command's help: its function's docstring
    "cohort": _cohort_flags,
    "ingest-brats": _ingest_flags,
    "validate-data": _validate_flags,
    "preprocess": _preprocess_flags,
    "train-backbone": _backbone_flags,
    "slices": _slices_flags,
    "train-vae": _vae_flags,
    "adapt": _adapt_flags,
    "pipeline": _pipeline_flags,
    "compare-methods": _compare_methods_flags,
    "tune": _tune_flags,
    "study": _study_flags,
    "compare": _compare_flags,
    "submit": _submit_flags,
    "evaluate": _evaluate_flags,
    "synthesize": _synthesize_flags,
    "demo": _demo_flags,
}
STAGES = tuple(name for name in COMMANDS if name != "submit")


class _Commands(argparse._SubParsersAction):
    """Subcommands whose flags are added when the command is chosen (``uda3d --help`` builds none)."""
    def __call__(self, parser, namespace, values, option_string=None):
        _populate(self.choices.get(values[0]))
        super().__call__(parser, namespace, values, option_string)


def _populate(p: argparse.ArgumentParser | None) -> None:
    if p is not None and not getattr(p, "populated", True):
        p.populated = True  # type: ignore[attr-defined]
        COMMANDS[p.prog.split()[-1]](p)


def _switches(p: argparse.ArgumentParser, default) -> None:
    """``--debug`` and ``--quiet``, before the command (``default`` False) or after it (left unset)."""
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks instead of one-line errors")
    p.add_argument("--quiet", action="store_true", default=default, help="no progress bars")


def build_parser(lazy: bool = False) -> argparse.ArgumentParser:
    """The ``uda3d`` parser; ``lazy``: each command's flags are added only once it is chosen (as ``main`` does)."""
    parser = _Parser(prog="uda3d", description="Unsupervised domain adaptation of 3D MRI synthesis "
                                               "(FLAIR + T2 -> T1) on Ray.")
    parser.add_argument("--version", action="version", version=f"uda3d {__version__}")
    _switches(parser, False)
    parser.register("action", "commands", _Commands)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action="commands")
    sub.required = True
    parser.command_parsers = sub.choices  # type: ignore[attr-defined]  # to name flags in errors
    for name, add_flags in COMMANDS.items():
        help_text = " ".join(add_flags.__doc__.split())
        p = sub.add_parser(name, help=help_text, description=help_text)
        _switches(p, argparse.SUPPRESS)
        p.populated = False  # type: ignore[attr-defined]
        if not lazy:
            _populate(p)
    return parser
