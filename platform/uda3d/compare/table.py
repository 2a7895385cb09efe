"""The comparison table's maths, as pure functions over per-seed results.

One ``MethodResult`` per (method, seed): target-test and source-test means plus the target per-subject
PSNRs. ``summarise_methods`` turns them into one row per method: mean and spread (sample std across
seeds), the share of the no-adaptation -> supervised gap recovered (per seed, then averaged), the
source-test PSNR kept relative to the plain backbone, a paired Wilcoxon test against no adaptation
over every (seed, subject) pair, and whether the gain exceeds the seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from uda3d.metrics.summary import paired_wilcoxon

BASELINE = "no_adaptation"
UPPER = "supervised"


@dataclass(frozen=True)
class MethodResult:
    """One method on one seed."""

    method: str
    seed: int
    target: Mapping[str, float]                  # psnr / ssim / mae means on the target test split
    source: Mapping[str, float]                  # the same on the source test split
    target_psnr_per_subject: Mapping[str, float] = field(default_factory=dict)
    label_free: float = math.nan                 # the selection signal (augmented source-val MAE)
    source_val_psnr: float = math.nan            # what the source guard looks at
    note: str = ""


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise_methods(results: Sequence[MethodResult]) -> list[dict[str, float | str]]:
    """One summary row per method, in first-seen order (see the module docstring for the columns)."""
    by_method: dict[str, dict[int, MethodResult]] = {}
    for r in results:
        by_method.setdefault(r.method, {})[r.seed] = r
    if BASELINE not in by_method:
        raise ValueError(f"the comparison needs a {BASELINE!r} result per seed")
    base = by_method[BASELINE]
    upper = by_method.get(UPPER, {})
    rows = []
    for method, seeds in by_method.items():
        common = sorted(set(seeds) & set(base))
        psnr = [seeds[s].target["psnr"] for s in common]
        base_psnr = [base[s].target["psnr"] for s in common]
        gaps = [(seeds[s].target["psnr"] - base[s].target["psnr"]) / (upper[s].target["psnr"] - base[s].target["psnr"])
                for s in common if s in upper and upper[s].target["psnr"] != base[s].target["psnr"]]
        kept = [seeds[s].source["psnr"] - base[s].source["psnr"] for s in common]
        pairs_m = {f"{s}/{k}": v for s in common for k, v in seeds[s].target_psnr_per_subject.items()}
        pairs_b = {f"{s}/{k}": v for s in common for k, v in base[s].target_psnr_per_subject.items()}
        test = paired_wilcoxon(pairs_m, pairs_b) if method != BASELINE else {"p_value": math.nan, "n": len(pairs_b)}
        gain = float(np.mean(psnr) - np.mean(base_psnr)) if common else math.nan
        spread = max(_std(psnr), _std(base_psnr))
        rows.append({
            "method": method, "seeds": len(common),
            "target_psnr": float(np.mean(psnr)), "target_psnr_std": _std(psnr),
            "target_ssim": float(np.mean([seeds[s].target["ssim"] for s in common])),
            "target_mae": float(np.mean([seeds[s].target["mae"] for s in common])),
            "gain_db": gain, "gap_share": float(np.mean(gaps)) if gaps else math.nan,
            "gap_share_std": _std(gaps), "source_psnr": float(np.mean([seeds[s].source["psnr"] for s in common])),
            "source_kept_db": float(np.mean(kept)), "wilcoxon_p": test["p_value"], "pairs": test["n"],
            "beats_spread": bool(method != BASELINE and gain > spread),
            "label_free": float(np.mean([seeds[s].label_free for s in common])),
            "note": next((seeds[s].note for s in common if seeds[s].note), ""),
        })
    return rows
