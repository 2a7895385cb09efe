"""Robust input augmentation: range, brain mask, monotone remapping, determinism, strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uda3d.data.robust_augment import RobustAugmentConfig, apply_curve, monotone_curve, robust_augment
from uda3d.errors import ConfigError


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 20, 20, 20, generator=g)
    x[:, :4] = 0.0  # background
    return x


def test_monotone_curve_is_increasing_and_onto():
    x, y = monotone_curve(np.random.default_rng(0), 6)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0) and np.all(np.diff(y) > 0)
    v = torch.linspace(0, 1, 101)
    mapped = apply_curve(v, (x, y))
    assert torch.all(torch.diff(mapped) >= 0)
    np.testing.assert_allclose(mapped.numpy(), np.interp(v.numpy(), x, y), atol=1e-6)


def test_augmented_inputs_stay_in_range_inside_the_brain():
    x = _inputs()
    out = robust_augment(x, torch.Generator().manual_seed(1), RobustAugmentConfig(probability=1.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.all(out[:, :4] == 0)  # background stays background
    assert not torch.allclose(out, x, atol=1e-3)  # it did something


def test_deterministic_for_a_generator_seed_and_varies_across_seeds():
    x = _inputs()
    a = robust_augment(x, torch.Generator().manual_seed(5))
    b = robust_augment(x, torch.Generator().manual_seed(5))
    c = robust_augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_probability_zero_only_rescales():
    x = _inputs()
    out = robust_augment(x, torch.Generator().manual_seed(2), RobustAugmentConfig(probability=0.0))
    brain = (x > 0).any(0)
    for ch in range(2):
        inside = x[ch][brain]
        expected = (x[ch] - inside.min()) / (inside.max() - inside.min())
        torch.testing.assert_close(out[ch][brain], expected[brain], atol=1e-6, rtol=0)


def test_bad_strengths():
    with pytest.raises(ConfigError):
        RobustAugmentConfig(probability=1.5)
    with pytest.raises(ConfigError):
        RobustAugmentConfig(gamma_low=2.0, gamma_high=1.0)
