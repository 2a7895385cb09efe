"""Ray plumbing shared by every distributed stage: start or join a cluster, storage, worker helpers."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from uda3d.config import ScalingOptions
from uda3d.errors import ConfigError

log = logging.getLogger(__name__)


def ensure_ray(address: str | None) -> None:
    """Connect to ``address``, or start a local Ray on demand (the embedded default)."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(log_to_driver=True)


def scaling_config(options: ScalingOptions):
    """Ray Train's ``ScalingConfig`` from our validated options."""
    from ray.train import ScalingConfig

    resources = {"CPU": options.cpus_per_worker}
    if options.use_gpu:
        resources["GPU"] = options.gpus_per_worker or 1.0
    return ScalingConfig(num_workers=options.num_workers, use_gpu=options.use_gpu, resources_per_worker=resources)


def run_folder(storage_path: str | Path, run_name: str, resume: bool) -> Path:
    """Check the run folder against ``resume``: a new run must not overwrite one, a resume needs one."""
    folder = Path(storage_path) / run_name
    exists = folder.is_dir() and any(folder.iterdir())
    if exists and not resume:
        raise ConfigError("--run-name", f"run {run_name!r} already exists under {storage_path}; pass --resume to "
                                        "continue it or choose another --run-name")
    if resume and not exists:
        raise ConfigError("--resume", f"no run {run_name!r} under {storage_path} to resume")
    return folder


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer, in order: equal digests mean bit-identical weights."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_strings(value: str) -> list[str]:
    """Every rank's ``value`` (all ranks must call it); just ``[value]`` without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
