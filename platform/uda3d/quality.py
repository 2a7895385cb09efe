"""Label-free quality of a synthesized T1, per subject: how far its inputs are from the source, how unsure the model is.

Where there is no T1 a user still needs to know which synthesized volumes to trust. Two estimates,
both pure functions here:

* ``input_shift``: the 1-Wasserstein distance between the subject's brain intensities and the
  source site's, per input channel, averaged. In one dimension W1 is the mean absolute gap between
  the two quantile functions, so a subject is summarised by its quantiles and the source by the
  average of its training subjects' quantile functions (the 1-D Wasserstein barycentre). A subject
  farther from that than every source training subject is flagged as outside the trained range.
* ``tta_uncertainty``: the voxelwise standard deviation of the model's output over flipped copies
  of the input (test-time augmentation; the backbone is trained with flips, so a confident model is
  flip-equivariant), averaged over the brain. The map itself is written next to the synthesized T1.
* ``ensemble_spread``: the same over the outputs of several models (the pipeline's candidates:
  fine-tunes of one backbone that differ in their ingredient), where such members are given.

``scipy.stats.wasserstein_distance`` is the reference the tests compare the quantile form against;
the quantile form is used because a checkpoint can carry 101 numbers per channel, not the voxels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
FLIP_AXES = ((), (-3,), (-2,), (-1,))  # identity and one flip per spatial axis


def intensity_quantiles(inputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(channels, 101) quantiles of each input channel's brain voxels."""
    brain = mask.astype(bool)
    if not brain.any():
        return np.zeros((inputs.shape[0], QUANTILE_LEVELS.size))
    return np.stack([np.quantile(channel[brain], QUANTILE_LEVELS) for channel in inputs])


def quantile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between distributions given as quantile functions, averaged over channels."""
    gaps = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    # the trapezoid rule over the quantile levels approximates the integral of |F^-1 - G^-1|
    return float(np.mean(np.trapezoid(gaps, QUANTILE_LEVELS, axis=-1)))


def source_reference(quantiles: list[np.ndarray]) -> dict[str, Any]:
    """The source's barycentre quantiles and the largest shift of any source subject from them."""
    if not quantiles:
        raise ValueError("source_reference needs at least one source subject")
    centre = np.mean(np.stack(quantiles), axis=0)
    shifts = [quantile_distance(q, centre) for q in quantiles]
    return {"quantiles": centre.tolist(), "shift_max": float(max(shifts)), "subjects": len(quantiles)}


def input_shift(quantiles: np.ndarray, reference: dict[str, Any]) -> float:
    """Distance of a subject's input intensities from the source's (see the module docstring)."""
    return quantile_distance(quantiles, np.asarray(reference["quantiles"]))


def outside_source_range(shift: float, reference: dict[str, Any]) -> bool:
    """Whether a subject's inputs are farther from the source than any source training subject's."""
    return bool(shift > reference["shift_max"])


def prediction_spread(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over predictions of one volume: flipped views mapped back, or ensemble members."""
    stack = np.stack(outputs)
    return stack.mean(axis=0), stack.std(axis=0)


def brain_mean(volume: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``volume`` over the mask (NaN for an empty mask)."""
    brain = mask.astype(bool)
    return float(volume[brain].mean()) if brain.any() else float("nan")
