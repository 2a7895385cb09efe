"""The ``uda3d`` command line: help, one-line errors with exit code 2, and each command end to end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uda3d.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["cohort", "ingest-brats", "validate-data", "preprocess", "train-backbone", "slices", "train-vae",
            "adapt", "pipeline", "evaluate", "synthesize", "demo"]


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_help_lists_every_command_through_the_console_script():
    exe = shutil.which("uda3d", path=str(Path(sys.executable).parent))
    assert exe, "the uda3d console script is not installed beside this Python"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in _subcommands():
        assert re.search(rf"^\s+{re.escape(name)}\b", result.stdout, re.M), name
    assert set(COMMANDS) <= set(_subcommands())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert f"usage: uda3d {name}" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["cohort", "OUT", "--subjects-per-site", "0"],
     "argument --subjects-per-site: expected a positive integer, got '0'"),
    (["cohort", "OUT", "--seed", "minus"], "argument --seed: expected a non-negative integer, got 'minus'"),
    (["cohort", "OUT", "--shape", "64", "64"], "argument --shape"),
    (["preprocess", "ROOT"], "--cache-dir"),
    (["preprocess", "ROOT", "--cache-dir", "C", "--normalisation", "zscore"], "argument --normalisation"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_cli_values_are_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    (["--sites", "site-a", "mars"],
     "--sites: unknown site 'mars'; expected one of ['site-a', 'site-a-atrophy', 'site-b', 'site-c']"),
    (["--subjects-per-site", "2"], "--subjects-per-site: need at least 3"),
    (["--shape", "8", "64", "64"], "--shape: expected 3 sizes >= 16"),
])
def test_bad_cohort_values_exit_2_and_write_nothing(argv, needle, capsys, tmp_path):
    code = main(["cohort", str(tmp_path / "out"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cohort_then_preprocess(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["cohort", str(root), "--subjects-per-site", "3", "--shape", "24", "24", "24", "--seed", "3",
                 "--sites", "site-a", "site-c", "--quiet"]) == 0
    summary = json.loads((root / "cohort.json").read_text())
    assert summary["domains"] == {"domain1": "site-a", "domain2": "site-c"}
    code = main(["cohort", str(root), "--subjects-per-site", "3", "--shape", "24", "24", "24", "--quiet"])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert main(["preprocess", str(root), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                 "--crop-shape", "16", "16", "16"]) == 0
    out = capsys.readouterr().out
    assert "domain2_test: 1 subjects (1 with T1), input (2, 16, 16, 16)" in out
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 6


def test_preprocess_bad_crop_shape(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--crop-shape", "20", "24", "24"])
    assert code == 2 and "error: --crop-shape: expected 3 multiples of 8" in capsys.readouterr().err


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="no split folders"):
        main(["--debug", "validate-data", str(tmp_path)])


def test_demo_gives_its_one_worker_every_local_core_but_one_cpu_on_a_cluster():
    import os

    from uda3d.demo import demo_scaling

    local = demo_scaling(None)
    assert (local.num_workers, local.cpus_per_worker, local.address) == (1, float(os.cpu_count()), None)
    remote = demo_scaling("ray://head:10001")
    assert (remote.cpus_per_worker, remote.address) == (1.0, "ray://head:10001")


def test_demo_fine_tunes_start_from_its_backbone_at_the_demo_fine_tune_lr(tmp_path):
    from uda3d.config import PreprocessConfig
    from uda3d.demo import DEMO_FINE_TUNE_LR, DemoConfig, demo_pipeline_config

    config = DemoConfig(workdir=tmp_path)
    pipeline = demo_pipeline_config(config, tmp_path / "cohort", PreprocessConfig(), progress=False)
    assert pipeline.backbone.lr * pipeline.robust_lr_factor == pytest.approx(DEMO_FINE_TUNE_LR)
    assert (pipeline.robust_epochs, pipeline.supervised_epochs) == (config.robust_epochs, config.supervised_epochs)


def test_demo_refuses_a_fine_tune_lr_outside_0_1_naming_the_flag(tmp_path, capsys):
    code = main(["demo", "--workdir", str(tmp_path / "demo"), "--fine-tune-lr", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--fine-tune-lr" in err and "got 2.0" in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_runs_every_stage(local_ray, tmp_path, monkeypatch, capsys):
    """In its default workdir, relative to the current folder, as the README's command runs it (a relative
    path once reached Ray as its storage and failed there)."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "uda3d-demo"
    code = main(["demo", "--subjects-per-site", "3",
                 "--shape", "24", "24", "24", "--backbone-epochs", "3", "--vae-epochs", "2",
                 "--supervised-epochs", "1", "--robust-epochs", "2", "--slice-size", "32", "--tune-trials", "2",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    for step in ("[1/5] cohort", "[2/5] validate-data", "[3/5] preprocess", "[4/5] pipeline", "[5/5] tune"):
        assert step in out
    assert re.search(r"load time: [\d.]+ s decoding, [\d.]+ s from cache", out)
    for method in ("no_adaptation", "source_ft", "uda", "method_kl", "supervised"):
        assert re.search(rf"  {method} +\d+\.\d+ +[-\d.]+ +\d\.\d+", out), method
    assert "uda (label-free choice): " in out and "method_kl guard: " in out
    assert "Spearman(KL objective, target PSNR)" in out
    report = json.loads((work / "report.json").read_text())
    assert report["split"] == "domain2_test"
    for method in ("no_adaptation", "source_ft", "uda", "method_kl", "supervised"):
        assert {"psnr", "ssim", "mae"} <= set(report[method])
    assert "kept_epoch" in report["method_kl"]["guard"]
    selection = report["uda"]["selection"]
    assert [s["name"] for s in selection["scores"]] == ["no_adaptation", "robust", "robust+harmoniser", "ttt_joint"]
    chosen = max(selection["scores"], key=lambda s: s["source_val_psnr"])
    assert selection["chosen"] == chosen["name"]
    runs = {"no_adaptation": "backbone", "robust": "robust", "robust+harmoniser": "robust+harmoniser",
            "ttt_joint": "ttt_joint"}
    assert report["uda"]["checkpoint"] == report["runs"][runs[chosen["name"]]]["checkpoint"]
    assert set(report["wilcoxon"]) == {"source_ft_vs_no_adaptation", "uda_vs_no_adaptation",
                                       "method_kl_vs_no_adaptation", "supervised_vs_no_adaptation",
                                       "uda_vs_source_ft", "method_kl_vs_source_ft", "supervised_vs_source_ft"}
    assert (work / "per_subject.csv").is_file() and (work / "comparison.png").is_file()
    assert (work / "mlflow.db").is_file()
    assert "uda registered as models:/uda3d/1" in out
    # labelled target: nothing skipped, and each quality estimate is set against the true PSNR
    assert report["skipped"] == {}
    assert report["quality_vs_psnr"]["subjects"] == 3 and "ensemble_spread" in report["quality_vs_psnr"]
    assert len(list((work / "synth" / "domain2_test").glob("*_t1_synth.nii.gz"))) == 1
    # the closing tuning run: 2 trials, nested under one study run, and where to look
    tune = json.loads((work / "tune" / "demo" / "summary.json").read_text())
    assert tune["trials"] == tune["planned"] == 2
    assert f"mlflow ui --backend-store-uri sqlite:///{work.resolve() / 'mlflow.db'}" in out


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- setup-commands -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md lacks the set-up block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "torch==2.13.0" in demo and "uda3d demo" in demo
    assert "torch==2.13.0" in tests and "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()


def test_the_demo_flags_default_to_the_demo_config():
    """The demo's flags read their defaults from DemoConfig (no copies): no flags give exactly its config."""
    from uda3d.cli import _demo_config
    from uda3d.demo import DEMO_BACKBONE, DemoConfig

    assert _demo_config(build_parser().parse_args(["demo"])) == DemoConfig()
    assert DEMO_BACKBONE.epochs_decay == DEMO_BACKBONE.epochs // 3


def test_the_demo_backbone_uses_the_gan_losses_only_in_its_last_decaying_epochs():
    """L1 alone until the last DEMO_GAN_EPOCHS (16) decaying epochs, never more GAN epochs than decaying ones."""
    from uda3d.demo import DEMO_BACKBONE, DEMO_GAN_EPOCHS, demo_backbone

    assert DEMO_BACKBONE.total_epochs - DEMO_BACKBONE.l1_warmup_epochs == DEMO_GAN_EPOCHS == 16
    short = demo_backbone(3)  # 3 constant + 1 decaying: the one decaying epoch is the GAN's
    assert (short.epochs_decay, short.l1_warmup_epochs) == (1, 3)
    assert demo_backbone(2).l1_warmup_epochs == demo_backbone(2).total_epochs == 2  # no decay: L1 throughout


def test_demo_refuses_a_workdir_it_did_not_create(tmp_path, capsys):
    work = tmp_path / "runs"
    (work / "ray_results" / "backbone").mkdir(parents=True)  # somebody's training runs
    assert main(["demo", "--workdir", str(work), "--quiet"]) == 2
    assert f"--workdir: {work} holds files the demo did not create" in capsys.readouterr().err
    assert (work / "ray_results" / "backbone").is_dir() and not (work / "cohort").exists()


@pytest.mark.parametrize("argv, named", [
    (["train-backbone", "--lr", "0", "--epochs", "1"], "--lr: expected 0 < lr < 1"),
    (["pipeline", "--backbone-lr", "2"], "--backbone-lr: expected 0 < lr < 1"),
    (["pipeline", "--adapt-lr", "0"], "--adapt-lr: expected 0 < lr < 1"),
    (["pipeline", "--ele-percent", "120"], "--ele-percent: expected 0 < ele_percent <= 100"),
])
def test_errors_name_the_flag_the_value_came_from(tmp_path, capsys, argv, named):
    """Configs check fields by their own names; the error names the flag the user typed."""
    code = main([argv[0], "--dataroot", str(tmp_path), *argv[1:], "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"uda3d {argv[0]}: error: {named}" in err, err
