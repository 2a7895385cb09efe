"""Gaussian KL divergences and the reparameterisation trick, as pure functions.

Posteriors are parameterised by mean and *log standard deviation* (``logsig``), as the method's VAE
(docs/method.md section 2): sigma = exp(logsig).

    KL(N(mu_p, s_p^2) || N(mu_q, s_q^2)) = log(s_q / s_p) + (s_p^2 + (mu_p - mu_q)^2) / (2 s_q^2) - 1/2
    KL(N(mu, s^2) || N(0, 1))            = -1/2 (1 + 2 log s - mu^2 - s^2)
"""

from __future__ import annotations

import torch


def reparameterise(mu: torch.Tensor, logsig: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logsig) * eps, eps ~ N(0, I): a differentiable sample of the posterior."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(logsig) * eps


def kl_to_standard_normal(mu: torch.Tensor, logsig: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(N(mu, exp(logsig)^2) || N(0, 1))."""
    return -0.5 * (1.0 + 2.0 * logsig - mu.pow(2) - torch.exp(2.0 * logsig))


def gaussian_kl(mu_p: torch.Tensor, logsig_p: torch.Tensor, mu_q: torch.Tensor,
                logsig_q: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(P || Q) between diagonal Gaussians given by means and log standard deviations."""
    var_ratio = torch.exp(2.0 * (logsig_p - logsig_q))
    mean_term = (mu_p - mu_q).pow(2) * torch.exp(-2.0 * logsig_q)
    return (logsig_q - logsig_p) + 0.5 * (var_ratio + mean_term) - 0.5


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logsig: torch.Tensor,
             kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The method's VAE objective: sum-reduced MSE + kl_weight x summed KL to N(0, I).

    Returns (total, reconstruction, kl), each summed over the batch.
    """
    reconstruction = (recon - target).pow(2).sum()
    kl = kl_to_standard_normal(mu, logsig).sum()
    return reconstruction + kl_weight * kl, reconstruction, kl
