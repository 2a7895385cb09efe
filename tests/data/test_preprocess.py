"""Preprocessing of whole subjects, the cache, and the torch datasets."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.helpers import modality_file, subject_dir
from uda3d.config import PreprocessConfig
from uda3d.data.datasets import paired_dataset, unpaired_dataset
from uda3d.data.layout import discover, scan_subject
from uda3d.data.preprocess import load_subject, preprocess_subject
from uda3d.data.transforms import reorient
from uda3d.errors import ConfigError, DataError

CONFIG = PreprocessConfig()


def _subject(root, split="domain1_train", index=0):
    return discover(root, (split,))[split][index]


def test_preprocessed_subject_shapes_ranges_and_channel_order(tiny_cohort):
    subject = _subject(tiny_cohort)
    item = preprocess_subject(subject, CONFIG)
    assert item.inputs.shape == (2, 24, 24, 24) and item.target.shape == (1, 24, 24, 24)
    assert item.inputs.dtype == np.float32
    for channel in (*item.inputs, *item.target):
        assert channel.min() == 0.0 and channel.max() == pytest.approx(1.0)
    # Channel 0 is T2 (as the method orders inputs): compare with a direct reorient + crop.
    t2 = nib.load(str(subject.files["t2"]))
    oriented, _ = reorient(np.asarray(t2.dataobj, np.float32), t2.affine, "IPL")
    lo = [max(s, 0) for s in item.box.start]
    window = oriented[lo[0]:lo[0] + 24, lo[1]:lo[1] + 24, lo[2]:lo[2] + 24]
    np.testing.assert_allclose(item.inputs[0], (window - window.min()) / (window.max() - window.min()), atol=1e-6)
    assert item.mask.dtype == bool and 0.2 < item.mask.mean() < 0.9


def test_cache_returns_identical_arrays_and_is_used(tiny_cohort, tmp_path, monkeypatch):
    subject = _subject(tiny_cohort)
    first = load_subject(subject, CONFIG, tmp_path)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    import uda3d.data.preprocess as pre

    monkeypatch.setattr(pre, "preprocess_subject", lambda *a: pytest.fail("cache was not used"))
    second = load_subject(subject, CONFIG, tmp_path)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    np.testing.assert_array_equal(first.target, second.target)
    np.testing.assert_array_equal(first.mask, second.mask)
    np.testing.assert_array_equal(first.affine, second.affine)
    assert first.box == second.box and first.id == second.id


def test_cache_is_invalidated_by_a_changed_file_or_config(cohort_copy, tmp_path):
    subject = _subject(cohort_copy)
    load_subject(subject, CONFIG, tmp_path)
    load_subject(subject, PreprocessConfig(normalisation="percentile"), tmp_path)
    assert len(list(tmp_path.rglob("*.npz"))) == 2
    t2 = subject.files["t2"]
    img = nib.load(str(t2))
    data = np.asarray(img.dataobj) * 2
    nib.save(nib.Nifti1Image(data, img.affine), str(t2))
    os.utime(t2, ns=(1, 1))
    fresh = load_subject(scan_subject(subject.folder, subject.domain, subject.phase), CONFIG, tmp_path)
    assert len(list(tmp_path.rglob("*.npz"))) == 3
    np.testing.assert_allclose(fresh.inputs, preprocess_subject(subject, CONFIG).inputs)


def test_damaged_cache_entry_is_recomputed(tiny_cohort, tmp_path):
    subject = _subject(tiny_cohort)
    good = load_subject(subject, CONFIG, tmp_path)
    [entry] = list(tmp_path.rglob("*.npz"))
    entry.write_bytes(b"broken")
    again = load_subject(subject, CONFIG, tmp_path)
    np.testing.assert_array_equal(good.inputs, again.inputs)


def test_bad_subject_writes_no_cache_entry(cohort_copy, tmp_path):
    cache = tmp_path / "cache"
    folder = subject_dir(cohort_copy)
    t1 = modality_file(folder, "t1")
    nib.save(nib.Nifti1Image(np.ones((30, 32, 32), np.int16), nib.load(str(t1)).affine), str(t1))
    with pytest.raises(DataError, match="shape \\(30, 32, 32\\) differs") as err:
        load_subject(_subject(cohort_copy), CONFIG, cache)
    assert str(t1) in str(err.value)
    assert not cache.exists() or list(cache.rglob("*.npz")) == []


def test_paired_dataset_requires_t1_and_unpaired_does_not(cohort_copy, tmp_path):
    modality_file(subject_dir(cohort_copy, "domain2_val"), "t1").unlink()
    subjects = discover(cohort_copy, ("domain2_val",))["domain2_val"]
    with pytest.raises(DataError, match="missing modality 't1'"):
        paired_dataset(subjects, CONFIG)
    item = unpaired_dataset(subjects, CONFIG, tmp_path)[0]
    assert set(item) == {"id", "input", "mask"}
    assert item["input"].shape == (2, 24, 24, 24) and item["input"].dtype == torch.float32


def test_paired_dataset_items(tiny_cohort, tmp_path):
    ds = paired_dataset(discover(tiny_cohort, ("domain1_train",))["domain1_train"], CONFIG, tmp_path)
    assert len(ds) == 2
    item = ds[1]
    assert item["target"].shape == (1, 24, 24, 24) and item["mask"].shape == (1, 24, 24, 24)
    with pytest.raises(DataError, match="no subjects"):
        paired_dataset([], CONFIG)


@pytest.mark.parametrize("kwargs,field", [({"shape": (20, 24, 24)}, "shape"), ({"orientation": "IPX"}, "orientation"),
                                          ({"orientation": "IPI"}, "orientation"),
                                          ({"normalisation": "zscore"}, "normalisation")])
def test_bad_preprocess_config(kwargs, field):
    with pytest.raises(ConfigError) as err:
        PreprocessConfig(**kwargs)
    assert err.value.field == field
