"""Label-free guards: which adaptation checkpoint a user may safely keep.

During adaptation nothing tells us the target quality (there is no target T1). What we can watch
without labels is (a) the source-validation metric, which must not fall more than ``max_source_drop``
below the starting model's, and (b) the generated target outputs' intensity statistics, which must
not drift more than ``max_intensity_drift`` from the starting model's (a collapse that flattens
contrast shows here first, docs/method.md section 8), (c) their high-frequency energy (the Laplacian's
energy relative to the variance, inside the brain), which noise raises while mean and std barely
move (sigma 0.09 noise on outputs of std 0.2 passed (b) and cost 2 dB), and (d) the output outside
the brain, where a skull-stripped T1 is 0 and (b), which looks inside only, cannot see a filled-in
background. Adaptation stops at the
first epoch that breaks a bound and rolls back to the last epoch before it (the starting model if
the first adapted epoch already broke one). The decision and its reason are returned for the
report. The guard never claims an adapted model is *better* on the target: it only keeps users
from a model that is measurably worse on the source or visibly off in its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from uda3d.config import GuardConfig


@dataclass(frozen=True)
class EpochRecord:
    """What the guard sees of one checkpoint: source-val PSNR, target output mean/std (brain), the
    outputs' high-frequency energy (brain) and their level outside the brain (0 in older records)."""

    epoch: int
    source_psnr: float
    target_mean: float
    target_std: float
    target_hf: float = 0.0
    target_background: float = 0.0


def high_frequency_energy(volume: torch.Tensor, brain: torch.Tensor) -> float:
    """Mean squared 7-point Laplacian over the brain divided by the brain's variance (scale-free).

    A smooth image has little Laplacian energy; white noise of std s adds 42 s^2 of it.
    """
    kernel = torch.zeros(1, 1, 3, 3, 3, dtype=volume.dtype, device=volume.device)
    kernel[0, 0, 1, 1, 1] = -6.0
    for index in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[(0, 0, *index)] = 1.0
    lap = torch.nn.functional.conv3d(volume.reshape(1, 1, *volume.shape[-3:]), kernel, padding=1)[0, 0]
    inside = brain.reshape(volume.shape[-3:]).bool()
    if not inside.any():
        return 0.0
    return float((lap[inside] ** 2).mean() / volume.reshape(volume.shape[-3:])[inside].var().clamp_min(1e-8))


def background_level(volume: torch.Tensor, brain: torch.Tensor) -> float:
    """Mean |output| outside the brain (a skull-stripped T1 is 0 there)."""
    outside = ~brain.reshape(volume.shape[-3:]).bool()
    return float(volume.reshape(volume.shape[-3:])[outside].abs().mean()) if outside.any() else 0.0


@dataclass(frozen=True)
class GuardDecision:
    """Which epoch to keep (0 = the starting model), why, and where adaptation stopped (None = it did not)."""

    kept_epoch: int
    reason: str
    stopped_at: int | None


def violation(record: EpochRecord, start: EpochRecord, bounds: GuardConfig) -> str | None:
    """Why ``record`` breaks a bound relative to the starting model, or None if it is within all of them."""
    drop = start.source_psnr - record.source_psnr
    if drop > bounds.max_source_drop:
        return f"source-val PSNR fell {drop:.2f} dB (> {bounds.max_source_drop} dB)"
    for name, now, then in (("mean", record.target_mean, start.target_mean),
                            ("std", record.target_std, start.target_std)):
        drift = abs(now - then) / max(abs(then), 1e-8)
        if drift > bounds.max_intensity_drift:
            return f"target output {name} drifted {100 * drift:.0f}% (> {100 * bounds.max_intensity_drift:.0f}%)"
    if start.target_hf > 0:
        rise = (record.target_hf - start.target_hf) / start.target_hf
        if rise > bounds.max_hf_rise:
            return (f"target outputs' high-frequency energy rose {100 * rise:.0f}% "
                    f"(> {100 * bounds.max_hf_rise:.0f}%): noise")
    fill = record.target_background - start.target_background
    if fill > bounds.max_background_rise:
        return (f"target output outside the brain rose by {fill:.3f} (> {bounds.max_background_rise}): "
                "background fill-in")
    return None


def choose_checkpoint(start: EpochRecord, epochs: Sequence[EpochRecord], bounds: GuardConfig) -> GuardDecision:
    """Walk the epochs in order; at the first violation stop and keep the epoch before it."""
    kept = 0
    for record in sorted(epochs, key=lambda r: r.epoch):
        problem = violation(record, start, bounds)
        if problem:
            where = f"epoch {kept}" if kept else "the starting model"
            return GuardDecision(kept, f"stopped at epoch {record.epoch}: {problem}; rolled back to {where}",
                                 record.epoch)
        kept = record.epoch
    if kept == 0:
        return GuardDecision(0, "no adapted epoch to keep; kept the starting model", None)
    return GuardDecision(kept, f"all {kept} epoch(s) within the guards; kept the last", None)
