"""The pipeline's results as frozen types: their JSON is what report.json and stages.json always held."""

from __future__ import annotations

import dataclasses
import json

import pytest

from uda3d.adaptation.selection import CandidateScore
from uda3d.adaptation.stage import AdaptOutcome
from uda3d.config import AdaptConfig
from uda3d.pipeline import SELECTION_RULE, PipelineReport, UDASelection

SELECTION = UDASelection("robust", "highest source-val PSNR", (CandidateScore("robust", 0.1, 24.0),
                                                                CandidateScore("no_adaptation", 0.2, 23.0)))
OUTCOME = AdaptOutcome("work/adapted/adapt", {"kept_epoch": 1, "reason": "ok", "stopped_at": None,
                                              "spearman_objective_vs_target_psnr": 0.5},
                       [{"epoch": 0.0, "objective": 1.0}], "run-1")


def _report(**changes) -> PipelineReport:
    return PipelineReport(dataroot="root", plan=("a", "b"), skipped={"scores": "no T1"}, adaptation_split="domain2_val",
                          selection=SELECTION, uda_checkpoint="ckpt/robust", method_kl=OUTCOME,
                          adapt_config=AdaptConfig(), synthesis={"folder": "synth"},
                          runs={"backbone": {"checkpoint": "b", "mlflow_run_id": None}}, **changes)


def test_selection_and_outcome_round_trip_through_the_ledgers_json():
    assert SELECTION.to_json() == {"chosen": "robust", "reason": "highest source-val PSNR",
                                   "scores": [dataclasses.asdict(s) for s in SELECTION.scores], "rule": SELECTION_RULE}
    assert UDASelection.from_json(json.loads(json.dumps(SELECTION.to_json()))) == SELECTION
    assert AdaptOutcome.from_json(json.loads(json.dumps(OUTCOME.to_json()))) == OUTCOME
    with pytest.raises(dataclasses.FrozenInstanceError):
        SELECTION.chosen = "uda"  # type: ignore[misc]


def test_the_report_json_keeps_its_keys_and_their_order():
    plain = _report().to_json()
    assert list(plain) == ["dataroot", "plan", "skipped", "adaptation_split", "uda", "method_kl", "synthesis",
                           "adaptation_history", "runs", "notes"]
    assert plain["uda"] == {"selection": SELECTION.to_json(), "checkpoint": "ckpt/robust"}
    assert plain["method_kl"] == {"guard": OUTCOME.decision, "config": dataclasses.asdict(AdaptConfig()),
                                  "checkpoint": OUTCOME.checkpoint}
    assert plain["adaptation_history"] == OUTCOME.history
    scores = {"split": "domain2_test", "no_adaptation": {"psnr": 20.0}, "uda": {"psnr": 21.0},
              "method_kl": {"psnr": 22.0}, "wilcoxon": {}, "files": {"figure": "f.png"}}
    scored = _report(scores=scores, quality_vs_psnr={"subjects": 3}, registered_model={}).to_json()
    assert list(scored) == ["dataroot", "plan", "skipped", "adaptation_split", "uda", "method_kl", "synthesis",
                            "adaptation_history", "runs", "split", "no_adaptation", "wilcoxon", "files",
                            "spearman_objective_vs_target_psnr", "quality_vs_psnr", "registered_model", "notes"]
    assert scored["uda"] == {"selection": SELECTION.to_json(), "checkpoint": "ckpt/robust", "psnr": 21.0}
    assert scored["method_kl"]["psnr"] == 22.0 and scored["method_kl"]["guard"] == OUTCOME.decision
    assert scored["spearman_objective_vs_target_psnr"] == 0.5
