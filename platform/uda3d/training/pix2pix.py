"""Supervised 3D pix2pix training (docs/method.md section 1) as plain PyTorch, usable with or without Ray.

``Pix2PixTrainer`` owns the generator, discriminator, optimisers, schedulers and scaler and takes
one training step per volume; ``fit_backbone`` runs epochs and hands each epoch's metrics to a
``report`` callback (Ray's ``report`` in a worker, ``list.append`` in a test). DDP wrapping is
injected through ``wrap`` (Ray's ``prepare_model``), so the same code runs on one process or many.

Each step, as the method's code: update D on (real, fake.detach()) pairs with the LSGAN loss, then
update G with GAN + 100 L1 + 1.5 feature matching through a D whose parameters are frozen. With
``aux_weight > 0`` a third update trains the auxiliary input-reconstruction task on the shared
encoder and its head (``uda3d.adaptation.ttt``). During the config's ``l1_warmup_epochs`` (0 in the
method) the step is G alone on L1: the discriminator neither runs nor learns.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from uda3d.config import BackboneConfig, TTTConfig
from uda3d.data.augment import augment_pair
from uda3d.data.robust_augment import robust_augment
from uda3d.data.spatial_augment import spatial_augment
from uda3d.losses.adversarial import discriminator_loss, lsgan_loss
from uda3d.losses.cross_contrast import auxiliary_loss
from uda3d.losses.pix2pix import generator_loss
from uda3d.losses.reconstruction import l1_loss
from uda3d.metrics.image import mean_metrics, volume_metrics
from uda3d.models.factory import build_discriminator, build_generator
from uda3d.models.ttt import auxiliary_task_parameters, load_generator_state
from uda3d.training.runtime import autocast, own_gradients, resolve_precision, unwrap

CPU = torch.device("cpu")

Report = Callable[[dict[str, float]], None]


def linear_decay(epochs: int, epochs_decay: int) -> Callable[[int], float]:
    """LR multiplier: 1 for ``epochs`` epochs, then linearly down to 0 over ``epochs_decay`` (pix2pix rule)."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)

    return factor


