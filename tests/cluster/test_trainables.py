"""``trainables/``: one Ray job script per training stage, each exactly ``python -m uda3d STAGE``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINABLES = REPO / "trainables"
# every command that trains or adapts (a Ray Train run, Ray Tune trials, or the comparison's training)
TRAINING_STAGES = {"train-backbone", "train-vae", "adapt", "pipeline", "tune", "study", "compare-methods"}


def _forwarded_stage(path: Path) -> str:
    """The stage a script hands to ``uda3d.cli.main`` (the first element of its argument list)."""
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == "main"]
    assert len(calls) == 1, path
    [argv] = calls[0].args
    return argv.elts[0].value


def test_every_training_stage_has_one_script_and_nothing_else():
    scripts = sorted(TRAINABLES.glob("*.py"))
    assert {p.stem.replace("_", "-") for p in scripts} == TRAINING_STAGES
    for path in scripts:
        assert _forwarded_stage(path) == path.stem.replace("_", "-")


def test_a_script_lists_the_stage_options():
    """Its --help is the CLI's (run as Ray runs it: a plain script with the repo root as cwd)."""
    stage = "adapt"
    script = TRAINABLES / f"{stage.replace('-', '_')}.py"
    via_script = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO)
    via_module = subprocess.run([sys.executable, "-m", "uda3d", stage, "--help"], capture_output=True, text=True,
                                cwd=REPO)
    assert via_script.returncode == 0, via_script.stderr
    assert via_script.stdout.split("options:")[1] == via_module.stdout.split("options:")[1]
