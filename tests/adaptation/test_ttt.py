"""Test-time training: the auxiliary loss on hand-made volumes, which parameters TTT may move, the
joint trainer, site-level TTT's label-free epoch choice, per-subject TTT, and no target T1 read."""

from __future__ import annotations

import math

import pytest
import torch

from uda3d.adaptation.ttt import PerSubjectTTT, adapt_site, held_out_auxiliary_loss, target_step
from uda3d.config import BackboneConfig, TTTConfig
from uda3d.errors import ConfigError
from uda3d.losses.cross_contrast import auxiliary_loss, corrupt, masked_reconstruction_error, patch_mask
from uda3d.models.sit import SITGenerator
from uda3d.models.ttt import TTTGenerator, encoder_parameters, load_generator_state
from uda3d.training.pix2pix import Pix2PixTrainer

SHAPE = (16, 16, 16)
TINY = BackboneConfig(ngf=4, ndf=4, lr=1e-3, epochs=1, epochs_decay=0, augment=False)
JOINT = BackboneConfig(ngf=4, ndf=4, lr=1e-3, epochs=1, epochs_decay=0, augment=False, aux_weight=50.0)


def _volume(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, *SHAPE, dtype=torch.bool)
    mask[..., 3:13, 3:13, 3:13] = True
    x = torch.rand(1, 2, *SHAPE, generator=g) * mask
    return {"input": x, "mask": mask, "id": [f"s{seed}"]}


class NoTarget(dict):
    """A batch whose T1 cannot be read: any access to ``target`` fails the test."""

    def __getitem__(self, key):
        if key == "target":
            raise AssertionError("target T1 was read")
        return super().__getitem__(key)


# --- the auxiliary loss, by hand ------------------------------------------------------------------

def test_masked_reconstruction_error_by_hand():
    inputs = torch.zeros(1, 2, 2, 2, 2)
    inputs[0, 0] = 1.0
    recon = torch.full_like(inputs, 0.25)
    damaged = torch.zeros_like(inputs)
    damaged[0, 0, 0] = 1.0                      # 4 damaged voxels of channel 0 (|0.25 - 1| = 0.75 each)
    damaged[0, 1, 1, 1] = 1.0                   # 2 damaged voxels of channel 1 (|0.25 - 0| = 0.25 each)
    brain = torch.ones(1, 1, 2, 2, 2)
    brain[0, 0, 0, 0, 0] = 0                    # one damaged voxel of channel 0 leaves the brain
    expected = (3 * 0.75 + 2 * 0.25) / 5
    assert math.isclose(float(masked_reconstruction_error(recon, inputs, damaged, brain)), expected, rel_tol=1e-6)
    assert float(masked_reconstruction_error(recon, inputs, torch.zeros_like(damaged), brain)) == 0.0


def test_corrupt_zeroes_exactly_the_damaged_voxels_and_repeats_for_a_seed():
    x = torch.rand(2, 2, *SHAPE) + 0.1
    a = corrupt(x, torch.Generator().manual_seed(3), drop_probability=1.0, mask_ratio=0.3, patch=4)
    b = corrupt(x, torch.Generator().manual_seed(3), drop_probability=1.0, mask_ratio=0.3, patch=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.damaged, b.damaged)
    assert torch.equal(a.inputs == 0, a.damaged.bool())
    for v in range(2):  # one whole modality dropped in each volume (drop_probability 1)
        whole = [bool(a.damaged[v, c].all()) for c in range(2)]
        assert sum(whole) >= 1
    cubes = patch_mask(SHAPE, 4, 0.5, torch.Generator().manual_seed(0))
    blocks = cubes.reshape(4, 4, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(64, -1)
    assert torch.all((blocks == 0).all(1) | (blocks == 1).all(1))  # whole 4^3 cubes, nothing in between


def test_auxiliary_loss_is_zero_for_a_perfect_reconstructor():
    class Copy(torch.nn.Module):
        def __init__(self, truth):
            super().__init__()
            self.truth = truth
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, task="t1"):
            return self.truth + 0 * self.w

    batch = _volume()
    loss = auxiliary_loss(Copy(batch["input"]), batch["input"], batch["mask"], torch.Generator().manual_seed(0),
                          TTTConfig())
    assert float(loss.detach()) == 0.0


# --- the model ---------------------------------------------------------------------------------------

def test_ttt_generator_t1_path_equals_the_sit_it_came_from():
    sit = SITGenerator(ngf=4)
    model = TTTGenerator(ngf=4)
    load_generator_state(model, sit.state_dict())
    x = _volume()["input"]
    assert torch.equal(model(x), sit(x))
    assert model(x, task="aux").shape == x.shape
    with pytest.raises(ValueError):
        model(x, task="t2")


def test_target_step_moves_only_the_encoder():
    torch.manual_seed(0)
    model = TTTGenerator(ngf=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(encoder_parameters(model), lr=1e-2)
    target_step(model, optimiser, NoTarget(_volume()), torch.Generator().manual_seed(0), TTTConfig())
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("enc1.", "enc2.", "enc3.")) for k in changed)
    # the T1 head and the auxiliary head are bit-identical
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(("enc1.", "enc2.", "enc3.")))


