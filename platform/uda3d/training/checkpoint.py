"""Save and load training state as plain state dicts (safe to load with ``weights_only=True``), and the
generator a checkpoint holds (``load_generator``).

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


def load_generator(checkpoint: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The generator of a checkpoint (its config travels in it), in eval mode.

    A checkpoint that also holds an input ``harmoniser`` (``uda3d.models.harmoniser``) loads as
    the harmoniser in front of the generator, so every consumer (evaluation, synthesis) uses both.

    Args:
        checkpoint: a checkpoint folder (``state.pt`` inside) from ``uda3d train-backbone``, ``uda3d adapt``
            or the pipeline.
        device: where the networks are placed.

    Returns:
        The generator (``InputMapped`` when a harmoniser travels with it), in eval mode.

    Raises:
        DataError: the checkpoint holds no ``config`` and ``generator``.
    """
    from uda3d.config import BackboneConfig, from_dict
    from uda3d.models.factory import build_generator
    from uda3d.models.harmoniser import InputMapped, MonotoneHarmoniser

    state = load_state(checkpoint, map_location=device)
    if not {"config", "generator"} <= set(state):
        raise DataError(checkpoint, "not a generator checkpoint; expected one from 'uda3d train-backbone', "
                                    "'uda3d adapt' or the pipeline (keys 'config' and 'generator')")
    generator = build_generator(from_dict(BackboneConfig, state["config"])).to(device)
    generator.load_state_dict(state["generator"])
    if "harmoniser" in state:
        logits = state["harmoniser"]["logits"]
        harmoniser = MonotoneHarmoniser(logits.shape[0], logits.shape[1] + 1).to(device)
        harmoniser.load_state_dict(state["harmoniser"])
        generator = InputMapped(harmoniser, generator)
    return generator.eval()


def _unsafe_global(message: str) -> str:
    """The callable a refused checkpoint names (``posix.system``), from torch's message, if it says."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else "not a tensor or state dict"
