"""Self-training: the teacher's views, the confidence mask, the masked L1, the loop, and no target T1 read."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from uda3d.adaptation.self_training import confidence_mask, masked_l1, self_train, teacher_views
from uda3d.config import BackboneConfig, RobustAugmentConfig, SelfTrainConfig, from_dict
from uda3d.errors import ConfigError
from uda3d.training.pix2pix import Pix2PixTrainer

CPU = torch.device("cpu")
SHAPE = (16, 16, 16)
NO_INTENSITY = RobustAugmentConfig(probability=0.0)


class FirstChannel(nn.Module):
    """A deterministic 'generator' that commutes with flips: T1 := the first input channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].clone()


class PlusRamp(FirstChannel):
    """Not flip-equivariant: adds a ramp along depth, so flipped views disagree after inversion."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.linspace(0, 1, x.shape[2])[None, None, :, None, None]


def _volume(seed: int) -> dict:
    """One target-like batch: a brain ball in a 16^3 box, inputs in [0, 1] and 0 outside the brain."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in SHAPE], indexing="ij"))
    brain = ((grid - 7.5) ** 2).sum(0).sqrt() < 6.5
    inputs = torch.rand((2, *SHAPE), generator=g) * brain
    target = (torch.rand((1, *SHAPE), generator=g) * brain)
    return {"input": inputs[None], "mask": brain[None, None], "target": target[None], "id": [f"s{seed}"]}


def _tiny_trainer() -> Pix2PixTrainer:
    return Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=1, epochs_decay=0, augment=False), CPU)


def test_one_view_is_the_plain_forward_pass():
    trainer = _tiny_trainer()
    batch = _volume(0)
    mean, variance = teacher_views(trainer.generator, batch["input"], batch["mask"], SelfTrainConfig(views=1),
                                   torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = trainer.generator(batch["input"])
    assert mean.shape == variance.shape == (1, 1, *SHAPE)
    assert torch.equal(mean, plain)
    assert torch.count_nonzero(variance) == 0


def test_flips_are_inverted_and_identical_views_have_zero_variance():
    batch = _volume(1)
    config = SelfTrainConfig(views=8, view_intensity=NO_INTENSITY)
    identity = FirstChannel().train()
    mean, variance = teacher_views(identity, batch["input"], batch["mask"], config, torch.Generator().manual_seed(0))
    assert torch.equal(mean, batch["input"][:, :1])
    assert torch.count_nonzero(variance) == 0
    assert identity.training  # mode restored
    # the views really were flipped: a generator that is not flip-equivariant disagrees with itself
    _, ramp_variance = teacher_views(PlusRamp(), batch["input"], batch["mask"], config,
                                     torch.Generator().manual_seed(0))
    assert ramp_variance.max() > 0.01


def test_intensity_views_add_variance_and_stay_in_the_original_frame():
    batch = _volume(2)
    config = SelfTrainConfig(views=4, view_intensity=RobustAugmentConfig(probability=1.0))
    mean, variance = teacher_views(FirstChannel(), batch["input"], batch["mask"], config,
                                   torch.Generator().manual_seed(0))
    brain = batch["mask"]
    assert variance[brain].mean() > 0
    assert torch.count_nonzero(mean[~brain]) == 0  # augmented views are zero outside the brain, frames agree
    # the mean stays correlated with the un-augmented input: each view was un-flipped
    x, m = batch["input"][:, :1][brain], mean[brain]
    assert torch.corrcoef(torch.stack([x, m]))[0, 1] > 0.3


def test_confidence_mask_keeps_the_lowest_variance_brain_fraction():
    g = torch.Generator().manual_seed(0)
    brain = _volume(0)["mask"]
    variance = torch.rand((1, 1, *SHAPE), generator=g)
    n_brain = int(brain.sum())
    for fraction in (0.1, 0.5, 0.93, 1.0):
        keep = confidence_mask(variance, brain, fraction, include_background=False)
        assert not keep[~brain].any()
        assert abs(int(keep.sum()) - fraction * n_brain) <= 1
        assert variance[keep].max() <= variance[brain & ~keep].min() if fraction < 1 else keep[brain].all()
    with_bg = confidence_mask(variance, brain, 0.5, include_background=True)
    assert with_bg[~brain].all()
    assert torch.equal(with_bg & brain, confidence_mask(variance, brain, 0.5, include_background=False))
    # an empty brain keeps nothing but (optionally) the background
    empty = torch.zeros_like(brain)
    assert not confidence_mask(variance, empty, 0.5, include_background=False).any()
    assert confidence_mask(variance, empty, 0.5).all()


def test_masked_l1_matches_a_hand_computation_and_is_safe_when_empty():
    pred = torch.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
    pseudo = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, True]])
    loss = masked_l1(pred, pseudo, mask)
    assert loss.item() == pytest.approx((1 + 2 + 3) / 3)
    empty = masked_l1(pred, pseudo, torch.zeros_like(mask))
    empty.backward()
    assert empty.item() == 0 and torch.isfinite(pred.grad).all() and torch.count_nonzero(pred.grad) == 0


