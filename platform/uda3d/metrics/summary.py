"""Summaries of per-subject metrics: mean, std, bootstrap CI, paired tests, rank correlation.

scipy provides the paired Wilcoxon signed-rank test (between two methods on the same subjects, not
the one-sample test against zero the method's code prints, METHOD.md section 7) and Spearman's rho.
The bootstrap CI resamples subjects with a seeded generator, so reports repeat exactly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from uda3d.io.atomic import atomic_file


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over subjects."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def summarise(per_subject: Mapping[str, Mapping[str, float]], seed: int = 0) -> dict[str, dict[str, float]]:
    """{metric: {mean, std, ci_low, ci_high, n}} over subjects (non-finite values are left out)."""
    metrics = sorted({k for m in per_subject.values() for k in m})
    out = {}
    for key in metrics:
        x = [float(m[key]) for m in per_subject.values() if key in m and math.isfinite(m[key])]
        lo, hi = bootstrap_ci(x, seed=seed)
        out[key] = {"mean": float(np.mean(x)) if x else math.nan, "std": float(np.std(x, ddof=1)) if len(x) > 1
                    else 0.0, "ci_low": lo, "ci_high": hi, "n": len(x)}
    return out


def paired_wilcoxon(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Two-sided paired Wilcoxon signed-rank test on the subjects both methods scored."""
    from scipy.stats import wilcoxon

    common = sorted(set(a) & set(b))
    diffs = np.asarray([a[s] - b[s] for s in common], dtype=np.float64)
    if len(common) < 2 or np.all(diffs == 0):
        return {"n": len(common), "statistic": math.nan, "p_value": math.nan, "mean_difference": float(diffs.mean())
                if len(common) else math.nan}
    result = wilcoxon(diffs)
    return {"n": len(common), "statistic": float(result.statistic), "p_value": float(result.pvalue),
            "mean_difference": float(diffs.mean())}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when fewer than 3 points or a constant series)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def write_per_subject_csv(path: str | Path, rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Path:
    """CSV with one row per (method, subject): ``method, subject, <metric>...``, written atomically."""
    metrics = sorted({k for per in rows.values() for m in per.values() for k in m})
    path = Path(path)
    with atomic_file(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["method", "subject", *metrics])
            for method, per in rows.items():
                for subject, m in sorted(per.items()):
                    writer.writerow([method, subject, *(f"{m[k]:.6g}" if k in m else "" for k in metrics)])
    return path
