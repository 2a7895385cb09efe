"""The comparison table's numbers against hand computations and scipy, and its files."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon

from uda3d.compare.report import COLUMNS, HEADLINE, bar_chart, markdown_table, write_csv, write_markdown
from uda3d.compare.table import BASELINE, CONTROL, UPPER, MethodResult, summarise_methods

SUBJECTS = [f"s{i}" for i in range(8)]


def _metrics(psnr: float, ssim: float = 0.8, shift: float = 0.0) -> dict[str, float]:
    return {"psnr": psnr, "ssim": ssim, "psnr_method": psnr + 3.0 + shift, "ssim_method": ssim + 0.1, "mae": 0.05}


def _cohort(offset: float, seed: int, rng: np.random.Generator, ssim_offset: float = 0.0) -> dict[str, dict]:
    """Per-subject metrics: a subject effect shared by all methods plus seed noise."""
    return {s: _metrics(20.0 + i * 0.5 + offset + rng.normal(0, 0.3), 0.8 + 0.005 * i + ssim_offset
                        + rng.normal(0, 0.004)) for i, s in enumerate(SUBJECTS)}


def _results(with_control: bool = True) -> list[MethodResult]:
    rng = np.random.default_rng(7)
    offsets = {BASELINE: (0.0, 0.0), CONTROL: (0.4, 0.01), "robust": (1.2, 0.02), "mixed": (0.9, -0.02),
               UPPER: (3.0, 0.05)}
    out = []
    for seed in range(3):
        for method, (psnr_offset, ssim_offset) in offsets.items():
            if method == CONTROL and not with_control:
                continue
            source = {f"src{i}": _metrics(25.0 - 0.1 * (method != BASELINE) + 0.2 * i) for i in range(4)}
            out.append(MethodResult(method, seed, _cohort(psnr_offset, seed, rng, ssim_offset), source,
                                    source_val_psnr=24.0 + seed, label_free={"aug_mae": 0.1 + 0.01 * seed},
                                    note="kept epoch 3" if method == "robust" else ""))
    return out


def _seed_mean(results, method, metric, seeds=(0, 1, 2)):
    by_seed = {r.seed: r.target for r in results if r.method == method and r.seed in seeds}
    return np.array([np.mean([by_seed[s][k][metric] for s in seeds]) for k in SUBJECTS])


def test_subjects_are_the_unit_wilcoxon_over_seed_averaged_subjects():
    results = _results()
    robust = {r["method"]: r for r in summarise_methods(results)}["robust"]
    diffs = _seed_mean(results, "robust", "psnr") - _seed_mean(results, CONTROL, "psnr")
    assert robust["subjects_vs_control"] == 8 and robust["seeds_vs_control"] == 3  # 3 seeds x 8 subjects -> n=8
    assert robust["p_psnr_vs_control"] == pytest.approx(wilcoxon(diffs).pvalue)
    assert robust["gain_psnr_vs_control"] == pytest.approx(diffs.mean())
    to_none = _seed_mean(results, "robust", "ssim") - _seed_mean(results, BASELINE, "ssim")
    assert robust["p_ssim_vs_none"] == pytest.approx(wilcoxon(to_none).pvalue)
    pooled = [a.target[k]["psnr"] - b.target[k]["psnr"] for a in results for b in results
              if a.method == "robust" and b.method == CONTROL and a.seed == b.seed for k in SUBJECTS]
    assert robust["p_psnr_vs_control"] != pytest.approx(wilcoxon(pooled).pvalue)  # not the (seed, subject) test


def test_bootstrap_ci_matches_scipy_with_the_same_seed():
    results = _results()
    robust = {r["method"]: r for r in summarise_methods(results, seed=3)}["robust"]
    diffs = _seed_mean(results, "robust", "psnr_method") - _seed_mean(results, CONTROL, "psnr_method")
    ref = bootstrap((diffs,), np.mean, confidence_level=0.95, method="BCa",
                    rng=np.random.default_rng(3)).confidence_interval
    assert (robust["ci_low_psnr_method_vs_control"], robust["ci_high_psnr_method_vs_control"]) == pytest.approx(
        (ref.low, ref.high))
    assert robust["ci_low_psnr_vs_control"] < robust["gain_psnr_vs_control"] < robust["ci_high_psnr_vs_control"]
    again = {r["method"]: r for r in summarise_methods(results, seed=3)}["robust"]
    assert again["ci_low_psnr_vs_control"] == robust["ci_low_psnr_vs_control"]


def _tiny(method, seed, psnrs, ssims, source=25.0):
    target = {k: _metrics(p, s) for k, p, s in zip(("a", "b", "c"), psnrs, ssims)}
    return MethodResult(method, seed, target, {"x": _metrics(source)}, source_val_psnr=30.0 + seed)


def test_gains_by_hand_on_a_small_example():
    results = [_tiny(BASELINE, 0, [18, 19, 20], [0.7, 0.7, 0.7]), _tiny(BASELINE, 1, [18, 19, 22], [0.7, 0.7, 0.7]),
               _tiny(CONTROL, 0, [19, 20, 21], [0.8, 0.8, 0.8]), _tiny(CONTROL, 1, [19, 21, 21], [0.8, 0.8, 0.8]),
               _tiny("m", 0, [20, 20, 23], [0.7, 0.8, 0.9], 24.0), _tiny("m", 1, [21, 22, 22], [0.9, 0.9, 0.9], 24.5)]
    m = {r["method"]: r for r in summarise_methods(results)}["m"]
    # seed-averaged: m (20.5, 21, 22.5), control (19, 20.5, 21), none (18, 19, 21)
    assert m["target_psnr"] == pytest.approx(64 / 3)
    assert m["gain_psnr_vs_control"] == pytest.approx((1.5 + 0.5 + 1.5) / 3)
    assert m["gain_psnr_vs_none"] == pytest.approx((2.5 + 2 + 1.5) / 3)
    assert m["gain_ssim_vs_control"] == pytest.approx(np.mean([0.8, 0.85, 0.9]) - 0.8)
    # per-seed cohort means: m 21, 21.667; control 20, 20.333 -> paired difference 1, 1.333
    assert m["target_psnr_seed_std"] == pytest.approx(np.std([21, 65 / 3], ddof=1))
    assert m["gain_seed_std_vs_control"] == pytest.approx(np.std([1.0, 4 / 3], ddof=1))
    assert m["beats_control_spread"] is True
    assert m["source_kept_db"] == pytest.approx(-0.75) and m["source_psnr"] == pytest.approx(24.25)
    assert m["source_val_psnr"] == pytest.approx(30.5)
    control = {r["method"]: r for r in summarise_methods(results)}[CONTROL]
    assert control["gain_psnr_vs_control"] == 0.0 and math.isnan(control["p_psnr_vs_control"])


def test_mixed_verdict_when_psnr_wins_and_ssim_loses():
    rows = {r["method"]: r for r in summarise_methods(_results())}
    mixed = rows["mixed"]
    assert mixed["gain_psnr_vs_control"] > 0 and mixed["gain_ssim_vs_control"] < 0
    assert "; mixed: wins psnr and psnr_method, loses ssim and ssim_method" in mixed["verdict"]
    assert rows["robust"]["verdict"] == f"beats {CONTROL} (p={rows['robust']['p_psnr_vs_control']:.3g})"
    assert rows["robust"]["p_psnr_vs_control"] == pytest.approx(1 / 128)  # n=8: smallest two-sided p
    assert rows[CONTROL]["verdict"].startswith("reference") and rows[UPPER]["verdict"].startswith("upper bound")
    assert rows["robust"]["signal_aug_mae"] == pytest.approx(0.11) and rows["robust"]["note"] == "kept epoch 3"


def test_without_the_control_vs_control_columns_are_nan():
    rows = {r["method"]: r for r in summarise_methods(_results(with_control=False))}
    robust = rows["robust"]
    assert all(math.isnan(robust[f"{s}_{m}_vs_control"]) for s in ("gain", "p", "ci_low")
               for m in ("psnr", "ssim", "psnr_method", "ssim_method"))
    assert math.isnan(robust["gain_seed_std_vs_control"]) and robust["beats_control_spread"] is False
    assert robust["gain_psnr_vs_none"] > 1.0 and robust["verdict"].startswith(f"beats {BASELINE}")


def test_needs_the_baseline():
    with pytest.raises(ValueError, match="no_adaptation"):
        summarise_methods([r for r in _results() if r.method != BASELINE])


def test_missing_seeds_and_subjects_use_the_intersection():
    results = [r for r in _results() if not (r.method == "robust" and r.seed == 2)]
    results = [MethodResult(r.method, r.seed, {k: v for k, v in r.target.items() if k != "s0"}, r.source)
               if r.method == "robust" else r for r in results]
    robust = {r["method"]: r for r in summarise_methods(results)}["robust"]
    assert robust["seeds"] == 2 and robust["seeds_vs_control"] == 2 and robust["subjects_vs_control"] == 7
    diffs = [np.mean([r.target[k]["psnr"] for r in results if r.method == "robust"])
             - np.mean([r.target[k]["psnr"] for r in results if r.method == CONTROL and r.seed < 2])
             for k in SUBJECTS[1:]]
    assert robust["gain_psnr_vs_control"] == pytest.approx(np.mean(diffs))


def test_csv_round_trip_and_markdown(tmp_path):
    rows = summarise_methods(_results())
    path = write_csv(tmp_path / "t.csv", rows)
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert [r["method"] for r in read] == [BASELINE, CONTROL, "robust", "mixed", UPPER]
    assert list(read[0])[: len(COLUMNS)] == list(COLUMNS) and "signal_aug_mae" in read[0]
    assert float(read[2]["gain_psnr_vs_control"]) == pytest.approx(rows[2]["gain_psnr_vs_control"])
    assert float(read[2]["ci_high_psnr_vs_control"]) == pytest.approx(rows[2]["ci_high_psnr_vs_control"])
    table = markdown_table(rows)
    assert HEADLINE in table.splitlines()[0] and table.count("\n") == 1 + len(rows)
    robust = rows[2]
    assert (f"| robust | {robust['target_psnr']:.2f} +- {robust['target_psnr_seed_std']:.2f} | "
            f"{robust['gain_psnr_vs_none']:+.2f} | {robust['gain_psnr_vs_control']:+.2f} "
            f"[{robust['ci_low_psnr_vs_control']:+.2f}, {robust['ci_high_psnr_vs_control']:+.2f}] |") in table
    md = write_markdown(tmp_path / "t.md", rows, "head", "foot").read_text()
    assert md.startswith("head\n\n|") and md.endswith("foot\n")


@pytest.mark.parametrize("with_control", [True, False])
def test_bar_chart_writes_a_png(tmp_path, with_control):
    path = bar_chart(tmp_path / "c.png", summarise_methods(_results(with_control)), "gains")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 2_000_000
