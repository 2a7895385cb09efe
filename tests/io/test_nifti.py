"""NIfTI round trips and every way a file can be broken."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from uda3d.errors import DataError
from uda3d.io import nifti
from uda3d.io.nifti import load_volume, save_volume

AFFINE = np.array([[-2.0, 0, 0, 90], [0, -2.0, 0, 120], [0, 0, 3.0, -70], [0, 0, 0, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_round_trip_keeps_values_and_affine(tmp_path, dtype, suffix):
    data = (np.random.default_rng(0).random((5, 6, 7)) * 100).astype(dtype)
    path = save_volume(tmp_path / f"x{suffix}", data, AFFINE, dtype=dtype)
    volume = load_volume(path)
    np.testing.assert_array_equal(volume.data, data.astype(np.float32))
    np.testing.assert_allclose(volume.affine, AFFINE)
    assert nib.load(str(path)).get_data_dtype() == dtype
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_integer_writes_round_and_clip(tmp_path):
    path = save_volume(tmp_path / "x.nii.gz", np.array([[[-3.6, 1.5, 70000.0]]]), AFFINE, dtype=np.int16)
    np.testing.assert_array_equal(load_volume(path).data.ravel(), [-4, 2, 32767])


def _write(tmp_path, data, name="img.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        load_volume(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in str(err.value)


def test_garbage_bytes_are_not_a_nifti(tmp_path):
    path = tmp_path / "bad_t1.nii.gz"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DataError, match="not a readable NIfTI") as err:
        load_volume(path)
    assert err.value.path == str(path)


def test_truncated_gzip_is_reported_as_corrupt(tmp_path):
    path = _write(tmp_path, np.random.default_rng(1).random((20, 20, 20)).astype(np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or truncated|not a readable") as err:
        load_volume(path)
    assert str(path) in str(err.value)


def test_uncompressed_gzip_payload_truncated(tmp_path):
    """A gzip stream cut inside the voxel data (header intact) fails on decode, not on open."""
    path = tmp_path / "cut.nii.gz"
    full = _write(tmp_path, np.ones((30, 30, 30), np.float32), "full.nii")
    payload = full.read_bytes()
    path.write_bytes(gzip.compress(payload[: 352 + 1000]))
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        load_volume(path)
    assert "cut.nii.gz" in str(err.value)


def test_four_d_image_is_rejected(tmp_path):
    path = _write(tmp_path, np.zeros((4, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"expected a 3D image, got shape \(4, 4, 4, 3\)"):
        load_volume(path)


def test_trailing_singleton_dimension_is_accepted(tmp_path):
    path = _write(tmp_path, np.ones((4, 4, 4, 1), np.float32))
    assert load_volume(path).shape == (4, 4, 4)


def test_two_d_image_is_rejected(tmp_path):
    path = _write(tmp_path, np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match="expected a 3D image"):
        load_volume(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_counted(tmp_path, bad):
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, :2] = bad
    path = _write(tmp_path, data)
    with pytest.raises(DataError, match="2 voxel\\(s\\) are NaN or Inf"):
        load_volume(path)
    assert load_volume(path, check_finite=False).shape == (4, 4, 4)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def boom(img, filename):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError):
        save_volume(tmp_path / "out.nii.gz", np.zeros((2, 2, 2)), AFFINE)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_non_3d(tmp_path):
    with pytest.raises(DataError, match="expected a 3D array"):
        nifti.save_volume(tmp_path / "x.nii.gz", np.zeros((2, 2)), AFFINE)
