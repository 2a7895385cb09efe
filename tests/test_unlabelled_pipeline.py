"""The real use case end to end: a target site with no T1 at all.

One small cohort loses every target T1 (each replaced by a link to nowhere, so any attempt to read
one fails); ``uda3d pipeline`` must still train, adapt, choose, synthesize every target subject with
an uncertainty map, register a servable model and say which parts it skipped. The same run then
serves the ``synthesize``, MLflow and ``--resume`` checks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from uda3d.cli import main

TARGET_SPLITS = ("domain2_train", "domain2_val", "domain2_test")
TINY_STAGES = ["--ngf", "4", "--backbone-epochs", "1", "--backbone-epochs-decay", "0", "--robust-epochs", "1",
               "--vae-epochs", "1", "--latent-channels", "8", "--slice-size", "32", "--adapt-epochs", "1",
               "--supervised-epochs", "1"]


def strip_target_t1(root: Path) -> list[Path]:
    """Delete every target T1; leave a dangling link in its place so a read would fail (even as root)."""
    removed = []
    for split in TARGET_SPLITS:
        for t1 in sorted((root / split).glob("*/*_t1.nii.gz")):
            t1.unlink()
            t1.symlink_to(root / "no-such-file.nii.gz")
            removed.append(t1)
    return removed


@pytest.fixture(scope="module")
def unlabelled_run(tiny_cohort, tmp_path_factory, local_ray):
    base = tmp_path_factory.mktemp("unlabelled")
    root = base / "root"
    shutil.copytree(tiny_cohort, root, symlinks=True)
    assert strip_target_t1(root)
    work = base / "work"
    argv = ["pipeline", "--dataroot", str(root), "--workdir", str(work), *TINY_STAGES, "--quiet"]
    code = main(argv)
    return root, work, argv, code


def _report(work: Path) -> dict:
    return json.loads((work / "report.json").read_text())


def test_pipeline_runs_without_any_target_t1(unlabelled_run, capsys):
    root, work, _, code = unlabelled_run
    assert code == 0
    report = _report(work)
    assert set(report["skipped"]) == {"supervised", "scores", "quality_vs_psnr"}
    assert "needs T1 for every subject of domain2_train and domain2_val" in report["skipped"]["supervised"]
    assert "supervised" not in report["runs"] and "split" not in report  # no bound, no scores
    assert report["adaptation_split"] == "domain2_val"
    for split in TARGET_SPLITS:
        rows = {r["subject"]: r for r in report["synthesis"]["splits"][split]}
        subjects = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        assert sorted(rows) == subjects
        for sid in subjects:
            flair = nib.load(str(root / split / sid / f"{sid}_flair.nii.gz"))
            synth = nib.load(str(work / "synth" / split / f"{sid}_t1_synth.nii.gz"))
            std = nib.load(str(work / "synth" / split / f"{sid}_t1_synth_std.nii.gz"))
            for image in (synth, std):
                assert image.shape == flair.shape
                np.testing.assert_allclose(image.affine, flair.affine)
            brain = flair.get_fdata() > 0
            assert np.all(synth.get_fdata()[~brain] == 0) and synth.get_fdata()[brain].std() > 0
            # the map is the other candidates' disagreement with uda (4 models besides it, or 3 when uda is one)
            assert rows[sid]["uncertainty_map"] in ("ensemble of 4", "ensemble of 5")
            assert std.get_fdata()[brain].mean() == pytest.approx(rows[sid]["ensemble_spread"] * 1000, rel=1e-3)
            assert rows[sid]["input_shift"] >= 0 and isinstance(rows[sid]["outside_source_range"], bool)
            assert rows[sid]["ensemble_spread"] > 0  # the other candidates disagree with uda somewhere
    assert report["registered_model"]["uri"] == "models:/uda3d/1"


def test_pipeline_run_is_nested_in_mlflow_with_params_and_report(unlabelled_run):
    from mlflow.tracking import MlflowClient

    _, work, _, _ = unlabelled_run
    client = MlflowClient(tracking_uri=f"sqlite:///{work.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("uda3d")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    children = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    trained = {"backbone", "robust", "source_ft", "ttt_joint", "vae", "adapt"}
    assert trained <= children
    # one worker process trained every stage: the first stage's worker group served the rest (stage pool)
    places = {r.info.run_name: r.data.tags["worker.rank0"] for r in runs if r.info.run_name in trained}
    assert len(places) == len(trained) and len(set(places.values())) == 1, places
    assert parent.data.params["backbone.ngf"] == "4" and parent.data.params["register_as"] == "uda3d"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "report.json" in artifacts


def test_registered_model_serves_what_synthesize_writes(unlabelled_run, tmp_path, monkeypatch):
    import mlflow.pyfunc
    import pandas as pd

    root, work, _, _ = unlabelled_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work.resolve() / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model("models:/uda3d/1")
    subject = sorted((root / "domain2_test").iterdir())[0]
    files = {m: str(subject / f"{subject.name}_{m}.nii.gz") for m in ("flair", "t2")}
    [volume] = served.predict(pd.DataFrame([files]))
    checkpoint = _report(work)["uda"]["checkpoint"]
    assert main(["synthesize", str(subject), "--model", checkpoint, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    written = nib.load(str(tmp_path / "cli" / f"{subject.name}_t1_synth.nii.gz")).get_fdata(dtype=np.float32)
    assert volume.shape == written.shape
    np.testing.assert_allclose(volume, written, atol=1e-5)


def test_synthesize_a_split_refuses_overwrite_and_a_conflicting_crop(unlabelled_run, tmp_path, capsys):
    root, work, _, _ = unlabelled_run
    checkpoint = _report(work)["runs"]["backbone"]["checkpoint"]
    out = tmp_path / "out"
    argv = ["synthesize", "--dataroot", str(root), "--split", "domain2_test", "--model", checkpoint,
            "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    subjects = sorted(p.name for p in (root / "domain2_test").iterdir())
    assert sorted(p.name for p in out.glob("*_t1_synth.nii.gz")) == [f"{s}_t1_synth.nii.gz" for s in subjects]
    assert (out / "quality.csv").is_file()
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{out / (subjects[0] + '_t1_synth.nii.gz')}: exists; pass --overwrite to replace it")
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main([*argv, "--overwrite"]) == 0
    # the checkpoint knows its crop (24^3 on this 32^3 cohort): another one is refused, naming the stored one
    assert main([*argv, "--overwrite", "--crop-shape", "16", "16", "16"]) == 2
    err = capsys.readouterr().err
    assert "--crop-shape: the checkpoint was trained with crop [24, 24, 24], not [16, 16, 16]" in err
    # and nothing is ever written into the dataset
    assert main(["synthesize", str(root / "domain2_test"), "--model", checkpoint,
                 "--out", str(root / "domain2_test" / subjects[0] / "x")]) == 2
    assert "--out: " in capsys.readouterr().err


def test_resume_skips_finished_stages_and_reruns_from_a_changed_one(unlabelled_run, capsys):
    _, work, argv, _ = unlabelled_run
    capsys.readouterr()
    # without --resume an existing workdir is refused with the flag that continues it
    assert main(argv) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    # an interrupted run: the last stages' records are gone, the earlier ones are skipped
    ledger = json.loads((work / "stages.json").read_text())
    for name in ("synthesis", "register"):
        del ledger["stages"][name]
    (work / "stages.json").write_text(json.dumps(ledger))
    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    for stage in ("backbone", "robust", "source_ft", "ttt_joint", "slices", "vae", "adapt", "harmoniser", "select"):
        assert f"  {stage}: done earlier with the same config, skipped (--resume)" in out, stage
    assert "synthesis: done earlier" not in out
    assert _report(work)["registered_model"]["version"] == "2"
    # a changed adaptation config reruns adaptation (and what follows it), nothing upstream
    assert main([*[a if a != "1" or argv[i - 1] != "--adapt-epochs" else "2" for i, a in enumerate(argv)],
                 "--resume"]) == 0
    out = capsys.readouterr().out
    assert "  backbone: done earlier" in out and "  vae: done earlier" in out
    assert "  adapt: done earlier" not in out
    assert len(_report(work)["adaptation_history"]) == 3  # the starting model and two epochs
