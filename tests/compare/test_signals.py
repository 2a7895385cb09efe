"""Label-free selection signals: across-candidate Spearman against scipy, and the provenance rule."""

from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from uda3d.compare.signals import SignalRecord, across_candidate_spearman, eligible_signals, usable
from uda3d.config import SignalSpec, check_signal_independent
from uda3d.errors import ConfigError

VALUES = [0.10, 0.12, 0.09, 0.20, 0.15, 0.11, 0.30, 0.08, 0.14]
ORACLE = [22.0, 21.5, 22.4, 19.0, 21.0, 21.0, 18.0, 22.1, 20.9]


def _records(values=VALUES, oracle=ORACLE):
    methods, configs = ["robust", "hist_match", "kl_subject"], ["a", "b", "c"]
    return [SignalRecord(methods[i % 3], i // 3, configs[(i // 3 + i) % 3], v, o)
            for i, (v, o) in enumerate(zip(values, oracle))]


def test_across_candidate_spearman_matches_scipy_over_all_records():
    out = across_candidate_spearman(_records())
    ref = spearmanr(VALUES, ORACLE)
    assert out["rho"] == pytest.approx(ref.statistic) and out["p_value"] == pytest.approx(ref.pvalue)
    assert out["rho_oriented"] == pytest.approx(-ref.statistic) and out["rho"] < -0.6
    assert out["n"] == 9 and out["candidates"] == 3 and out["seeds"] == 3 and out["configs"] == 3
    assert out["agrees"] is True and usable(out) and not usable(out, threshold=0.99)


def test_orientation_for_a_higher_is_better_signal():
    out = across_candidate_spearman(_records(), lower_is_better=False)
    assert out["rho_oriented"] == pytest.approx(spearmanr(VALUES, ORACLE).statistic)
    assert out["agrees"] is False and not usable(out)


def test_degenerate_inputs_give_nan_and_are_not_usable():
    values = VALUES[:8] + [math.nan]
    out = across_candidate_spearman(_records(values))
    assert out["n"] == 8 and out["rho"] == pytest.approx(spearmanr(VALUES[:8], ORACLE[:8]).statistic)
    flat = across_candidate_spearman(_records([0.1] * 9))
    assert math.isnan(flat["rho"]) and math.isnan(flat["p_value"]) and not flat["agrees"] and not usable(flat)
    assert math.isnan(across_candidate_spearman(_records(VALUES[:2], ORACLE[:2]))["rho"])


AUG_MAE = SignalSpec("augmented source-val MAE", frozenset({"intensity"}))
SELF_SUP = SignalSpec("target self-supervised loss", frozenset())
CUTOUT = SignalSpec("cutout consistency", frozenset({"spatial", "cutout"}))


def test_provenance_check_names_the_signal_candidate_and_family():
    with pytest.raises(ConfigError, match="selection signal") as err:
        check_signal_independent(AUG_MAE, "robust", frozenset({"intensity", "noise"}))
    message = str(err.value)
    assert "augmented source-val MAE" in message and "'robust'" in message and "intensity" in message
    assert "noise" not in message
    check_signal_independent(AUG_MAE, "plain_ft", frozenset())
    check_signal_independent(SELF_SUP, "robust", frozenset({"intensity"}))


def test_eligible_signals_drop_any_signal_a_candidate_trained_on():
    candidates = {"plain_ft": frozenset(), "robust": frozenset({"intensity"}), "kl_subject": frozenset({"spatial"})}
    assert eligible_signals([AUG_MAE, SELF_SUP, CUTOUT], candidates) == [SELF_SUP]
    assert eligible_signals([AUG_MAE, SELF_SUP, CUTOUT], {"plain_ft": frozenset()}) == [AUG_MAE, SELF_SUP, CUTOUT]
