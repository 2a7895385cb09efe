"""``uda3d demo``: a synthetic cohort and every stage built so far, runnable on a laptop CPU.

Stages today: generate the cohort, validate it as a real BraTS root would be, and load every split
through the preprocessing cache (twice, to show the cache at work).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import PreprocessConfig
from uda3d.data.prepare import preprocess_root
from uda3d.data.validate import validate_root
from uda3d.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes and how big its cohort is."""

    workdir: Path = Path("uda3d-demo")
    subjects_per_site: int = 9
    shape: tuple[int, int, int] = (64, 64, 64)
    seed: int = 0
    sites: tuple[str, ...] = ("site-a", "site-b")


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    """Run the demo; returns what it measured (also printed)."""
    cohort = CohortConfig(sites=config.sites, subjects_per_site=config.subjects_per_site,
                          shape=config.shape, seed=config.seed)
    root = config.workdir / "cohort"
    print(f"[1/3] cohort: {len(cohort.sites)} sites x {cohort.subjects_per_site} subjects at {cohort.shape} -> {root}")
    generate_cohort(root, cohort, overwrite=True, progress=progress)

    print("[2/3] validate-data")
    report = validate_root(root, progress=progress)
    for line in report.summary_lines():
        print(f"  {line}")
    if not report.ok:
        raise DataError(root, f"generated cohort failed validation: {report.problems[0]}")

    print("[3/3] preprocess (first pass decodes NIfTI, second reads the cache)")
    cache = config.workdir / "cache"
    pre = PreprocessConfig()
    first = preprocess_root(root, pre, cache, progress=progress)
    second = preprocess_root(root, pre, cache, progress=False)
    t1, t2 = sum(s.seconds for s in first), sum(s.seconds for s in second)
    for s in first:
        print(f"  {s.split}: {s.subjects} subjects, input {s.shape}")
    print(f"  load time: {t1:.2f} s decoding, {t2:.2f} s from cache ({t1 / max(t2, 1e-9):.1f}x)")
    return {"root": str(root), "first_pass_s": t1, "cached_pass_s": t2}
