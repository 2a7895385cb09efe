"""Label-free quality estimates: the quantile form of W1 against scipy, the source range, the flip spread."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from uda3d.quality import (
    QUANTILE_LEVELS,
    brain_mean,
    input_shift,
    intensity_quantiles,
    outside_source_range,
    prediction_spread,
    quantile_distance,
    source_reference,
)


def test_quantile_distance_is_scipys_wasserstein_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.4, 0.1, 200_000), rng.gamma(2.0, 0.1, 200_000)
    qa, qb = np.quantile(a, QUANTILE_LEVELS), np.quantile(b, QUANTILE_LEVELS)
    assert quantile_distance(qa, qb) == pytest.approx(wasserstein_distance(a, b), rel=0.03)
    # a pure shift moves every quantile by the same amount: W1 is the shift
    assert quantile_distance(qa, qa + 0.07) == pytest.approx(0.07, abs=1e-12)


def test_intensity_quantiles_see_only_the_brain():
    inputs = np.zeros((2, 4, 4, 4))
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    inputs[0][mask] = np.linspace(0.2, 0.6, mask.sum())
    inputs[1][mask] = 0.5
    q = intensity_quantiles(inputs, mask)
    assert q.shape == (2, QUANTILE_LEVELS.size)
    assert q[0, 0] == pytest.approx(0.2) and q[0, -1] == pytest.approx(0.6) and np.all(q[1] == 0.5)


def test_a_subject_farther_than_every_source_subject_is_outside_the_range():
    rng = np.random.default_rng(1)
    source = [np.quantile(rng.normal(0.5, 0.1, (2, 5000)), QUANTILE_LEVELS, axis=1).T for _ in range(6)]
    reference = source_reference(source)
    # the barycentre of quantile functions is their mean, and the range is the farthest source subject
    np.testing.assert_allclose(reference["quantiles"], np.mean(source, axis=0))
    assert reference["shift_max"] == pytest.approx(max(input_shift(q, reference) for q in source))
    assert not any(outside_source_range(input_shift(q, reference), reference) for q in source)
    brighter = np.quantile(rng.normal(0.7, 0.1, (2, 5000)), QUANTILE_LEVELS, axis=1).T
    assert input_shift(brighter, reference) == pytest.approx(0.2, abs=0.02)
    assert outside_source_range(input_shift(brighter, reference), reference)


def test_prediction_spread_and_brain_mean():
    views = [np.full((2, 2, 2), v) for v in (1.0, 3.0)]
    mean, std = prediction_spread(views)
    assert np.all(mean == 2.0) and np.all(std == 1.0)
    mask = np.zeros((2, 2, 2), bool)
    mask[0] = True
    assert brain_mean(np.arange(8.0).reshape(2, 2, 2), mask) == pytest.approx(1.5)
    assert np.isnan(brain_mean(std, np.zeros((2, 2, 2), bool)))
