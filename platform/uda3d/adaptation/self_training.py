"""Uncertainty-masked self-training on unlabeled target volumes (a UDA baseline from the target's own images).

Once per round a frozen copy of the generator (the teacher) predicts T1 for every target volume as
the mean over ``views`` test-time-augmented views (random flips, inverted on the output, and the
robust intensity augmentation of the inputs); the voxelwise variance over the views is its
uncertainty. The student (the trainer's own generator) then takes, per target volume, an L1 step
towards the teacher's mean on its most confident brain voxels (plus the background), optionally on
an intensity-augmented input (the weak-teacher / strong-student trick of FixMatch and Mean Teacher),
and one ordinary supervised source step as an anchor so it cannot drift into agreeing with itself.

Libraries: plain PyTorch for the teacher, masks and steps (the trainer already owns the networks,
optimisers and mixed precision); the views reuse ``uda3d.data.robust_augment`` (MONAI transforms)
so the teacher sees the same kinds of site shift robust source training randomises over. Only the
target batches' ``input``, ``mask`` and ``id`` are read: a target T1 is for scoring, never training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from uda3d.config import RobustAugmentConfig, SelfTrainConfig
from uda3d.data.robust_augment import robust_augment
from uda3d.training.pix2pix import Pix2PixTrainer
from uda3d.training.runtime import Precision, autocast, cycle_batches, unwrap

Batch = dict[str, Any]
SPATIAL = (2, 3, 4)  # spatial axes of a (B, C, D, H, W) tensor


def _intensity(inputs: torch.Tensor, mask: torch.Tensor, rng: torch.Generator,
               config: RobustAugmentConfig) -> torch.Tensor:
    """Robust-augment each (C, D, H, W) sample; probability 0 means none (not even its in-brain rescale)."""
    if config.probability == 0:
        return inputs
    out = torch.stack([robust_augment(x, rng, config) for x in inputs.cpu()]).to(inputs.device)
    return out * mask.to(out.device).to(out.dtype)  # the brain the data names, not just non-zero voxels


def _device_of(module: nn.Module, fallback: torch.device) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:  # a parameter-free module (tests): run where the data is
        return fallback


@torch.no_grad()
def teacher_views(generator: nn.Module, inputs: torch.Tensor, mask: torch.Tensor, config: SelfTrainConfig,
                  rng: torch.Generator, precision: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxelwise mean and variance of the generator's T1 over ``config.views`` augmented views.

    Averaging flipped and intensity-shifted views gives a steadier pseudo-label than one pass, and
    their disagreement says where it should not be trusted. The first view is the plain input.

    Args:
        generator: the teacher (its train/eval mode is restored on return).
        inputs: (B, 2, D, H, W) in [0, 1].
        mask: (B, 1, D, H, W) brain mask; augmented views are zero outside it, as real inputs are.
        config: views and their intensity augmentation.
        rng: draws the flips and seeds the augmentation.
        precision: autocast of the forward passes (the trainer's ``precision``); None is fp32.

    Returns:
        (mean, variance), each (B, 1, D, H, W) float32 on ``inputs``' device, in the original frame.
    """
    device = _device_of(generator, inputs.device)
    was_training = generator.training
    generator.eval()
    try:
        mean = m2 = None
        for view in range(config.views):
            x = inputs
            axes: list[int] = []
            if view:
                x = _intensity(x, mask, rng, config.view_intensity)
                axes = [a for a, flip in zip(SPATIAL, torch.randint(2, (3,), generator=rng).tolist()) if flip]
                if axes:
                    x = torch.flip(x, axes)
            with autocast(device, precision or Precision(None, False)):
                out = generator(x.to(device)).float()
            if axes:
                out = torch.flip(out, axes)
            if mean is None:  # Welford: exact zero variance when every view agrees
                mean, m2 = out.clone(), torch.zeros_like(out)
            else:
                delta = out - mean
                mean += delta / (view + 1)
                m2 += delta * (out - mean)
    finally:
        generator.train(was_training)
    return mean.to(inputs.device), (m2 / config.views).to(inputs.device)


def confidence_mask(variance: torch.Tensor, brain_mask: torch.Tensor, keep_fraction: float,
                    include_background: bool = True) -> torch.Tensor:
    """Where the student learns from the teacher: the ``keep_fraction`` least uncertain brain voxels.

    The threshold is the ``keep_fraction`` quantile of the variance *inside the brain* (the near-zero
    background would otherwise set it); voxels tied at the threshold are all kept. Outside the brain
    the T1 is 0 and the teacher is confident, so background voxels are kept if ``include_background``.
    """
    brain = brain_mask.bool().expand_as(variance)
    inside = variance[brain]
    keep = torch.zeros_like(brain)
    if inside.numel():
        k = min(max(round(keep_fraction * inside.numel()), 1), inside.numel())
        threshold = inside.float().kthvalue(k).values  # torch.quantile caps its input at 2^24 voxels
        keep = brain & (variance <= threshold)
    if include_background:
        keep = keep | ~brain
    return keep


