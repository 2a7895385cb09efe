"""Save and load training state as plain state dicts (safe to load with ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file

STATE_FILE = "state.pt"


def save_state(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state dicts, numbers, strings) to ``directory/state.pt`` atomically."""
    path = Path(directory) / STATE_FILE
    with atomic_file(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a state written by ``save_state``; never unpickles arbitrary objects."""
    path = Path(directory)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError on damaged files
        raise DataError(path, f"unreadable checkpoint ({type(exc).__name__})") from None
