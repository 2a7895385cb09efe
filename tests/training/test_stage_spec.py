"""The typed run spec: a stage's driver hands its workers the frozen spec itself, never a raw dict."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path

import pytest

from uda3d.adaptation.stage import adapt_worker
from uda3d.config import BackboneConfig, ScalingOptions, StageRun
from uda3d.errors import ConfigError
from uda3d.training import ray_runtime
from uda3d.training.backbone_stage import BackboneSpec, backbone_worker, run_backbone
from uda3d.training.vae_stage import vae_worker
from uda3d.tuning.tune import adapt_trial


class _Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch) -> dict:
    """Stub Ray: ``launch`` builds its ``TorchTrainer``, which records its arguments and stops the run."""
    seen: dict = {}

    class FakeTorchTrainer:
        def __init__(self, worker, train_loop_config=None, **kwargs):
            seen.update(worker=worker, config=train_loop_config, **kwargs)

        def fit(self):
            raise _Stop

    import ray.train.torch

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FakeTorchTrainer)
    monkeypatch.setattr(ray_runtime, "ensure_ray", lambda *a, **k: None)
    return seen


def test_the_backbone_worker_gets_the_frozen_spec_the_driver_built(tiny_cohort, tmp_path, captured, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in the spec: the worker gets them resolved
    (tmp_path / "work").mkdir()
    stage = StageRun(dataroot=str(tiny_cohort), workdir="work", scaling=ScalingOptions(num_workers=2),
                     run_name="bb", progress=False)
    spec = BackboneSpec(stage=stage, backbone=BackboneConfig(generator="unet", ngf=4, ndf=4, epochs=1))
    with pytest.raises(_Stop):
        run_backbone(spec)

    job = captured["config"]
    assert captured["worker"] is backbone_worker
    assert isinstance(job, ray_runtime.StageJob) and not isinstance(job, dict)
    assert dataclasses.is_dataclass(job.spec) and job.spec.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.spec.stage = stage  # type: ignore[misc]
    assert job.spec == dataclasses.replace(spec, stage=stage.resolved())
    assert job.spec.stage.workdir == str((tmp_path / "work").resolve())
    assert job.context.run_folder == str(Path(stage.storage_path) / "bb")
    assert job.context.tags["stage"] == "backbone"
    assert pickle.loads(pickle.dumps(job)) == job  # what Ray does to reach every worker
    assert captured["run_config"].name == "bb"
    assert captured["scaling_config"].num_workers == 2


def test_workers_take_a_stage_job_not_a_payload():
    for worker in (backbone_worker, vae_worker, adapt_worker):
        [param] = inspect.signature(worker).parameters.values()
        assert param.name == "job" and "StageJob" in str(param.annotation)
    assert "StageJob" in str(inspect.signature(adapt_trial).parameters["job"].annotation)


def test_a_stage_run_is_validated_where_it_is_built():
    with pytest.raises(ConfigError, match="--workdir"):
        StageRun(dataroot="root", workdir="")
    with pytest.raises(ConfigError, match="--run-name"):
        StageRun(dataroot="root", workdir="w", run_name="")
    with pytest.raises(ConfigError, match="--resume"):
        StageRun(dataroot="root", workdir="w", resume="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        BackboneSpec(stage={"dataroot": "root", "workdir": "w"})  # type: ignore[arg-type]
