"""Save and load training state as plain state dicts (safe to load with ``weights_only=True``).

A checkpoint is a pickle, and unpickling can call any function it names: a crafted ``state.pt``
would run code the moment it is loaded. ``load_state`` accepts only tensors, containers, numbers
and strings (torch's weights-only unpickler) and refuses anything else with one line.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file

STATE_FILE = "state.pt"
# What inference needs besides the networks: the preprocessing config, the crop trained on and the
# source's intensity reference (``uda3d.quality``). Every stage that derives a model copies them on.
INFERENCE_KEYS = ("preprocess", "input_shape", "source_reference")


def inference_meta(state: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``state`` a derived checkpoint must carry on so it can be run alone."""
    return {key: state[key] for key in INFERENCE_KEYS if key in state}


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
        raise DataError(path, "checkpoint not found; expected a checkpoint folder holding state.pt, or the file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError on damaged files
        if isinstance(exc, pickle.UnpicklingError) and str(exc).startswith(_REFUSED):
            raise DataError(path, f"refused: it holds a pickled Python object ({_unsafe_global(str(exc))}) that "
                                  "loading would have to run; expected plain tensors and state dicts (as uda3d "
                                  "writes them); do not load it") from None
        raise DataError(path, f"unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise DataError(path, f"checkpoint holds a {type(state).__name__}; expected a dict of states")
    return state


_REFUSED = "Weights only load failed"  # torch's weights-only unpickler met something other than data


def _unsafe_global(message: str) -> str:
    """The callable a refused checkpoint names (``posix.system``), from torch's message, if it says."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else "not a tensor or state dict"
