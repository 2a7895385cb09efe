"""Summary statistics against numpy/scipy and hand-made data."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy.stats import bootstrap, spearmanr, wilcoxon

from uda3d.metrics.summary import (
    bootstrap_ci,
    paired_bootstrap_ci,
    paired_subject_comparison,
    paired_wilcoxon,
    seed_mean_per_subject,
    seed_std_of_cohort_mean,
    seed_std_of_paired_difference,
    spearman,
    summarise,
    write_per_subject_csv,
)


def test_summary_mean_std_and_ci_contain_the_mean():
    per = {f"s{i}": {"psnr": float(v)} for i, v in enumerate([20.0, 22.0, 21.0, 25.0, 19.0])}
    s = summarise(per)["psnr"]
    assert s["mean"] == pytest.approx(21.4) and s["std"] == pytest.approx(np.std([20, 22, 21, 25, 19], ddof=1))
    assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == 5
    assert summarise(per) == summarise(per)  # seeded


def test_bootstrap_ci_of_a_constant_is_a_point():
    assert bootstrap_ci([3.0] * 6) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_infinite_values_are_left_out():
    s = summarise({"a": {"psnr": math.inf}, "b": {"psnr": 20.0}, "c": {"psnr": 22.0}})["psnr"]
    assert s["n"] == 2 and s["mean"] == 21.0


def test_paired_wilcoxon_matches_scipy_on_paired_differences():
    a = {"s1": 20.0, "s2": 21.5, "s3": 19.0, "s4": 23.0, "s5": 22.2, "s6": 18.0}
    b = {"s1": 19.0, "s2": 21.0, "s3": 19.5, "s4": 21.0, "s5": 20.2, "s6": 17.1, "extra": 0.0}
    ours = paired_wilcoxon(a, b)
    ref = wilcoxon([a[k] - b[k] for k in sorted(a)])
    assert ours["n"] == 6 and ours["p_value"] == pytest.approx(ref.pvalue) and ours["statistic"] == ref.statistic
    assert math.isnan(paired_wilcoxon(a, a)["p_value"])


def test_spearman_matches_scipy():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0]))


def test_per_subject_csv_round_trip(tmp_path):
    rows = {"uda": {"s1": {"psnr": 20.5, "ssim": 0.7}}, "no_adaptation": {"s1": {"psnr": 19.0, "ssim": 0.6}}}
    path = write_per_subject_csv(tmp_path / "per_subject.csv", rows)
    with open(path) as fh:
        read = list(csv.DictReader(fh))
    assert read == [{"method": "uda", "subject": "s1", "psnr": "20.5", "ssim": "0.7"},
                    {"method": "no_adaptation", "subject": "s1", "psnr": "19", "ssim": "0.6"}]


PER_SEED_A = {0: {"s1": {"psnr": 20.0}, "s2": {"psnr": 22.0}, "s3": {"psnr": 21.0}},
              1: {"s1": {"psnr": 21.0}, "s2": {"psnr": 23.0}, "s3": {"psnr": math.nan}},
              2: {"s1": {"psnr": 22.0}, "s2": {"psnr": 24.0}, "s3": {"psnr": 20.0}}}


def test_seed_mean_per_subject_keeps_subjects_scored_on_every_seed():
    assert seed_mean_per_subject(PER_SEED_A, "psnr") == {"s1": 21.0, "s2": 23.0}
    assert seed_mean_per_subject(PER_SEED_A, "psnr", seeds=[0, 2]) == {"s1": 21.0, "s2": 23.0, "s3": 20.5}
    assert seed_mean_per_subject(PER_SEED_A, "ssim") == {} and seed_mean_per_subject({}, "psnr") == {}


def test_seed_spreads_are_stds_of_per_seed_means():
    assert seed_std_of_cohort_mean(PER_SEED_A, "psnr") == pytest.approx(np.std([21.0, 22.0, 22.0], ddof=1))
    assert math.isnan(seed_std_of_cohort_mean({0: PER_SEED_A[0]}, "psnr"))
    b = {s: {k: {"psnr": 20.0} for k in ("s1", "s2", "s3")} for s in (0, 2, 5)}
    # shared seeds 0 and 2; seed 0 mean difference 1.0, seed 2 (s1, s2, s3) -> (2 + 4 + 0) / 3 = 2.0
    assert seed_std_of_paired_difference(PER_SEED_A, b, "psnr") == pytest.approx(np.std([1.0, 2.0], ddof=1))


DIFF_A = {f"s{i}": v for i, v in enumerate([20.3, 21.5, 19.1, 23.4, 22.2, 18.6, 20.0, 21.1])}
DIFF_B = {f"s{i}": v for i, v in enumerate([20.0, 21.0, 19.5, 21.0, 20.2, 17.1, 19.9, 20.0])}


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_paired_bootstrap_ci_matches_scipy_on_subject_differences(method):
    diffs = np.array([DIFF_A[k] - DIFF_B[k] for k in sorted(DIFF_A)])
    ref = bootstrap((diffs,), np.mean, n_resamples=9999, confidence_level=0.9, method=method,
                    rng=np.random.default_rng(5)).confidence_interval
    ours = paired_bootstrap_ci(DIFF_A, {**DIFF_B, "extra": 0.0}, level=0.9, seed=5, method=method)
    assert ours == pytest.approx((ref.low, ref.high))
    assert ours != paired_bootstrap_ci(DIFF_A, DIFF_B, level=0.9, seed=6, method=method)


def test_paired_bootstrap_ci_is_nan_when_undefined():
    assert all(math.isnan(v) for v in paired_bootstrap_ci({"a": 1.0, "b": 2.0}, {"a": 0.0, "b": 0.0}))
    assert all(math.isnan(v) for v in paired_bootstrap_ci(DIFF_A, {k: v - 0.5 for k, v in DIFF_A.items()}))


def test_paired_subject_comparison_combines_test_and_interval():
    out = paired_subject_comparison(DIFF_A, DIFF_B, seed=1)
    diffs = [DIFF_A[k] - DIFF_B[k] for k in sorted(DIFF_A)]
    assert out["n"] == 8 and out["mean_difference"] == pytest.approx(np.mean(diffs))
    assert out["p_value"] == pytest.approx(wilcoxon(diffs).pvalue)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx(paired_bootstrap_ci(DIFF_A, DIFF_B, seed=1))
