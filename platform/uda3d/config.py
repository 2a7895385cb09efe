"""Frozen, validated configuration dataclasses and the one way to build them from a dict.

Configs are checked where they enter (CLI flags, YAML, a Tune trial's dict) and passed down as
dataclasses; ``from_dict`` rejects unknown keys so a typo never silently falls back to a default.

The library's configs live here, one family after another (preprocessing and augmentation, slices and
ingestion, tracking and guards, the stages, the comparison), so they import cheaply (no torch, Ray or
MLflow: the CLI reads their defaults). ``CohortConfig`` stays with the synthetic cohort: it checks its
sites against the cohort's site registry, which would make this module and the cohort import each other.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from uda3d.errors import ConfigError

T = TypeVar("T")

ORIENTATIONS_OK = set("LRAPSI")
NORMALISATIONS = ("minmax", "percentile")
CROPS = ("brain", "fixed")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """How volumes become network inputs (docs/method.md section 1).

    Attributes:
        orientation: axis code the arrays are reoriented to (the method uses ``IPL``).
        shape: crop/pad size after reorientation; ``None`` scales the method's 144x192x192 crop of a
            155x240x240 volume to the input size (multiples of 8).
        normalisation: ``minmax`` per volume and channel (the method) or ``percentile`` (1st/99th).
        crop: ``brain``: the window is centred on each subject's brain (the default, every reported
            number); ``fixed``: one window for every subject, as the method crops BraTS at
            [8:152, 24:216, 24:216] (centred for other sizes), which the element-wise latent KL
            against another subject's T1 assumes. On the development cohort ``fixed`` moved target
            PSNR by +0.06 dB (p = 0.31) and lost target SSIM (-0.005, p = 0.04):
            ``benchmarks/results/crop_modes.md``.
        spacing: voxel size in mm along the axes of ``orientation`` (``IPL``: inferior-superior,
            posterior-anterior, left-right) every subject is resampled to before the crop; ``None``
            (the default, as the method) keeps each file's own grid. Resampling serves a root whose
            sites or subjects were acquired at different spacings, which the network would otherwise
            see as brains of different sizes; outputs are resampled back to each file's grid.
    """

    orientation: str = "IPL"
    shape: tuple[int, int, int] | None = None
    normalisation: str = "minmax"
    crop: str = "brain"
    spacing: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        code = self.orientation.upper()
        axes = {frozenset("LR"), frozenset("AP"), frozenset("SI")}
        if len(code) != 3 or not set(code) <= ORIENTATIONS_OK or {frozenset(
                next(a for a in axes if c in a)) for c in code} != axes:
            raise ConfigError("orientation", f"expected a 3-letter axis code like 'IPL', got {self.orientation!r}")
        if self.shape is not None:
            if len(self.shape) != 3 or any(int(s) < 8 or int(s) % 8 for s in self.shape):
                raise ConfigError("shape", f"expected 3 multiples of 8, got {list(self.shape)}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError("normalisation", f"expected one of {list(NORMALISATIONS)}, got {self.normalisation!r}")
        if self.crop not in CROPS:
            raise ConfigError("crop", f"expected one of {list(CROPS)}, got {self.crop!r}")
        if self.spacing is not None:
            if len(self.spacing) != 3 or not all(math.isfinite(float(v)) and 0.05 <= float(v) <= 20
                                                 for v in self.spacing):
                raise ConfigError("spacing", f"expected 3 voxel sizes in mm between 0.05 and 20, "
                                             f"got {list(self.spacing)}")


def from_dict(cls: type[T], values: dict[str, Any], source: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``values``; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(values, dict):
        raise ConfigError(cls.__name__, f"expected a mapping, got {type(values).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted((str(k) for k in set(values) - set(fields)))  # YAML keys may be numbers
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; expected one of {sorted(fields)}", source)
    hints = _hints(cls)
    kwargs = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        expected = hints.get(name)
        if dataclasses.is_dataclass(expected) and isinstance(value, dict):
            try:
                value = from_dict(expected, value, source)
            except ConfigError as exc:  # name the nested field by its path: ``spatial.rotate_deg``
                raise ConfigError(f"{name}.{exc.field}", exc.problem, source) from None
        if expected is not None and not _matches(value, expected):
            raise ConfigError(name, f"expected {_describe(expected)}, got {value!r}", source)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a bound checked by the config itself: say which file it came from
        if exc.source is None and source is not None:
            raise ConfigError(exc.field, exc.problem, source) from None
        raise


def _is_instance(value: Any, expected: type) -> bool:
    """Scalars as YAML and numpy hand them over: any real for a float, any integral for an int, never a bool."""
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, numbers.Real)
    if expected is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, expected)


def _matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` fits a field's type hint (scalars, ``X | None``, fixed tuples, nested configs)."""
    if expected in (int, float, str, bool):
        return _is_instance(value, expected)
    if expected is type(None):
        return value is None
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if typing.get_origin(expected) is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if dataclasses.is_dataclass(expected):
        return isinstance(value, expected)
    return True  # Any, mappings: checked by the config itself


