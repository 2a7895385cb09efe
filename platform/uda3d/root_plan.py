"""What a BraTS-layout root lets the pipeline do: the required parts, and the optional ones target T1 enables.

The real use case has no T1 at the target site. The pipeline then trains on the source, adapts on
the target's unlabeled inputs and synthesizes a T1 for every target subject; the supervised upper
bound and the scores run only where target T1 exists. ``plan_root`` checks the root once, before
any stage, and says what each optional part needs and whether it is there.

Which target split feeds adaptation: ``domain2_val`` where it exists (the method's adaptation set,
so existing roots behave as before), else ``domain2_train``. Scores are on ``domain2_test``. An
unreadable T1 counts as absent (``uda3d.data.layout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uda3d.data.layout import discover
from uda3d.errors import DataError

SOURCE_SPLITS = ("domain1_train", "domain1_val")
ADAPT_SPLIT_ORDER = ("domain2_val", "domain2_train")
TARGET_SPLITS = ("domain2_train", "domain2_val", "domain2_test")
SCORE_SPLIT = "domain2_test"
MIN_SUBJECTS_FOR_CORRELATION = 3


@dataclass(frozen=True)
class OptionalPart:
    """An optional part of the pipeline: what it needs and whether the root has it."""

    name: str
    needs: str
    available: bool
    found: str


@dataclass(frozen=True)
class RootPlan:
    """The splits each stage reads and the optional parts the root allows."""

    dataroot: str
    adapt_split: str
    target_splits: tuple[str, ...]
    labelled_target_subjects: int
    parts: tuple[OptionalPart, ...]

    def available(self, name: str) -> bool:
        return next(p.available for p in self.parts if p.name == name)

    def skipped(self) -> dict[str, str]:
        """Each optional part that will not run, and why."""
        return {p.name: f"needs {p.needs}; found {p.found}" for p in self.parts if not p.available}

    def lines(self) -> list[str]:
        out = [f"source: {', '.join(SOURCE_SPLITS)}; adaptation on {self.adapt_split} (inputs only); synthesis "
               f"for {', '.join(self.target_splits)}"]
        for p in self.parts:
            out.append(f"{p.name}: {'runs' if p.available else 'skipped'} (needs {p.needs}; found {p.found})")
        return out


def _t1_count(subjects) -> str:
    return f"{sum(s.has_target for s in subjects)} of {len(subjects)} with T1"


def plan_root(dataroot: str | Path) -> RootPlan:
    """Check ``dataroot`` for the pipeline; raises ``DataError`` naming the first missing required split."""
    found = {name: subjects for name, subjects in discover(dataroot).items() if subjects}
    for name in SOURCE_SPLITS:
        if name not in found:
            raise DataError(Path(dataroot) / name, "split is missing or empty; the pipeline trains on the source site")
        missing = [s for s in found[name] if not s.has_target]
        if missing:
            raise DataError(missing[0].folder, "source subject without a (readable) T1; every source subject needs "
                                               "one (expected a file named *_t1.nii.gz)")
    adapt = next((name for name in ADAPT_SPLIT_ORDER if name in found), None)
    if adapt is None:
        raise DataError(Path(dataroot) / ADAPT_SPLIT_ORDER[0], "split is missing or empty; adaptation needs the "
                                                               "target site's inputs in domain2_val or domain2_train")
    targets = tuple(name for name in TARGET_SPLITS if name in found)
    sup = [found.get(n, []) for n in ("domain2_train", "domain2_val")]
    supervised_ok = all(sup) and all(s.has_target for split in sup for s in split)
    test = found.get(SCORE_SPLIT, [])
    labelled = sum(s.has_target for name in targets for s in found[name])
    parts = (
        OptionalPart("supervised", "T1 for every subject of domain2_train and domain2_val", supervised_ok,
                     "; ".join(f"{n}: {_t1_count(found[n]) if n in found else 'absent'}"
                               for n in ("domain2_train", "domain2_val"))),
        OptionalPart("scores", f"T1 for at least one subject of {SCORE_SPLIT}", any(s.has_target for s in test),
                     f"{SCORE_SPLIT}: {_t1_count(test) if test else 'absent'}"),
        OptionalPart("quality_vs_psnr", f"T1 for at least {MIN_SUBJECTS_FOR_CORRELATION} target subjects",
                     labelled >= MIN_SUBJECTS_FOR_CORRELATION, f"{labelled}"),
    )
    return RootPlan(dataroot=str(dataroot), adapt_split=adapt, target_splits=targets,
                    labelled_target_subjects=labelled, parts=parts)
