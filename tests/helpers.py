"""Helpers shared by tests (importable as ``tests.helpers``)."""

from __future__ import annotations

from pathlib import Path

from uda3d.cohort.generate import CohortConfig

TINY = CohortConfig(sites=("site-a", "site-b"), subjects_per_site=4, shape=(32, 32, 32), seed=7)


def subject_dir(root: Path, split: str = "domain1_train", index: int = 0) -> Path:
    return sorted(p for p in (root / split).iterdir() if p.is_dir())[index]


def modality_file(folder: Path, modality: str) -> Path:
    return folder / f"{folder.name}_{modality}.nii.gz"
