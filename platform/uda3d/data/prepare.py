"""Preprocess (and cache) every subject of a BraTS-layout root: the loading stage as one call."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from uda3d.config import PreprocessConfig
from uda3d.data.layout import discover
from uda3d.data.preprocess import load_subject


@dataclass(frozen=True)
class SplitSummary:
    """What loading one split produced: counts, array shape and the wall time of the pass."""

    split: str
    subjects: int
    labeled: int
    shape: tuple[int, ...]
    seconds: float


def preprocess_root(root: str | Path, config: PreprocessConfig, cache_dir: str | Path | None,
                    splits: tuple[str, ...] | None = None, progress: bool = True) -> list[SplitSummary]:
    """Load every subject of ``splits`` (all by default) through the cache; return one summary per split."""
    from uda3d.progress import progress as progress_bar

    summaries = []
    for name, subjects in discover(root, splits).items():
        start = time.perf_counter()
        shape: tuple[int, ...] = ()
        labeled = 0
        for subject in progress_bar(subjects, desc=f"load {name}", unit="subject", disable=not progress):
            item = load_subject(subject, config, cache_dir)
            shape = tuple(item.inputs.shape)
            labeled += item.target is not None
        summaries.append(SplitSummary(name, len(subjects), labeled, shape, time.perf_counter() - start))
    return summaries
