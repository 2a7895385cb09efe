"""Seeding, mixed-precision choices and the source-anchor batch cycle, shared by every training loop."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """What ``--amp`` resolves to on a device: the autocast dtype (None = fp32) and whether to scale."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(amp: bool, device: torch.device) -> Precision:
    """bf16 autocast on GPUs that support it, fp16 with a GradScaler on older GPUs, off on CPU."""
    if not amp or device.type != "cuda":
        return Precision(None, False)
    if torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


def autocast(device: torch.device, precision: Precision):
    """The autocast context for ``precision`` (a no-op context in fp32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def cycle_batches(batches: Callable[[int], Iterable[Any]], epoch: int) -> Iterator[Any]:
    """``batches(epoch)`` over and over: the source pairs an adaptation's anchor steps draw from.

    Adaptations take one source step per target volume, and there may be more target volumes than
    source pairs; the same epoch's order restarts each time. An empty source raises ValueError.
    """
    while True:
        empty = True
        for batch in batches(epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError("source batches yielded nothing; the source anchor step needs at least one pair")


@contextlib.contextmanager
def own_gradients(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Run one optimiser step on gradients of its own, leaving the parameters' pending gradients as they were.

    With ``grad_accum > 1`` the source step accumulates gradients over several batches before it
    steps; a second step in between (the adaptation's target step, the auxiliary task) that zeroed
    them would silently drop the source batches already seen. Their gradients are set aside here
    and put back after the inner step.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    pending = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, grad in zip(params, pending):
            p.grad = grad
