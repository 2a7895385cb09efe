"""Input-side adaptation maths: sliced Wasserstein, histogram matching, the harmoniser, AdaBN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from uda3d.adaptation.input_maps import (
    fit_harmoniser,
    pooled_source_quantiles,
    reestimate_norm_statistics,
    sliced_wasserstein,
)
from uda3d.config import HarmoniserConfig
from uda3d.models.harmoniser import HistogramMatch, InputMapped, MonotoneHarmoniser, brain_quantiles


def test_sliced_wasserstein_in_one_dimension_is_scipys_wasserstein_distance():
    from scipy.stats import wasserstein_distance

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 1, generator=g, dtype=torch.float64), 2 + 3 * torch.rand(200, 1, generator=g,
                                                                                    dtype=torch.float64)
    ours = sliced_wasserstein(x, y, projections=4, generator=g, quantiles=200)
    assert float(ours) == pytest.approx(wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy()), rel=1e-9)
    assert float(sliced_wasserstein(x, x[torch.randperm(200, generator=g)], 8, g, 200)) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_of_a_shift_is_the_mean_projected_shift():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    directions_rng = torch.Generator().manual_seed(7)
    value = sliced_wasserstein(x, x + shift, projections=16, generator=directions_rng, quantiles=500)
    d = torch.randn(2, 16, generator=torch.Generator().manual_seed(7)).double()
    d = d / d.norm(dim=0, keepdim=True)
    assert float(value) == pytest.approx(float((shift @ d).abs().mean()), rel=1e-6)


def test_harmoniser_is_identity_at_start_and_monotone_always():
    h = MonotoneHarmoniser(channels=2, knots=6)
    x = torch.rand(1, 2, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(h(x), x, atol=1e-6, rtol=0)
    with torch.no_grad():
        h.logits.normal_(0, 3, generator=torch.Generator().manual_seed(3))
    y = h.y_knots()
    assert torch.all(y.diff(dim=1) > 0) and torch.allclose(y[:, 0], torch.zeros(2)) and torch.allclose(y[:, -1],
                                                                                                     torch.ones(2))
    v = torch.linspace(0.001, 1, 500).reshape(1, 1, 500, 1, 1).expand(1, 2, 500, 1, 1)
    out = h(v)
    assert torch.all(out.diff(dim=2) >= 0)          # order preserved per channel
    background = torch.zeros(1, 2, 4, 4, 4)
    assert torch.equal(h(background), background)   # background stays 0


def test_fitted_harmoniser_undoes_a_monotone_distortion():
    g = torch.Generator().manual_seed(4)
    source = [torch.rand(2, 12, 12, 12, generator=g) * 0.9 + 0.1 for _ in range(2)]
    target = [v ** 2.5 for v in source]                                   # a contrast change of both modalities
    h, history = fit_harmoniser(target, source, HarmoniserConfig(knots=8, steps=150, lr=0.1, voxels=2048,
                                                                 projections=16, seed=0))
    assert history[-1] < 0.25 * history[0]
    with torch.no_grad():
        restored = h(torch.stack(target))
    assert float((restored - torch.stack(source)).abs().mean()) < 0.25 * float(
        (torch.stack(target) - torch.stack(source)).abs().mean())


def test_histogram_match_maps_brain_quantiles_onto_the_reference():
    g = torch.Generator().manual_seed(5)
    source = [torch.rand(2, 10, 10, 10, generator=g) * 0.8 + 0.1 for _ in range(3)]
    reference = pooled_source_quantiles(source, levels=33)
    target = torch.rand(2, 10, 10, 10, generator=g) ** 3 * 0.9 + 0.05
    target[:, :2] = 0.0                                                    # background
    matched = HistogramMatch(reference)(target[None])[0]
    mask = (target > 0).any(0)
    assert torch.all(matched[:, ~mask] == 0)
    got = brain_quantiles(matched, mask, torch.linspace(0, 1, 33))
    torch.testing.assert_close(got, reference, atol=2e-3, rtol=0)


def test_histogram_match_agrees_with_scikit_image():
    from skimage.exposure import match_histograms

    rng = np.random.default_rng(6)
    reference_volume = rng.gamma(2.0, 0.1, size=(16, 16, 16)).clip(0.01, 1).astype(np.float32)
    image = rng.uniform(0.02, 1.0, size=(16, 16, 16)).astype(np.float32)
    reference = torch.quantile(torch.from_numpy(reference_volume).flatten(), torch.linspace(0, 1, 257))[None]
    ours = HistogramMatch(reference)(torch.from_numpy(image)[None, None])[0, 0].numpy()
    theirs = match_histograms(image, reference_volume)
    assert np.abs(ours - theirs).mean() < 0.01


def test_input_mapped_generator_composes():
    conv = nn.Conv3d(2, 1, 1)
    h = MonotoneHarmoniser(2, 4)
    x = torch.rand(1, 2, 4, 4, 4)
    torch.testing.assert_close(InputMapped(h, conv)(x), conv(h(x)))


def test_adabn_reestimates_batchnorm_and_is_identity_for_instance_norm():
    from uda3d.config import BackboneConfig
    from uda3d.models.factory import build_generator

    model = nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3))
    batches = [torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(i)) * (i + 1) + i
               for i in range(3)]
    assert reestimate_norm_statistics(model, batches) == 1
    with torch.no_grad():
        features = [model[0](b) for b in batches]
    expected = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, expected, atol=1e-5, rtol=0)
    generator = build_generator(BackboneConfig(ngf=4))
    x = torch.rand(1, 2, 16, 16, 16)
    before = generator(x)
    assert reestimate_norm_statistics(generator, [x]) == 0
    torch.testing.assert_close(generator(x), before)


def test_a_checkpoint_with_a_harmoniser_loads_as_harmoniser_then_generator(tmp_path):
    from dataclasses import asdict

    from uda3d.config import BackboneConfig
    from uda3d.models.factory import build_generator
    from uda3d.training.checkpoint import load_generator, save_state

    config = BackboneConfig(ngf=4)
    generator = build_generator(config).eval()
    harmoniser = MonotoneHarmoniser(2, 5)
    with torch.no_grad():
        harmoniser.logits.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    save_state(tmp_path, {"generator": generator.state_dict(), "config": asdict(config),
                          "harmoniser": harmoniser.state_dict()})
    loaded = load_generator(tmp_path)
    x = torch.rand(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    assert isinstance(loaded, InputMapped)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), generator(harmoniser(x)))
