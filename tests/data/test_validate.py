"""Every bad input a BraTS root can hold: one line naming the file, exit code 2, nothing written."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import modality_file, subject_dir
from uda3d.cli import main
from uda3d.data.layout import discover, modality_of
from uda3d.data.validate import validate_root


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("problem: ")]


def _rewrite(path, data, affine=None):
    img = nib.load(str(path))
    path.unlink()
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))


def test_generated_cohort_is_valid(tiny_cohort, capsys):
    code, out, err = _run(capsys, "validate-data", str(tiny_cohort), "--quiet")
    assert code == 0, err
    assert f"{tiny_cohort}: OK" in out
    assert "domain1_train: 2 subjects (2 with T1)" in out


def test_missing_modality(cohort_copy, capsys):
    folder = subject_dir(cohort_copy)
    modality_file(folder, "flair").unlink()
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2
    [line] = _problem_lines(err)
    assert str(folder) in line and "missing modality 'flair'" in line


def test_missing_t1_is_fine_on_the_target_domain_but_not_on_the_source(cohort_copy, capsys):
    modality_file(subject_dir(cohort_copy, "domain2_val"), "t1").unlink()
    code, out, _ = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 0 and "domain2_val: 1 subjects (0 with T1)" in out
    source = subject_dir(cohort_copy, "domain1_val")
    modality_file(source, "t1").unlink()
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and f"{source}: missing modality 't1'" in err


def test_mismatched_shapes(cohort_copy, capsys):
    t2 = modality_file(subject_dir(cohort_copy), "t2")
    _rewrite(t2, np.ones((30, 32, 32), np.int16))
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2
    [line] = _problem_lines(err)
    assert str(t2) in line and "shape (30, 32, 32) differs" in line


def test_mismatched_affines(cohort_copy, capsys):
    t2 = modality_file(subject_dir(cohort_copy), "t2")
    img = nib.load(str(t2))
    shifted = img.affine.copy()
    shifted[0, 3] += 5.0
    _rewrite(t2, np.asarray(img.dataobj), shifted)
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2
    [line] = _problem_lines(err)
    assert str(t2) in line and "affine differs" in line


def test_nan_voxels(cohort_copy, capsys):
    flair = modality_file(subject_dir(cohort_copy), "flair")
    data = np.asarray(nib.load(str(flair)).dataobj).astype(np.float32)
    data[10, 10, 10] = np.nan
    _rewrite(flair, data)
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and f"{flair}: 1 voxel(s) are NaN or Inf" in err


def test_corrupt_and_truncated_files(cohort_copy, capsys):
    garbage = modality_file(subject_dir(cohort_copy, index=0), "t1")
    garbage.write_bytes(b"\x00garbage" * 100)
    truncated = modality_file(subject_dir(cohort_copy, index=1), "t2")
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2
    lines = _problem_lines(err)
    assert any(str(garbage) in line and "not a readable NIfTI" in line for line in lines)
    assert any(str(truncated) in line and ("truncated" in line or "readable" in line) for line in lines)
    assert "Traceback" not in err


def test_four_d_image(cohort_copy, capsys):
    flair = modality_file(subject_dir(cohort_copy), "flair")
    _rewrite(flair, np.ones((32, 32, 32, 2), np.int16))
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and f"{flair}: expected a 3D image, got shape (32, 32, 32, 2)" in err


def test_empty_image(cohort_copy, capsys):
    t2 = modality_file(subject_dir(cohort_copy), "t2")
    _rewrite(t2, np.zeros((32, 32, 32), np.int16))
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and f"{t2}: image is empty" in err


def test_empty_split(cohort_copy, capsys):
    split = cohort_copy / "domain2_val"
    shutil.rmtree(split)
    split.mkdir()
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and f"{split}: split is empty" in err


def test_duplicate_modality_and_bad_labels(cohort_copy, capsys):
    folder = subject_dir(cohort_copy)
    shutil.copy(modality_file(folder, "t1"), folder / "copy_of_t1.nii.gz")
    seg = modality_file(folder, "seg")
    _rewrite(seg, np.full((32, 32, 32), 7, np.uint8))
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2
    assert f"{folder}: several files for modality 't1'" in err
    assert f"{seg}: label values [7] are not BraTS labels" in err


def test_subject_leaking_into_two_splits(cohort_copy, capsys):
    folder = subject_dir(cohort_copy, "domain1_train")
    shutil.copytree(folder, cohort_copy / "domain1_test" / folder.name)
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 2 and "subject also in domain1_t" in err


def test_every_problem_is_reported_not_just_the_first(cohort_copy):
    modality_file(subject_dir(cohort_copy, "domain1_train", 0), "flair").unlink()
    modality_file(subject_dir(cohort_copy, "domain2_test", 0), "t2").unlink()
    report = validate_root(cohort_copy)
    assert len(report.problems) == 2 and not report.ok


def test_root_without_splits_and_missing_root(tmp_path, capsys):
    code, _, err = _run(capsys, "validate-data", str(tmp_path))
    assert code == 2 and f"{tmp_path}: no split folders found" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "validate-data", str(tmp_path / "absent"))
    assert code == 2 and "dataroot not found" in err


def test_partial_root_and_split_selection(cohort_copy, capsys):
    for name in ("domain1_val", "domain1_test", "domain2_train"):
        shutil.rmtree(cohort_copy / name)
    code, out, _ = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    assert code == 0
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--splits", "domain1_val", "--quiet")
    assert code == 2 and "domain1_val: split folder not found" in err


@pytest.mark.parametrize("name,expected", [
    ("BraTS19_CBICA_AAB_1_t1ce.nii.gz", "t1ce"), ("BraTS19_CBICA_AAB_1_t1.nii.gz", "t1"),
    ("x_flair.nii", "flair"), ("BraTS-GLI-00000-000-t2f.nii.gz", "flair"),
    ("BraTS-GLI-00000-000-t1n.nii.gz", "t1"), ("BraTS-GLI-00000-000-t2w.nii.gz", "t2"),
    ("notes.txt", None), ("x_t1.json", None), ("x_pet.nii.gz", None)])
def test_modality_suffixes(name, expected):
    assert modality_of(name) == expected


def test_discover_sorts_subjects(tiny_cohort):
    ids = [s.id for s in discover(tiny_cohort, ("domain1_train",))["domain1_train"]]
    assert ids == sorted(ids) and len(ids) == 2


def test_a_header_declaring_2048_cubed_is_refused_before_reading(cohort_copy, capsys):
    """A few kB of payload under a header that claims 2048^3 voxels: exit 2 in < 2 s, < 500 MB, file named."""
    import gzip
    import time
    import tracemalloc

    flair = modality_file(subject_dir(cohort_copy), "flair")
    header = nib.load(str(flair)).header.copy()
    header.set_data_shape((2048, 2048, 2048))
    header.set_data_dtype(np.int16)
    flair.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\1" * 4096))
    tracemalloc.start()
    start = time.perf_counter()
    code, out, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and seconds < 2.0 and peak < 500e6, (seconds, peak)
    [line] = _problem_lines(err)
    assert str(flair) in line and "header declares 2048x2048x2048 voxels" in line


def test_a_payload_shorter_than_its_header_declares_is_named(cohort_copy, capsys):
    t2 = modality_file(subject_dir(cohort_copy), "t2")
    img = nib.load(str(t2))
    plain = t2.with_name(t2.name.replace(".nii.gz", ".nii"))
    nib.save(img, str(plain))
    t2.unlink()
    plain.write_bytes(plain.read_bytes()[:-1000])  # an uncompressed file cut short
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    [line] = _problem_lines(err)
    assert code == 2 and str(plain) in line and "bytes of image but the file holds" in line


def test_the_odd_file_is_named_not_the_ones_that_agree(cohort_copy, capsys):
    flair = modality_file(subject_dir(cohort_copy), "flair")
    _rewrite(flair, np.ones((30, 32, 32), np.int16))
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    [line] = _problem_lines(err)  # before: t1, t1ce, t2 and seg were each blamed against the flair
    assert code == 2 and str(flair) in line and "shape (30, 32, 32) differs" in line


def test_a_misspelled_split_folder_is_reported(cohort_copy, capsys):
    (cohort_copy / "domain2_test").rename(cohort_copy / "domain2_tset")
    code, out, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    [line] = _problem_lines(err)
    assert code == 2 and "domain2_tset: looks like split folder domain2_test" in line
    # the summary on stdout says where the problems went, so `> log` keeps the verdict too
    assert "1 problem(s), one line each on stderr" in out


@pytest.mark.parametrize("name,expected", [("sub-01_T1w.nii.gz", "t1"), ("sub-01_T2w.nii.gz", "t2"),
                                           ("sub-01_FLAIR.nii.gz", "flair")])
def test_bids_suffixes(name, expected):
    assert modality_of(name) == expected


def test_a_subject_at_another_voxel_spacing_is_named(cohort_copy, capsys):
    """Same shape, half the spacing: the network would see a brain twice the size; validation says so."""
    folder = subject_dir(cohort_copy, "domain2_train")
    for modality in ("flair", "t1", "t1ce", "t2", "seg"):
        path = modality_file(folder, modality)
        img = nib.load(str(path))
        affine = img.affine.copy()
        affine[:3, :3] *= 0.5
        _rewrite(path, np.asanyarray(img.dataobj), affine)
    code, _, err = _run(capsys, "validate-data", str(cohort_copy), "--quiet")
    [line] = _problem_lines(err)
    assert code == 2 and str(modality_file(folder, "flair")) in line
    assert "voxel spacing" in line and "differs from most of its site's" in line
