"""Tune's per-snapshot warning is off for studies (each trial keeps one checkpoint), unless the user set it."""

from __future__ import annotations

import pytest

from uda3d.tuning.tune import SNAPSHOT_WARNING_ENV, quiet_snapshot_warning


def _threshold() -> float:
    """The threshold Tune's experiment-state manager reads from the environment when a study starts."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    return _ExperimentCheckpointManager(storage=None, checkpoint_period="auto")._excessive_sync_threshold


@pytest.mark.parametrize(("users", "expected"), [(None, 0.0), ("12", 12.0)])
def test_a_study_turns_the_snapshot_warning_off_unless_the_user_set_it(monkeypatch, users, expected):
    monkeypatch.setenv(SNAPSHOT_WARNING_ENV, "restored after the test")
    monkeypatch.delenv(SNAPSHOT_WARNING_ENV)
    assert _threshold() == 5.0  # Tune's default: warn when snapshots come less than 5 s apart
    environ = {} if users is None else {SNAPSHOT_WARNING_ENV: users}
    quiet_snapshot_warning(environ)
    monkeypatch.setenv(SNAPSHOT_WARNING_ENV, environ[SNAPSHOT_WARNING_ENV])
    assert _threshold() == expected
