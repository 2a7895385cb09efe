"""``--resume``'s ledger: finished stages with the same config are skipped, a change reruns from there on."""

from __future__ import annotations

import json
import logging

import pytest

from uda3d.errors import ConfigError
from uda3d.stage_ledger import LEDGER, StageLedger, stage_key


def _stage(calls: list, name: str, value: int):
    def run(resume: bool) -> dict:
        calls.append((name, resume))
        return {"value": value}

    return run


def test_stage_key_follows_config_and_upstream():
    assert stage_key({"lr": 1}) == stage_key({"lr": 1})
    assert stage_key({"lr": 1}) != stage_key({"lr": 2})
    assert stage_key({"lr": 1}, ("a",)) != stage_key({"lr": 1}, ("b",))


def test_resume_skips_unchanged_stages_and_reruns_from_a_changed_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="uda3d.stage_ledger")
    calls: list = []

    def pipeline(ledger: StageLedger, lr: float) -> None:
        ledger.run("backbone", {"epochs": 3}, (), _stage(calls, "backbone", 1))
        ledger.run("adapt", {"lr": lr}, ("backbone",), _stage(calls, "adapt", 2))
        ledger.run("report", {}, ("adapt",), _stage(calls, "report", 3))

    pipeline(StageLedger(tmp_path, resume=False), 0.1)
    assert [c[0] for c in calls] == ["backbone", "adapt", "report"]
    with pytest.raises(ConfigError, match="--workdir: .* holds an earlier pipeline run; pass --resume"):
        StageLedger(tmp_path, resume=False)
    calls.clear()
    pipeline(StageLedger(tmp_path, resume=True), 0.1)
    assert calls == []
    assert "  backbone: done earlier with the same config, skipped (--resume)" in caplog.messages
    pipeline(StageLedger(tmp_path, resume=True), 0.2)  # adapt changed: it and report rerun, backbone does not
    assert [c[0] for c in calls] == ["adapt", "report"]
    assert json.loads((tmp_path / LEDGER).read_text())["stages"]["adapt"]["result"] == {"value": 2}


def test_missing_outputs_rerun_and_an_interrupted_training_continues(tmp_path):
    calls: list = []
    folder = tmp_path / "ray_results" / "backbone"
    ledger = StageLedger(tmp_path, resume=False)
    out = tmp_path / "model"
    out.mkdir()
    ledger.run("backbone", {}, (), _stage(calls, "backbone", 1), outputs=lambda r: [str(out)], run_folder=folder)
    out.rmdir()
    folder.mkdir(parents=True)
    (folder / "checkpoint_000001").mkdir()
    StageLedger(tmp_path, resume=True).run("backbone", {}, (), _stage(calls, "backbone", 1),
                                           outputs=lambda r: [str(out)], run_folder=folder)
    # the recorded run's outputs are gone: it starts over in a cleared folder (not a resumed one)
    assert calls == [("backbone", False), ("backbone", False)] and not folder.exists()
    # a run cut off before it was recorded continues from its checkpoint
    folder.mkdir(parents=True)
    (folder / "checkpoint_000001").mkdir()
    StageLedger(tmp_path, resume=True).run("vae", {}, (), _stage(calls, "vae", 1), run_folder=folder)
    assert calls[-1] == ("vae", True)
