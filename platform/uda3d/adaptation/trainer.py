"""The adaptation loop as plain PyTorch (docs/method.md section 3), with the label-free guards applied.

Each iteration: (1) the ordinary supervised pix2pix step on a source pair (``Pix2PixTrainer``);
(2) the target step: generate T1 for a target volume, encode it and an unpaired real source T1
slice by slice with the frozen slice-VAE encoder (BatchNorm on per-volume statistics, as trained),
and step the generator on the top-``ele_percent`` % latent KL. After each epoch the source-val PSNR
and the target outputs' brain intensity statistics are recorded; ``fit_adapt`` stops at the first
epoch that breaks a guard and restores the generator of the epoch it keeps (``GuardDecision``).
The objective value is reported each epoch; target metrics are never used here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from uda3d.adaptation.guards import (
    EpochRecord,
    GuardConfig,
    GuardDecision,
    background_level,
    choose_checkpoint,
    high_frequency_energy,
    violation,
)
from uda3d.adaptation.objective import fit_population_prior, latent_alignment_loss, order_for_slicing
from uda3d.adaptation.slice_latents import VolumeEncoder
from uda3d.config import AdaptConfig, SliceConfig
from uda3d.models.vae2d import SliceEncoder
from uda3d.training.pix2pix import Pix2PixTrainer, augmentation_rng
from uda3d.training.runtime import autocast, cycle_batches, own_gradients, unwrap

Batch = dict[str, Any]


@dataclass
class AdaptProgress:
    """What a restarted adaptation needs besides the backbone's state: the guard's story so far.

    ``fallback`` is the generator of ``fallback_epoch``, the last epoch within the guards (0: the
    starting model): the one a later violation rolls back to. Plain tensors, numbers and dicts, so
    a checkpoint holding ``to_state()`` loads with ``weights_only=True``.
    """

    start: EpochRecord
    records: list[EpochRecord]
    objective: list[float]
    fallback_epoch: int
    fallback: dict[str, torch.Tensor]

    def to_state(self) -> dict[str, Any]:
        return {"start": asdict(self.start), "records": [asdict(r) for r in self.records],
                "objective": list(self.objective), "fallback_epoch": self.fallback_epoch, "fallback": self.fallback}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AdaptProgress:
        return cls(start=EpochRecord(**state["start"]), records=[EpochRecord(**r) for r in state["records"]],
                   objective=[float(v) for v in state["objective"]], fallback_epoch=int(state["fallback_epoch"]),
                   fallback=state["fallback"])


ROLLBACK_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "scaler")


def snapshot(backbone: Pix2PixTrainer) -> dict[str, Any]:
    """What a rollback restores: both networks and their optimisers (and the AMP scaler), copied."""
    state = backbone.state_dict()
    return copy.deepcopy({k: state[k] for k in ROLLBACK_KEYS})


def restore(backbone: Pix2PixTrainer, saved: dict[str, Any]) -> None:
    """Put a ``snapshot`` back; an older snapshot holding the generator's weights only restores those."""
    if "generator" not in saved:
        unwrap(backbone.generator).load_state_dict(saved)
        return
    unwrap(backbone.generator).load_state_dict(saved["generator"])
    unwrap(backbone.discriminator).load_state_dict(saved["discriminator"])
    backbone.opt_g.load_state_dict(saved["opt_g"])
    backbone.opt_d.load_state_dict(saved["opt_d"])
    if saved.get("scaler"):
        backbone.scaler.load_state_dict(saved["scaler"])


@dataclass(frozen=True)
class AdaptResult:
    """Per-epoch records, the guard's decision and the objective history (epoch 0 = before)."""

    start: EpochRecord
    epochs: list[EpochRecord]
    objective: list[float]
    decision: GuardDecision


