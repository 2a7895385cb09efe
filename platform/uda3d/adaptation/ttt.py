"""Test-time training (TTT) with cross-contrast self-supervision, site-level and per subject.

1. *Joint source training* (``BackboneConfig.aux_weight > 0``, in ``Pix2PixTrainer``): the pix2pix
   step, then a step of the auxiliary task (rebuild FLAIR and T2 from a damaged copy,
   ``uda3d.losses.cross_contrast``) on the same undamaged source inputs, through the shared encoder
   and the auxiliary head.
2. *Site-level TTT* (``adapt_site``): on unlabeled target volumes, Adam on the encoder alone
   minimises the auxiliary loss (both heads frozen, so the T1 head reads features the source taught
   it), each target step beside the ordinary supervised source step as anchor. The auxiliary loss
   on *held-back* target volumes (fixed damage, so every epoch and candidate sees the same) picks
   the epoch, among those within the source guard: a label-free stop that is not one of the
   candidate's training transforms (those are the source-side flips and intensity jitter). Measured
   on the development cohort, it can be gamed: at lr >= 1e-3 it fell every epoch while target PSNR
   fell too (``benchmarks/results/dev_sweep.md``), so the default lr keeps TTT close to the identity.
3. *Per-subject TTT* (``PerSubjectTTT``): a copy of the model is tuned on one target volume's
   auxiliary loss before that volume is synthesized, then thrown away.

Target T1 is never read here: target batches are used through ``input`` and ``mask`` only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from uda3d.config import TTTConfig
from uda3d.losses.cross_contrast import auxiliary_loss
from uda3d.models.ttt import TTTGenerator, encoder_parameters
from uda3d.training.pix2pix import Pix2PixTrainer
from uda3d.training.runtime import cycle_batches, unwrap

Batch = dict[str, Any]
HELD_OUT_SEED = 424242


@torch.no_grad()
def held_out_auxiliary_loss(model: nn.Module, batches: Iterable[Batch], config: TTTConfig,
                            seed: int = HELD_OUT_SEED) -> float:
    """Mean auxiliary loss over ``batches`` with the same damage for every model (a label-free score)."""
    device = next(model.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    values = [float(auxiliary_loss(model, b["input"].to(device), b["mask"].to(device), rng, config))
              for b in batches]
    return sum(values) / len(values)


def target_step(model: nn.Module, optimiser: torch.optim.Optimizer, batch: Batch, rng: torch.Generator,
                config: TTTConfig) -> float:
    """One TTT step on one unlabeled target batch: only the optimiser's (encoder) parameters move."""
    device = next(model.parameters()).device
    optimiser.zero_grad(set_to_none=True)
    loss = auxiliary_loss(model, batch["input"].to(device), batch["mask"].to(device), rng, config)
    loss.backward()
    optimiser.step()
    model.zero_grad(set_to_none=True)
    return float(loss.detach())


@dataclass(frozen=True)
class SiteTTTResult:
    """Per-epoch held-out auxiliary loss and source-val PSNR (epoch 0 = before), and the kept epoch."""

    history: list[dict[str, float]]
    kept_epoch: int
    reason: str


def adapt_site(trainer: Pix2PixTrainer, target_batches: Callable[[], Sequence[Batch]],
               held_out: Callable[[], Sequence[Batch]], source_batches: Callable[[int], Iterable[Batch]],
               source_val: Callable[[], Iterable[Batch]], config: TTTConfig, max_source_drop: float,
               report: Callable[[dict[str, float]], None] = lambda m: None,
               evaluate: Callable[[], dict[str, float]] | None = None) -> SiteTTTResult:
    """Site-level TTT for ``config.epochs`` passes; the generator ends as the kept epoch's.

    Args:
        trainer: a jointly trained backbone (``aux_weight > 0``: its generator a ``TTTGenerator``).
        target_batches: unlabeled target volumes to adapt on (``input``, ``mask``).
        held_out: other unlabeled target volumes: their auxiliary loss chooses the epoch.
        source_batches: epoch -> labelled source pairs for the anchor step (cycled).
        source_val: labelled source-validation volumes for the guard.
        max_source_drop: an epoch whose source-val PSNR fell more than this (dB) is never kept.
        evaluate: oracle metrics (target T1), reported with an ``eval_`` prefix and never read back.
    """
    generator = unwrap(trainer.generator)
    optimiser = torch.optim.Adam(encoder_parameters(generator, config.scope), lr=config.lr, betas=(0.9, 0.999))
    states = {0: copy.deepcopy(generator.state_dict())}
    history = []

    def measure(epoch: int, train_loss: float) -> None:
        row = {"epoch": float(epoch), "train_aux_loss": train_loss,
               "held_out_aux_loss": held_out_auxiliary_loss(generator, held_out(), config),
               "source_val_psnr": trainer.evaluate(source_val())["psnr"]}
        if evaluate is not None:
            row.update({f"eval_{k}": v for k, v in evaluate().items()})
        history.append(row)
        report(row)

    measure(0, float("nan"))
    rng = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        source = cycle_batches(source_batches, epoch)
        losses = []
        for batch in target_batches():
            if config.source_step:
                trainer.train_step(next(source))
            losses.append(target_step(generator, optimiser, batch, rng, config))
        states[epoch] = copy.deepcopy(generator.state_dict())
        measure(epoch, sum(losses) / len(losses))
    start = history[0]["source_val_psnr"]
    allowed = [h for h in history if h["epoch"] == 0 or start - h["source_val_psnr"] <= max_source_drop]
    kept = min(allowed, key=lambda h: h["held_out_aux_loss"])
    generator.load_state_dict(states[int(kept["epoch"])])
    reason = (f"epoch {int(kept['epoch'])}: lowest held-out auxiliary loss ({kept['held_out_aux_loss']:.4f}) "
              f"among {len(allowed)} epoch(s) within the source guard")
    return SiteTTTResult(history, int(kept["epoch"]), reason)


class PerSubjectTTT(nn.Module):
    """Synthesize each volume after tuning a fresh copy of ``model``'s encoder on that volume alone.

    ``forward`` takes (B, C, D, H, W) inputs like any generator, so scoring and synthesis use it
    unchanged; the brain mask is the inputs' non-zero voxels (preprocessing zeroes the background).
    """

    def __init__(self, model: TTTGenerator, config: TTTConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def adapted(self, inputs: torch.Tensor) -> TTTGenerator:
        """A copy of the model tuned for ``config.subject_steps`` steps on ``inputs`` (1, C, D, H, W)."""
        model = copy.deepcopy(self.model)
        optimiser = torch.optim.Adam(encoder_parameters(model, self.config.scope), lr=self.config.subject_lr)
        batch = {"input": inputs, "mask": (inputs.abs().sum(1, keepdim=True) > 0)}
        rng = torch.Generator().manual_seed(self.config.seed)
        with torch.enable_grad():
            for _ in range(self.config.subject_steps):
                target_step(model, optimiser, batch, rng, self.config)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(x.shape[0]):
            with torch.no_grad():
                outs.append(self.adapted(x[i:i + 1])(x[i:i + 1]))
        return torch.cat(outs)
