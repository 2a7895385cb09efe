"""``uda3d tune`` end to end on CPU: Optuna TPE proposes, ASHA stops early, MLflow nests the trials,
the label-free best is registered and synthesizes, and an interrupted study resumes to its planned size."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import tiny_checkpoints
from uda3d.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

SPACE = """
name: {name}
metric: augmented_source_mae
mode: min
num_samples: 4
max_concurrent_trials: 1
scheduler: {{type: asha, grace_period: 1, reduction_factor: 4}}
search: {{sampler: tpe, seed: 3}}
resources: {{cpu: 1}}
fixed: {{epochs: 3, target_subjects: 1}}
params:
  lr: {{type: loguniform, low: 1.0e-5, high: 3.0e-2}}
  ele_percent: {{type: uniform, low: 20, high: 100}}
"""


@pytest.fixture(scope="module")
def checkpoints(tiny_cohort, tmp_path_factory):
    return tiny_checkpoints(tiny_cohort, tmp_path_factory.mktemp("tune"))


def _args(space: Path, cohort: Path, checkpoints, work: Path) -> list[str]:
    backbone, vae = checkpoints
    return ["tune", "--space", str(space), "--dataroot", str(cohort), "--backbone", str(backbone), "--vae", str(vae),
            "--workdir", str(work), "--max-source-drop", "100", "--max-intensity-drift", "100", "--quiet"]


def test_tune_four_trials(tiny_cohort, checkpoints, tmp_path, capsys):
    import optuna
    import ray
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name="probe"))
    work = tmp_path / "work"
    try:
        code = main(_args(space, tiny_cohort, checkpoints, work))
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((work / "tune" / "probe" / "summary.json").read_text())
    assert summary["trials"] == 4
    # Optuna's seeded TPE sampler proposed the first config (its start-up phase draws from the sampler's rng)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    first = study.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 3e-2, log=True),
                       "ele_percent": optuna.distributions.FloatDistribution(20, 100)}).params
    proposed = [(r["lr"], r["ele_percent"]) for r in summary["rows"]]
    assert any(abs(lr - first["lr"]) < 1e-12 and abs(e - first["ele_percent"]) < 1e-9 for lr, e in proposed), proposed
    # ASHA (guards set loose here) stopped at least one trial before its 3 epochs
    assert summary["stopped_early"] >= 1 and any(r["epochs_run"] < 3 for r in summary["rows"])
    # MLflow: one parent, four nested children with params and per-epoch metrics
    uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    parent = [r for r in runs if r.info.run_name == "study-probe"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert len(parent) == 1 and parent[0].info.run_id == summary["parent_run_id"] and len(children) == 4
    for child in children:
        assert "adapt.lr" in child.data.params and "augmented_source_mae" in child.data.metrics
        assert "target_test_psnr" in child.data.metrics
    # the label-free best is the registered champion; it loads and synthesizes
    best = summary["best"]
    eligible = [r for r in summary["rows"] if r["guard_ok"]]
    assert best["augmented_source_mae"] == min(r["augmented_source_mae"] for r in eligible)
    assert summary["registered_model"]["uri"] == "models:/uda3d-adapted@champion"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        local = download_artifacts(artifact_uri="models:/uda3d-adapted@champion", dst_path=str(tmp_path / "champ"))
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    subject = sorted((tiny_cohort / "domain2_test").iterdir())[0]
    out_file = tmp_path / "synth.nii.gz"
    assert main(["synthesize", str(subject), "--model", local, "--out", str(out_file)]) == 0
    assert out_file.is_file()
    assert "registered: models:/uda3d-adapted@champion" in out
    # uda3d compare: the four trials side by side from MLflow's search API, best target PSNR first
    assert main(["compare", "--workdir", str(work), "--filter", "tags.stage = 'tune-trial'",
                 "--out", str(tmp_path / "cmp")]) == 0
    table = list(csv.DictReader((tmp_path / "cmp" / "runs.csv").open()))
    assert len(table) == 4 and {"adapt.lr", "adapt.ele_percent", "objective", "augmented_source_mae",
                                "target_test_psnr"} <= set(table[0])
    assert sorted(float(r["adapt.lr"]) for r in table) == sorted(r["lr"] for r in summary["rows"])
    assert (tmp_path / "cmp" / "runs.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_study_resumes_to_the_planned_number_of_trials(tiny_cohort, checkpoints, tmp_path, capsys):
    import ray

    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name="resumable"))
    work = tmp_path / "work"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "uda3d", *_args(space, tiny_cohort, checkpoints, work)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    state = work / "ray_results" / "resumable"
    deadline = time.time() + 240
    # interrupt once the first trial has reported
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and any(p.stat().st_size > 0 for p in state.glob("*/result.json")):
            break
        time.sleep(1)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (work / "tune" / "resumable" / "summary.json").exists()
    try:
        code = main([*_args(space, tiny_cohort, checkpoints, work), "--resume"])
    finally:
        ray.shutdown()
    assert code == 0, capsys.readouterr().out
    summary = json.loads((work / "tune" / "resumable" / "summary.json").read_text())
    assert summary["trials"] == summary["planned"] == 4
    assert len({r["trial_id"] for r in summary["rows"]}) == 4
