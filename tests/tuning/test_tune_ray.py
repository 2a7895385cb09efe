"""``uda3d tune`` end to end on CPU, interrupted and resumed: Optuna TPE proposes, ASHA stops early, MLflow nests
the trials, the label-free best is registered and synthesizes, and the study ends at its planned size."""

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

from uda3d.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# Seed 38's two random start-up trials are a gentle lr (6e-4) and then a destructive one (0.27), so
# ASHA has a clear case to stop at its first rung (its error is far above the first trial's); the
# two later trials are TPE's, fitted to those results.
SPACE = """
name: {name}
metric: augmented_source_mae
mode: min
num_samples: 4
max_concurrent_trials: 1
scheduler: {{type: asha, grace_period: 1, reduction_factor: 4}}
search: {{sampler: tpe, seed: 38, startup_trials: 2}}
resources: {{cpu: 1}}
fixed: {{epochs: 3, target_subjects: 1}}
params:
  lr: {{type: loguniform, low: 1.0e-5, high: 0.5}}
  ele_percent: {{type: uniform, low: 20, high: 100}}
"""


def _args(space: Path, cohort: Path, trained, work: Path) -> list[str]:
    backbone, vae = trained
    return ["tune", "--space", str(space), "--dataroot", str(cohort), "--backbone", str(backbone), "--vae", str(vae),
            "--workdir", str(work), "--max-source-drop", "100", "--max-intensity-drift", "100", "--quiet"]


