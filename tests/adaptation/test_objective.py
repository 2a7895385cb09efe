"""The adaptation objective and guards against hand-made tensors and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uda3d.adaptation.guards import EpochRecord, choose_checkpoint, violation
from uda3d.adaptation.objective import (
    kth_percentile,
    latent_alignment_loss,
    order_for_slicing,
    top_percent_mean,
)
from uda3d.config import GuardConfig
from uda3d.errors import ConfigError
from uda3d.losses.kl import gaussian_kl


def test_kl_of_identical_posteriors_is_zero():
    mu, ls = torch.randn(4, 8, 2, 2), 0.3 * torch.randn(4, 8, 2, 2)
    assert float(latent_alignment_loss(mu, ls, mu.clone(), ls.clone(), ele_percent=55)) == 0.0


def test_percentile_rank_rule():
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 6.0, 8.0, 0.0])  # sorted 0..9
    # q = 45: k = 1 + round(0.45 * 9) = 1 + 4 = 5 -> the 5th smallest, 4.0
    assert float(kth_percentile(values, 45)) == 4.0
    assert float(kth_percentile(values, 0)) == 0.0 and float(kth_percentile(values, 100)) == 9.0


@pytest.mark.parametrize("ele_percent,kept", [(55, [5, 6, 7, 8, 9]), (90, [2, 3, 4, 5, 6, 7, 8, 9]),
                                              (100, [1, 2, 3, 4, 5, 6, 7, 8, 9]), (10, [9]), (20, [8, 9])])
def test_top_percent_keeps_the_largest_elements_strictly_above_the_percentile(ele_percent, kept):
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 6.0, 8.0, 0.0])
    # ele 55 -> q 45 -> threshold 4 -> keep {5..9}; ele 100 -> threshold = min -> all but the minimum.
    assert float(top_percent_mean(values, ele_percent)) == pytest.approx(sum(kept) / len(kept))


def test_top_percent_of_a_constant_tensor_is_its_value():
    assert float(top_percent_mean(torch.full((6,), 2.5), 55)) == 2.5


def test_loss_is_weighted_mean_of_selected_kl_and_has_gradients():
    torch.manual_seed(0)
    mu_r, ls_r = torch.randn(3, 4, 2, 2), 0.2 * torch.randn(3, 4, 2, 2)
    mu_f = torch.randn(3, 4, 2, 2, requires_grad=True)
    ls_f = (0.2 * torch.randn(3, 4, 2, 2)).requires_grad_()
    loss = latent_alignment_loss(mu_r, ls_r, mu_f, ls_f, ele_percent=55, kl_weight=0.5)
    kl = gaussian_kl(mu_r, ls_r, mu_f, ls_f).flatten()
    threshold = kl.sort().values[1 + round(0.45 * (kl.numel() - 1)) - 1]
    assert float(loss.detach()) == pytest.approx(0.5 * float(kl[kl > threshold].mean().detach()), rel=1e-6)
    loss.backward()
    assert mu_f.grad is not None and float(mu_f.grad.abs().sum()) > 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="ele_percent"):
        top_percent_mean(torch.ones(3), 0)
    with pytest.raises(ValueError, match="differ"):
        latent_alignment_loss(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ConfigError, match="slice_order"):
        order_for_slicing(torch.zeros(2, 2, 2), "sideways")


def test_slice_orders():
    v = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    assert order_for_slicing(v, "intended") is v
    faithful = order_for_slicing(v, "faithful")
    assert faithful.shape == (3, 4, 2)
    assert torch.equal(faithful.flatten(), v.flatten())  # a raw view: same memory order ...
    assert not torch.equal(faithful, v.permute(1, 2, 0))  # ... which is not the axis permutation


START = EpochRecord(0, source_psnr=25.0, target_mean=0.30, target_std=0.20)


def _rec(epoch, psnr, mean=0.30, std=0.20):
    return EpochRecord(epoch, psnr, mean, std)


def test_guard_keeps_the_last_epoch_when_all_are_safe():
    d = choose_checkpoint(START, [_rec(1, 24.95), _rec(2, 24.9)], GuardConfig(max_source_drop=0.2))
    assert d.kept_epoch == 2 and d.stopped_at is None


def test_guard_rolls_back_before_a_source_drop():
    d = choose_checkpoint(START, [_rec(1, 24.9), _rec(2, 24.5), _rec(3, 25.5)], GuardConfig(max_source_drop=0.2))
    assert (d.kept_epoch, d.stopped_at) == (1, 2)
    assert "source-val PSNR fell 0.50 dB" in d.reason


def test_guard_rolls_back_to_the_start_on_intensity_drift():
    d = choose_checkpoint(START, [_rec(1, 25.1, mean=0.36)], GuardConfig(max_intensity_drift=0.1))
    assert (d.kept_epoch, d.stopped_at) == (0, 1)
    assert "mean drifted 20%" in d.reason and "starting model" in d.reason


def test_population_prior_is_the_moment_matched_gaussian_of_the_posteriors():
    from uda3d.adaptation.objective import fit_population_prior

    g = torch.Generator().manual_seed(0)
    mus = torch.randn(5, 3, 4, 2, 2, generator=g, dtype=torch.float64)
    logsigs = 0.3 * torch.randn(5, 3, 4, 2, 2, generator=g, dtype=torch.float64)
    mean, logsig = fit_population_prior(mus, logsigs)
    m, s = mus.numpy(), np.exp(logsigs.numpy())
    np.testing.assert_allclose(mean.numpy(), m.mean(0), rtol=1e-12)
    # law of total variance for the equal-weight mixture of the N posteriors
    np.testing.assert_allclose(np.exp(2 * logsig.numpy()), (s**2 + m**2).mean(0) - m.mean(0) ** 2, rtol=1e-10)
    # and a Monte Carlo draw from the mixture has those moments
    comp = torch.randint(5, (200_000,), generator=g)
    draws = mus[comp, 0, 0, 0, 0] + torch.exp(logsigs[comp, 0, 0, 0, 0]) * torch.randn(200_000, generator=g,
                                                                                         dtype=torch.float64)
    assert float(draws.mean()) == pytest.approx(float(mean[0, 0, 0, 0]), abs=0.02)
    assert float(draws.std()) == pytest.approx(float(torch.exp(logsig[0, 0, 0, 0])), rel=0.02)
    with pytest.raises(ValueError):
        fit_population_prior(mus, logsigs[:, :2])


def test_population_prior_loss_is_the_kl_to_the_prior():
    from uda3d.adaptation.objective import fit_population_prior

    g = torch.Generator().manual_seed(1)
    mus, logsigs = torch.randn(4, 6, 2, 2, 2, generator=g), 0.2 * torch.randn(4, 6, 2, 2, 2, generator=g)
    mu_p, ls_p = fit_population_prior(mus, logsigs)
    mu_f, ls_f = torch.randn(6, 2, 2, 2, generator=g), 0.2 * torch.randn(6, 2, 2, 2, generator=g)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu_p, ls_p.exp()),
                                                 torch.distributions.Normal(mu_f, ls_f.exp())).flatten()
    kept = expected.sort().values[1:]  # ele_percent 100 keeps all elements strictly above the minimum
    assert float(latent_alignment_loss(mu_p, ls_p, mu_f, ls_f, ele_percent=100)) == pytest.approx(
        float(kept.mean()), rel=1e-5)


def _smooth_output(seed: int = 0):
    """A smooth brain-like output (std ~0.2 inside a ball) and its brain mask."""
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, 32),) * 3, indexing="ij")
    brain = (x**2 + y**2 + z**2) < 0.6
    field = torch.nn.functional.avg_pool3d(torch.rand(1, 1, 32, 32, 32, generator=g), 7, 1, 3)[0, 0]
    volume = 0.4 + 0.2 * (field - field[brain].mean()) / field[brain].std()
    return torch.where(brain, volume, torch.zeros_like(volume)), brain


def _record(volume, brain, epoch=0):
    from uda3d.adaptation.guards import background_level, high_frequency_energy

    inside = volume[brain]
    return EpochRecord(epoch, 25.0, float(inside.mean()), float(inside.std()), high_frequency_energy(volume, brain),
                       background_level(volume, brain))


def test_planted_noise_passes_the_intensity_guards_but_not_the_high_frequency_one():
    clean, brain = _smooth_output()
    noise = 0.09 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    noisy = torch.where(brain, clean + noise, clean)
    start, after = _record(clean, brain), _record(noisy, brain, 1)
    blind = GuardConfig(max_hf_rise=1e9)  # the guards as they were: mean and std barely move
    assert violation(after, start, blind) is None
    problem = violation(after, start, GuardConfig())
    assert problem is not None and "high-frequency energy rose" in problem and problem.endswith("noise")


def test_planted_background_fill_in_is_caught_outside_the_brain():
    clean, brain = _smooth_output()
    filled = torch.where(brain, clean, torch.full_like(clean, 0.1))  # inside unchanged
    start, after = _record(clean, brain), _record(filled, brain, 1)
    assert violation(after, start, GuardConfig(max_background_rise=1e9)) is None
    assert "background fill-in" in violation(after, start, GuardConfig())
