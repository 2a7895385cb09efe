"""Interruption: Ctrl-C or SIGTERM in the middle of a stage's writes leaves nothing behind; a rerun succeeds.

(The training stages' ``--resume`` after an interruption: ``tests/training/test_backbone_ray.py``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uda3d.data.validate import validate_root

# 12 subjects per site: writing them takes about 0.6 s after the first NIfTI lands, a window the signal
# cannot miss on a fast machine (with 4 it was 0.2 s, and once the stage finished first).
COHORT = ["--subjects-per-site", "12", "--shape", "32", "32", "32", "--seed", "5", "--quiet"]


def _cohort(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "uda3d.cli", "cohort", str(out), *COHORT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _wait_for_partial_write(parent: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until a NIfTI has landed in the stage's temporary folder (the stage is mid-write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(parent.glob(".root.*.tmp/domain*/*/*.nii.gz")):
            return
        time.sleep(0.01)
    raise AssertionError(f"the stage never started writing (exit code {proc.poll()})")


@pytest.mark.parametrize("signum,code,word", [
    pytest.param(signal.SIGTERM, 143, "terminated", marks=pytest.mark.slow),
    (signal.SIGINT, 130, "interrupted"),
])
def test_signal_mid_write_leaves_nothing_and_a_rerun_succeeds(tmp_path, signum, code, word):
    parent = tmp_path / "data"
    parent.mkdir()
    out = parent / "root"
    proc = _cohort(out)
    _wait_for_partial_write(parent, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"uda3d cohort: {word}")
    assert "Traceback" not in err
    assert list(parent.iterdir()) == []  # neither the output nor its temporary folder
    if signum == signal.SIGINT:
        return  # the rerun is the same either way; once is enough

    proc = _cohort(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    report = validate_root(out)
    assert report.ok and sum(len(s) for s in report.splits.values()) == 24
    assert [p.name for p in parent.iterdir()] == ["root"]
