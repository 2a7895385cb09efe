"""Robust input augmentation: range, brain mask, monotone remapping, determinism, strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uda3d.curves import apply_curve
from uda3d.data.robust_augment import RobustAugmentConfig, monotone_curve, robust_augment
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


def _only(name: str, config: RobustAugmentConfig, x: torch.Tensor, axis: int = 0, seed: int = 3) -> torch.Tensor:
    from uda3d.data.robust_augment import intensity_transforms

    [transform] = [t for n, t in intensity_transforms(config, axis, p=1.0) if n == name]
    transform.set_random_state(seed=seed)
    out = transform(x[None])
    return torch.as_tensor(out)[0].float()


def test_each_transform_on_hand_made_volumes():
    """Each MONAI transform does what it is there for, on volumes whose answer is known."""
    strong = RobustAugmentConfig(probability=1.0, bias_coeff=0.6, gamma_low=2.0, gamma_high=3.0, noise_std=0.1)
    ramp = torch.linspace(0.05, 1.0, 16)[:, None, None].expand(16, 16, 16).contiguous()   # varies along axis 0 only
    # bias field: multiplicative, exp of a degree-3 polynomial in the coordinates (smooth by construction)
    biased = _only("bias_field", strong, ramp)
    log_ratio = torch.log(biased / ramp).double().flatten()
    assert float(log_ratio.std()) > 0.05
    c = torch.linspace(-1, 1, 16, dtype=torch.float64)
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    terms = [z**i * y**j * x**k for i in range(4) for j in range(4) for k in range(4) if i + j + k <= 3]
    design = torch.stack([t.flatten() for t in terms], 1)
    fit = torch.linalg.lstsq(design, log_ratio[:, None]).solution
    assert float((design @ fit - log_ratio[:, None]).abs().max()) < 1e-4
    # contrast: gamma in [2, 3] keeps the order of intensities and darkens mid-range values
    contrast = _only("contrast", strong, ramp)
    assert torch.all(contrast.flatten().diff()[ramp.flatten().diff() > 0] >= -1e-6)
    assert float(contrast[8].mean()) < float(ramp[8].mean())
    # histogram shift: a monotone remapping too
    shifted = _only("histogram_shift", strong, ramp)
    order = ramp[:, 0, 0].argsort()
    assert torch.all(shifted[:, 0, 0][order].diff() >= -1e-6)
    # blur along one axis: a volume that varies only along axis 0 is untouched by blur along axis 1
    # and smoothed by blur along axis 0
    # (away from the borders of the blurred axis, where MONAI pads with zeros)
    step = torch.zeros(16, 40, 16)
    step[8:] = 1.0
    torch.testing.assert_close(_only("blur", strong, step, axis=1)[:, 12:28], step[:, 12:28], atol=1e-5, rtol=0)
    blurred = _only("blur", strong, step, axis=0)
    assert 0.0 < float(blurred[7, 8, 8]) < 1.0 and torch.allclose(blurred[:, 3], blurred[:, 12], atol=1e-5)
    # noise: zero-mean with (at most) the configured std
    noisy = _only("noise", strong, torch.full((16, 16, 16), 0.5))
    assert abs(float(noisy.mean()) - 0.5) < 0.02 and 0.0 < float(noisy.std()) <= 0.1 + 0.01


def test_strengths_are_config_and_mlflow_params():
    from dataclasses import asdict

    from uda3d.config import BackboneConfig, from_dict
    from uda3d.tracking import flatten

    config = BackboneConfig(robust_augment=True, robust=RobustAugmentConfig(noise_std=0.02, remap_knots=4))
    assert from_dict(BackboneConfig, asdict(config)) == config  # a checkpoint's config round-trips
    params = flatten({"backbone": asdict(config)})
    assert params["backbone.robust.noise_std"] == "0.02" and params["backbone.robust.remap_knots"] == "4"
    with pytest.raises(ConfigError, match="remap_knots"):
        from_dict(BackboneConfig, {"robust": {"remap_knots": 1}})
