"""Validating label-free selection signals across candidates, and checking where they come from.

A label-free signal (augmented source-val MAE, a target self-supervised loss, ...) is only worth using
to pick among candidates if it ranks them the way the oracle target PSNR would. The check runs over
every candidate model (methods x seeds x configs), not along one run's checkpoints, because choosing
between methods is what the signal is used for. Spearman's rho comes from scipy.stats (the reference
implementation, with its p-value), so the numbers match what a reviewer would compute.

Provenance: a signal built from a perturbation family (say intensity augmentation) rewards candidates
trained on that same family for robustness to it, not for target quality. A signal may judge a set of
candidates only if none of them trained on its family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uda3d.config import SignalSpec

USEFUL_RHO = 0.6


@dataclass(frozen=True)
class SignalRecord:
    """One candidate model's signal value next to its oracle target-test PSNR (brain)."""

    candidate: str
    seed: int
    config: str
    value: float
    oracle_psnr: float


def across_candidate_spearman(records: Sequence[SignalRecord], lower_is_better: bool = True) -> dict[str, Any]:
    """Spearman rho of signal vs oracle PSNR over all finite records, oriented so that higher is better.

    ``rho_oriented`` is -rho for a lower-is-better signal (an error) and rho otherwise; NaN (and
    ``agrees`` False) under 3 records or when either series is constant.
    """
    from scipy.stats import spearmanr

    kept = [r for r in records if math.isfinite(r.value) and math.isfinite(r.oracle_psnr)]
    x, y = [r.value for r in kept], [r.oracle_psnr for r in kept]
    rho = p = math.nan
    if len(kept) >= 3 and len(set(x)) > 1 and len(set(y)) > 1:
        result = spearmanr(x, y)
        rho, p = float(result.statistic), float(result.pvalue)
    oriented = -rho if lower_is_better else rho
    return {"rho": rho, "rho_oriented": oriented, "p_value": p, "n": len(kept),
            "agrees": bool(math.isfinite(oriented) and oriented > 0), "lower_is_better": lower_is_better,
            "candidates": len({r.candidate for r in kept}), "seeds": len({r.seed for r in kept}),
            "configs": len({r.config for r in kept})}


def usable(result: Mapping[str, Any], threshold: float = USEFUL_RHO) -> bool:
    """Whether the oriented rank correlation is strong enough to trust the signal for selection."""
    rho = result["rho_oriented"]
    return bool(math.isfinite(rho) and rho >= threshold)


def excluded_candidates(signal: SignalSpec, candidates: Mapping[str, frozenset[str]]) -> list[str]:
    """The candidates (sorted) that trained on a perturbation family ``signal`` is built from."""
    return sorted(name for name, transforms in candidates.items() if signal.transforms & transforms)


def eligible_signals(signals: Iterable[SignalSpec], candidates: Mapping[str, frozenset[str]]) -> list[SignalSpec]:
    """The signals whose perturbation families no candidate trained on, in the given order."""
    return [s for s in signals if not excluded_candidates(s, candidates)]