def _describe(expected: Any) -> str:
    """A type hint in words: ``int | None`` -> ``int or null``, ``tuple[int, int, int]`` -> ``a list of 3 int``."""
    if expected is type(None):
        return "null"
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if typing.get_origin(expected) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} {_describe(args[0])}"
    if dataclasses.is_dataclass(expected):
        return f"a mapping ({expected.__name__})"
    return getattr(expected, "__name__", str(expected))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(config: Any, option_names: bool = False) -> None:
    """Every field has its declared type, and no float is NaN or infinite.

    Configs are built from CLI flags, YAML, Tune trials and code; checked first thing in each
    ``__post_init__``, no entry point can hand a bound check a string (a ``TypeError``) or a NaN
    (which passes every ``<`` check unnoticed).

    Args:
        config: a config dataclass.
        option_names: name fields as CLI options (``--cpus-per-worker``) rather than keys.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"--{f.name.replace('_', '-')}" if option_names else f.name
        expected = _hints(type(config)).get(f.name)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(name, f"expected {_describe(expected)}, got {value!r}")
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(value):
            raise ConfigError(name, f"expected a finite number, got {value}")


def require_positive(config: Any, *names: str) -> None:
    """Raise ``ConfigError`` naming the first of ``names`` whose value is below 1 (counts, sizes, epochs)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(name, f"expected a positive integer, got {getattr(config, name)}")


def require_learning_rate(config: Any, *names: str) -> None:
    """Raise ``ConfigError`` naming the first of ``names`` outside (0, 1): Adam learning rates."""
    for name in names:
        value = getattr(config, name)
        if not 0 < value < 1:
            raise ConfigError(name, f"expected 0 < {name} < 1, got {value}")


@dataclasses.dataclass(frozen=True)
class RobustAugmentConfig:
    """Strengths of robust source training's input-intensity augmentation (``uda3d.data.robust_augment``).

    Each transform fires with ``probability``. The defaults were set on the synthetic cohort's site
    shifts (bias, contrast, noise, thick-slice blur); real sites may need other strengths.
    """

    probability: float = 0.5
    bias_coeff: float = 0.4          # RandBiasField coefficient range (0, bias_coeff)
    gamma_low: float = 0.6           # RandAdjustContrast gamma range
    gamma_high: float = 1.6
    noise_std: float = 0.05          # RandGaussianNoise std (fraction of the [0, 1] range)
    blur_sigma: float = 2.0          # RandGaussianSmooth sigma range (0.5, blur_sigma) along one axis, voxels
    histogram_points: int = 8        # RandHistogramShift control points
    remap_knots: int = 6             # knots of the random monotone curve (0 disables it)

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.probability <= 1:
            raise ConfigError("probability", f"expected 0 <= p <= 1, got {self.probability}")
        if self.bias_coeff < 0 or self.noise_std < 0 or self.blur_sigma < 0.5:
            raise ConfigError("robust augmentation", "bias_coeff and noise_std >= 0, blur_sigma >= 0.5 expected")
        if not 0 < self.gamma_low <= self.gamma_high:
            raise ConfigError("gamma", f"expected 0 < gamma_low <= gamma_high, got {self.gamma_low}, {self.gamma_high}")
        if self.histogram_points < 4 or self.remap_knots < 0 or self.remap_knots == 1:
            raise ConfigError("robust augmentation", "histogram_points >= 4 and remap_knots 0 or >= 2 expected")


