"""The adaptation loop: the objective moves, and with a destructive lr the guard rolls back."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.data import DataLoader

from uda3d.adaptation.trainer import AdaptTrainer, fit_adapt
from uda3d.config import AdaptConfig, BackboneConfig, GuardConfig, PreprocessConfig, SliceConfig, VAEConfig
from uda3d.data.datasets import paired_dataset, unpaired_dataset
from uda3d.data.layout import discover
from uda3d.data.slices import volume_to_slices
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone
from uda3d.training.vae import VAETrainer, fit_vae

CPU = torch.device("cpu")
SLICES = SliceConfig(size=32)


@pytest.fixture(scope="module")
def setup(tiny_cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    pre = PreprocessConfig()
    s = discover(tiny_cohort)
    src_train = paired_dataset(s["domain1_train"], pre, cache)
    src_val = paired_dataset(s["domain1_val"], pre, cache)
    target = unpaired_dataset(s["domain2_train"], pre, cache)
    backbone_config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=4, epochs_decay=0, augment=False)
    backbone = Pix2PixTrainer(backbone_config, CPU)
    fit_backbone(backbone, lambda e: DataLoader(src_train, batch_size=1), None, lambda m: None)
    vae = VAETrainer(VAEConfig(latent_channels=8, lr=3e-3, epochs=4), 32, CPU)
    volumes = [volume_to_slices(src_train[i]["target"][0], SLICES) for i in range(len(src_train))]
    fit_vae(vae, lambda e: volumes, None, lambda m: None)
    references = [src_train[i]["target"][None] for i in range(len(src_train))]
    return backbone.state_dict(), vae.model.encoder, src_train, src_val, target, references


def _run(setup, config: AdaptConfig, guards: GuardConfig):
    state, encoder, src_train, src_val, target, references = setup
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=False), CPU)
    backbone.load_state_dict(state)
    trainer = AdaptTrainer(backbone, encoder, SLICES, config)
    history: list[dict] = []
    result = fit_adapt(trainer, lambda e: DataLoader(src_train, batch_size=1),
                       lambda: DataLoader(target, batch_size=1), lambda: DataLoader(src_val, batch_size=1),
                       references, guards, history.append)
    final = trainer.record(-1, DataLoader(src_val, batch_size=1), DataLoader(target, batch_size=1))
    return result, final, history


def test_destructive_learning_rate_is_rolled_back(setup):
    guards = GuardConfig(max_source_drop=0.2, max_intensity_drift=0.1)
    result, final, history = _run(setup, AdaptConfig(lr=0.05, epochs=3, ele_percent=55), guards)
    assert result.decision.stopped_at is not None, result.decision
    assert "rolled back" in result.decision.reason
    from uda3d.adaptation.guards import violation

    assert violation(result.epochs[-1], result.start, guards) is not None
    # The model handed back is never worse on source-val than the bound allows.
    assert final.source_psnr >= result.start.source_psnr - guards.max_source_drop
    assert [h["epoch"] for h in history][0] == 0.0 and "objective" in history[0]


def test_gentle_adaptation_lowers_the_objective_and_keeps_its_last_safe_epoch(setup):
    guards = GuardConfig(max_source_drop=5.0, max_intensity_drift=1.0)
    result, final, _ = _run(setup, AdaptConfig(lr=1e-3, epochs=2, ele_percent=90, source_step=False), guards)
    assert result.decision.stopped_at is None and result.decision.kept_epoch == 2
    assert result.objective[-1] < result.objective[0]
    assert final.source_psnr == pytest.approx(result.epochs[-1].source_psnr, abs=1e-4)


def test_population_prior_variant_fits_the_prior_to_every_source_t1(setup):
    from uda3d.adaptation.objective import fit_population_prior

    guards = GuardConfig(max_source_drop=5.0, max_intensity_drift=1.0)
    config = AdaptConfig(lr=1e-3, epochs=1, ele_percent=90, source_step=False, prior="population")
    result, _, _ = _run(setup, config, guards)
    subject, _, _ = _run(setup, dataclasses.replace(config, prior="subject"), guards)
    assert all(math.isfinite(v) for v in result.objective) and result.objective[0] != subject.objective[0]
    state, encoder, _, _, _, references = setup
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=False), CPU)
    backbone.load_state_dict(state)
    trainer = AdaptTrainer(backbone, encoder, SLICES, config)
    trainer.fit_prior(references)
    posteriors = [trainer.encode(r) for r in references]
    mean, logsig = fit_population_prior(torch.cat([p[0] for p in posteriors]), torch.cat([p[1] for p in posteriors]))
    torch.testing.assert_close(trainer.prior[0], mean)
    torch.testing.assert_close(trainer.prior[1], logsig)


def _adapt(setup, config: AdaptConfig, guards: GuardConfig, checkpoint=None, saves=None):
    """Adapt from the backbone (or from ``checkpoint``, as a restarted worker does), saving every epoch to ``saves``."""
    from uda3d.adaptation.trainer import AdaptProgress
    from uda3d.training.checkpoint import load_state, save_state

    state, encoder, src_train, src_val, target, references = setup
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=False), CPU)
    backbone.load_state_dict(state)
    restored = load_state(checkpoint) if checkpoint is not None else None
    if restored is not None:
        backbone.load_state_dict(restored)
    trainer = AdaptTrainer(backbone, encoder, SLICES, config)

    def on_epoch_end(epoch, metrics):
        if saves is not None:
            save_state(saves / f"epoch{epoch}", {**backbone.state_dict(), "epoch": epoch,
                                                 "adapt_progress": trainer.progress.to_state()})

    reported: list[dict] = []
    result = fit_adapt(trainer, lambda e: DataLoader(src_train, batch_size=1),
                       lambda: DataLoader(target, batch_size=1), lambda: DataLoader(src_val, batch_size=1),
                       references, guards, reported.append, on_epoch_end=on_epoch_end,
                       resume=AdaptProgress.from_state(restored["adapt_progress"]) if restored else None)
    return result, reported, {k: v.clone() for k, v in backbone.generator.state_dict().items()}


@pytest.mark.slow
def test_a_restart_from_an_epoch_checkpoint_matches_the_uninterrupted_run(setup, tmp_path):
    guards = GuardConfig(max_source_drop=5.0, max_intensity_drift=1.0)
    config = AdaptConfig(lr=1e-3, epochs=2, ele_percent=90)
    straight, _, weights = _adapt(setup, config, guards, saves=tmp_path)
    resumed, reported, resumed_weights = _adapt(setup, config, guards, checkpoint=tmp_path / "epoch1")
    assert [m["epoch"] for m in reported] == [2.0]  # goes on with the next epoch, nothing redone
    assert resumed.epochs == straight.epochs and resumed.objective == straight.objective
    assert resumed.decision == straight.decision
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)


def test_a_restart_after_the_guard_stopped_keeps_the_rolled_back_model(setup, tmp_path):
    guards = GuardConfig(max_source_drop=0.2, max_intensity_drift=0.1)
    config = AdaptConfig(lr=0.05, epochs=3, ele_percent=55)
    straight, _, weights = _adapt(setup, config, guards, saves=tmp_path)
    assert straight.decision.stopped_at is not None
    last = tmp_path / f"epoch{straight.decision.stopped_at}"  # checkpointed, then the run was lost
    resumed, reported, resumed_weights = _adapt(setup, config, guards, checkpoint=last)
    assert reported == [] and resumed.decision == straight.decision
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)


def test_target_step_keeps_the_source_gradients_still_accumulating(setup):
    """grad_accum 2: a source batch's gradients wait for the next one; a target step in between must not drop them."""
    state, encoder, src_train, _, target, references = setup
    config = BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=False, grad_accum=2)
    backbone = Pix2PixTrainer(config, CPU)
    backbone.load_state_dict({**state, "micro_step": 0})
    trainer = AdaptTrainer(backbone, encoder, SLICES, AdaptConfig(lr=1e-3))
    batch = next(iter(DataLoader(src_train, batch_size=1)))
    backbone.train_step(batch)  # micro-step 0 of 2: gradients accumulated, no optimiser step yet
    pending = {n: p.grad.clone() for n, p in backbone.generator.named_parameters() if p.grad is not None}
    assert pending
    before = {n: p.detach().clone() for n, p in backbone.generator.named_parameters()}
    trainer.target_step(next(iter(DataLoader(target, batch_size=1)))["input"], references[0])
    after = dict(backbone.generator.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the target step did step
    for name, grad in pending.items():  # and the source gradients are still there for the boundary step
        assert torch.equal(after[name].grad, grad), name


@pytest.mark.parametrize("augment", [True, False])
def test_the_source_step_uses_the_backbones_augmentation(setup, augment):
    """The source step is the supervised step (docs/method.md section 3), augmented as the backbone was trained."""
    state, encoder, src_train, src_val, target, references = setup
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=augment), CPU)
    backbone.load_state_dict(state)
    seen = []
    step = backbone.train_step
    backbone.train_step = lambda batch, rng=None: seen.append(rng) or step(batch, rng)
    trainer = AdaptTrainer(backbone, encoder, SLICES, AdaptConfig(epochs=1))
    fit_adapt(trainer, lambda e: DataLoader(src_train, batch_size=1), lambda: DataLoader(target, batch_size=1),
              lambda: DataLoader(src_val, batch_size=1), references, GuardConfig(max_source_drop=100))
    assert seen and all((rng is not None) == augment for rng in seen)


