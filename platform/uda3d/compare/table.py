"""The comparison table's maths, as pure functions over per-(method, seed) per-subject results.

One ``MethodResult`` per (method, seed) holds per-subject metrics on the target and source test splits.
``summarise_methods`` turns them into one row per method under the fair protocol:

- the subject is the statistical unit: each subject's metric is averaged over the shared seeds first,
  then a paired two-sided Wilcoxon signed-rank test and a BCa bootstrap CI of the mean paired
  difference run over subjects (scipy.stats, via ``uda3d.metrics.summary``); (seed, subject) pairs are
  never treated as independent;
- seed spread is reported on its own: the std over seeds of the per-seed cohort mean, and of the
  per-seed mean paired difference against the control;
- two references: ``no_adaptation`` (BASELINE) and ``source_ft`` (CONTROL, the same backbone trained
  for the same extra budget without the method's ingredient). The headline is the gain over CONTROL,
  because a gain over BASELINE alone may only be the extra training; ``supervised`` (UPPER) bounds it;
- brain and whole-volume PSNR and SSIM are all reported, and a row whose gains over the control
  disagree in sign across them says so in its verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uda3d.metrics.summary import (
    paired_subject_comparison,
    seed_mean_per_subject,
    seed_std_of_cohort_mean,
    seed_std_of_paired_difference,
)

BASELINE = "no_adaptation"
CONTROL = "source_ft"
UPPER = "supervised"
REFERENCES = (BASELINE, CONTROL, UPPER)
METRICS = ("psnr", "ssim", "psnr_method", "ssim_method")   # brain PSNR/SSIM, whole-volume PSNR/SSIM
ALPHA = 0.05
ROW_KEYS = ("method", "seeds", "subjects",
            *(k for m in METRICS for k in (f"target_{m}", f"target_{m}_seed_std")),
            *(f"{stat}_{m}_vs_{ref}" for ref in ("control", "none") for m in METRICS
              for stat in ("gain", "ci_low", "ci_high", "p")),
            "subjects_vs_control", "seeds_vs_control", "subjects_vs_none", "seeds_vs_none",
            "gain_seed_std_vs_control", "beats_control_spread", "source_psnr", "source_kept_db", "source_val_psnr",
            "verdict", "note")   # every row has these; plus ``signal_<name>`` per label-free selection signal


@dataclass(frozen=True)
class MethodResult:
    """One method trained on one seed, scored per subject."""

    method: str
    seed: int
    target: Mapping[str, Mapping[str, float]]   # target-test subject id -> metrics dict
    source: Mapping[str, Mapping[str, float]]   # source-test subject id -> metrics dict
    source_val_psnr: float = math.nan           # source-validation PSNR (brain) of this model
    label_free: Mapping[str, float] = field(default_factory=dict)   # selection-signal name -> value
    note: str = ""


def summarise_methods(results: Sequence[MethodResult], seed: int = 0) -> list[dict[str, Any]]:
    """One row per method in first-seen order (keys: ``ROW_KEYS`` plus ``signal_<name>``).

    ``seed`` seeds the bootstrap so a report repeats exactly. Raises ValueError without a BASELINE
    result; without a CONTROL the vs-control columns are NaN and the verdict is against BASELINE.
    """
    by_method: dict[str, dict[int, MethodResult]] = {}
    for r in results:
        by_method.setdefault(r.method, {})[r.seed] = r
    if BASELINE not in by_method:
        raise ValueError(f"the comparison needs a {BASELINE!r} result per seed")
    refs = {"none": by_method[BASELINE], "control": by_method.get(CONTROL, {})}
    return [_row(method, seeds, refs, seed) for method, seeds in by_method.items()]


def _row(method: str, seeds: Mapping[int, MethodResult], refs: Mapping[str, Mapping[int, MethodResult]],
         boot_seed: int) -> dict[str, Any]:
    target = {s: r.target for s, r in seeds.items()}
    source = {s: r.source for s, r in seeds.items()}
    row: dict[str, Any] = {"method": method, "seeds": len(seeds),
                           "subjects": len(seed_mean_per_subject(target, "psnr"))}
    for m in METRICS:
        row[f"target_{m}"] = _mean(seed_mean_per_subject(target, m).values())
        row[f"target_{m}_seed_std"] = seed_std_of_cohort_mean(target, m)
        for ref_name, ref in refs.items():
            ref_target = {s: r.target for s, r in ref.items()}
            cmp = _compare(target, ref_target, m, boot_seed)
            row[f"gain_{m}_vs_{ref_name}"] = cmp["mean_difference"]
            row[f"p_{m}_vs_{ref_name}"] = cmp["p_value"]
            row[f"ci_low_{m}_vs_{ref_name}"] = cmp["ci_low"]
            row[f"ci_high_{m}_vs_{ref_name}"] = cmp["ci_high"]
            if m == "psnr":
                row[f"subjects_vs_{ref_name}"] = cmp["n"]
                row[f"seeds_vs_{ref_name}"] = len(set(seeds) & set(ref))
    control_target = {s: r.target for s, r in refs["control"].items()}
    row["gain_seed_std_vs_control"] = seed_std_of_paired_difference(target, control_target, "psnr")
    row["beats_control_spread"] = beats_spread(row["gain_psnr_vs_control"], row["target_psnr_seed_std"],
                                               seed_std_of_cohort_mean(control_target, "psnr")
                                               if control_target else math.nan)
    base_source = {s: r.source for s, r in refs["none"].items()}
    row["source_psnr"] = _mean(seed_mean_per_subject(source, "psnr").values())
    row["source_kept_db"] = _compare(source, base_source, "psnr", boot_seed, with_tests=False)["mean_difference"]
    row["source_val_psnr"] = _mean(r.source_val_psnr for r in seeds.values())
    for name in dict.fromkeys(k for r in seeds.values() for k in r.label_free):
        row[f"signal_{name}"] = _mean(r.label_free.get(name, math.nan) for r in seeds.values())
    row["verdict"] = verdict(method, row, has_control=bool(refs["control"]))
    row["note"] = next((r.note for _, r in sorted(seeds.items()) if r.note), "")
    return row


def _compare(a: Mapping[int, Mapping[str, Mapping[str, float]]], b: Mapping[int, Mapping[str, Mapping[str, float]]],
             metric: str, boot_seed: int, with_tests: bool = True) -> dict[str, float]:
    """Seed-average both over their shared seeds, then compare over shared subjects (NaN when none)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return {"n": 0, "mean_difference": math.nan, "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean_a, mean_b = seed_mean_per_subject(a, metric, shared), seed_mean_per_subject(b, metric, shared)
    if not with_tests:
        common = set(mean_a) & set(mean_b)
        return {"n": len(common), "mean_difference": _mean(mean_a[k] - mean_b[k] for k in common)}
    return paired_subject_comparison(mean_a, mean_b, seed=boot_seed)


def beats_spread(gain: float, method_seed_std: float, control_seed_std: float) -> bool:
    """A gain counts only if positive and larger than both seed spreads (False when a spread is unknown)."""
    spread = max(method_seed_std, control_seed_std)
    return bool(gain > 0 and gain > spread) if math.isfinite(gain) and math.isfinite(spread) else False


def verdict(method: str, row: Mapping[str, Any], has_control: bool = True) -> str:
    """One phrase a reader can trust: significance against the control, and mixed metrics named."""
    if method == BASELINE:
        return "reference (no adaptation)"
    if method == CONTROL:
        return "reference (budget-matched control)"
    ref, suffix = (CONTROL, "control") if has_control else (BASELINE, "none")
    gains = {m: row[f"gain_{m}_vs_{suffix}"] for m in METRICS}
    wins = [m for m, g in gains.items() if math.isfinite(g) and g > 0]
    loses = [m for m, g in gains.items() if math.isfinite(g) and g < 0]
    p, gain = row[f"p_psnr_vs_{suffix}"], gains["psnr"]
    p_text = f"p={p:.3g}" if math.isfinite(p) else "p=n/a"
    if method == UPPER:
        head = f"upper bound ({gain:+.2f} dB vs {ref})" if math.isfinite(gain) else "upper bound"
    elif not math.isfinite(gain):
        return f"not comparable with {ref} (no shared seeds/subjects)"
    elif math.isfinite(p) and p < ALPHA:
        head = f"{'beats' if gain > 0 else 'worse than'} {ref} ({p_text})"
    else:
        head = f"no better than {ref} ({p_text})"
    if wins and loses:
        return f"{head}; mixed: wins {' and '.join(wins)}, loses {' and '.join(loses)}"
    return head


def _mean(values: Any) -> float:
    x = [float(v) for v in values if math.isfinite(v)]
    return float(np.mean(x)) if x else math.nan