class NoTarget(dict):
    """A target batch whose T1 must never be looked at."""

    def __getitem__(self, key):
        if key == "target":
            raise AssertionError("self-training read a target T1")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == "target":
            raise AssertionError("self-training read a target T1")
        return super().get(key, default)


def _fit(config: SelfTrainConfig, target: list[dict]) -> tuple[Pix2PixTrainer, list[dict]]:
    trainer = _tiny_trainer()
    sources = [_volume(10), _volume(11)]
    reported: list[dict] = []
    history = self_train(trainer, lambda e: list(reversed(target)) if e % 2 else target,
                         lambda e: sources, config, report=reported.append)
    assert reported == history
    return trainer, history


def test_self_training_fits_its_pseudo_labels_and_restores_the_lr():
    target = [{k: v for k, v in _volume(s).items() if k != "target"} for s in (3, 4)]  # no T1 at all
    # weight 1000: an untrained backbone's source step (100 x L1 + GAN) would otherwise dominate Adam's scale
    config = SelfTrainConfig(views=4, epochs=4, lr=2e-3, weight=1000.0, student_augment=False, keep_fraction=0.7)
    trainer, history = _fit(config, target)
    # the same run with only the source anchor (weight 0: no student step) drifts away from the pseudo-T1
    _, anchor_only = _fit(dataclasses.replace(config, weight=0.0), target)
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0, 4.0]
    assert history[-1]["self_training_loss"] < history[0]["self_training_loss"]
    assert history[-1]["self_training_loss"] < 0.6 * anchor_only[-1]["self_training_loss"]
    assert all(h["kept_fraction"] == pytest.approx(0.7, abs=0.01) for h in history)
    assert all(h["teacher_variance"] > 0 and math.isfinite(h["source_loss_l1"]) for h in history)
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())
    assert trainer.opt_g.param_groups[0]["lr"] == trainer.config.lr


def test_target_t1_is_never_read():
    target = [NoTarget(_volume(s)) for s in (5, 6)]
    config = SelfTrainConfig(views=2, epochs=1, rounds=2, view_intensity=RobustAugmentConfig(probability=1.0))
    trainer, history = _fit(config, target)
    assert [h["round"] for h in history] == [1.0, 2.0]
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())


@pytest.mark.parametrize("field, value", [("views", 0), ("keep_fraction", 0.0), ("keep_fraction", 1.5),
                                          ("epochs", 0), ("lr", 0.0), ("lr", 1.0), ("weight", -1.0),
                                          ("rounds", 0), ("seed", -1), ("lr", float("nan")),
                                          ("views", "4"), ("view_intensity", 0.5)])
def test_bad_config_values_are_rejected(field, value):
    with pytest.raises(ConfigError):
        SelfTrainConfig(**{field: value})


def test_config_from_a_mapping():
    config = from_dict(SelfTrainConfig, {"views": 2, "view_intensity": {"probability": 0.2}})
    assert config.view_intensity.probability == 0.2
    assert dataclasses.replace(config, keep_fraction=1.0).keep_fraction == 1.0
    with pytest.raises(ConfigError):
        from_dict(SelfTrainConfig, {"view_intensity": {"probability": 2.0}})
