"""Check a BraTS-layout root before any stage reads it, reporting *every* problem at once.

A real BraTS download can hold a missing or duplicated modality, a truncated ``.nii.gz``, a 4D
image, NaNs, modalities of different shapes or affines, an empty split, or a subject that leaked
into two splits of one domain. Each is reported as one line naming the file and what was expected.
T1 is required on the source domain (``domain1_*``); elsewhere a subject without T1 is unlabeled,
which is what the target site of domain adaptation looks like, and is not a problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uda3d.data.layout import (
    INPUT_MODALITIES,
    TARGET_MODALITY,
    Subject,
    discover,
    missing_modality,
    near_miss_splits,
)
from uda3d.errors import DataError
from uda3d.io.nifti import Volume, grid_mismatch, load_volume

SOURCE_DOMAIN = "domain1"
SEG_LABELS = {0, 1, 2, 3, 4}  # BraTS 2019-21 use 0/1/2/4; BraTS 2023 uses 3 for enhancing


@dataclass(frozen=True)
class Problem:
    """One thing wrong, tied to the file or folder it concerns."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ValidationReport:
    """What ``validate_root`` found: subjects per split, problems, and the unlabeled subjects."""

    root: str
    splits: dict[str, list[Subject]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_lines(self) -> list[str]:
        lines = []
        for name, subjects in self.splits.items():
            labeled = sum(s.has_target for s in subjects)
            lines.append(f"{name}: {len(subjects)} subjects ({labeled} with T1)")
        return lines


def required_modalities(subject: Subject) -> tuple[str, ...]:
    """Inputs are always needed; T1 only on the source domain, where the backbone learns from it."""
    if subject.domain == SOURCE_DOMAIN:
        return INPUT_MODALITIES + (TARGET_MODALITY,)
    return INPUT_MODALITIES


def validate_subject(subject: Subject) -> list[Problem]:
    """Every problem of one subject: missing/duplicate modality, unreadable file, shape/affine mismatch."""
    problems: list[Problem] = []
    for modality in required_modalities(subject):
        if modality not in subject.files:
            problems.append(Problem(str(subject.folder), missing_modality(modality)))
    for modality, paths in subject.duplicates.items():
        names = ", ".join(p.name for p in paths)
        problems.append(Problem(str(subject.folder), f"several files for modality {modality!r}: {names}; "
                                                    "expected one file per modality"))

    volumes = []
    for modality, path in subject.files.items():
        try:
            volume = load_volume(path)
        except DataError as exc:
            problems.append(Problem(exc.path, exc.problem))
            continue
        problems.extend(_content_problems(modality, path, volume))
        volumes.append(volume)
    reference = majority_grid(volumes)
    for volume in volumes:
        mismatch = grid_mismatch(volume, reference)
        if mismatch:
            problems.append(Problem(volume.path, mismatch))
    return problems


def majority_grid(volumes: list[Volume]) -> Volume | None:
    """The volume whose voxel grid most of the others share (the first on a tie), so the odd file is the one named."""
    if not volumes:
        return None
    agreeing = [sum(grid_mismatch(other, v) is None for other in volumes) for v in volumes]
    return volumes[agreeing.index(max(agreeing))]


def _content_problems(modality: str, path: Path, volume: Volume) -> list[Problem]:
    """A label map with non-BraTS labels, or an image with nothing in it."""
    if modality == "seg":
        values = np.unique(volume.data)
        if not np.array_equal(values, np.round(values)):
            return [Problem(str(path), "label map holds non-integer values; expected BraTS labels")]
        labels = {int(v) for v in np.round(values)}
        if not labels <= SEG_LABELS:
            return [Problem(str(path), f"label values {sorted(labels - SEG_LABELS)} are not BraTS labels; "
                                       f"expected a subset of {sorted(SEG_LABELS)}")]
        return []
    if not np.any(volume.data):
        return [Problem(str(path), "image is empty (every voxel is 0); expected a scan")]
    return []


SPACING_TOLERANCE = 0.01  # relative: 1% of a voxel side


def spacing_outliers(subjects: list[Subject]) -> list[Problem]:
    """Subjects whose voxel spacing differs from most of their site's (the network sees voxels, not mm).

    A subject at half the spacing looks like a brain twice the size to the network. Spacing comes
    from the FLAIR's header (read lazily; unreadable files are reported elsewhere).
    """
    from collections import Counter

    from uda3d.io.nifti import load_header

    spacing: dict[str, tuple[float, ...]] = {}
    for s in subjects:
        if "flair" not in s.files:
            continue
        try:
            zooms = load_header(s.files["flair"]).header.get_zooms()[:3]
        except DataError:
            continue
        spacing[str(s.files["flair"])] = tuple(round(float(z), 3) for z in zooms)
    if len(spacing) < 2:
        return []
    usual = Counter(spacing.values()).most_common(1)[0][0]
    return [Problem(path, f"voxel spacing {list(z)} mm differs from most of its site's {list(usual)} mm; "
                          "expected one spacing per site (resample the subject to it, or pass --spacing to resample "
                          "every subject to one grid)")
            for path, z in spacing.items()
            if not np.allclose(z, usual, rtol=SPACING_TOLERANCE)]


def leaked_subjects(splits: dict[str, list[Subject]]) -> list[Problem]:
    """Subjects that appear in two splits of the same domain (train/test leakage)."""
    seen: dict[tuple[str, str], Subject] = {}
    problems = []
    for subjects in splits.values():
        for s in subjects:
            key = (s.domain, s.id)
            if key in seen:
                problems.append(Problem(str(s.folder), f"subject also in {seen[key].split}; "
                                                       "expected each subject in one split of its domain"))
            else:
                seen[key] = s
    return problems


def validate_root(root: str | Path, splits: Iterable[str] | None = None,
                  progress: bool = False) -> ValidationReport:
    """Validate every subject of a BraTS-layout root (or of ``splits``)."""
    from uda3d.progress import progress as progress_bar

    found = discover(root, tuple(splits) if splits is not None else None)
    report = ValidationReport(root=str(root), splits=found)
    for name, subjects in found.items():
        if not subjects:
            report.problems.append(Problem(str(Path(root) / name), "split is empty; expected subject folders"))
    everyone = [s for subjects in found.values() for s in subjects]
    for subject in progress_bar(everyone, desc="validate", unit="subject", disable=not progress):
        report.problems.extend(validate_subject(subject))
    report.problems.extend(leaked_subjects(found))
    domains: dict[str, list[Subject]] = {}
    for s in everyone:
        domains.setdefault(s.domain, []).append(s)
    for subjects in domains.values():  # one site, one protocol: its splits share a spacing
        report.problems.extend(spacing_outliers(subjects))
    report.problems.extend(Problem(str(folder), f"looks like split folder {likely} but is not named exactly so, "
                                                "and no command reads it; expected <domainN>_<train|val|test>")
                           for folder, likely in near_miss_splits(root))
    return report