def test_a_rollback_restores_the_discriminator_and_the_optimisers_too(setup):
    """Rolled back to the starting model: D and both Adam states as they were, not as the bad epoch left them."""
    from uda3d.adaptation.trainer import snapshot

    state, encoder, src_train, src_val, target, references = setup
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, epochs=4, epochs_decay=0, augment=False), CPU)
    backbone.load_state_dict(state)
    trainer = AdaptTrainer(backbone, encoder, SLICES, AdaptConfig(lr=0.05, epochs=2))
    before = snapshot(backbone)
    result = fit_adapt(trainer, lambda e: DataLoader(src_train, batch_size=1), lambda: DataLoader(target, batch_size=1),
                       lambda: DataLoader(src_val, batch_size=1), references, GuardConfig())
    assert result.decision.kept_epoch == 0 and result.decision.stopped_at == 1, result.decision
    after = snapshot(backbone)
    for key in ("generator", "discriminator"):
        for name, tensor in before[key].items():
            assert torch.equal(after[key][name], tensor), (key, name)
    for key in ("opt_g", "opt_d"):
        assert after[key]["state"].keys() == before[key]["state"].keys()
        for index, moments in before[key]["state"].items():
            for name, value in moments.items():
                assert torch.equal(torch.as_tensor(after[key]["state"][index][name]), torch.as_tensor(value))
