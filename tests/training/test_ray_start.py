"""How ``ensure_ray`` starts a local Ray versus joining a cluster (ray.init stubbed: nothing starts)."""

from __future__ import annotations

import os

import pytest

from uda3d.training import ray_cluster

TUNED = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")


@pytest.fixture
def fake_ray(monkeypatch):
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(dict(kwargs, env={k: os.environ.get(k)
                                                                                      for k in TUNED})))
    for name in ("RAY_ADDRESS", *TUNED):  # set then deleted, so whatever ensure_ray sets is undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return calls


def test_a_local_ray_polls_often_and_starts_no_preemption_watcher(fake_ray):
    ray_cluster.ensure_ray(None, 2.0)
    [call] = fake_ray
    assert call["dashboard_host"] == "127.0.0.1" and call["num_cpus"] >= 3
    assert call["env"] == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def test_a_cluster_keeps_ray_trains_own_settings(fake_ray):
    ray_cluster.ensure_ray("ray://head:10001")
    [call] = fake_ray
    assert call["address"] == "ray://head:10001"
    assert call["env"] == {name: None for name in TUNED}


def test_a_users_own_setting_wins(fake_ray, monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1")
    ray_cluster.ensure_ray(None)
    assert fake_ray[0]["env"]["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "1"
