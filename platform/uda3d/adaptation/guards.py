"""Label-free guards: which adaptation checkpoint a user may safely keep.

During adaptation nothing tells us the target quality (there is no target T1). What we can watch
without labels is (a) the source-validation metric, which must not fall more than ``max_source_drop``
below the starting model's, and (b) the generated target outputs' intensity statistics, which must
not drift more than ``max_intensity_drift`` from the starting model's (a collapse that fills in the
background or flattens contrast shows here first, METHOD.md section 8). Adaptation stops at the
first epoch that breaks a bound and rolls back to the last epoch before it (the starting model if
the first adapted epoch already broke one). The decision and its reason are returned for the
report. The guard never claims an adapted model is *better* on the target: it only keeps users
from a model that is measurably worse on the source or visibly off in its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uda3d.config import check_fields
from uda3d.errors import ConfigError


@dataclass(frozen=True)
class GuardConfig:
    """Bounds of the guards.

    Attributes:
        max_source_drop: largest allowed fall of source-val PSNR below the starting model (dB).
        max_intensity_drift: largest allowed relative change of the target outputs' mean and std
            inside the brain, relative to the starting model's.
    """

    max_source_drop: float = 0.2
    max_intensity_drift: float = 0.1

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("max_source_drop", "max_intensity_drift"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"expected a non-negative bound, got {getattr(self, name)}")


@dataclass(frozen=True)
class EpochRecord:
    """What the guard sees of one checkpoint: source-val PSNR and target output mean/std (brain)."""

    epoch: int
    source_psnr: float
    target_mean: float
    target_std: float


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
