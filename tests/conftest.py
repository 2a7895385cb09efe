"""Shared fixtures: one tiny synthetic cohort per session, mutable copies of it per test, one local Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY, tiny_checkpoints
from uda3d.cohort.generate import generate_cohort


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A read-only 2-site cohort at 32^3 (4 subjects per site: 2 train, 1 val, 1 test)."""
    root = tmp_path_factory.mktemp("cohort") / "root"
    generate_cohort(root, TINY, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_trained(tiny_cohort, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained backbone and slice VAE on the tiny cohort, read-only, trained once per session
    (about 20 s here): (backbone dir, VAE dir)."""
    return tiny_checkpoints(tiny_cohort, tmp_path_factory.mktemp("trained"))


@pytest.fixture
def cohort_copy(tiny_cohort, tmp_path) -> Path:
    """A private copy of the tiny cohort that a test may break."""
    dst = tmp_path / "root"
    shutil.copytree(tiny_cohort, dst)
    return dst


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for every in-process test that runs a stage: started as the CLI starts it
    (``ensure_ray``: loopback dashboard, a CPU more than the training workers take — the demo's one
    worker takes every core), stopped at the end. Starting and stopping Ray costs 10-20 s a time on
    2 cores; the stages themselves join a running Ray, as they do inside a Ray job."""
    import os

    import ray

    from uda3d.training.ray_cluster import ensure_ray

    ensure_ray(None, float(max(os.cpu_count() or 1, 2)))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(local_ray) -> str:
    """The session Ray's GCS address, for a CLI subprocess to join (``--address``) instead of starting its own."""
    import ray

    return ray.get_runtime_context().gcs_address