class AdaptTrainer:
    """A backbone trainer plus the frozen VAE encoder and the target step."""

    def __init__(self, backbone: Pix2PixTrainer, encoder: SliceEncoder, slice_config: SliceConfig,
                 config: AdaptConfig) -> None:
        self.backbone = backbone
        self.config = config
        for group in backbone.opt_g.param_groups + backbone.opt_d.param_groups:
            group["lr"] = config.lr
        encoder = encoder.to(backbone.device)
        for p in encoder.parameters():
            p.requires_grad_(False)
        encoder.train()  # per-volume BatchNorm statistics, as the VAE was trained (docs/method.md section 7)
        if config.checkpointing:  # generator, discriminator and slice encoder recompute in backward
            from uda3d.models.blocks import set_checkpointing

            backbone.use_checkpointing(True)
            set_checkpointing(encoder, True)
        if config.slice_order == "faithful":
            slice_config = SliceConfig(size=slice_config.size, plane="axial", low=slice_config.low,
                                       high=slice_config.high)
        self.volume_encoder = VolumeEncoder(encoder, slice_config)
        self.prior: tuple[torch.Tensor, torch.Tensor] | None = None
        self.progress: AdaptProgress | None = None  # updated by fit_adapt every epoch, for checkpoints

    @torch.no_grad()
    def fit_prior(self, references: Sequence[torch.Tensor]) -> None:
        """Fit the population prior to the source T1 ``references`` (used when ``config.prior == "population"``)."""
        device = self.backbone.device
        posteriors = [self.encode(r.to(device).float()) for r in references]
        mus = torch.cat([p[0] for p in posteriors])
        logsigs = torch.cat([p[1] for p in posteriors])
        self.prior = fit_population_prior(mus.float(), logsigs.float())

    def encode(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, D, H, W) -> slice posteriors, in the configured slice order."""
        ordered = torch.stack([order_for_slicing(v[0], self.config.slice_order)[None] for v in volume])
        return self.volume_encoder(ordered)

    def objective(self, target_inputs: torch.Tensor, real_t1: torch.Tensor) -> torch.Tensor:
        """The latent alignment loss of the generator's output for ``target_inputs`` against ``real_t1``."""
        device = self.backbone.device
        with autocast(device, self.backbone.precision):
            fake = self.backbone.generator(target_inputs.to(device))
            mu_f, ls_f = self.encode(fake.float())
            if self.config.prior == "population":
                if self.prior is None:
                    raise RuntimeError("population prior not fitted: call fit_prior(references) first")
                mu_r, ls_r = (p.expand_as(mu_f) for p in self.prior)
            else:
                with torch.no_grad():
                    mu_r, ls_r = self.encode(real_t1.to(device).float())
        return latent_alignment_loss(mu_r.float(), ls_r.float(), mu_f.float(), ls_f.float(), self.config.ele_percent,
                                     self.config.kl_weight)

    def target_step(self, target_inputs: torch.Tensor, real_t1: torch.Tensor) -> float:
        """One step on the latent objective; source gradients still accumulating (grad_accum > 1) are kept."""
        opt, scaler = self.backbone.opt_g, self.backbone.scaler
        with own_gradients(opt):
            loss = self.objective(target_inputs, real_t1)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def record(self, epoch: int, source_val: Iterable[Batch], target: Iterable[Batch]) -> EpochRecord:
        """Source-val PSNR and the target outputs' mean/std inside the brain (no target labels used)."""
        psnr = self.backbone.evaluate(source_val)["psnr"]
        values, hf, background = [], [], []
        for batch in target:
            out = self.backbone.predict(batch["input"])
            for volume, brain in zip(out, batch["mask"] > 0):
                values.append(volume[brain])
                hf.append(high_frequency_energy(volume, brain))
                background.append(background_level(volume, brain))
        voxels = torch.cat(values)
        return EpochRecord(epoch, psnr, float(voxels.mean()), float(voxels.std()), sum(hf) / len(hf),
                           sum(background) / len(background))

    @torch.no_grad()
    def mean_objective(self, target: Iterable[Batch], references: Sequence[torch.Tensor]) -> float:
        """The objective averaged over the target volumes (each paired as in training)."""
        values = [float(self.objective(b["input"], references[i % len(references)]))
                  for i, b in enumerate(target)]
        return sum(values) / len(values)


def adaptation_trainer(backbone_state: dict[str, Any], vae_state: dict[str, Any], adapt: AdaptConfig,
                       device: torch.device | str = "cpu", restored: dict[str, Any] | None = None,
                       wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                       rank: int = 0) -> AdaptTrainer:
    """The adaptation trainer from a backbone checkpoint and a slice-VAE checkpoint (their loaded states).

    The one way the adaptation stage's workers, the tune trials and the comparison start an adaptation.

    Args:
        backbone_state: a backbone checkpoint's state (``config``, ``generator``, ``discriminator``).
        vae_state: a slice-VAE checkpoint's state (``config``, ``slice_size``, ``encoder``, ``slice_config``).
        adapt: the adaptation's settings; its ``amp`` overrides the backbone's.
        device: where the networks live.
        restored: a later state of this adaptation (a restarted worker, a resumed trial) to go on from.
        wrap: applied to each backbone network (e.g. Ray's ``prepare_model``).
        rank: this process's rank.
    """
    import dataclasses

    from uda3d.config import BackboneConfig, VAEConfig, from_dict
    from uda3d.models.vae2d import SliceVAE

    device = torch.device(device)
    config = dataclasses.replace(from_dict(BackboneConfig, backbone_state["config"]), amp=adapt.amp)
    backbone = Pix2PixTrainer.from_state(config, backbone_state, device, wrap=wrap, rank=rank)
    if restored is not None:
        backbone.load_state_dict(restored)
    vae_config = from_dict(VAEConfig, vae_state["config"])
    vae = SliceVAE(int(vae_state["slice_size"]), vae_config.gf_dim, vae_config.latent_channels)
    vae.encoder.load_state_dict(vae_state["encoder"])
    return AdaptTrainer(backbone, vae.encoder, from_dict(SliceConfig, vae_state["slice_config"]), adapt)


