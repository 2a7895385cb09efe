"""Preprocessing maths: reorientation, crop/pad and its inverse, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from uda3d.data.transforms import (
    CropBox,
    auto_shape,
    centred_box,
    crop,
    minmax_normalise,
    percentile_normalise,
    reorient,
    uncrop,
    undo_reorient,
)

BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]])  # LPS


def test_brats_reorients_to_ipl_with_method_shape():
    data = np.zeros((240, 240, 155), np.float32)
    out, affine = reorient(data, BRATS_AFFINE, "IPL")
    assert out.shape == (155, 240, 240)
    assert auto_shape(out.shape) == (144, 192, 192)  # the method's crop of BraTS


def test_reorientation_keeps_every_voxel_at_its_world_position():
    rng = np.random.default_rng(0)
    data = rng.random((6, 7, 5)).astype(np.float32)
    out, affine = reorient(data, BRATS_AFFINE, "IPL")
    for _ in range(20):
        ijk = np.array([rng.integers(s) for s in data.shape])
        world = BRATS_AFFINE @ np.append(ijk, 1.0)
        new_ijk = np.rint(np.linalg.inv(affine) @ world).astype(int)[:3]
        assert out[tuple(new_ijk)] == data[tuple(ijk)]
    # Axis 0 now points Inferior: increasing index lowers the world z coordinate.
    assert affine[2, 0] < 0
    np.testing.assert_array_equal(undo_reorient(out, BRATS_AFFINE, "IPL"), data)


def test_crop_then_uncrop_restores_everything_inside_the_box():
    data = np.zeros((20, 24, 22), np.float32)
    data[5:15, 6:18, 4:16] = np.random.default_rng(1).random((10, 12, 12))
    box = centred_box(data > 0, (16, 16, 16))
    cropped = crop(data, box)
    assert cropped.shape == (16, 16, 16)
    assert cropped.sum() == pytest.approx(data.sum())  # the whole object is inside the window
    np.testing.assert_array_equal(uncrop(cropped, box), data)


def test_crop_pads_when_the_window_is_larger_than_the_image():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    box = centred_box(np.ones_like(data, bool), (8, 8, 8))
    assert box.start == (-2, -1, -1)
    out = crop(data, box)
    np.testing.assert_array_equal(out[2:6, 1:6, 1:7], data)
    assert out.sum() == data.sum()
    np.testing.assert_array_equal(uncrop(out, box), data)


def test_window_is_centred_on_the_brain_and_kept_inside():
    mask = np.zeros((40, 40, 40), bool)
    mask[2:10, 20:30, 30:38] = True  # near a corner
    box = centred_box(mask, (16, 16, 16))
    assert box.start == (0, 17, 24)
    assert crop(mask, box).sum() == mask.sum()


def test_crop_works_on_leading_channel_axes():
    data = np.random.default_rng(2).random((2, 10, 10, 10))
    box = CropBox(start=(1, 2, 3), shape=(4, 4, 4), source_shape=(10, 10, 10))
    np.testing.assert_array_equal(crop(data, box), data[:, 1:5, 2:6, 3:7])


def test_minmax_normalise_closed_form():
    x = np.array([2.0, 4.0, 6.0, 10.0])
    out, (lo, hi) = minmax_normalise(x)
    np.testing.assert_allclose(out, [0.0, 0.25, 0.5, 1.0])
    assert (lo, hi) == (2.0, 10.0)
    np.testing.assert_array_equal(minmax_normalise(np.full(3, 7.0))[0], np.zeros(3))


def test_percentile_normalise_matches_numpy():
    x = np.random.default_rng(3).normal(size=1000)
    lo, hi = np.percentile(x, [1, 99])
    np.testing.assert_allclose(percentile_normalise(x), np.clip((x - lo) / (hi - lo), 0, 1), rtol=1e-6)


@pytest.mark.parametrize("shape,expected", [((155, 240, 240), (144, 192, 192)), ((64, 64, 64), (56, 48, 48)),
                                            ((10, 10, 10), (8, 8, 8))])
def test_auto_shape(shape, expected):
    assert auto_shape(shape) == expected


def test_fixed_window_is_the_methods_for_brats_and_ignores_where_the_brain_is():
    import numpy as np

    from uda3d.data.transforms import centred_box, covers, fixed_box

    assert fixed_box((155, 240, 240), (144, 192, 192)).start == (8, 24, 24)  # [8:152, 24:216, 24:216]
    assert fixed_box((64, 64, 64), (48, 48, 48)).start == (8, 8, 8)
    left, right = np.zeros((64, 64, 64), bool), np.zeros((64, 64, 64), bool)
    left[10:30, 20:40, 20:40] = True
    right[30:50, 20:40, 20:40] = True
    assert centred_box(left, (32, 32, 32)).start != centred_box(right, (32, 32, 32)).start
    assert fixed_box(left.shape, (32, 32, 32)) == fixed_box(right.shape, (32, 32, 32))
    assert covers(centred_box(left, (32, 32, 32)), left) and not covers(fixed_box(left.shape, (32, 32, 32)), left)