def test_first_scope_moves_only_the_first_encoder_level():
    model = TTTGenerator(ngf=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TTTConfig(scope="first")
    optimiser = torch.optim.Adam(encoder_parameters(model, "first"), lr=1e-2)
    target_step(model, optimiser, _volume(), torch.Generator().manual_seed(0), config)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("enc1.") for k in changed)


# --- training --------------------------------------------------------------------------------------

def _pair(seed: int) -> dict:
    batch = _volume(seed)
    batch["target"] = batch["input"][:, :1].clone()
    return batch


def test_joint_training_lowers_the_auxiliary_loss_on_the_source():
    trainer = Pix2PixTrainer(JOINT, torch.device("cpu"))
    assert isinstance(trainer.generator, TTTGenerator)
    pairs = [_pair(i) for i in range(2)]
    start = held_out_auxiliary_loss(trainer.generator, pairs, TTTConfig())
    for _ in range(15):
        for batch in pairs:
            metrics = trainer.train_step(batch)
    assert "loss_aux" in metrics and math.isfinite(metrics["loss_l1"])
    assert held_out_auxiliary_loss(trainer.generator, pairs, TTTConfig()) < start
    assert "loss_aux" not in Pix2PixTrainer(TINY, torch.device("cpu")).train_step(pairs[0])


def test_joint_checkpoint_round_trip_and_a_plain_backbone_growing_the_head(tmp_path):
    from uda3d.training.checkpoint import load_generator, save_state

    trainer = Pix2PixTrainer(JOINT, torch.device("cpu"))
    trainer.train_step(_pair(0))
    state = trainer.state_dict()
    assert "opt_aux" in state and any(k.startswith("aux.") for k in state["generator"])
    again = Pix2PixTrainer(JOINT, torch.device("cpu"))
    again.load_state_dict(state)
    assert again.opt_aux.state_dict()["state"].keys() == trainer.opt_aux.state_dict()["state"].keys()
    save_state(tmp_path / "joint", state)
    loaded = load_generator(tmp_path / "joint")
    x = _volume()["input"]
    assert isinstance(loaded, TTTGenerator) and torch.equal(loaded(x), trainer.generator.eval()(x))
    plain = Pix2PixTrainer(TINY, torch.device("cpu"))
    grown = TTTGenerator(ngf=4)
    load_generator_state(grown, plain.generator.state_dict())   # the auxiliary head stays fresh
    assert torch.equal(grown(x), plain.generator(x))
    with pytest.raises(ValueError):
        load_generator_state(TTTGenerator(ngf=8), plain.generator.state_dict())


def test_adapt_site_keeps_the_epoch_with_the_lowest_held_out_loss_and_never_reads_target_t1():
    trainer = Pix2PixTrainer(JOINT, torch.device("cpu"))
    pairs = [_pair(i) for i in range(2)]
    target = [NoTarget(_volume(10 + i)) for i in range(2)]
    held = [NoTarget(_volume(20))]
    result = adapt_site(trainer, lambda: target, lambda: held, lambda e: pairs, lambda: pairs,
                        TTTConfig(epochs=3, lr=1e-3), max_source_drop=100.0)
    losses = [h["held_out_aux_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.kept_epoch == min(range(4), key=lambda e: losses[e])
    assert math.isclose(held_out_auxiliary_loss(trainer.generator, held, TTTConfig()), losses[result.kept_epoch],
                        rel_tol=1e-5)


def test_adapt_site_source_guard_can_forbid_every_adapted_epoch():
    trainer = Pix2PixTrainer(JOINT, torch.device("cpu"))
    start = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    pairs = [_pair(0)]
    result = adapt_site(trainer, lambda: [_volume(1)], lambda: [_volume(2)], lambda e: pairs, lambda: pairs,
                        TTTConfig(epochs=2, lr=5e-2), max_source_drop=-1.0)  # nothing but epoch 0 allowed
    assert result.kept_epoch == 0
    assert all(torch.equal(start[k], v) for k, v in trainer.generator.state_dict().items())


def test_per_subject_ttt_adapts_a_copy_and_resets():
    torch.manual_seed(0)
    model = TTTGenerator(ngf=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = PerSubjectTTT(model, TTTConfig(subject_steps=3, subject_lr=1e-2))
    x = torch.cat([_volume(1)["input"], _volume(2)["input"]])
    with torch.no_grad():
        out = wrapper(x)
    assert out.shape == (2, 1, *SHAPE)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the shared model is untouched
    assert not torch.equal(out[:1], model(x[:1]))                                   # the volume's copy moved
    single = wrapper.adapted(x[1:2])(x[1:2])
    assert torch.allclose(out[1:2], single, atol=1e-6)                              # each volume adapted alone


@pytest.mark.parametrize("values", [{"scope": "decoder"}, {"mask_ratio": 1.0}, {"lr": 0.0}, {"epochs": 0},
                                    {"drop_probability": 0.0, "mask_ratio": 0.0},
                                    {"patch": 0}, {"subject_steps": -1}, {"lr": float("nan")}])
def test_ttt_config_rejects_bad_values(values):
    with pytest.raises(ConfigError):
        TTTConfig(**values)


def test_backbone_aux_weight_needs_the_sit_generator_and_a_non_negative_weight():
    with pytest.raises(ConfigError, match="aux_weight"):
        BackboneConfig(aux_weight=-1.0)
    with pytest.raises(ConfigError, match="aux_weight"):
        BackboneConfig(generator="unet", aux_weight=1.0)