def set_requires_grad(model: nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


class Pix2PixTrainer:
    """Generator + discriminator + optimisation state for supervised source training.

    Args:
        config: the backbone config.
        device: where the networks live.
        wrap: applied to each network after it is moved to ``device`` (e.g. Ray's ``prepare_model``).
        rank: this process's rank (varies augmentation between DDP workers).
    """

    def __init__(self, config: BackboneConfig, device: torch.device,
                 wrap: Callable[[nn.Module], nn.Module] | None = None, rank: int = 0) -> None:
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.config = config
        self.device = device
        self.rank = rank
        wrap = wrap or (lambda m: m)
        self.generator = wrap(build_generator(config).to(device))
        self.discriminator = wrap(build_discriminator(config).to(device))
        betas = (config.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)
        rule = linear_decay(config.epochs, config.epochs_decay)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, rule)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, rule)
        # The auxiliary task (aux_weight > 0): its own Adam over the shared encoder and the auxiliary head.
        self.opt_aux = (torch.optim.Adam(auxiliary_task_parameters(unwrap(self.generator)), lr=config.lr, betas=betas)
                        if config.aux_weight > 0 else None)
        self.precision = resolve_precision(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.use_scaler)
        self.epoch = 0  # epochs completed
        self._micro_step = 0
        self.checkpointing = False
        self.use_checkpointing(config.checkpointing)

    @classmethod
    def from_state(cls, config: BackboneConfig, init: dict | None = None, device: torch.device = CPU,
                   wrap: Callable[[nn.Module], nn.Module] | None = None, rank: int = 0) -> Pix2PixTrainer:
        """A trainer for ``config`` whose networks start from ``init`` (a checkpoint's state), if given.

        A plain backbone's generator may start a joint one (``aux_weight > 0``): the auxiliary head
        it lacks keeps its fresh weights.
        """
        trainer = cls(config, device, wrap=wrap, rank=rank)
        if init is not None:
            load_generator_state(unwrap(trainer.generator), init["generator"])
            unwrap(trainer.discriminator).load_state_dict(init["discriminator"])
        return trainer

    def use_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward and score real and fake pairs one at a time (less memory)."""
        from uda3d.models.blocks import set_checkpointing

        set_checkpointing(unwrap(self.generator), enabled)
        set_checkpointing(unwrap(self.discriminator), enabled)
        self.checkpointing = enabled

    # -- one volume -------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Any], augment_rng: torch.Generator | None = None) -> dict[str, float]:
        """One D update and one G update on a batch of paired volumes (accumulated per config); a G update
        on L1 alone while ``trainer.epoch`` is inside the config's L1 warm-up."""
        x, y = batch["input"], batch["target"]
        if augment_rng is not None and self.config.spatial_augment:
            pairs = [spatial_augment(xi, yi, augment_rng, self.config.spatial) for xi, yi in zip(x, y)]
            x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        if augment_rng is not None and self.config.augment:
            pairs = [augment_pair(xi, yi, augment_rng) for xi, yi in zip(x, y)]
            x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        if augment_rng is not None and self.config.robust_augment:
            x = torch.stack([robust_augment(xi, augment_rng, self.config.robust) for xi in x])
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        accum = self.config.grad_accum
        boundary = (self._micro_step + 1) % accum == 0
        warming_up = self.epoch < self.config.l1_warmup_epochs
        terms = self._l1_step(x, y, accum, boundary) if warming_up else self._gan_step(x, y, accum, boundary)
        if self.opt_aux is not None:
            terms["loss_aux"] = self.auxiliary_step(batch)
        self._micro_step += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    def _l1_step(self, x: torch.Tensor, y: torch.Tensor, accum: int, boundary: bool) -> dict[str, torch.Tensor]:
        """The warm-up's step: G alone on lambda_l1 x L1 (the discriminator is neither run nor updated)."""
        with autocast(self.device, self.precision):
            fake = self.generator(x)
        l1 = l1_loss(fake.float(), y)
        self.scaler.scale(self.config.lambda_l1 * l1 / accum).backward()
        self._step_generator(boundary)
        return {"loss_g": self.config.lambda_l1 * l1, "loss_l1": l1}

    def _step_generator(self, boundary: bool) -> None:
        """At an accumulation boundary: G's optimiser step, then the scaler's update (the step's last)."""
        if boundary:
            self.scaler.step(self.opt_g)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.update()

    def _gan_step(self, x: torch.Tensor, y: torch.Tensor, accum: int, boundary: bool) -> dict[str, torch.Tensor]:
        """The method's step: D on (real, fake.detach()) pairs, then G on GAN + L1 + feature matching."""
        d_module = unwrap(self.discriminator)
        with autocast(self.device, self.precision):
            fake = self.generator(x)                                     # (B, 1, D, H, W)
        # 1. Discriminator: real pairs -> 1, fake pairs -> 0, one forward over both.
        set_requires_grad(d_module, True)
        if self.checkpointing:  # one pair at a time: two pairs' full-resolution first stage is the step's peak
            loss_d = torch.zeros((), device=self.device)
            for pair, is_real in ((torch.cat([x, y], 1), True), (torch.cat([x, fake.detach()], 1), False)):
                with autocast(self.device, self.precision):
                    half = 0.5 * lsgan_loss(self.discriminator(pair)[-1].float(), is_real)
                self.scaler.scale(half / accum).backward()
                loss_d = loss_d + half.detach()
        else:
            with autocast(self.device, self.precision):
                pairs = torch.cat([torch.cat([x, y], 1), torch.cat([x, fake.detach()], 1)], 0)
                logits = self.discriminator(pairs)[-1]
                real_logits, fake_logits = logits.chunk(2, dim=0)
                loss_d = discriminator_loss(real_logits.float(), fake_logits.float())
            self.scaler.scale(loss_d / accum).backward()
        if boundary:
            self.scaler.step(self.opt_d)
            self.opt_d.zero_grad(set_to_none=True)
        # 2. Generator through a frozen D (its DDP wrapper bypassed: D gets no gradient here).
        set_requires_grad(d_module, False)
        with autocast(self.device, self.precision):
            feats_fake = d_module(torch.cat([x, fake], 1))
            with torch.no_grad():
                feats_real = d_module(torch.cat([x, y], 1))
            g = generator_loss([f.float() for f in feats_fake], [f.float() for f in feats_real], fake.float(), y,
                               self.config.lambda_l1, self.config.lambda_fm)
        self.scaler.scale(g.total / accum).backward()
        set_requires_grad(d_module, True)
        self._step_generator(boundary)
        return {"loss_d": loss_d, "loss_g": g.total, "loss_g_gan": g.gan, "loss_l1": g.l1,
                "loss_fm": g.feature_matching}

    def auxiliary_step(self, batch: dict[str, Any]) -> torch.Tensor:
        """One step of the auxiliary task on the batch's undamaged, unaugmented inputs (brain from its mask).

        The damage is drawn from (seed, step), so a resumed run damages as an uninterrupted one.
        """
        rng = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self._micro_step)
        with own_gradients(self.opt_aux):  # the shared encoder may hold T1 gradients still accumulating
            with autocast(self.device, self.precision):
                loss = auxiliary_loss(self.generator, batch["input"].to(self.device), batch["mask"].to(self.device),
                                      rng, TTTConfig())
            (self.config.aux_weight * loss).backward()
            self.opt_aux.step()
        return loss.detach()

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Generator output for (B, 2, D, H, W) inputs, in fp32 on the CPU."""
        with autocast(self.device, self.precision):
            out = self.generator(inputs.to(self.device))
        return out.float().cpu()

    def evaluate(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Mean brain-masked PSNR/SSIM/MAE (and the method's whole-volume PSNR) over labelled volumes."""
        records = []
        for batch in batches:
            fake = self.predict(batch["input"])
            records += [volume_metrics(fake[i, 0], batch["target"][i, 0], batch["mask"][i, 0])
                        for i in range(fake.shape[0])]
        return mean_metrics(records)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": unwrap(self.generator).state_dict(),
                "discriminator": unwrap(self.discriminator).state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch,
                "micro_step": self._micro_step, "config": asdict(self.config),
                **({"opt_aux": self.opt_aux.state_dict()} if self.opt_aux is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.discriminator).load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.opt_aux is not None and "opt_aux" in state:
            self.opt_aux.load_state_dict(state["opt_aux"])
        self.epoch = int(state["epoch"])
        self._micro_step = int(state.get("micro_step", 0))


