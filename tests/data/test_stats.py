"""Site-shift statistics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from uda3d.data.stats import intensity_signature, site_separation


def test_signature_of_a_ramp():
    volume = np.tile(np.arange(1, 11, dtype=np.float64)[:, None, None], (1, 3, 3))  # varies along axis 0
    sig = intensity_signature(volume, np.ones_like(volume, bool), quantiles=(0.5,))
    # median 5.5: quantile/median = 1; neighbour steps: 1 along axis 0, 0 along the others.
    np.testing.assert_allclose(sig, [1.0, 1 / 5.5, 0.0, 0.0])


def test_signature_is_scale_invariant():
    volume = np.random.default_rng(0).random((8, 8, 8)) + 1
    mask = np.ones_like(volume, bool)
    np.testing.assert_allclose(intensity_signature(volume, mask), intensity_signature(7 * volume, mask))


def test_separation_closed_form():
    # One feature; within-site deviations +-1 so the pooled std is sqrt(4 / 2) = sqrt(2).
    sigs = {"a": [np.array([0.0]), np.array([2.0])], "b": [np.array([10.0]), np.array([12.0])]}
    between, within = site_separation(sigs)
    s = np.sqrt(2.0)
    assert within == pytest.approx(2.0 / s)
    assert between == pytest.approx(np.mean([10, 12, 8, 10]) / s)


def test_separation_needs_two_subjects_per_site():
    with pytest.raises(ValueError):
        site_separation({"a": [np.zeros(2)], "b": [np.ones(2), np.ones(2)]})
