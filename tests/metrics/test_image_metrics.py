"""PSNR/SSIM/MAE against scikit-image and numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from uda3d.metrics.image import mae, psnr, ssim, volume_metrics


def _pairs():
    rng = np.random.default_rng(0)
    noise = rng.random((20, 22, 24)).astype(np.float32)
    yield noise, np.clip(noise + 0.1 * rng.standard_normal(noise.shape), 0, 1).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in (24, 20, 22)), indexing="ij")
    ball = (np.sqrt(zz ** 2 + yy ** 2 + xx ** 2) < 0.7).astype(np.float32) * (0.5 + 0.3 * xx)
    yield ball.astype(np.float32), np.clip(ball * 0.9 + 0.02, 0, 1).astype(np.float32)


@pytest.mark.parametrize("pair", list(_pairs()), ids=["random", "structured"])
def test_psnr_ssim_mae_match_reference_libraries(pair):
    target, pred = pair
    assert psnr(pred, target, 1.0) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), abs=1e-4)
    assert psnr(pred, target, None) == pytest.approx(
        peak_signal_noise_ratio(target, pred, data_range=float(pred.max() - pred.min())), abs=1e-4)
    ref = structural_similarity(target, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(pred, target, 1.0) == pytest.approx(ref, abs=1e-4)
    assert mae(pred, target) == pytest.approx(float(np.mean(np.abs(pred - target))), rel=1e-6)
    assert mean_squared_error(target, pred) > 0


def test_masked_metrics_use_only_the_mask():
    target = np.zeros((16, 16, 16), np.float32)
    pred = target.copy()
    pred[:8] = 0.5
    mask = np.zeros_like(target, bool)
    mask[8:] = True
    assert mae(pred, target, mask) == 0.0
    assert psnr(pred, target, 1.0, mask) == math.inf
    assert mae(pred, target) == pytest.approx(0.25)


def test_identical_volumes():
    x = np.random.default_rng(1).random((12, 12, 12)).astype(np.float32)
    assert psnr(x, x) == math.inf
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    m = volume_metrics(x, x)
    assert m["mae"] == 0.0 and m["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_psnr_of_a_known_mse():
    target = np.zeros((4, 4, 4), np.float32)
    pred = np.full_like(target, 0.1)  # MSE = 0.01 -> PSNR = 20 dB at range 1
    assert psnr(pred, target, 1.0) == pytest.approx(20.0, abs=1e-5)


def test_shape_mismatch_and_tiny_volumes_raise():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match=">= 11"):
        ssim(np.zeros((8, 12, 12)), np.zeros((8, 12, 12)))


def test_one_rule_for_a_non_finite_psnr_in_means_and_summaries():
    """An exact reconstruction (PSNR inf) is left out of that metric's mean only, the same in both places."""
    from uda3d.metrics.image import mean_metrics
    from uda3d.metrics.summary import summarise

    per = {"a": {"psnr": 20.0, "mae": 0.1}, "b": {"psnr": math.inf, "mae": 0.0}, "c": {"psnr": 30.0, "mae": 0.2}}
    means = mean_metrics(per.values())
    summary = summarise(per)
    assert means["psnr"] == summary["psnr"]["mean"] == 25.0 and summary["psnr"]["n"] == 2
    assert means["mae"] == pytest.approx(0.1) and summary["mae"]["n"] == 3
    # every metric stays a key (a caller reading means["psnr"] never meets a KeyError); none finite: NaN
    assert math.isnan(mean_metrics([{"psnr": math.inf}])["psnr"])