def augmentation_rng(seed: int, rank: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, rank, epoch): resumed runs augment as uninterrupted ones."""
    return torch.Generator().manual_seed(seed * 1_000_003 + rank * 10_007 + epoch)


def validates(config: BackboneConfig, epoch: int) -> bool:
    """Whether epoch ``epoch`` (from 1) scores source val: every ``val_every``-th and always the last."""
    return epoch % config.val_every == 0 or epoch == config.total_epochs


def fit_backbone(trainer: Pix2PixTrainer, train_batches: Callable[[int], Iterable[dict[str, Any]]],
                 val_batches: Callable[[], Iterable[dict[str, Any]]] | None, report: Report,
                 on_epoch_end: Callable[[Pix2PixTrainer, dict[str, float]], None] | None = None,
                 progress: bool = False) -> list[dict[str, float]]:
    """Train from ``trainer.epoch`` to the config's total epochs.

    Args:
        trainer: holds the networks and the epoch to resume after.
        train_batches: epoch -> an iterable of training batches (lets a distributed sampler reshuffle).
        val_batches: an iterable of source-validation batches, or None; scored after the epochs
            ``validates`` names (every ``val_every``-th and the last), whose metrics get ``val_*`` keys.
        report: receives each epoch's metrics (epoch numbers start at 1).
        on_epoch_end: called after ``report`` with the trainer and the metrics (checkpointing).
        progress: report progress per epoch (a bar on a terminal, one line per epoch in a log).

    Returns:
        The metrics of every epoch run here.
    """
    import time

    from uda3d.progress import progress as progress_bar

    history = []
    cfg = trainer.config
    start = time.perf_counter()
    while trainer.epoch < cfg.total_epochs:
        epoch = trainer.epoch + 1
        augmented = cfg.augment or cfg.robust_augment or cfg.spatial_augment
        rng = augmentation_rng(cfg.seed, trainer.rank, epoch) if augmented else None
        sums: dict[str, float] = {}
        count = 0
        for batch in progress_bar(train_batches(epoch), desc=f"epoch {epoch}/{cfg.total_epochs}",
                                  disable=not progress, leave=False, every_percent=100):
            for k, v in trainer.train_step(batch, rng).items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        metrics = {"epoch": float(epoch), "lr": trainer.opt_g.param_groups[0]["lr"]}
        trainer.sched_g.step()
        with warnings.catch_warnings():  # in the L1 warm-up D's optimiser has not stepped: its schedule still runs
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            trainer.sched_d.step()
        trainer.epoch = epoch
        metrics.update({k: v / max(count, 1) for k, v in sums.items()})
        if val_batches is not None and validates(cfg, epoch):
            metrics.update({f"val_{k}": v for k, v in trainer.evaluate(val_batches()).items()})
        metrics["fit_elapsed_s"] = time.perf_counter() - start
        report(metrics)
        if on_epoch_end is not None:
            on_epoch_end(trainer, metrics)
        history.append(metrics)
    return history
