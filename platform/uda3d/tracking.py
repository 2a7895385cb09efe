"""The one place that talks to MLflow: runs, params, metrics, tags and artifacts.

Everything else calls this adapter, so the tracking backend can change (or be switched off, with
``uri=None``) without touching training code. The default store is a local SQLite file so
``mlflow ui --backend-store-uri sqlite:///...`` works at once; ``MLFLOW_TRACKING_URI`` overrides it.
Experiments are created by the driver with an explicit artifact location, or MLflow would put
artifacts in Ray's temporary session folder.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uda3d.config import TrackingConfig

ENV_URI = "MLFLOW_TRACKING_URI"
PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch


def resolve_tracking(workdir: str | Path, experiment: str, uri: str | None = None) -> TrackingConfig:
    """An explicit ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<workdir>/mlflow.db``."""
    workdir = Path(workdir).resolve()
    uri = uri or os.environ.get(ENV_URI) or f"sqlite:///{workdir / 'mlflow.db'}"
    artifacts = None if not uri.startswith("sqlite:") else (workdir / "mlartifacts").as_uri()
    return TrackingConfig(uri=uri, experiment=experiment, artifact_root=artifacts)


def ensure_experiment(config: TrackingConfig) -> str | None:
    """Create the experiment if needed (in the driver) and return its id."""
    if config.uri is None:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.uri)
    found = client.get_experiment_by_name(config.experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(config.experiment, artifact_location=config.artifact_root)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b": "value"}`` strings, as MLflow params."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def git_commit(path: str | Path = ".") -> str:
    """The checkout's commit, or ``unknown`` outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """One MLflow run. Only rank 0 should create a live tracker; others get ``Tracker(None)``."""

    STEP_KEY = "epoch"

    def __init__(self, config: TrackingConfig | None) -> None:
        self.config = config if config is not None and config.uri else None
        self.run_id: str | None = None
        self._client = None
        if self.config:  # imported only when tracking: keeps `uda3d --help` and non-zero ranks light
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.config.uri)
        self._logged_through: int | None = None

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def start(self, run_name: str, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None, run_id: str | None = None) -> str | None:
        """Start a new run, or continue ``run_id`` (a resumed training keeps its run).

        When continuing, steps the run already holds are not logged again: an interruption between
        logging an epoch and registering its checkpoint makes the resumed run repeat that epoch
        (deterministically, from the previous checkpoint), and MLflow keeps one value per epoch.
        """
        if not self.enabled:
            return None
        if run_id is not None:
            self.run_id = run_id
            self._client.update_run(run_id, status="RUNNING")
            history = self._client.get_metric_history(run_id, self.STEP_KEY)
            self._logged_through = max((m.step for m in history), default=None)
        else:
            exp_id = ensure_experiment(self.config)
            tags = dict(tags or {})
            if self.config.parent_run_id:
                tags.setdefault("mlflow.parentRunId", self.config.parent_run_id)
            run = self._client.create_run(exp_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            if params:
                self.log_params(params)
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Every (flattened) param in one ``log_batch`` call per MLflow's 100-param limit."""
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[start:start + PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.enabled:
            for k, v in tags.items():
                self._client.set_tag(self.run_id, k, v)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.enabled or (self._logged_through is not None and step <= self._logged_through):
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self._client.set_terminated(self.run_id, status=status)


def finish_open_runs(config: TrackingConfig | None, tags_by_run: Mapping[str, Mapping[str, str]]) -> list[str]:
    """End each run of ``tags_by_run`` that is still RUNNING as FINISHED, tagged with its tags.

    A Tune scheduler stops a trial by ending its process, so the trial's own ``end()`` never runs:
    without this, every early-stopped trial would show as RUNNING in MLflow forever. Returns the ids
    it ended.
    """
    if config is None or not config.uri:
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.uri)
    ended = []
    for run_id, tags in tags_by_run.items():
        if client.get_run(run_id).info.status == "RUNNING":
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            client.set_terminated(run_id, status="FINISHED")
            ended.append(run_id)
    return ended


def register_model(config: TrackingConfig, run_id: str, directory: str | Path, name: str, alias: str | None = None,
                   tags: Mapping[str, str] | None = None) -> dict[str, str]:
    """Log the model folder ``directory`` to ``run_id`` as ``model/`` and register it as a new version of ``name``.

    Through an ``MlflowClient`` bound to ``config.uri``: MLflow's fluent API would set the
    process-wide tracking URI (and ``$MLFLOW_TRACKING_URI``) as a side effect. ``uri`` names the
    version by ``alias`` when one is given (``models:/NAME@ALIAS``), else by number.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.uri)
    client.log_artifacts(run_id, str(directory), "model")
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = str(client.create_model_version(name, source, run_id=run_id, tags=dict(tags or {})).version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return {"name": name, "version": version, "alias": alias or "",
            "uri": f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"}


@dataclass(frozen=True)
class RunRecord:
    """What ``uda3d compare`` reads of one MLflow run: names, params, latest metrics, tags."""

    run_id: str
    name: str
    status: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]


def search_runs(config: TrackingConfig, filter_string: str = "", max_results: int = 1000) -> list[RunRecord]:
    """Every run of ``config.experiment`` matching MLflow's ``filter_string``, oldest first."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from uda3d.errors import ConfigError

    client = MlflowClient(tracking_uri=config.uri)
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ConfigError("--experiment", f"no experiment {config.experiment!r} in {config.uri}; known: {known}")
    try:
        runs = client.search_runs([experiment.experiment_id], filter_string=filter_string,
                                  max_results=max_results, order_by=["attributes.start_time ASC"])
    except MlflowException as e:
        raise ConfigError("--filter", f"MLflow rejected {filter_string!r} ({e.message.splitlines()[0]})") from None
    return [RunRecord(run_id=r.info.run_id, name=r.info.run_name or "", status=r.info.status,
                      params=dict(r.data.params), metrics=dict(r.data.metrics),
                      tags={k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.") or
                            k == "mlflow.parentRunId"})
            for r in runs]
