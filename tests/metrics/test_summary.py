"""Summary statistics against numpy/scipy and hand-made data."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy.stats import spearmanr, wilcoxon

from uda3d.metrics.summary import bootstrap_ci, paired_wilcoxon, spearman, summarise, write_per_subject_csv


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