@dataclasses.dataclass(frozen=True)
class SpatialAugmentConfig:
    """Strengths of the spatial augmentation applied alike to inputs and T1 (``uda3d.data.spatial_augment``).

    Small rotations, scalings and shifts (and optionally an elastic warp) mimic head position and
    anatomy varying between subjects and sites, which the method's rot90/flips do not cover.

    Attributes:
        probability: chance that a volume is warped at all.
        rotate_deg: rotation about each axis drawn from U(-rotate_deg, rotate_deg) degrees.
        scale: zoom drawn from U(1 - scale, 1 + scale) per axis.
        translate_vox: shift drawn from U(-translate_vox, translate_vox) voxels per axis.
        elastic: add a smooth elastic warp (MONAI ``Rand3DElasticd``).
        elastic_sigma_low, elastic_sigma_high: smoothness (voxels) of the elastic displacement field.
        elastic_magnitude_low, elastic_magnitude_high: its magnitude range (voxels).
    """

    probability: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate_vox: float = 3.0
    elastic: bool = False
    elastic_sigma_low: float = 5.0
    elastic_sigma_high: float = 8.0
    elastic_magnitude_low: float = 1.0
    elastic_magnitude_high: float = 3.0

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.probability <= 1:
            raise ConfigError("probability", f"expected 0 <= p <= 1, got {self.probability}")
        if not 0 <= self.rotate_deg <= 180:
            raise ConfigError("rotate_deg", f"expected 0 <= rotate_deg <= 180, got {self.rotate_deg}")
        if not 0 <= self.scale < 1:
            raise ConfigError("scale", f"expected 0 <= scale < 1, got {self.scale}")
        if self.translate_vox < 0:
            raise ConfigError("translate_vox", f"expected >= 0, got {self.translate_vox}")
        if not 0 < self.elastic_sigma_low <= self.elastic_sigma_high:
            raise ConfigError("elastic_sigma", "expected 0 < elastic_sigma_low <= elastic_sigma_high, got "
                              f"{self.elastic_sigma_low}, {self.elastic_sigma_high}")
        if not 0 <= self.elastic_magnitude_low <= self.elastic_magnitude_high:
            raise ConfigError("elastic_magnitude", "expected 0 <= elastic_magnitude_low <= elastic_magnitude_high, "
                              f"got {self.elastic_magnitude_low}, {self.elastic_magnitude_high}")


