"""Running MONAI's random transforms reproducibly and getting plain tensors back.

Every augmentation here (robust intensity, spatial, the held-out k-space perturbation of a selection
signal) seeds a MONAI random transform from our own generator, so a run repeats, and converts its
output from a ``MetaTensor`` (which carries metadata and slows later arithmetic) to a plain tensor.
One place does both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def plain_tensor(value: Any) -> torch.Tensor:
    """A MONAI output (``MetaTensor`` or array) as a plain ``torch.Tensor``."""
    return value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)


def apply_seeded(transform: Any, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``transform(x)`` with its random state drawn from ``rng``, as a plain float tensor."""
    transform.set_random_state(seed=int(rng.integers(2**31 - 1)))
    return plain_tensor(transform(x)).float()
