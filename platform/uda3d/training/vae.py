"""Slice-VAE training as plain PyTorch: one volume's slices per batch, in order (docs/method.md section 2).

``VAETrainer`` holds the VAE and its optimiser; ``fit_vae`` runs epochs over an iterable of
per-volume slice batches and reports per-epoch reconstruction and KL (per pixel / per latent
element, so numbers compare across slice sizes), plus the validation reconstruction error of the
posterior mean against the error of predicting the mean training slice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from uda3d.config import VAEConfig
from uda3d.losses.kl import vae_loss
from uda3d.models.vae2d import SliceVAE
from uda3d.training.runtime import unwrap

Report = Callable[[dict[str, float]], None]


class VAETrainer:
    """The slice VAE, its Adam optimiser and the number of epochs done."""

    def __init__(self, config: VAEConfig, slice_size: int, device: torch.device,
                 wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.slice_size = slice_size
        self.device = device
        self.model = (wrap or (lambda m: m))(SliceVAE(slice_size, config.gf_dim, config.latent_channels).to(device))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sample_rng = torch.Generator(device=device).manual_seed(config.seed)
        self.epoch = 0

    def train_step(self, slices: torch.Tensor) -> dict[str, float]:
        """One update on one volume's (S, 1, H, W) slices."""
        self.model.train()
        x = slices.to(self.device, non_blocking=True)
        recon, mu, logsig, _ = self.model(x, self.sample_rng)
        total, rec, kl = vae_loss(recon, x, mu, logsig, self.config.kl_weight)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"loss": float(total.detach()), "recon_mse": float(rec.detach()) / x.numel(),
                "kl_per_element": float(kl.detach()) / mu.numel()}

    @torch.no_grad()
    def reconstruct(self, slices: torch.Tensor) -> torch.Tensor:
        """Decode the posterior means of one volume's slices (BatchNorm on the volume's statistics)."""
        vae = unwrap(self.model)
        vae.train()  # per-volume batch statistics, as in training and in the adaptation
        mu, _ = vae.encoder(slices.to(self.device))
        return vae.decoder(mu).cpu()

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` latents drawn from N(0, I) (BatchNorm on running statistics)."""
        vae = unwrap(self.model)
        vae.eval()
        z = torch.randn((n, self.config.latent_channels, 2, 2), generator=generator).to(self.device)
        out = vae.decoder(z).cpu()
        vae.train()
        return out

    def validation_mse(self, volumes: Iterable[torch.Tensor]) -> float:
        """Per-pixel squared error of the posterior-mean reconstructions over ``volumes``."""
        err, count = 0.0, 0
        for slices in volumes:
            err += float((self.reconstruct(slices) - slices).pow(2).sum())
            count += slices.numel()
        return err / max(count, 1)

    def state_dict(self) -> dict[str, Any]:
        vae = unwrap(self.model)
        return {"encoder": vae.encoder.state_dict(), "decoder": vae.decoder.state_dict(),
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "config": asdict(self.config),
                "slice_size": self.slice_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vae = unwrap(self.model)
        vae.encoder.load_state_dict(state["encoder"])
        vae.decoder.load_state_dict(state["decoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])


def fit_vae(trainer: VAETrainer, train_volumes: Callable[[int], Iterable[torch.Tensor]],
            val_volumes: Callable[[], Iterable[torch.Tensor]] | None, report: Report,
            on_epoch_end: Callable[[VAETrainer, dict[str, float]], None] | None = None,
            progress: bool = False) -> list[dict[str, float]]:
    """Train from ``trainer.epoch`` to ``config.epochs``; each epoch's mean losses go to ``report``."""
    from uda3d.progress import progress as progress_bar

    history = []
    start = time.perf_counter()
    while trainer.epoch < trainer.config.epochs:
        epoch = trainer.epoch + 1
        sums: dict[str, float] = {}
        count = 0
        for slices in progress_bar(train_volumes(epoch), desc=f"vae epoch {epoch}/{trainer.config.epochs}",
                                   disable=not progress, leave=False, every_percent=100):
            for k, v in trainer.train_step(slices).items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        trainer.epoch = epoch
        metrics = {"epoch": float(epoch), **{k: v / max(count, 1) for k, v in sums.items()}}
        if val_volumes is not None:
            metrics["val_recon_mse"] = trainer.validation_mse(val_volumes())
        metrics["fit_elapsed_s"] = time.perf_counter() - start
        report(metrics)
        if on_epoch_end is not None:
            on_epoch_end(trainer, metrics)
        history.append(metrics)
    return history


def mean_slice_baseline(train: Iterable[torch.Tensor], val: Iterable[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """The mean training slice and the per-pixel squared error of predicting it for every val slice.

    The VAE must beat this: a model that only learned the average anatomy would match it.
    """
    total, n = None, 0
    for slices in train:
        s = slices.sum(dim=0)
        total = s if total is None else total + s
        n += slices.shape[0]
    if total is None:
        raise ValueError("no training slices")
    mean = total / n
    err, count = 0.0, 0
    for slices in val:
        err += float((slices - mean).pow(2).sum())
        count += slices.numel()
    return mean, err / max(count, 1)
