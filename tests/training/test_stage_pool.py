"""The stage pool: later stages run on the first stage's worker group, with the results a fresh ``fit`` gives."""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from uda3d.config import BackboneConfig, ScalingOptions, StageRun
from uda3d.training.checkpoint import load_state
from uda3d.training.ray_runtime import StageJob, launch, report
from uda3d.training.stage_pool import PooledJob, StagePool, checkpoint_name, keep_newest, stage_pool


def test_checkpoint_names_follow_ray_and_sort_in_the_order_written():
    first = datetime.datetime(2026, 11, 30, 9, 59, 59, 998_000)
    names = [checkpoint_name(first + datetime.timedelta(milliseconds=ms)) for ms in (0, 1, 3, 1000, 3_600_000)]
    assert names[0] == "checkpoint_2026-11-30_09-59-59.998"
    assert all(re.fullmatch(r"checkpoint_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}", n) for n in names)
    assert names == sorted(names) and len(set(names)) == len(names)


def test_keep_newest_removes_all_but_the_two_newest_checkpoints(tmp_path):
    for age, name in enumerate(["checkpoint_d", "checkpoint_c", "checkpoint_b", "checkpoint_a"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))  # checkpoint_d is the newest
    (tmp_path / "mlflow_run_id").write_text("x")
    gone = keep_newest(tmp_path)
    assert sorted(p.name for p in gone) == ["checkpoint_a", "checkpoint_b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_c", "checkpoint_d", "mlflow_run_id"]


def test_a_pooled_report_copies_rank0s_checkpoint_whole_into_the_run_folder(tmp_path):
    folder = tmp_path / "run"
    lead, other = PooledJob(run_folder=folder, rank=0), PooledJob(run_folder=folder, rank=1)
    for epoch in range(1, 4):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "state.txt").write_text(f"epoch {epoch}")
            lead.report({"epoch": epoch}, directory)
            other.report({"epoch": epoch}, directory)
    kept = sorted(folder.glob("checkpoint_*"))
    assert len(kept) == 2 and lead.checkpoint == str(kept[-1])
    assert (kept[-1] / "state.txt").read_text() == "epoch 3"
    assert lead.metrics == other.metrics == {"epoch": 3} and other.checkpoint is None
    assert [p.name for p in folder.iterdir() if not p.name.startswith("checkpoint_")] == []  # no staging left


def test_the_pool_takes_only_stages_of_its_own_scaling_with_unsplit_data(tmp_path):
    from ray.train import DataConfig

    pool = StagePool(ScalingOptions(num_workers=2), tmp_path)
    assert pool.accepts(ScalingOptions(num_workers=2))
    assert pool.accepts(ScalingOptions(num_workers=2), DataConfig(datasets_to_split=[]))
    assert not pool.accepts(ScalingOptions(num_workers=1))
    assert not pool.accepts(ScalingOptions(num_workers=2, max_failures=1))
    assert not pool.accepts(ScalingOptions(num_workers=2), DataConfig())  # Ray Train would split "train"


@dataclass(frozen=True)
class _Spec:
    stage: StageRun


def _where(job: StageJob) -> None:
    """A stage that reports the process it ran in (and fails when its context says so)."""
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "pid").write_text(str(os.getpid()))
        report({"pid": os.getpid()}, directory)
    if job.context == "fail":
        raise ValueError("this stage fails on purpose")


def _generator_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    return load_state(checkpoint)["generator"]


@pytest.mark.slow
def test_pooled_stages_share_one_worker_and_train_exactly_as_a_fresh_fit(local_ray, tiny_cohort, tmp_path):
    from ray.train import WorkerGroupError

    from uda3d.training.backbone_stage import BackboneSpec, run_backbone

    work = tmp_path / "work"
    work.mkdir()
    stage = StageRun(dataroot=str(tiny_cohort), workdir=str(work), progress=False)

    def backbone(name: str):
        config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=0)
        return run_backbone(BackboneSpec(stage=StageRun(**{**stage.__dict__, "run_name": name}), backbone=config))

    def where(name: str, context: str | None = None):
        return launch(_where, StageJob(_Spec(StageRun(**{**stage.__dict__, "run_name": name})), context))

    fresh = backbone("fresh")
    with stage_pool(stage.scaling, stage.storage_path) as pool:
        first = where("first")
        pooled = [backbone("pooled1"), backbone("pooled2")]
        last = where("last")
        assert first.metrics["pid"] == last.metrics["pid"]  # every stage ran in the pool's one worker process
        assert Path(last.checkpoint).parent == work / "ray_results" / "last"
        assert (Path(last.checkpoint) / "pid").read_text() == str(last.metrics["pid"])
        with pytest.raises(WorkerGroupError, match="this stage fails on purpose"):
            where("broken", "fail")
        assert not pool.alive and not pool.accepts(stage.scaling)  # later stages get a fresh fit
    assert pool.jobs_run == 4
    assert not list((work / "ray_results").glob(".stage-pool-*"))  # the pool's own run folder is removed

    reference = _generator_weights(fresh.checkpoint)
    for result in pooled:  # the second ran in a process that had already trained a stage
        assert Path(result.checkpoint).parent.name.startswith("pooled")
        weights = _generator_weights(result.checkpoint)
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
        assert result.metrics["loss_l1"] == fresh.metrics["loss_l1"]
        assert int(result.metrics["epoch"]) == 2


def _lost_once(job: StageJob) -> None:
    """A stage whose worker dies after its first checkpoint; run again, it resumes from that checkpoint."""
    folder = Path(job.spec.stage.storage_path) / job.spec.stage.run_name
    if not list(folder.glob("checkpoint_*")):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "pid").write_text(str(os.getpid()))
            report({"attempt": 1}, directory)
        os._exit(1)  # a lost node: no exception, no clean-up
    [checkpoint] = folder.glob("checkpoint_*")
    lost = int((checkpoint / "pid").read_text())
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "pid").write_text(str(os.getpid()))
        report({"attempt": 2, "pid": os.getpid(), "lost_pid": lost}, directory)


@pytest.mark.slow
def test_a_lost_pool_worker_is_replaced_and_the_stage_resumes_from_its_run_folder(local_ray, tmp_path):
    stage = StageRun(dataroot="", workdir=str(tmp_path), scaling=ScalingOptions(max_failures=1), progress=False)

    def run(worker, name: str):
        return launch(worker, StageJob(_Spec(StageRun(**{**stage.__dict__, "run_name": name})), None))

    with stage_pool(stage.scaling, stage.storage_path) as pool:
        resumed = run(_lost_once, "lost")
        after = run(_where, "after")
        assert pool.alive
    assert resumed.metrics["attempt"] == 2 and resumed.metrics["pid"] != resumed.metrics["lost_pid"]
    assert len(list((tmp_path / "ray_results" / "lost").glob("checkpoint_*"))) == 2  # the lost attempt's is kept
    assert (Path(resumed.checkpoint) / "pid").read_text() == str(resumed.metrics["pid"])
    assert after.metrics["pid"] == resumed.metrics["pid"]  # the replacement group serves the later stages