# --- data: slices of volumes, BraTS ingestion ---

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}  # axes of an IPL volume


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    """How volumes become slices.

    Attributes:
        size: side of the padded cube and of each slice (power of two: 256 for BraTS, 64 for the demo).
        plane: ``coronal`` (slice along P, the method's intended axis), ``axial`` or ``sagittal``.
        low, high: percentiles mapped to 0 and 1 (1 and 99 in the method).
    """

    size: int = 256
    plane: str = "coronal"
    low: float = 1.0
    high: float = 99.0

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ConfigError("slice size", f"expected a power of two >= 8, got {self.size}")
        if self.plane not in AXES:
            raise ConfigError("plane", f"expected one of {sorted(AXES)}, got {self.plane!r}")
        if not 0 <= self.low < self.high <= 100:
            raise ConfigError("percentiles", f"expected 0 <= low < high <= 100, got {self.low}, {self.high}")

    @property
    def axis(self) -> int:
        return AXES[self.plane]


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """Which sites become source and target, and how each is split."""

    source: str = "CBICA"
    target: str = "TCIA"
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    copy: bool = False

    def __post_init__(self) -> None:
        if not self.source or not self.target or self.source.lower() == self.target.lower():
            raise ConfigError("--source/--target", f"expected two different sites, got {self.source!r} and "
                                                   f"{self.target!r}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or sum(self.fractions) <= 0:
            raise ConfigError("--fractions", f"expected 3 non-negative fractions, got {list(self.fractions)}")


# --- tracking and guards ---

@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Where runs go. ``uri=None`` disables tracking (every call becomes a no-op)."""

    uri: str | None
    experiment: str = "uda3d"
    artifact_root: str | None = None
    parent_run_id: str | None = None  # new runs are nested under it (the pipeline's run)


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    """Bounds of the guards.

    Attributes:
        max_source_drop: largest allowed fall of source-val PSNR below the starting model (dB).
        max_intensity_drift: largest allowed relative change of the target outputs' mean and std
            inside the brain, relative to the starting model's.
        max_hf_rise: largest allowed relative rise of the target outputs' high-frequency energy.
        max_background_rise: largest allowed rise of the mean |output| outside the brain ([0, 1] units).
    """

    max_source_drop: float = 0.2
    max_intensity_drift: float = 0.1
    max_hf_rise: float = 0.5
    max_background_rise: float = 0.02

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("max_source_drop", "max_intensity_drift", "max_hf_rise", "max_background_rise"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"expected a non-negative bound, got {getattr(self, name)}")


GENERATORS = ("sit", "unet")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """The supervised 3D pix2pix stage (docs/method.md section 1); defaults are the method's.

    Attributes:
        generator: ``sit`` (the method's) or ``unet`` (MONAI 3D U-Net).
        ngf, ndf: generator / discriminator width (64 in the method).
        n_layers_d: discriminator downsampling stages (``n_layers_D``, 1 in the method).
        lr, beta1: Adam learning rate and beta1 for both networks (1e-4, 0.5).
        lambda_l1, lambda_fm: weights of L1 and feature matching (100, 1.5).
        epochs, epochs_decay: constant-lr epochs, then linear decay to 0 (50 + 70 in the method).
        l1_warmup_epochs: the first this many epochs (counted in ``epochs + epochs_decay``) train the
            generator with L1 alone, without the discriminator: a PSNR-oriented start, as ESRGAN
            pretrains its generator before the adversarial phase. 0 in the method. A warm-up step costs
            about 0.4 of a full one and, from scratch, learns more per step
            (``benchmarks/results/backbone_convergence.md``).
        val_every: score the source-val split every this many epochs and after the last (1 in the
            method: every epoch). Validation does not change training; on 2 CPU cores it costs about a
            quarter of a small epoch's time (``benchmarks/results/demo_time.md``), which the demo
            spends on more epochs.
        grad_accum: optimiser step every this many volumes (batch size is 1 volume).
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a scaler); ignored on CPU.
        augment: the method's rot90/flip of input and target plus brightness/contrast jitter of inputs.
        robust_augment: robust source training: random bias field, contrast, histogram shift, one-axis
            blur, noise and monotone remapping of the inputs (``uda3d.data.robust_augment``).
        robust: the strengths of that augmentation.
        spatial_augment: random rotation, scaling and shift (optionally an elastic warp) applied with one
            draw to inputs and T1 target alike, before any intensity augmentation
            (``uda3d.data.spatial_augment``).
        spatial: the strengths of that augmentation.
        aux_weight: > 0 grows an auxiliary head on the SIT encoder that rebuilds FLAIR and T2 from a damaged
            copy, trained beside the T1 task with this weight (``uda3d.adaptation.ttt``: what test-time
            training adapts with; the T1 L1 term carries ``lambda_l1`` = 100, so 50 gives both a similar pull).
        checkpointing: recompute the generator's and discriminator's activations in the backward pass
            (``torch.utils.checkpoint``) and score real and fake pairs one at a time: the same losses
            and gradients in less memory, for about one more forward pass
            (``benchmarks/results/memory.md``).
        seed: seeds weights, data order and augmentation.
    """

    generator: str = "sit"
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 1
    lr: float = 1e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    lambda_fm: float = 1.5
    epochs: int = 50
    epochs_decay: int = 70
    l1_warmup_epochs: int = 0
    val_every: int = 1
    grad_accum: int = 1
    amp: bool = False
    augment: bool = True
    robust_augment: bool = False
    robust: RobustAugmentConfig = dataclasses.field(default_factory=RobustAugmentConfig)
    spatial_augment: bool = False
    spatial: SpatialAugmentConfig = dataclasses.field(default_factory=SpatialAugmentConfig)
    aux_weight: float = 0.0
    checkpointing: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.generator not in GENERATORS:
            raise ConfigError("generator", f"expected one of {list(GENERATORS)}, got {self.generator!r}")
        require_positive(self, "ngf", "ndf", "n_layers_d", "val_every", "grad_accum")
        require_learning_rate(self, "lr")
        if not 0 <= self.beta1 < 1:
            raise ConfigError("beta1", f"expected 0 <= beta1 < 1, got {self.beta1}")
        if self.lambda_l1 < 0 or self.lambda_fm < 0:
            raise ConfigError("lambda_l1/lambda_fm", "expected non-negative weights")
        if self.aux_weight < 0 or (self.aux_weight > 0 and self.generator != "sit"):
            raise ConfigError("aux_weight", f"expected >= 0, and the sit generator when > 0; got {self.aux_weight} "
                                            f"with {self.generator!r}")
        if self.epochs < 0 or self.epochs_decay < 0 or self.epochs + self.epochs_decay < 1:
            raise ConfigError("epochs", f"expected epochs + epochs_decay >= 1, got {self.epochs} + {self.epochs_decay}")
        if not 0 <= self.l1_warmup_epochs <= self.total_epochs:
            raise ConfigError("l1_warmup_epochs", f"expected 0 to epochs + epochs_decay ({self.total_epochs}), "
                                                  f"got {self.l1_warmup_epochs}")
        if self.seed < 0:
            raise ConfigError("seed", f"expected a non-negative integer, got {self.seed}")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay

    def fine_tune(self, epochs: int, **changes: Any) -> BackboneConfig:
        """This config as a fine-tune of an already trained backbone: ``epochs`` at constant lr, no L1 warm-up.

        One rule for every fine-tune (candidates, controls, the supervised bound), so a warm-up or decay
        meant for training from scratch never leaks into one.
        """
        return dataclasses.replace(self, epochs=epochs, epochs_decay=0, l1_warmup_epochs=0, **changes)


@dataclasses.dataclass(frozen=True)
class ScalingOptions:
    """How many Ray Train workers, with what resources, on which cluster.

    Attributes:
        num_workers: DDP workers (processes).
        use_gpu: one GPU per worker (or ``gpus_per_worker``).
        cpus_per_worker, gpus_per_worker: resources each worker reserves.
        address: Ray cluster address; None starts a local Ray on demand.
        max_failures: worker-group restarts from the latest checkpoint before the run fails.
    """

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None
    max_failures: int = 0

    def __post_init__(self) -> None:
        check_fields(self, option_names=True)
        if self.num_workers < 1:
            raise ConfigError("--num-workers", f"expected a positive integer, got {self.num_workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError("--cpus-per-worker", f"expected > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0 or (self.gpus_per_worker > 0 and not self.use_gpu):
            raise ConfigError("--gpus-per-worker", "needs --use-gpu and a value >= 0")
        if self.max_failures < -1:
            raise ConfigError("--max-failures", f"expected >= -1 (-1 = retry forever), got {self.max_failures}")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The slice VAE (docs/method.md section 2); defaults are the method's.

    Attributes:
        gf_dim: channels of the first conv (4).
        latent_channels: latent channels at 2 x 2 per slice (256).
        kl_weight: weight of the summed KL to N(0, I) against the summed squared error (0.01).
        lr: Adam learning rate (1e-4).
        epochs: passes over the training volumes (300), one volume per batch, in order (no shuffling).
        seed: 42 in the method.
    """

    gf_dim: int = 4
    latent_channels: int = 256
    kl_weight: float = 0.01
    lr: float = 1e-4
    epochs: int = 300
    seed: int = 42

    def __post_init__(self) -> None:
        check_fields(self)
        require_positive(self, "gf_dim", "latent_channels", "epochs")
        if self.kl_weight < 0:
            raise ConfigError("kl_weight", f"expected >= 0, got {self.kl_weight}")
        require_learning_rate(self, "lr")
        if self.seed < 0:
            raise ConfigError("seed", f"expected a non-negative integer, got {self.seed}")


SLICE_ORDERS = ("intended", "faithful")
PRIORS = ("subject", "population")


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """The method's adaptation stage (docs/method.md section 3); defaults follow its README run.

    Attributes:
        ele_percent: keep the largest ele_percent % of latent KL elements (55 in the README run).
        kl_weight: weight of the latent objective (1 in the method).
        lr: Adam learning rate of the generator for both steps (1e-6 in the method).
        epochs: passes over the target volumes (5 in the method).
        target_subjects: use only the first N target volumes (sorted ids); None uses all.
        slice_order: ``intended`` (anatomical slices, our default) or ``faithful`` (the code's raw view).
        source_step: also take the ordinary supervised step on a source pair each iteration (the method).
        prior: ``subject`` (the method: one real source T1 per target volume) or ``population`` (one
            Gaussian per latent element fitted to all source training T1 volumes).
        amp: mixed precision on CUDA for both steps (bf16, or fp16 with a scaler), as the method's ``--amp``.
        checkpointing: activation checkpointing in the generator, the discriminator (source step) and the
            slice encoder (target step): the same numbers in less memory, for more time
            (``benchmarks/results/memory.md``).
        seed: pairs target volumes with source T1 volumes and orders the data.
    """

    ele_percent: float = 55.0
    kl_weight: float = 1.0
    lr: float = 1e-6
    epochs: int = 5
    target_subjects: int | None = None
    slice_order: str = "intended"
    source_step: bool = True
    prior: str = "subject"
    amp: bool = False
    checkpointing: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.ele_percent <= 100:
            raise ConfigError("ele_percent", f"expected 0 < ele_percent <= 100, got {self.ele_percent}")
        if self.kl_weight < 0:
            raise ConfigError("kl_weight", f"expected >= 0, got {self.kl_weight}")
        require_learning_rate(self, "lr")
        if self.epochs < 1:
            raise ConfigError("epochs", f"expected a positive integer, got {self.epochs}")
        if self.target_subjects is not None and self.target_subjects < 1:
            raise ConfigError("target_subjects", f"expected a positive integer, got {self.target_subjects}")
        if self.slice_order not in SLICE_ORDERS:
            raise ConfigError("slice_order", f"expected one of {list(SLICE_ORDERS)}, got {self.slice_order!r}")
        if self.prior not in PRIORS:
            raise ConfigError("prior", f"expected one of {list(PRIORS)}, got {self.prior!r}")
        if self.seed < 0:
            raise ConfigError("seed", f"expected a non-negative integer, got {self.seed}")


@dataclasses.dataclass(frozen=True)
class HarmoniserConfig:
    """Fitting the monotone harmoniser by sliced Wasserstein to the source inputs."""

    knots: int = 8
    steps: int = 200
    lr: float = 0.05
    voxels: int = 4096          # brain voxels sampled per step from source and from target
    projections: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.knots < 2 or self.steps < 1 or self.voxels < 16 or self.projections < 1:
            raise ConfigError("harmoniser", "expected knots >= 2, steps >= 1, voxels >= 16, projections >= 1")
        if not 0 < self.lr < 10:
            raise ConfigError("harmoniser lr", f"expected 0 < lr < 10, got {self.lr}")
        if self.seed < 0:
            raise ConfigError("harmoniser seed", f"expected a non-negative integer, got {self.seed}")


@dataclasses.dataclass(frozen=True)
class SelfTrainConfig:
    """Uncertainty-masked self-training on unlabeled target volumes (``uda3d.adaptation.self_training``).

    Attributes:
        views: teacher predictions averaged per target volume (flips + intensity augmentation; the first is plain).
        keep_fraction: fraction of brain voxels, lowest teacher variance first, the student is trained on.
        include_background: also train on voxels outside the brain (T1 is 0 there; the teacher is sure).
        epochs: passes over the target volumes per round.
        lr: the generator's Adam learning rate while self-training (restored afterwards).
        weight: weight of the masked L1 to the pseudo-T1.
        rounds: teacher refreshes; each round copies the current generator as the new teacher.
        student_augment: augment the student's input intensities with ``view_intensity`` (weak teacher, strong student).
        view_intensity: the robust intensity augmentation of teacher views (probability 0 turns it off).
        seed: flips, augmentation and nothing else.
    """

    views: int = 4
    keep_fraction: float = 0.5
    include_background: bool = True
    epochs: int = 5
    lr: float = 2e-4
    weight: float = 100.0            # as the backbone's lambda_l1: the anchor step carries 100 x L1 too
    rounds: int = 1
    student_augment: bool = True
    view_intensity: RobustAugmentConfig = dataclasses.field(default_factory=RobustAugmentConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        require_positive(self, "views", "epochs", "rounds")
        if not 0 < self.keep_fraction <= 1:
            raise ConfigError("keep_fraction", f"expected 0 < keep_fraction <= 1, got {self.keep_fraction}")
        require_learning_rate(self, "lr")
        if self.weight < 0:
            raise ConfigError("weight", f"expected >= 0, got {self.weight}")
        if self.seed < 0:
            raise ConfigError("seed", f"expected a non-negative integer, got {self.seed}")


TTT_SCOPES = ("encoder", "first")
JOINT_AUX_WEIGHT = 50.0   # BackboneConfig.aux_weight of the TTT-ready backbone (ttt_joint)


@dataclasses.dataclass(frozen=True)
class TTTConfig:
    """Test-time training with cross-contrast self-supervision (``uda3d.adaptation.ttt``).

    The auxiliary task's weight in source training is ``BackboneConfig.aux_weight``.

    Attributes:
        drop_probability: chance that one whole modality is zeroed (to be predicted from the other).
        mask_ratio: share of ``patch``^3 cubes zeroed in both modalities.
        patch: edge of those cubes, voxels.
        scope: which parameters TTT changes: the shared ``encoder`` or only its ``first`` level.
        lr: Adam learning rate of the site-level TTT step.
        epochs: site-level passes over the unlabeled target volumes.
        source_step: take the supervised source step beside each target step (the anchor).
        subject_steps, subject_lr: steps and learning rate of per-subject TTT on one volume.
        seed: the damage drawn during TTT.
    """

    drop_probability: float = 0.5
    mask_ratio: float = 0.3
    patch: int = 8
    scope: str = "encoder"
    lr: float = 1e-4
    epochs: int = 4
    source_step: bool = True
    subject_steps: int = 10
    subject_lr: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.drop_probability <= 1 or not 0 <= self.mask_ratio < 1:
            raise ConfigError("ttt damage", "expected 0 <= drop_probability <= 1 and 0 <= mask_ratio < 1")
        if self.drop_probability == 0 and self.mask_ratio == 0:
            raise ConfigError("ttt damage", "drop_probability and mask_ratio are both 0: nothing to reconstruct")
        if self.patch < 1:
            raise ConfigError("patch", f"expected a positive integer, got {self.patch}")
        if self.scope not in TTT_SCOPES:
            raise ConfigError("scope", f"expected one of {list(TTT_SCOPES)}, got {self.scope!r}")
        for name in ("lr", "subject_lr"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(name, f"expected 0 < {name} < 1, got {getattr(self, name)}")
        if self.epochs < 1 or self.subject_steps < 0:
            raise ConfigError("ttt epochs", "expected epochs >= 1 and subject_steps >= 0")
        if self.seed < 0:
            raise ConfigError("seed", f"expected a non-negative integer, got {self.seed}")


# --- the comparison of adaptation methods (``uda3d compare-methods``) ---

@dataclasses.dataclass(frozen=True)
class SignalSpec:
    """A selection signal and the perturbation families it is built from (empty: none)."""

    name: str
    transforms: frozenset[str]


def check_signal_independent(signal: SignalSpec, candidate_name: str,
                             candidate_training_transforms: frozenset[str]) -> None:
    """Raise ConfigError if the candidate trained on a perturbation family the signal is built from."""
    shared = sorted(signal.transforms & candidate_training_transforms)
    if shared:
        raise ConfigError("selection signal",
                          f"{signal.name!r} is built from the {', '.join(shared)} perturbation family that "
                          f"candidate {candidate_name!r} trained on, so it would reward that training rather than "
                          "target quality; judge this candidate with a signal built from other perturbations")


# Every candidate the comparison can train, with the perturbation families it trains on (a selection
# signal built from one of these may not judge it: ``uda3d.compare.signals``).
CANDIDATES: dict[str, frozenset[str]] = {
    "no_adaptation": frozenset({"standard"}),
    "source_ft": frozenset({"standard"}),
    "robust": frozenset({"standard", "intensity"}),
    "robust_spatial": frozenset({"standard", "intensity", "spatial"}),
    "ttt_joint": frozenset({"standard", "cross_contrast"}),
    "ttt_site": frozenset({"standard", "cross_contrast"}),
    "ttt_subject": frozenset({"standard", "cross_contrast"}),
    "ttt_site+subject": frozenset({"standard", "cross_contrast"}),
    "self_train": frozenset({"standard", "intensity"}),
    "kl": frozenset({"standard"}),
}
REFERENCE_METHODS = ("no_adaptation", "source_ft", "supervised")
DEFAULT_METHODS = ("robust", "robust_spatial", "ttt_joint", "ttt_site", "ttt_subject", "self_train", "kl")
# Label-free selection signals: (name, perturbation families it is built from, lower is better).
SIGNALS = (("kspace_source_mae", frozenset({"kspace"}), True),
           ("aug_source_mae", frozenset({"intensity"}), True),
           ("source_val_psnr", frozenset(), False),
           ("held_out_aux_loss", frozenset(), True))
# The signal ``uda`` is picked by: on the development cohort (site-a -> site-c, generator seed 11) the
# source-val PSNR ranked 10 candidates by target PSNR with Spearman +0.85, the k-space-perturbed
# source-val MAE -0.08 and the robust-augmented one -0.71 (wrong way: robust candidates game it);
# benchmarks/results/dev_signals.md.
SELECTION_SIGNAL = "source_val_psnr"
# The rule when the signal is not trusted: a fixed method, the one that beat source_ft on the
# development cohort site-c -> site-b (benchmarks/results/dev_sweep.md).
FALLBACK_METHOD = "ttt_joint"


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What to compare, with which budgets (the benchmark passes the demo's small networks).

    Attributes:
        dataroot: the BraTS-layout root (domain1 source, domain2 target, both with T1 for scoring).
        extra_dataroots: more target sites sharing ``dataroot``'s source splits (same subjects): the
            source-side models are trained once and adapted to each target.
        finetune_epochs: source epochs every source-side candidate gets on top of the backbone; the
            control ``source_ft`` gets these plus the source steps the adaptations take beside theirs.
        methods: candidates besides the references (``CANDIDATES``).
        selection_signal: the label-free signal ``uda`` is picked by; ``fallback`` when it is unusable.
        signal_usable: whether that signal reached Spearman >= 0.6 across candidates on the
            development cohort (set from the development run; False uses ``fallback_method``).
    """

    dataroot: str
    workdir: str
    extra_dataroots: tuple[str, ...] = ()
    seeds: int = 3
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    finetune_epochs: int = 20
    finetune_lr_factor: float = 0.5          # fine-tune lr = backbone lr x this
    supervised_epochs: int = 20
    methods: tuple[str, ...] = DEFAULT_METHODS
    vae: VAEConfig = dataclasses.field(default_factory=VAEConfig)
    slice_size: int = 256
    adapt: AdaptConfig = dataclasses.field(default_factory=AdaptConfig)
    ttt: TTTConfig = dataclasses.field(default_factory=TTTConfig)
    self_train: SelfTrainConfig = dataclasses.field(default_factory=SelfTrainConfig)
    guards: GuardConfig = dataclasses.field(default_factory=lambda: GuardConfig(max_source_drop=0.5))
    selection_signal: str = SELECTION_SIGNAL
    signal_usable: bool = True
    fallback_method: str = FALLBACK_METHOD
    selection_copies: int = 2
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=lambda: TrackingConfig(uri=None))
    progress: bool = True
    use_gpu: bool = False  # train and score on CUDA (in this process; the data stays in host memory)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError("--seeds", f"expected a positive integer, got {self.seeds}")
        if self.finetune_epochs < 1 or self.supervised_epochs < 1:
            raise ConfigError("epochs", "fine-tune and supervised epochs must be positive")
        unknown = [m for m in self.methods if m not in CANDIDATES or m in REFERENCE_METHODS]
        if unknown:
            raise ConfigError("--methods", f"unknown method {unknown[0]!r}; expected some of "
                                           f"{[m for m in CANDIDATES if m not in REFERENCE_METHODS]}")
        if self.selection_signal not in {name for name, _, _ in SIGNALS}:
            raise ConfigError("--selection-signal", f"expected one of {[n for n, _, _ in SIGNALS]}, "
                                                    f"got {self.selection_signal!r}")
        if self.signal_usable:  # a signal may not pick among candidates trained on its perturbations
            families = next(f for name, f, _ in SIGNALS if name == self.selection_signal)
            for method in ("no_adaptation", *self.methods):
                check_signal_independent(SignalSpec(self.selection_signal, families), method, CANDIDATES[method])
        if self.fallback_method not in CANDIDATES:
            raise ConfigError("--fallback-method", f"expected one of {sorted(CANDIDATES)}, got "
                                                   f"{self.fallback_method!r}")


@dataclasses.dataclass(frozen=True)
class StageRun:
    """What every stage's run shares: its data, its folder, how it scales and is tracked, and how it reports.

    Composed into each stage's spec (``BackboneSpec``, ``VAESpec``, ``AdaptSpec``, ``TuneSpec``);
    the spec travels whole from the driver to the Ray workers (``train_loop_config``).

    Attributes:
        dataroot: the BraTS-layout root the stage reads ("" for a stage that reads a slice store).
        workdir: where the stage writes (``ray_results/``, ``cache/``, its outputs).
        preprocess: how volumes become network inputs.
        scaling: Ray Train workers and the cluster address.
        tracking: where MLflow runs go (``uri=None``: no tracking).
        run_name: the Ray and MLflow run's name (its folder under ``ray_results/``).
        resume: continue the run of that name from its last checkpoint.
        progress: show progress bars (rank 0).
        verbose: keep Ray's INFO logs.
    """

    dataroot: str
    workdir: str
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig)
    scaling: ScalingOptions = dataclasses.field(default_factory=ScalingOptions)
    tracking: TrackingConfig = dataclasses.field(default_factory=lambda: TrackingConfig(uri=None))
    run_name: str = "run"
    resume: bool = False
    progress: bool = True
    verbose: bool = False

    def __post_init__(self) -> None:
        check_fields(self, option_names=True)
        if not self.workdir:
            raise ConfigError("--workdir", "expected a folder, got an empty path")
        if not self.run_name:
            raise ConfigError("--run-name", "expected a name, got an empty one")

    def resolved(self) -> StageRun:
        """The same run with absolute ``dataroot`` and ``workdir``, as the driver hands it to workers."""
        return dataclasses.replace(self, dataroot=str(Path(self.dataroot).resolve()) if self.dataroot else "",
                                   workdir=str(Path(self.workdir).resolve()))

    @property
    def storage_path(self) -> str:
        """Ray's storage: ``WORKDIR/ray_results`` (absolute)."""
        return str((Path(self.workdir) / "ray_results").resolve())

    @property
    def cache_dir(self) -> str:
        """The preprocessing cache: ``WORKDIR/cache`` (absolute)."""
        return str((Path(self.workdir) / "cache").resolve())
