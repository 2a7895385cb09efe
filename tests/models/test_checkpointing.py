"""Activation checkpointing (``--checkpointing``) saves memory without changing a number.

Every check runs the plain path and the checkpointed one from the same weights and inputs, and
compares losses, outputs and every parameter's gradient.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from uda3d.adaptation.trainer import AdaptTrainer
from uda3d.config import AdaptConfig, BackboneConfig, SliceConfig
from uda3d.models.blocks import set_checkpointing
from uda3d.models.patchgan import PatchDiscriminator3D
from uda3d.models.sit import SITGenerator
from uda3d.models.vae2d import SliceVAE
from uda3d.training.pix2pix import Pix2PixTrainer

CPU = torch.device("cpu")
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _as_list(out):
    return out if isinstance(out, list) else [out]


def _assert_same_grads(a: torch.nn.Module, b: torch.nn.Module) -> None:
    ga, gb = _grads(a), _grads(b)
    assert ga.keys() == gb.keys() and len(ga) > 0
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], **TOL, msg=name)


def test_each_network_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 16, 24, 16)
    for plain in (SITGenerator(ngf=8), PatchDiscriminator3D(2, ndf=16)):
        ckpt = copy.deepcopy(plain)
        assert set_checkpointing(ckpt, True) >= 1
        outs = []
        for net in (plain, ckpt):
            out = net(x)
            out = out if isinstance(out, torch.Tensor) else torch.cat([o.flatten() for o in out])
            (out ** 2).mean().backward()
            outs.append(out.detach())
        torch.testing.assert_close(outs[0], outs[1], **TOL)
        _assert_same_grads(plain, ckpt)
        with torch.no_grad():  # the discriminator's channel groups serve passes without gradients too
            for a, b in zip(_as_list(plain(x)), _as_list(ckpt(x)), strict=True):
                torch.testing.assert_close(a, b, **TOL)


def test_the_slice_encoder_gives_the_same_posteriors_and_input_gradients():
    torch.manual_seed(0)
    plain = SliceVAE(32, gf_dim=4, latent_channels=8).encoder.train()  # per-batch BatchNorm, as adaptation runs it
    ckpt = copy.deepcopy(plain)
    set_checkpointing(ckpt, True)
    results, data = [], torch.rand(12, 1, 32, 32)
    for net in (plain, ckpt):
        slices = data.clone().requires_grad_(True)
        mu, logsig = net(slices)
        (mu.square().sum() + logsig.exp().sum()).backward()
        results.append((mu.detach(), logsig.detach(), slices.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)
    _assert_same_grads(plain, ckpt)


def test_a_backbone_step_and_an_adaptation_step_are_unchanged():
    """Gradients are compared before any optimiser step (grad_accum 2 keeps them), losses as returned."""
    config = BackboneConfig(ngf=8, ndf=16, augment=False, grad_accum=2, seed=3)  # ndf 16: two channel groups
    torch.manual_seed(1)
    batch = {"input": torch.rand(1, 2, 16, 16, 16), "target": torch.rand(1, 1, 16, 16, 16)}
    trainers = [Pix2PixTrainer(dataclasses.replace(config, checkpointing=on), CPU) for on in (False, True)]
    assert not trainers[0].checkpointing and trainers[1].checkpointing
    losses = [t.train_step(batch) for t in trainers]
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        assert abs(losses[0][key] - losses[1][key]) <= 1e-5 * max(1.0, abs(losses[0][key])), key
    _assert_same_grads(trainers[0].generator, trainers[1].generator)
    _assert_same_grads(trainers[0].discriminator, trainers[1].discriminator)

    # the target step's latent objective, through the checkpointed generator and slice encoder
    encoder = SliceVAE(32, gf_dim=4, latent_channels=8).encoder
    target, real = torch.rand(1, 2, 16, 16, 16), torch.rand(1, 1, 16, 16, 16)
    objectives = []
    for trainer, on in zip(trainers, (False, True)):
        trainer.opt_g.zero_grad(set_to_none=True)
        adapt = AdaptTrainer(trainer, copy.deepcopy(encoder), SliceConfig(size=32),
                             AdaptConfig(lr=1e-6, ele_percent=55.0, checkpointing=on))
        loss = adapt.objective(target, real)
        loss.backward()
        objectives.append(float(loss.detach()))
    assert abs(objectives[0] - objectives[1]) <= 1e-5 * max(1.0, abs(objectives[0])) and objectives[0] > 0
    _assert_same_grads(trainers[0].generator, trainers[1].generator)
