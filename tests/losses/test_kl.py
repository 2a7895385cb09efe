"""Gaussian KL and reparameterisation against torch.distributions and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from uda3d.losses.kl import gaussian_kl, kl_to_standard_normal, reparameterise, vae_loss


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_p, mu_q = torch.randn(500, generator=g, dtype=torch.float64), torch.randn(500, generator=g, dtype=torch.float64)
    ls_p = 0.5 * torch.randn(500, generator=g, dtype=torch.float64)
    ls_q = 0.5 * torch.randn(500, generator=g, dtype=torch.float64)
    ours = gaussian_kl(mu_p, ls_p, mu_q, ls_q)
    ref = kl_divergence(Normal(mu_p, ls_p.exp()), Normal(mu_q, ls_q.exp()))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    std = kl_to_standard_normal(mu_p, ls_p)
    torch.testing.assert_close(std, kl_divergence(Normal(mu_p, ls_p.exp()), Normal(0.0, 1.0)), atol=1e-6, rtol=0)


def test_kl_closed_forms():
    mu, ls = torch.tensor([0.3, -1.0]), torch.tensor([0.2, -0.5])
    assert torch.equal(gaussian_kl(mu, ls, mu, ls), torch.zeros(2))  # identical Gaussians
    s2 = torch.exp(2 * ls)
    torch.testing.assert_close(kl_to_standard_normal(mu, ls), 0.5 * (mu ** 2 + s2 - 1 - torch.log(s2)))
    assert float(kl_to_standard_normal(torch.zeros(1), torch.zeros(1))) == 0.0


def test_reparameterised_samples_have_the_right_moments():
    """n = 200k samples: the sample mean's std error is sigma / sqrt(n) ~ 0.0045 for sigma 2; we allow 5x."""
    n = 200_000
    mu, logsig = torch.full((n,), 1.5), torch.full((n,), math.log(2.0))
    z = reparameterise(mu, logsig, torch.Generator().manual_seed(1))
    assert float(z.mean()) == pytest.approx(1.5, abs=5 * 2.0 / math.sqrt(n))
    # The variance estimate's std error is sigma^2 sqrt(2 / n) ~ 0.0126; allow 5x.
    assert float(z.var()) == pytest.approx(4.0, abs=5 * 4.0 * math.sqrt(2 / n))


def test_reparameterisation_passes_gradients():
    mu, logsig = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    reparameterise(mu, logsig, torch.Generator().manual_seed(0)).sum().backward()
    assert torch.equal(mu.grad, torch.ones(3)) and logsig.grad is not None


def test_vae_loss_terms():
    recon, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    mu, ls = torch.tensor([1.0]), torch.tensor([0.0])
    total, rec, kl = vae_loss(recon, target, mu, ls, kl_weight=0.01)
    assert float(rec) == 5.0 and float(kl) == pytest.approx(0.5)
    assert float(total) == pytest.approx(5.0 + 0.005)