def fit_adapt(trainer: AdaptTrainer, source_batches: Callable[[int], Iterable[Batch]],
              target_batches: Callable[[], Iterable[Batch]], source_val: Callable[[], Iterable[Batch]],
              references: Sequence[torch.Tensor], guards: GuardConfig,
              report: Callable[[dict[str, float]], None] = lambda m: None,
              evaluate: Callable[[], dict[str, float]] | None = None,
              on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
              target_monitor: Callable[[], Iterable[Batch]] | None = None,
              resume: AdaptProgress | None = None) -> AdaptResult:
    """Adapt for ``config.epochs`` epochs under the guards; the generator ends as the kept epoch's.

    Args:
        source_batches: epoch -> source pairs for the supervised step (cycled to the target length).
        target_batches: unlabeled target volumes (``input`` and ``mask``).
        source_val: labelled source-validation volumes for the guard.
        references: real source T1 volumes (B, 1, D, H, W), paired with target volumes by index modulo.
        evaluate: optional oracle metrics (e.g. target-test PSNR where T1 exists), *reported only*,
            prefixed ``eval_``; nothing here reads them back, so they cannot steer training or selection.
        on_epoch_end: called with (epoch, metrics) after each epoch is reported (checkpointing);
            ``trainer.progress`` then holds what a restart needs.
        target_monitor: the target volumes the guard and the reported objective look at (default:
            ``target_batches``). Under DDP pass *all* target volumes so every rank decides alike.
        resume: the progress saved with the checkpoint the backbone was restored from (its
            ``epoch`` is the last one done); adaptation goes on with the next epoch.
    """
    monitor = target_monitor or target_batches
    if trainer.config.prior == "population":
        trainer.fit_prior(references)

    def with_eval(metrics: dict[str, float]) -> dict[str, float]:
        if evaluate is not None:
            metrics.update({f"eval_{k}": v for k, v in evaluate().items()})
        return metrics

    if resume is None:
        start = trainer.record(0, source_val(), monitor())
        objective = [trainer.mean_objective(monitor(), references)]
        report(with_eval({"epoch": 0.0, "objective": objective[0], "source_val_psnr": start.source_psnr,
                          "target_mean": start.target_mean, "target_std": start.target_std,
                          "target_hf": start.target_hf, "target_background": start.target_background}))
        progress = AdaptProgress(start, [], objective, 0, snapshot(trainer.backbone))
        first = 1
    else:
        progress = AdaptProgress(resume.start, list(resume.records), list(resume.objective), resume.fallback_epoch,
                                 resume.fallback)
        start, objective = progress.start, progress.objective
        first = progress.records[-1].epoch + 1 if progress.records else 1
        if any(violation(r, start, guards) for r in progress.records):
            first = trainer.config.epochs + 1  # it had already stopped at a violation
    trainer.progress = progress
    saved = {progress.fallback_epoch: progress.fallback}
    if progress.records:
        saved[progress.records[-1].epoch] = snapshot(trainer.backbone)
    backbone_config = trainer.backbone.config
    augmented = backbone_config.augment or backbone_config.robust_augment or backbone_config.spatial_augment
    for epoch in range(first, trainer.config.epochs + 1):
        source = cycle_batches(source_batches, epoch)
        # the source step is the backbone's supervised step, with its augmentation (docs/method.md section 3),
        # drawn from (adaptation seed, rank, epoch) so a resumed adaptation repeats it
        rng = augmentation_rng(trainer.config.seed, trainer.backbone.rank, epoch) if augmented else None
        for i, target in enumerate(target_batches()):
            if trainer.config.source_step:
                trainer.backbone.train_step(next(source), rng)
            trainer.target_step(target["input"], references[i % len(references)])
        record = trainer.record(epoch, source_val(), monitor())
        progress.records.append(record)
        objective.append(trainer.mean_objective(monitor(), references))
        saved[epoch] = snapshot(trainer.backbone)
        broken = violation(record, start, guards)
        if not broken:
            progress.fallback_epoch, progress.fallback = epoch, saved[epoch]
        metrics = with_eval({"epoch": float(epoch), "objective": objective[-1], "source_val_psnr": record.source_psnr,
                             "target_mean": record.target_mean, "target_std": record.target_std,
                             "target_hf": record.target_hf, "target_background": record.target_background})
        report(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if broken:
            break
    decision = choose_checkpoint(start, progress.records, guards)
    restore(trainer.backbone, saved[decision.kept_epoch])
    return AdaptResult(start=start, epochs=list(progress.records), objective=objective, decision=decision)