def masked_l1(pred: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - pseudo| over ``mask``; 0 (with a zero gradient, not NaN) when the mask is empty."""
    weight = mask.to(pred.dtype).expand_as(pred)
    return ((pred - pseudo).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def _key(batch: Batch) -> tuple[str, ...]:
    ids = batch["id"]
    return tuple(str(i) for i in ids) if isinstance(ids, (list, tuple)) else (str(ids),)


def _pseudo_labels(teacher: nn.Module, batches: Iterable[Batch], config: SelfTrainConfig, rng: torch.Generator,
                   precision: Precision) -> dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor, float, float]]:
    """id -> (pseudo-T1, confidence mask, kept brain fraction, mean brain variance), on the CPU."""
    labels = {}
    for batch in batches:
        inputs, brain = batch["input"], batch["mask"].bool()
        mean, variance = teacher_views(teacher, inputs, brain, config, rng, precision)
        keep = confidence_mask(variance, brain, config.keep_fraction, config.include_background)
        n_brain = max(int(brain.sum()), 1)
        labels[_key(batch)] = (mean.cpu(), keep.cpu(), float((keep & brain).sum()) / n_brain,
                               float(variance[brain].sum()) / n_brain)
    return labels


def _student_step(trainer: Pix2PixTrainer, inputs: torch.Tensor, pseudo: torch.Tensor, keep: torch.Tensor,
                  weight: float) -> float:
    """One generator step on the weighted masked L1 to the pseudo-T1; returns the unweighted L1."""
    device, opt, scaler = trainer.device, trainer.opt_g, trainer.scaler
    opt.zero_grad(set_to_none=True)
    with autocast(device, trainer.precision):
        pred = trainer.generator(inputs.to(device))
    loss = masked_l1(pred.float(), pseudo.to(device), keep.to(device))
    if weight > 0:  # an Adam step on a zero loss would still move the weights by momentum
        scaler.scale(weight * loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def self_train(trainer: Pix2PixTrainer, target_batches: Callable[[int], Iterable[Batch]],
               source_batches: Callable[[int], Iterable[Batch]], config: SelfTrainConfig, progress: bool = False,
               report: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Self-train ``trainer``'s generator on target volumes for ``config.rounds * config.epochs`` epochs.

    Args:
        trainer: a trained source backbone; its generator is adapted in place with its own ``opt_g``
            (lr set to ``config.lr`` meanwhile) and its own supervised ``train_step`` as the anchor.
        target_batches: epoch -> unlabeled target batches; only ``input``, ``mask`` and ``id`` are read
            (ids key the pseudo-labels, so the order may change between epochs).
        source_batches: epoch -> labelled source batches, cycled for one anchor step per target volume.
        config: the self-training config.
        progress: report progress per epoch (a bar on a terminal, one line per epoch in a log).
        report: receives each epoch's metrics.

    Returns:
        Per epoch: epoch, round, self_training_loss (mean masked L1 to the pseudo-T1), kept_fraction
        (of brain voxels), teacher_variance (mean in the brain), source_loss_l1 (the anchor's L1).
    """
    from uda3d.progress import progress as progress_bar

    rng = torch.Generator().manual_seed(config.seed)
    groups = trainer.opt_g.param_groups
    saved_lrs = [g["lr"] for g in groups]
    history: list[dict[str, float]] = []
    try:
        for g in groups:
            g["lr"] = config.lr
        for round_ in range(config.rounds):
            first = round_ * config.epochs + 1
            teacher = copy.deepcopy(unwrap(trainer.generator)).requires_grad_(False)
            labels = _pseudo_labels(teacher, target_batches(first), config, rng, trainer.precision)
            del teacher
            for epoch in range(first, first + config.epochs):
                source = cycle_batches(source_batches, epoch)
                losses, source_l1, kept, variances = [], [], [], []
                for batch in progress_bar(target_batches(epoch), desc=f"self-training epoch {epoch}",
                                          disable=not progress, leave=False, every_percent=100):
                    key = _key(batch)
                    if key not in labels:
                        raise KeyError(f"target volume {key} was not pseudo-labelled; target_batches must serve "
                                       "the same volumes every epoch")
                    pseudo, keep, kept_fraction, variance = labels[key]
                    inputs = batch["input"]
                    if config.student_augment:
                        inputs = _intensity(inputs, batch["mask"].bool(), rng, config.view_intensity)
                    losses.append(_student_step(trainer, inputs, pseudo, keep, config.weight))
                    kept.append(kept_fraction)
                    variances.append(variance)
                    source_l1.append(trainer.train_step(next(source), rng)["loss_l1"])
                metrics = {"epoch": float(epoch), "round": float(round_ + 1),
                           "self_training_loss": _mean(losses), "kept_fraction": _mean(kept),
                           "teacher_variance": _mean(variances), "source_loss_l1": _mean(source_l1)}
                if report is not None:
                    report(metrics)
                history.append(metrics)
    finally:
        for g, lr in zip(groups, saved_lrs):
            g["lr"] = lr
    return history


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


__all__ = ["confidence_mask", "masked_l1", "self_train", "teacher_views"]
