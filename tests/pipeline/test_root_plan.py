"""The pipeline's one check of a root: required splits, and which optional parts target T1 allows."""

from __future__ import annotations

import shutil

import pytest

from uda3d.errors import DataError
from uda3d.root_plan import plan_root


def test_a_fully_labelled_root_runs_every_part(tiny_cohort):
    plan = plan_root(tiny_cohort)
    assert plan.adapt_split == "domain2_val"
    assert plan.target_splits == ("domain2_train", "domain2_val", "domain2_test")
    assert plan.skipped() == {}
    assert plan.labelled_target_subjects == 4
    assert any(line.startswith("supervised: runs") for line in plan.lines())


def test_without_target_t1_the_bound_and_scores_are_skipped_with_reasons(cohort_copy):
    for t1 in cohort_copy.glob("domain2_*/*/*_t1.nii.gz"):
        t1.unlink()
    plan = plan_root(cohort_copy)
    assert set(plan.skipped()) == {"supervised", "scores", "quality_vs_psnr"}
    assert plan.skipped()["scores"] == ("needs T1 for at least one subject of domain2_test; found domain2_test: "
                                        "0 of 1 with T1")
    assert "supervised: skipped (needs T1 for every subject of domain2_train and domain2_val; found " \
           "domain2_train: 0 of 2 with T1; domain2_val: 0 of 1 with T1)" in plan.lines()


def test_partly_labelled_target_keeps_the_scores_but_not_the_bound(cohort_copy):
    next(cohort_copy.glob("domain2_train/*/*_t1.nii.gz")).unlink()
    plan = plan_root(cohort_copy)
    assert set(plan.skipped()) == {"supervised"}


def test_adaptation_falls_back_to_domain2_train_and_source_splits_are_required(cohort_copy):
    shutil.rmtree(cohort_copy / "domain2_val")
    assert plan_root(cohort_copy).adapt_split == "domain2_train"
    shutil.rmtree(cohort_copy / "domain2_train")
    with pytest.raises(DataError, match="domain2_val: split is missing or empty; adaptation needs"):
        plan_root(cohort_copy)
    shutil.rmtree(cohort_copy / "domain1_val")
    with pytest.raises(DataError, match="domain1_val: split is missing or empty; the pipeline trains on the source"):
        plan_root(cohort_copy)


def test_a_source_subject_without_t1_is_named(cohort_copy):
    t1 = next(cohort_copy.glob("domain1_train/*/*_t1.nii.gz"))
    t1.unlink()
    with pytest.raises(DataError, match=f"{t1.parent}: source subject without a \\(readable\\) T1"):
        plan_root(cohort_copy)
