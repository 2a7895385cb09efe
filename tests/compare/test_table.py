"""The comparison table's numbers against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from uda3d.compare.report import markdown_table, write_csv
from uda3d.compare.table import MethodResult, summarise_methods


def _result(method, seed, target, source, per_subject):
    return MethodResult(method, seed, {"psnr": target, "ssim": 0.5, "mae": 0.1}, {"psnr": source, "ssim": 0.5,
                                                                                   "mae": 0.1}, per_subject, 0.1)


def _results():
    out = []
    for seed, (base, upper, method) in enumerate([(18.0, 20.0, 19.0), (18.5, 20.5, 19.1), (18.2, 20.2, 19.4)]):
        out.append(_result("no_adaptation", seed, base, 25.0, {"a": base - 0.1, "b": base + 0.1}))
        out.append(_result("supervised", seed, upper, 24.0, {"a": upper - 0.1, "b": upper + 0.1}))
        out.append(_result("robust", seed, method, 24.8 + 0.1 * seed, {"a": method - 0.2, "b": method + 0.3}))
    return out


def test_summary_rows_match_hand_computations():
    rows = {r["method"]: r for r in summarise_methods(_results())}
    robust = rows["robust"]
    assert robust["target_psnr"] == pytest.approx(np.mean([19.0, 19.1, 19.4]))
    assert robust["target_psnr_std"] == pytest.approx(np.std([19.0, 19.1, 19.4], ddof=1))
    assert robust["gain_db"] == pytest.approx(np.mean([19.0, 19.1, 19.4]) - np.mean([18.0, 18.5, 18.2]))
    assert robust["gap_share"] == pytest.approx(np.mean([1.0 / 2, 0.6 / 2, 1.2 / 2]))
    assert robust["source_kept_db"] == pytest.approx(np.mean([-0.2, -0.1, 0.0]))
    pairs_m = [19.0 - 0.2, 19.0 + 0.3, 19.1 - 0.2, 19.1 + 0.3, 19.4 - 0.2, 19.4 + 0.3]
    pairs_b = [17.9, 18.1, 18.4, 18.6, 18.1, 18.3]
    assert robust["wilcoxon_p"] == pytest.approx(wilcoxon(np.subtract(pairs_m, pairs_b)).pvalue)
    assert robust["pairs"] == 6
    assert robust["beats_spread"] is True
    assert rows["supervised"]["gap_share"] == pytest.approx(1.0)
    assert rows["no_adaptation"]["gain_db"] == 0.0 and rows["no_adaptation"]["beats_spread"] is False
    assert math.isnan(rows["no_adaptation"]["wilcoxon_p"])


def test_a_gain_inside_the_seed_spread_does_not_count():
    results = [_result("no_adaptation", s, b, 25.0, {}) for s, b in enumerate([18.0, 19.0, 20.0])]
    results += [_result("variant", s, b + 0.1, 25.0, {}) for s, b in enumerate([18.0, 19.0, 20.0])]
    [_, variant] = summarise_methods(results)
    assert variant["gain_db"] == pytest.approx(0.1) and variant["beats_spread"] is False


def test_needs_the_baseline():
    with pytest.raises(ValueError, match="no_adaptation"):
        summarise_methods([_result("robust", 0, 19.0, 25.0, {})])


def test_outputs_round_trip(tmp_path):
    import csv

    rows = summarise_methods(_results())
    path = write_csv(tmp_path / "t.csv", rows)
    read = list(csv.DictReader(path.open()))
    assert [r["method"] for r in read] == ["no_adaptation", "supervised", "robust"]
    assert float(read[2]["target_psnr"]) == pytest.approx(rows[2]["target_psnr"])
    table = markdown_table(rows)
    assert table.count("\n") == 4 and "| robust | 19.17 +- 0.21 |" in table