def test_tune_four_trials_interrupted_and_resumed(ray_address, tiny_cohort, tiny_trained, tmp_path, capsys,
                                                  monkeypatch):
    """One study, interrupted after its first report and resumed: what a user gets after a pre-emption
    must be what an uninterrupted study gives (TPE's proposals, ASHA's stop, one MLflow child per trial)."""
    import numpy as np
    import optuna
    from mlflow.tracking import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name="probe"))
    work = tmp_path / "work"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # the interrupted process joins the session's Ray (as on a cluster); the resume runs in this one
    proc = subprocess.Popen([sys.executable, "-m", "uda3d", *_args(space, tiny_cohort, tiny_trained, work),
                             "--address", ray_address], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    state = work / "ray_results" / "probe"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # interrupt once the first trial has reported
        if state.exists() and any(p.stat().st_size > 0 for p in state.glob("*/result.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (work / "tune" / "probe" / "summary.json").exists()

    code = main([*_args(space, tiny_cohort, tiny_trained, work), "--resume"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((work / "tune" / "probe" / "summary.json").read_text())
    assert summary["trials"] == summary["planned"] == 4
    assert len({r["trial_id"] for r in summary["rows"]}) == 4
    # Optuna's seeded TPE proposed every config: replaying the trials' results, in the order they
    # finished, through TPESampler(seed 38, 2 random start-up trials) asks for exactly the same configs;
    # the last two come from TPE's model of the first results, not from its random start-up.
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=38, n_startup_trials=2))
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-5, 0.5, log=True),
                     "ele_percent": optuna.distributions.FloatDistribution(20, 100)}
    for row in sorted(summary["rows"], key=lambda r: r["finished_at"]):
        trial = study.ask(distributions)
        assert trial.params["lr"] == pytest.approx(row["lr"], rel=1e-9), (trial.params, row)
        assert trial.params["ele_percent"] == pytest.approx(row["ele_percent"], rel=1e-9), (trial.params, row)
        study.tell(trial, row["augmented_source_mae"])
    random_third = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=38))
    for _ in range(3):
        unlike = random_third.ask(distributions).params
    assert sorted(summary["rows"], key=lambda r: r["finished_at"])[2]["lr"] != pytest.approx(unlike["lr"])
    # ASHA (guards set loose here) stopped the destructive second trial at its first rung
    ordered = sorted(summary["rows"], key=lambda r: r["finished_at"])
    assert ordered[1]["lr"] > 0.1 and ordered[1]["epochs_run"] == 1, [(r["lr"], r["epochs_run"]) for r in ordered]
    assert summary["stopped_early"] >= 1
    # MLflow: one parent, four nested children with params and per-epoch metrics
    uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("uda3d").experiment_id])
    parent = [r for r in runs if r.info.run_name == "study-probe"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["parent_run_id"]]
    assert len(parent) == 1 and parent[0].info.run_id == summary["parent_run_id"] and len(children) == 4
    for child in children:  # the interrupted trial went on in its own run: no stale or duplicate child
        assert child.info.status == "FINISHED"  # ASHA's stopped trial too, tagged as such
        [row] = [r for r in summary["rows"] if r["trial_id"] == child.data.tags["trial_id"]]
        stopped = row["epochs_run"] < 3
        assert (child.data.tags.get("stopped_early") == "by the asha scheduler") == stopped, child.data.tags
        assert "adapt.lr" in child.data.params and "augmented_source_mae" in child.data.metrics
        assert "target_test_psnr" in child.data.metrics
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "augmented_source_mae")]
        assert steps == sorted(set(steps)) and steps[0] == 1, steps  # every epoch once
    # the label-free best is the registered champion; it loads and synthesizes
    best = summary["best"]
    eligible = [r for r in summary["rows"] if r["guard_ok"]]
    assert best["augmented_source_mae"] == min(r["augmented_source_mae"] for r in eligible)
    assert summary["registered_model"]["uri"] == "models:/uda3d-adapted@champion"
    # the champion is a servable pyfunc model: it predicts what `uda3d synthesize` writes from its checkpoint
    import mlflow.pyfunc
    import nibabel as nib
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    served = mlflow.pyfunc.load_model("models:/uda3d-adapted@champion")
    subject = sorted((tiny_cohort / "domain2_test").iterdir())[0]
    files = {m: str(next(subject.glob(f"*_{m}.nii.gz"))) for m in ("flair", "t2")}
    [volume] = served.predict(pd.DataFrame([files]))
    assert main(["synthesize", str(subject), "--model", best["checkpoint"], "--out", str(tmp_path / "synth"),
                 "--quiet"]) == 0
    written = nib.load(str(tmp_path / "synth" / f"{subject.name}_t1_synth.nii.gz")).get_fdata(dtype=np.float32)
    np.testing.assert_allclose(volume, written, atol=1e-5)
    assert "registered: models:/uda3d-adapted@champion" in out
    # uda3d compare: the four trials side by side from MLflow's search API, best target PSNR first
    assert main(["compare", "--workdir", str(work), "--filter", "tags.stage = 'tune-trial'",
                 "--out", str(tmp_path / "cmp")]) == 0
    table = list(csv.DictReader((tmp_path / "cmp" / "runs.csv").open()))
    assert len(table) == 4 and {"adapt.lr", "adapt.ele_percent", "objective", "augmented_source_mae",
                                "target_test_psnr"} <= set(table[0])
    assert sorted(float(r["adapt.lr"]) for r in table) == sorted(r["lr"] for r in summary["rows"])
    assert (tmp_path / "cmp" / "runs.png").read_bytes()[:4] == b"\x89PNG"




def test_tune_ranks_and_registers_without_any_target_t1(local_ray, tiny_cohort, tiny_trained, tmp_path, capsys):
    """The use case: no T1 at the target site. Trials run, the label-free metric chooses, the oracle is empty."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_cohort, root)
    for t1 in root.glob("domain2_*/*/*_t1.nii.gz"):
        t1.unlink()
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name="unlabelled").replace("num_samples: 4", "num_samples: 1")
                     .replace("epochs: 3", "epochs: 1"))
    assert main(_args(space, root, tiny_trained, tmp_path / "work")) == 0
    out = capsys.readouterr().out
    assert "no oracle (no T1 on domain2_test)" in out
    assert "registered: models:/uda3d-adapted@champion" in out
    summary = json.loads((tmp_path / "work" / "tune" / "unlabelled" / "summary.json").read_text())
    assert summary["trials"] == 1 and summary["best"]["augmented_source_mae"] > 0
