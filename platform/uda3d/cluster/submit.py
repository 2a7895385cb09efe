"""``uda3d submit``: run a stage on a Ray cluster as a Ray job, with its logs streamed back.

A thin layer over Ray's ``JobSubmissionClient`` — exactly what ``ray job submit --working-dir .
--runtime-env cluster/runtime_env.yaml -- python -m uda3d STAGE ...`` does — so the same stage
entrypoints run on a laptop and on a GPU cluster. The runtime environment ships the code (the
repository as ``working_dir`` minus data, caches and venvs; the library as a ``py_module``), never
the Python environment: that comes from the cluster's image. ``MLFLOW_TRACKING_URI`` travels with
the job so runs land in the shared tracking server. Returns the job's exit status: 0 only when
the job ends ``SUCCEEDED``.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uda3d.errors import ConfigError

RUNTIME_ENV_KEYS = {"working_dir", "py_modules", "excludes", "env_vars", "pip", "conda", "uv", "container",
                    "image_uri", "config", "nsight", "py_executable"}
# Stages that run Ray Train and take the scaling options.
SCALABLE_STAGES = {"train-backbone", "train-vae", "adapt", "pipeline"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def load_runtime_env(path: str | Path, base: str | Path = ".") -> dict[str, Any]:
    """The runtime env from a YAML file, validated, with local paths resolved against ``base``."""
    import yaml

    path = Path(path)
    try:
        env = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError("--runtime-env", f"cannot read it ({e.strerror})", str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError("--runtime-env", f"not valid YAML ({str(e).splitlines()[0]})", str(path)) from None
    if not isinstance(env, dict):
        raise ConfigError("--runtime-env", "expected a mapping of runtime_env fields", str(path))
    unknown = sorted(set(env) - RUNTIME_ENV_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown runtime_env field; expected one of {sorted(RUNTIME_ENV_KEYS)}",
                          str(path))
    base = Path(base).resolve()

    def local(value: str) -> str:
        return value if "://" in value else str((base / value).resolve())

    if "working_dir" in env:
        env["working_dir"] = local(str(env["working_dir"]))
    if "py_modules" in env:
        env["py_modules"] = [local(str(m)) for m in env["py_modules"]]
    env["env_vars"] = {str(k): str(v) for k, v in (env.get("env_vars") or {}).items()}
    return env


def stage_command(stage: str, stage_args: Sequence[str], num_workers: int | None = None,
                  gpus_per_worker: float | None = None) -> str:
    """The job's entrypoint: ``python -m uda3d STAGE ARGS`` plus the scaling flags the stage takes."""
    args = list(stage_args)
    if stage in SCALABLE_STAGES:
        if num_workers is not None:
            args += ["--num-workers", str(num_workers)]
        if gpus_per_worker:
            args += ["--use-gpu", "--gpus-per-worker", str(gpus_per_worker)]
    elif num_workers is not None or gpus_per_worker:
        raise ConfigError("--num-workers/--gpus-per-worker", f"stage {stage!r} does not run Ray Train "
                          f"(those that do: {sorted(SCALABLE_STAGES)})")
    return shlex.join(["python", "-m", "uda3d", stage, *args])


def dashboard_address(address: str) -> str:
    """Ray's job server speaks HTTP on the dashboard port: accept ``host:port`` or a full URL."""
    return address if "://" in address else f"http://{address}"


def auth_headers() -> dict[str, str]:
    """Ray 2.60 clusters use token authentication by default: send the token (``$RAY_AUTH_TOKEN``,
    ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) as a Bearer header when there is one. Passing
    it explicitly works whatever ``RAY_AUTH_MODE`` Ray read when it was first imported."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _write_stdout(text: str) -> None:
    """The job's own output, passed through unchanged (not narration: not the logging module's)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def submit(address: str, entrypoint: str, runtime_env: dict[str, Any], wait: bool = True,
           log: Callable[[str], None] | None = None,
           poll_s: float = 1.0) -> tuple[str, str]:
    """Submit ``entrypoint``; with ``wait``, stream its logs until it ends. Returns (job id, status).

    ``log`` receives each new piece of the job's log; by default it is written to ``sys.stdout`` as it comes.
    """
    from ray.job_submission import JobSubmissionClient

    log = log or _write_stdout
    env = dict(runtime_env)
    env_vars = dict(env.get("env_vars") or {})
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env_vars.setdefault("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    env["env_vars"] = env_vars
    client = JobSubmissionClient(dashboard_address(address), headers=auth_headers() or None)
    deadline = time.monotonic() + 120
    while True:  # a freshly started head answers before its job agent is up ("No available agent")
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env)
            break
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    if not wait:
        return job_id, client.get_job_status(job_id).value
    shown = 0
    while True:
        status = client.get_job_status(job_id).value
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            log(logs[shown:])
            shown = len(logs)
        if status in TERMINAL:
            return job_id, status
        time.sleep(poll_s)
