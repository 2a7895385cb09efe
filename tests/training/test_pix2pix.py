"""The plain-PyTorch backbone loop: learning, checkpoint round trips, resume, augmentation, precision."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader

from uda3d.config import BackboneConfig, PreprocessConfig
from uda3d.data.augment import augment_pair
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.errors import ConfigError, DataError
from uda3d.training.checkpoint import load_state, save_state
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone, linear_decay
from uda3d.training.runtime import resolve_precision

CPU = torch.device("cpu")
SMALL = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=0, seed=3)


@pytest.fixture(scope="module")
def loaders(tiny_cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    splits = discover(tiny_cohort, ("domain1_train", "domain1_val"))
    train = paired_dataset(splits["domain1_train"], PreprocessConfig(), cache)
    val = paired_dataset(splits["domain1_val"], PreprocessConfig(), cache)
    return (lambda epoch: DataLoader(train, batch_size=1, shuffle=False)), (lambda: DataLoader(val, batch_size=1))


def test_training_lowers_the_loss(loaders):
    train, val = loaders
    trainer = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=6, epochs_decay=0, augment=False), CPU)
    history: list[dict] = []
    fit_backbone(trainer, train, val, history.append)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss_l1"] < 0.8 * history[0]["loss_l1"]
    assert {"val_psnr", "val_ssim", "val_mae", "val_psnr_method"} <= set(history[-1])


def test_checkpoint_round_trip_is_bit_identical(loaders, tmp_path):
    train, _ = loaders
    a = Pix2PixTrainer(SMALL, CPU)
    batch = next(iter(train(1)))
    a.train_step(batch)
    save_state(tmp_path, a.state_dict())
    b = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=0, seed=99), CPU)
    b.load_state_dict(load_state(tmp_path))
    assert torch.equal(a.predict(batch["input"]), b.predict(batch["input"]))
    # The optimiser state came along too: one more identical step keeps them identical.
    a.train_step(batch)
    b.train_step(batch)
    assert torch.equal(a.predict(batch["input"]), b.predict(batch["input"]))


def test_resume_continues_with_the_next_epoch(loaders, tmp_path):
    train, _ = loaders
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=2, seed=5)
    straight = Pix2PixTrainer(config, CPU)
    full: list[dict] = []
    fit_backbone(straight, train, None, full.append)

    first = Pix2PixTrainer(config, CPU)
    part: list[dict] = []
    fit_backbone(first, train, None, part.append,
                 on_epoch_end=lambda t, m: save_state(tmp_path, t.state_dict()) if m["epoch"] == 2 else None)
    resumed = Pix2PixTrainer(config, CPU)
    resumed.load_state_dict(load_state(tmp_path))
    rest: list[dict] = []
    fit_backbone(resumed, train, None, rest.append)
    assert [m["epoch"] for m in rest] == [3, 4]
    assert [m["lr"] for m in rest] == [m["lr"] for m in full[2:]]  # the schedule resumed too
    assert rest[-1]["loss_l1"] == pytest.approx(full[-1]["loss_l1"], rel=1e-5)


def test_l1_warmup_trains_the_generator_alone_then_hands_over_to_the_gan(loaders):
    train, _ = loaders
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=0, l1_warmup_epochs=1, augment=False,
                            seed=4)
    trainer = Pix2PixTrainer(config, CPU)
    batch = next(iter(train(1)))
    # The warm-up step by hand: Adam on lambda_l1 x L1 alone, from the same weights.
    reference = copy.deepcopy(trainer.generator)
    adam = torch.optim.Adam(reference.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    (config.lambda_l1 * (reference(batch["input"]) - batch["target"]).abs().mean()).backward()
    adam.step()
    d_before = copy.deepcopy(trainer.discriminator.state_dict())
    after_warmup: dict = {}

    def keep_first_epoch(t: Pix2PixTrainer, metrics: dict) -> None:
        if metrics["epoch"] == 1:
            after_warmup.update(generator=copy.deepcopy(t.generator), discriminator=copy.deepcopy(
                t.discriminator.state_dict()))

    history: list[dict] = []
    fit_backbone(trainer, lambda e: [batch], None, history.append, on_epoch_end=keep_first_epoch)
    for got, want in zip(after_warmup["generator"].parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, after_warmup["discriminator"][k]) for k, v in d_before.items())
    assert "loss_d" not in history[0] and history[0]["loss_g"] == pytest.approx(100 * history[0]["loss_l1"])
    # The second epoch is the method's: D learns, and G's loss has the GAN and feature-matching terms.
    assert not all(torch.equal(v, trainer.discriminator.state_dict()[k]) for k, v in d_before.items())
    assert {"loss_d", "loss_g_gan", "loss_fm"} <= set(history[1])


def test_validating_every_k_epochs_scores_those_and_the_last_and_trains_the_same(loaders):
    train, val = loaders
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=5, epochs_decay=2, seed=6)
    every: list[dict] = []
    sparse: list[dict] = []
    a = Pix2PixTrainer(config, CPU)
    fit_backbone(a, train, val, every.append)
    b = Pix2PixTrainer(dataclasses.replace(config, val_every=3), CPU)
    fit_backbone(b, train, val, sparse.append)
    assert [h["epoch"] for h in sparse if "val_psnr" in h] == [3, 6, 7]
    assert all("val_psnr" in h for h in every)
    # Scoring is read-only: the same weights and losses, and the same scores where both scored.
    assert all(torch.equal(p, q) for p, q in zip(a.generator.state_dict().values(), b.generator.state_dict().values()))
    assert [h["loss_l1"] for h in sparse] == [h["loss_l1"] for h in every]
    assert [sparse[i]["val_psnr"] for i in (2, 5, 6)] == [every[i]["val_psnr"] for i in (2, 5, 6)]


@pytest.mark.parametrize("val_every", [0, -2])
def test_val_every_must_be_positive(val_every):
    with pytest.raises(ConfigError, match="val_every"):
        BackboneConfig(val_every=val_every)


@pytest.mark.parametrize("warmup", [-1, 5])
def test_l1_warmup_must_fit_in_the_run(warmup):
    with pytest.raises(ConfigError, match="l1_warmup_epochs"):
        BackboneConfig(epochs=3, epochs_decay=1, l1_warmup_epochs=warmup)


def test_a_fine_tune_of_a_warmed_up_backbone_has_no_warmup_and_no_decay():
    scratch = BackboneConfig(ngf=8, lr=6e-3, epochs=120, epochs_decay=40, l1_warmup_epochs=120, seed=2)
    tune = scratch.fine_tune(12, lr=5e-4, robust_augment=True)
    assert (tune.epochs, tune.epochs_decay, tune.l1_warmup_epochs, tune.lr) == (12, 0, 0, 5e-4)
    assert tune.robust_augment and (tune.ngf, tune.seed) == (8, 2)


def test_from_state_loads_the_networks_and_grows_a_joint_head_from_a_plain_backbone():
    from uda3d.config import JOINT_AUX_WEIGHT

    config = BackboneConfig(ngf=4, ndf=4, seed=3)
    plain = Pix2PixTrainer.from_state(config)
    assert plain.device == torch.device("cpu") and plain.config == config
    with torch.no_grad():
        for p in plain.generator.parameters():
            p.add_(1.0)
    state = plain.state_dict()
    again = Pix2PixTrainer.from_state(config, state)
    for a, b in zip(again.generator.state_dict().values(), plain.generator.state_dict().values()):
        torch.testing.assert_close(a, b)
    for a, b in zip(again.discriminator.state_dict().values(), plain.discriminator.state_dict().values()):
        torch.testing.assert_close(a, b)
    joint = Pix2PixTrainer.from_state(BackboneConfig(ngf=4, ndf=4, seed=3, aux_weight=JOINT_AUX_WEIGHT), state)
    grown = joint.generator.state_dict()
    shared = {k: v for k, v in plain.generator.state_dict().items() if k in grown}
    assert shared and all(torch.equal(grown[k], v) for k, v in shared.items())
    assert set(grown) - set(shared)  # the auxiliary head is new and stays fresh


def test_linear_decay_schedule():
    rule = linear_decay(2, 2)
    assert [rule(e) for e in range(4)] == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])


def test_augmentation_moves_input_and_target_together():
    x = torch.rand(2, 8, 10, 12)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        xi, yi = augment_pair(x, x[:1].clone(), gen, jitter=(1.0, 1.0))
        torch.testing.assert_close(xi[:1], yi, atol=1e-6, rtol=0)  # same rotation/flip, no jitter
    xi, yi = augment_pair(x, x[:1].clone(), torch.Generator().manual_seed(1))
    assert float(xi.min()) >= 0 and float(xi.max()) <= 1
    assert torch.equal(yi.flatten().sort().values, x[:1].flatten().sort().values)  # target not jittered


def test_precision_is_fp32_on_cpu():
    assert resolve_precision(True, CPU).name == "fp32"
    assert resolve_precision(False, CPU).dtype is None


def test_bad_checkpoint_and_config(tmp_path):
    with pytest.raises(DataError, match="checkpoint not found"):
        load_state(tmp_path)
    (tmp_path / "state.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable checkpoint"):
        load_state(tmp_path)
    with pytest.raises(ConfigError, match="generator"):
        BackboneConfig(generator="resnet")
    with pytest.raises(ConfigError, match="lr"):
        BackboneConfig(lr=0)


def test_robust_augmentation_changes_inputs_only(loaders):
    train, _ = loaders
    batch = next(iter(train(1)))
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=1, epochs_decay=0, augment=False, robust_augment=True)
    seen = {}
    trainer = Pix2PixTrainer(config, CPU)
    original = trainer.generator.forward

    def spy(x):
        seen["input"] = x.detach().clone()
        return original(x)

    trainer.generator.forward = spy
    trainer.train_step(batch, torch.Generator().manual_seed(0))
    assert not torch.allclose(seen["input"], batch["input"], atol=1e-3)
    assert float(seen["input"].min()) >= 0 and float(seen["input"].max()) <= 1
    history: list[dict] = []
    fit_backbone(Pix2PixTrainer(config, CPU), train, None, history.append)
    assert history and all(v == v for v in history[-1].values())  # trains, no NaN


def test_contrast_jitter_keeps_the_background_at_zero():
    """A contrast factor below 1 lifted the background to mean * (1 - c): the brain mask then covered everything."""
    from uda3d.data.robust_augment import robust_augment

    x = torch.zeros(2, 12, 12, 12)
    x[:, 3:9, 3:9, 3:9] = torch.rand(2, 6, 6, 6) * 0.8 + 0.1
    brain = (x > 0).any(dim=0)
    for seed in range(20):
        xi, _ = augment_pair(x, x[:1].clone(), torch.Generator().manual_seed(seed))
        assert int(((xi > 0).any(dim=0)).sum()) <= int(brain.sum())  # rotated, never grown into the background
        assert int(((robust_augment(xi, torch.Generator().manual_seed(seed)) > 0).any(dim=0)).sum()) <= int(
            brain.sum())
