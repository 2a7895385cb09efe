"""Torch datasets over preprocessed subjects: paired (FLAIR+T2 -> T1) and unpaired target volumes.

Whole volumes, batch size 1, as the method trains (no patches). Items are dicts of tensors so the
training code names what it uses (``input``, ``target``, ``mask``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from uda3d.config import PreprocessConfig
from uda3d.data.layout import TARGET_MODALITY, Subject, missing_modality
from uda3d.data.preprocess import PreprocessedSubject, load_subject
from uda3d.errors import DataError


class VolumeDataset(Dataset):
    """Preprocessed subjects of one or more splits, optionally requiring T1 (paired training).

    Args:
        subjects: the subjects to serve (e.g. ``discover(root)["domain1_train"]``).
        config: preprocessing.
        cache_dir: per-subject cache folder (None: decode every time).
        require_target: raise if a subject has no T1 (paired supervised training needs it).
    """

    def __init__(self, subjects: list[Subject], config: PreprocessConfig,
                 cache_dir: str | Path | None = None, require_target: bool = False) -> None:
        if not subjects:
            raise DataError("dataset", "no subjects; expected at least one subject folder in the split")
        if require_target:
            for s in subjects:
                if not s.has_target:
                    raise DataError(s.folder, f"{missing_modality(TARGET_MODALITY)} (paired training needs it)")
        self.subjects = list(subjects)
        self.config = config
        self.cache_dir = cache_dir
        self.require_target = require_target

    def __len__(self) -> int:
        return len(self.subjects)

    def load(self, index: int) -> PreprocessedSubject:
        return load_subject(self.subjects[index], self.config, self.cache_dir)

    def __getitem__(self, index: int) -> dict:
        s = self.load(index)
        item = {"id": s.id, "input": torch.from_numpy(np.ascontiguousarray(s.inputs)),
                "mask": torch.from_numpy(s.mask[None].copy())}
        if s.target is not None:
            item["target"] = torch.from_numpy(np.ascontiguousarray(s.target))
        return item


def paired_dataset(subjects: list[Subject], config: PreprocessConfig,
                   cache_dir: str | Path | None = None) -> VolumeDataset:
    """(T2, FLAIR) -> T1 pairs for supervised training; every subject must have T1."""
    return VolumeDataset(subjects, config, cache_dir, require_target=True)


def unpaired_dataset(subjects: list[Subject], config: PreprocessConfig,
                     cache_dir: str | Path | None = None) -> VolumeDataset:
    """Target-site inputs for adaptation; T1 is served only where it exists, for evaluation."""
    return VolumeDataset(subjects, config, cache_dir, require_target=False)


def input_dataset(subjects: list[Subject], config: PreprocessConfig,
                  cache_dir: str | Path | None = None) -> VolumeDataset:
    """Inputs only (FLAIR, T2 and the brain mask): T1 files are never opened, even where they exist."""
    return VolumeDataset([s.inputs_only() for s in subjects], config, cache_dir, require_target=False)
