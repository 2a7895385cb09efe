"""A trained model as users run it: the generator *with* the preprocessing it was trained with.

A checkpoint carries its network config, its preprocessing config, the crop it was trained on and
the source's intensity reference (``training.checkpoint.inference_meta``); ``load_model`` restores
all of them, and a flag that contradicts one is refused with the stored value named (a wrong crop
silently zeroed a quarter of the brain before). ``synthesize`` turns one subject's FLAIR and T2
into a T1 on the subject's own voxel grid, with a test-time-augmentation uncertainty map and the
label-free quality estimates of ``uda3d.quality``. Where the brain is larger than the trained crop,
MONAI's ``sliding_window_inference`` (Gaussian-weighted overlapping windows of the trained size)
covers it instead of cropping it off; MONAI is the reference implementation of that blending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uda3d.config import PreprocessConfig, from_dict
from uda3d.data.layout import Subject
from uda3d.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class InferenceModel:
    """A generator in eval mode and what it needs to see its inputs as it saw them in training."""

    generator: torch.nn.Module
    preprocess: PreprocessConfig
    window: tuple[int, int, int] | None  # the crop it was trained on (None: an old checkpoint)
    source_reference: dict[str, Any] | None
    device: torch.device
    checkpoint: str


@dataclass(frozen=True)
class Synthesis:
    """One subject's synthesized T1 and uncertainty (native grid, the output's scale) and quality estimates."""

    subject: str
    t1: np.ndarray
    uncertainty: np.ndarray | None
    quality: dict[str, Any]


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    """``auto`` is CUDA when there is one, else CPU; asking for CUDA without one is an error naming ``flag``."""
    if name not in DEVICES:
        raise ConfigError(flag, f"expected one of {list(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(flag, "asks for CUDA but torch sees no CUDA device (a CPU-only torch build, or no GPU here)")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def stored_preprocess(state: dict[str, Any], crop_shape: tuple[int, int, int] | None = None,
                      normalisation: str | None = None, crop: str | None = None,
                      spacing: tuple[float, float, float] | None = None,
                      ) -> tuple[PreprocessConfig, tuple[int, int, int] | None]:
    """The checkpoint's preprocessing and trained crop, with the caller's flags checked against them.

    A checkpoint without them (written before they were stored) takes the flags, else the defaults.
    """
    window = tuple(int(v) for v in state["input_shape"]) if "input_shape" in state else None
    if "preprocess" not in state:
        return PreprocessConfig(shape=crop_shape, normalisation=normalisation or "minmax", crop=crop or "brain",
                                spacing=spacing), window
    stored = from_dict(PreprocessConfig, dict(state["preprocess"]))
    trained_crop = stored.shape or window
    if crop_shape is not None and trained_crop is not None and tuple(crop_shape) != tuple(trained_crop):
        raise ConfigError("--crop-shape", f"the checkpoint was trained with crop {list(trained_crop)}, not "
                                          f"{list(crop_shape)}; leave --crop-shape out (the stored one is used)")
    if normalisation is not None and normalisation != stored.normalisation:
        raise ConfigError("--normalisation", f"the checkpoint was trained with {stored.normalisation!r} "
                                             f"normalisation, not {normalisation!r}; leave --normalisation out")
    if crop is not None and crop != stored.crop:
        raise ConfigError("--crop", f"the checkpoint was trained with the {stored.crop!r} crop, not {crop!r}; "
                                    "leave --crop out")
    if spacing is not None and tuple(float(v) for v in spacing) != tuple(stored.spacing or ()):
        trained = "no resampling" if stored.spacing is None else f"spacing {list(stored.spacing)} mm"
        raise ConfigError("--spacing", f"the checkpoint was trained with {trained}, not {list(spacing)} mm; "
                                       "leave --spacing out")
    return stored, window


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu",
               crop_shape: tuple[int, int, int] | None = None, normalisation: str | None = None,
               crop: str | None = None, spacing: tuple[float, float, float] | None = None) -> InferenceModel:
    """The generator of ``checkpoint`` (with its harmoniser, if any) and its stored preprocessing."""
    from uda3d.training.checkpoint import load_generator, load_state

    device = torch.device(device)
    state = load_state(checkpoint)
    preprocess, window = stored_preprocess(state, crop_shape, normalisation, crop, spacing)
    reference = state.get("source_reference")
    return InferenceModel(generator=load_generator(checkpoint, device), preprocess=preprocess, window=window,
                          source_reference=dict(reference) if reference else None, device=device,
                          checkpoint=str(checkpoint))


def load_members(checkpoints: list[str | Path], model: InferenceModel, flag: str = "--ensemble"
                 ) -> tuple[InferenceModel, ...]:
    """Ensemble members for ``model``: each must see its inputs as the model does (same preprocessing)."""
    members = []
    for checkpoint in checkpoints:
        member = load_model(checkpoint, model.device)
        if member.preprocess != model.preprocess:
            raise ConfigError(flag, f"{checkpoint} was trained with other preprocessing ({member.preprocess}) than "
                                    f"the model ({model.preprocess})")
        members.append(member)
    return tuple(members)


@torch.no_grad()
def predict(model: InferenceModel, inputs: np.ndarray, window: tuple[int, int, int] | None) -> np.ndarray:
    """The generator's (N, D, H, W) output for (N, 2, D, H, W) inputs; window by window if ``window`` is set."""
    x = torch.from_numpy(np.ascontiguousarray(inputs)).to(model.device)
    if window is None:
        return model.generator(x)[:, 0].float().cpu().numpy()
    from monai.inferers import sliding_window_inference

    out = sliding_window_inference(x, roi_size=window, sw_batch_size=1, predictor=model.generator,
                                   overlap=WINDOW_OVERLAP, mode="gaussian")
    return out[:, 0].float().cpu().numpy()


