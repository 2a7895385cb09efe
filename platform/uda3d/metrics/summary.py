"""Summaries of per-subject metrics: mean, std, bootstrap CI, paired tests, rank correlation.

scipy.stats provides the paired Wilcoxon signed-rank test (between two methods on the same subjects,
not the one-sample test against zero the method's code prints, docs/method.md section 7), Spearman's rho
and ``bootstrap`` (BCa intervals of the mean paired difference): a maintained, reviewed implementation
beats a hand-rolled one for the numbers a paper quotes. Every bootstrap resamples subjects with a
seeded generator, so reports repeat exactly.

Subjects are the statistical unit: with several training seeds a subject's metric is first averaged
over seeds (``seed_mean_per_subject``), so n is the number of subjects, never seeds x subjects, whose
pairs are not independent (the same subject scored by models that share data and code).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from uda3d.io.atomic import atomic_file

PerSubject = Mapping[str, Mapping[str, float]]   # subject id -> metric name -> value


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
    """{metric: {mean, std, ci_low, ci_high, n}} over subjects (non-finite values left out: ``finite``)."""
    from uda3d.metrics.image import finite

    metrics = sorted({k for m in per_subject.values() for k in m})
    out = {}
    for key in metrics:
        x = finite(m[key] for m in per_subject.values() if key in m)
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


def seed_mean_per_subject(per_seed: Mapping[int, PerSubject], metric: str,
                          seeds: Sequence[int] | None = None) -> dict[str, float]:
    """{subject: mean over ``seeds`` of ``metric``}, keeping subjects with a finite value on every seed.

    Averaging over seeds first makes the subject the unit of every test; a subject missing on some seed
    is dropped rather than averaged over fewer seeds, so every subject mean stands on the same models.
    """
    seeds = sorted(per_seed) if seeds is None else list(seeds)
    if not seeds:
        return {}
    subjects = set.intersection(*({k for k, m in per_seed[s].items() if _finite(m.get(metric))} for s in seeds))
    return {k: float(np.mean([per_seed[s][k][metric] for s in seeds])) for k in sorted(subjects)}


def seed_std_of_cohort_mean(per_seed: Mapping[int, PerSubject], metric: str,
                            seeds: Sequence[int] | None = None) -> float:
    """Sample std over seeds of the per-seed mean over subjects: the training-noise spread (NaN under 2 seeds)."""
    seeds = sorted(per_seed) if seeds is None else list(seeds)
    means = [np.mean(x) for s in seeds if (x := [m[metric] for m in per_seed[s].values() if _finite(m.get(metric))])]
    return float(np.std(means, ddof=1)) if len(means) > 1 else math.nan


def seed_std_of_paired_difference(a: Mapping[int, PerSubject], b: Mapping[int, PerSubject], metric: str) -> float:
    """Sample std over the shared seeds of the per-seed mean paired difference a - b (NaN under 2 seeds)."""
    diffs = []
    for s in sorted(set(a) & set(b)):
        common = [k for k in a[s] if k in b[s] and _finite(a[s][k].get(metric)) and _finite(b[s][k].get(metric))]
        if common:
            diffs.append(np.mean([a[s][k][metric] - b[s][k][metric] for k in common]))
    return float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan


def paired_bootstrap_ci(a: Mapping[str, float], b: Mapping[str, float], level: float = 0.95,
                        n_resamples: int = 9999, seed: int = 0, method: str = "BCa") -> tuple[float, float]:
    """scipy.stats.bootstrap CI of the mean paired difference a - b over the subjects both scored.

    Resampling the per-subject differences is resampling subjects (pairs stay together). NaN when fewer
    than 3 subjects or the differences have no spread: an interval from nothing is not reported as one.
    """
    from scipy.stats import bootstrap

    common = sorted(set(a) & set(b))
    diffs = np.asarray([a[k] - b[k] for k in common], dtype=np.float64)
    if diffs.size < 3 or np.ptp(diffs) == 0:
        return math.nan, math.nan
    result = bootstrap((diffs,), np.mean, n_resamples=n_resamples, confidence_level=level, method=method,
                       **_rng_kwarg(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def paired_subject_comparison(a: Mapping[str, float], b: Mapping[str, float], level: float = 0.95,
                              seed: int = 0) -> dict[str, float]:
    """Mean paired difference a - b over shared subjects, its Wilcoxon p and its bootstrap CI in one dict."""
    test = paired_wilcoxon(a, b)
    low, high = paired_bootstrap_ci(a, b, level=level, seed=seed)
    return {"n": test["n"], "mean_difference": test["mean_difference"], "p_value": test["p_value"],
            "statistic": test["statistic"], "ci_low": low, "ci_high": high}


def _rng_kwarg(seed: int) -> dict[str, np.random.Generator]:
    """scipy >= 1.15 takes ``rng``; older versions the same generator as ``random_state``."""
    import inspect

    from scipy.stats import bootstrap

    name = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


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
