"""The synthetic cohort: determinism, BraTS layout, labels, and a measurable input-side site shift."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import TINY
from uda3d.cohort import generate as gen
from uda3d.cohort.anatomy import grid_affine
from uda3d.cohort.generate import CohortConfig, generate_cohort, render_subject, split_counts
from uda3d.data.layout import discover
from uda3d.data.stats import intensity_signature, site_separation
from uda3d.errors import ConfigError, DataError
from uda3d.io.nifti import load_volume


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_bit_identical_and_another_seed_differs(tiny_cohort, tmp_path):
    again = tmp_path / "again"
    generate_cohort(again, TINY, progress=False)
    assert _digests(again) == _digests(tiny_cohort)

    other = CohortConfig(sites=TINY.sites, subjects_per_site=TINY.subjects_per_site, shape=TINY.shape, seed=8)
    a = render_subject(TINY, "site-a", 0)
    b = render_subject(other, "site-a", 0)
    assert not np.array_equal(a["t1"], b["t1"])
    assert not np.array_equal(a["seg"], b["seg"])


def test_subject_does_not_depend_on_the_other_sites():
    alone = CohortConfig(sites=("site-b",), subjects_per_site=3, shape=TINY.shape, seed=TINY.seed)
    a = render_subject(TINY, "site-b", 1)
    b = render_subject(alone, "site-b", 1)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_layout_and_summary_match(tiny_cohort):
    splits = discover(tiny_cohort)
    assert sorted(splits) == [f"domain{d}_{p}" for d in (1, 2) for p in ("test", "train", "val")]
    counts = split_counts(TINY.subjects_per_site)
    for name, subjects in splits.items():
        assert len(subjects) == counts[name.split("_")[1]]
        for s in subjects:
            assert set(s.files) == {"flair", "t1", "t1ce", "t2", "seg"}
            assert all(p.name.startswith(s.id + "_") and p.name.endswith(".nii.gz") for p in s.files.values())
    summary = json.loads((tiny_cohort / "cohort.json").read_text())
    assert summary["domains"] == {"domain1": "site-a", "domain2": "site-b"}
    assert {k: sorted(v) for k, v in summary["splits"].items()} == {
        k: sorted(s.id for s in v) for k, v in splits.items()}


def test_files_round_trip_through_nibabel_with_affine(tiny_cohort):
    subject = discover(tiny_cohort, ("domain2_val",))["domain2_val"][0]
    expected_affine = grid_affine(TINY.shape)
    direct = render_subject(TINY, "site-b", int(subject.id.split("_")[-1]) - 1)
    for modality, path in subject.files.items():
        img = nib.load(str(path))
        np.testing.assert_allclose(img.affine, expected_affine, atol=1e-5)
        assert img.shape == TINY.shape
        assert img.get_data_dtype() == (np.uint8 if modality == "seg" else np.int16)
        stored = np.asarray(img.dataobj)
        np.testing.assert_array_equal(stored, np.clip(np.rint(direct[modality]), 0, None).astype(stored.dtype))
        np.testing.assert_array_equal(load_volume(path).data, stored.astype(np.float32))


def test_seg_labels_are_exactly_brats_labels(tiny_cohort):
    for subjects in discover(tiny_cohort).values():
        for s in subjects:
            labels = np.unique(np.asarray(nib.load(str(s.files["seg"])).dataobj))
            assert labels.tolist() == [0, 1, 2, 4], s.id


def test_images_are_skull_stripped_and_tumour_inside_brain(tiny_cohort):
    s = discover(tiny_cohort, ("domain1_train",))["domain1_train"][0]
    t1 = load_volume(s.files["t1"]).data
    seg = load_volume(s.files["seg"]).data
    t2 = load_volume(s.files["t2"]).data
    brain = t2 > 0
    assert 0.08 < brain.mean() < 0.4  # ~1.3 l of brain in BraTS's 8.9 l field of view
    assert np.mean(t1[~brain] > 0) < 0.001
    assert np.all(brain[seg > 0])


def _signatures(root: Path, modality: str) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for name, subjects in discover(root).items():
        for s in subjects:
            volume = load_volume(s.files[modality]).data
            brain = load_volume(s.files["t2"]).data > 0
            out.setdefault(s.domain, []).append(intensity_signature(volume, brain))
    return out


@pytest.mark.parametrize("modality", ["flair", "t2"])
def test_sites_differ_in_inputs_more_than_subjects_within_a_site(tiny_cohort, modality):
    between, within = site_separation(_signatures(tiny_cohort, modality))
    assert between > 2.0 * within, (between, within)


def test_site_shift_sits_mainly_in_the_inputs(tiny_cohort):
    ratio = {m: np.divide(*site_separation(_signatures(tiny_cohort, m))) for m in ("flair", "t2", "t1")}
    assert ratio["t1"] < 1.3 and min(ratio["flair"], ratio["t2"]) > 2.0, ratio


def test_a_voxelwise_model_fitted_on_site_a_degrades_on_site_b(tiny_cohort):
    """A cubic FLAIR+T2 -> T1 regression trained on domain1 loses accuracy on domain2."""

    def voxels(split: str):
        feats, target = [], []
        for s in discover(tiny_cohort, (split,))[split]:
            vols = {m: load_volume(s.files[m]).data for m in ("t2", "flair", "t1")}
            brain = vols["flair"] > 0
            norm = {m: v[brain] / v[brain].max() for m, v in vols.items()}
            x, y = norm["t2"], norm["flair"]
            feats.append(np.stack([np.ones_like(x), x, y, x * y, x ** 2, y ** 2, x ** 3, y ** 3], axis=1))
            target.append(norm["t1"])
        return np.concatenate(feats), np.concatenate(target)

    x_src, y_src = voxels("domain1_train")
    coef, *_ = np.linalg.lstsq(x_src, y_src, rcond=None)
    mse = {split: float(np.mean((voxels(split)[0] @ coef - voxels(split)[1]) ** 2))
           for split in ("domain1_test", "domain2_test")}
    assert mse["domain2_test"] > 1.5 * mse["domain1_test"], mse


@pytest.mark.parametrize("kwargs,field", [
    ({"sites": ("site-a", "nowhere")}, "--sites"),
    ({"sites": ("site-a", "site-a")}, "--sites"),
    ({"subjects_per_site": 2}, "--subjects-per-site"),
    ({"shape": (8, 64, 64)}, "--shape"),
    ({"seed": -1}, "--seed"),
])
def test_bad_config_names_the_option(kwargs, field):
    with pytest.raises(ConfigError) as err:
        CohortConfig(**kwargs)
    assert err.value.field == field and field in str(err.value)


def test_existing_output_is_refused_and_left_alone(tiny_cohort, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        generate_cohort(out, TINY, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_mid_way_leaves_no_partial_output(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = gen.render_subject

    def flaky(config, site, index):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(config, site, index)

    monkeypatch.setattr(gen, "render_subject", flaky)
    out = tmp_path / "cohort"
    with pytest.raises(RuntimeError):
        generate_cohort(out, TINY, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