def predict_with_views(model: InferenceModel, inputs: np.ndarray, window: tuple[int, int, int] | None,
                       uncertainty: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Output of a batch, and the voxelwise spread over flipped views (``uda3d.quality``) when asked."""
    from uda3d.quality import FLIP_AXES, prediction_spread

    output = predict(model, inputs, window)
    if not uncertainty:
        return output, None
    views = [output]
    for axes in FLIP_AXES[1:]:
        views.append(np.flip(predict(model, np.flip(inputs, axis=axes).copy(), window), axis=axes))
    return output, prediction_spread(views)[1]


def synthesize(model: InferenceModel, subjects: list[Subject], scale: float = 1000.0, uncertainty: bool = True,
               batch_size: int = 1, members: tuple[InferenceModel, ...] = ()) -> list[Synthesis]:
    """T1 for each subject from its FLAIR and T2 only (T1 files, where present, are never opened).

    Subjects whose crops have one shape run ``batch_size`` at a time; one whose brain outgrows the
    trained crop runs alone, window by window. ``members`` (other models trained with the same
    preprocessing, e.g. the pipeline's other candidates) add ``ensemble_spread``: the voxelwise
    standard deviation of the model's and the members' outputs, averaged over the brain.
    """
    from uda3d.data.preprocess import preprocess_subject
    from uda3d.quality import prediction_spread

    trained = model.preprocess.shape or model.window
    results = []
    for start in range(0, len(subjects), batch_size):
        items = [preprocess_subject(s.inputs_only(), model.preprocess, cover_brain=True)
                 for s in subjects[start:start + batch_size]]
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            crop = tuple(item.inputs.shape[1:])
            # the crop as training made it; a wider one means the brain did not fit: window by window
            fits = trained is None or all(c <= t for c, t in zip(crop, trained))
            groups.setdefault((crop, None) if fits else (crop, tuple(trained), i), []).append(i)
        outputs: dict[int, tuple[np.ndarray, np.ndarray | None, bool, np.ndarray | None]] = {}
        for key, indices in groups.items():
            window = key[1]
            batch = np.stack([items[i].inputs for i in indices])
            out, spread = predict_with_views(model, batch, window, uncertainty)
            others = [predict(member, batch, window) for member in members]
            for j, i in enumerate(indices):
                ensemble = prediction_spread([out[j]] + [o[j] for o in others])[1] if others else None
                outputs[i] = (out[j], None if spread is None else spread[j], window is not None, ensemble)
        for i, item in enumerate(items):
            results.append(_synthesis(model, item, *outputs[i], scale=scale, show_map=uncertainty,
                                      ensemble_size=len(members) + 1))
    return results


def _synthesis(model: InferenceModel, item, output: np.ndarray, spread: np.ndarray | None, windowed: bool,
               ensemble: np.ndarray | None, scale: float, show_map: bool, ensemble_size: int) -> Synthesis:
    """One subject's outputs on its native grid and its quality estimates."""
    from uda3d.quality import brain_mean, input_shift, intensity_quantiles, outside_source_range

    def native(volume: np.ndarray) -> np.ndarray:
        return (item.to_native(volume, model.preprocess.orientation) * scale).astype(np.float32)

    # the map users see: the ensemble's disagreement where members are given (it tracked the true
    # error better, benchmarks/results/quality_signals.md), else the flip spread
    shown = (ensemble if ensemble is not None else spread) if show_map else None
    quality: dict[str, Any] = {"subject": item.id, "sliding_window": windowed,
                               "uncertainty_map": "" if shown is None else
                               f"ensemble of {ensemble_size}" if ensemble is not None else "flips"}
    if spread is not None:
        quality["tta_uncertainty"] = brain_mean(spread, item.mask)
    if ensemble is not None:
        quality["ensemble_spread"] = brain_mean(ensemble, item.mask)
    if model.source_reference is not None:
        shift = input_shift(intensity_quantiles(item.inputs, item.mask), model.source_reference)
        quality["input_shift"] = shift
        quality["outside_source_range"] = outside_source_range(shift, model.source_reference)
    return Synthesis(subject=item.id, t1=native(output), uncertainty=None if shown is None else native(shown),
                     quality=quality)
