"""Discover subjects in a BraTS-layout root.

A root holds split folders ``<domain>_<phase>`` (``domain1_train``, ``domain2_test``, ...), one
sub-folder per subject, and one NIfTI per modality matched by its suffix, as the method's loaders
do (docs/method.md section 1): ``*_flair``, ``*_t1``, ``*_t1ce``, ``*_t2``, ``*_seg``. The BraTS 2023
names (``-t2f``, ``-t1n``, ``-t1c``, ``-t2w``) are accepted as aliases so newer releases load too.
Any subset of the splits is a valid root.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from uda3d.errors import DataError

log = logging.getLogger(__name__)

PHASES = ("train", "val", "test")
SPLIT_PATTERN = re.compile(r"^(?P<domain>domain\d+)_(?P<phase>train|val|test)$")
INPUT_MODALITIES = ("t2", "flair")  # channel order of the generator input, as the method uses
TARGET_MODALITY = "t1"
ALL_MODALITIES = ("flair", "t1", "t1ce", "t2", "seg")
_ALIASES = {"flair": "flair", "t2f": "flair", "t1": "t1", "t1n": "t1", "t1w": "t1", "t1ce": "t1ce", "t1c": "t1ce",
            "t2": "t2", "t2w": "t2", "seg": "seg"}  # BraTS 2019-21, BraTS 2023 and BIDS (_T1w, _T2w, _FLAIR)
_FILE_PATTERN = re.compile(r"(?:^|[_.\-])(?P<mod>[a-z0-9]+)\.nii(?:\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Subject:
    """One subject folder: its id, split and the modality files found in it."""

    id: str
    domain: str
    phase: str
    folder: Path
    files: dict[str, Path] = field(hash=False)
    duplicates: dict[str, list[Path]] = field(default_factory=dict, hash=False)

    @property
    def split(self) -> str:
        return f"{self.domain}_{self.phase}"

    @property
    def has_target(self) -> bool:
        return TARGET_MODALITY in self.files

    def inputs_only(self) -> Subject:
        """This subject without its T1: what every target-side step reads, so none of them can touch it."""
        return dataclasses.replace(self, files={m: p for m, p in self.files.items() if m != TARGET_MODALITY})


def missing_modality(modality: str) -> str:
    """The one wording for a missing modality, naming the file pattern that was expected."""
    return f"missing modality {modality!r}; expected a file named *_{modality}.nii.gz"


def modality_of(filename: str) -> str | None:
    """The modality a file name's suffix names (``BraTS19_X_1_t1ce.nii.gz`` -> ``t1ce``), or None."""
    match = _FILE_PATTERN.search(filename)
    return _ALIASES.get(match.group("mod").lower()) if match else None


def scan_subject(folder: Path, domain: str, phase: str) -> Subject:
    """Index a subject folder's modality files; several files for one modality are kept as duplicates."""
    files: dict[str, Path] = {}
    duplicates: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        modality = modality_of(path.name)
        if modality is None:
            continue
        if modality == TARGET_MODALITY and not os.access(path, os.R_OK):
            continue  # an unreadable T1 is an absent one: T1 is optional everywhere, the inputs are not
        if modality in files:
            duplicates.setdefault(modality, [files[modality]]).append(path)
        else:
            files[modality] = path
    return Subject(id=folder.name, domain=domain, phase=phase, folder=folder, files=files,
                   duplicates=duplicates)


def split_folders(root: str | Path) -> dict[str, Path]:
    """The split folders present under ``root``, by name. Raises if the root has none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataroot not found or not a folder")
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and SPLIT_PATTERN.match(p.name)}
    if not found:
        raise DataError(root, "no split folders found; expected e.g. domain1_train, domain2_test")
    return found


def near_miss_splits(root: str | Path) -> list[tuple[Path, str]]:
    """Folders beside the splits that look like a misspelled split (``domain2_tset``), with the likely name.

    Every command reads only folders named exactly ``<domainN>_<train|val|test>``; one typo would
    silently leave a split out.
    """
    import difflib

    root = Path(root)
    wanted = [f"domain{d}_{p}" for d in (1, 2) for p in PHASES]
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if SPLIT_PATTERN.match(folder.name):
            continue
        close = difflib.get_close_matches(folder.name.lower(), wanted, n=1, cutoff=0.75)
        if close:
            found.append((folder, close[0]))
    return found


@functools.cache
def _warn_near_miss(folder: Path, likely: str) -> None:
    """Once per folder and process: every stage discovers the root, and one warning says it."""
    log.warning("%s: not read: looks like split folder %s but is not named exactly so", folder, likely)


def discover(root: str | Path, splits: tuple[str, ...] | None = None) -> dict[str, list[Subject]]:
    """Subjects of every split folder under ``root`` (or only ``splits``), sorted by id.

    Raises:
        DataError: the root has no split folders, or a requested split is absent.
    """
    folders = split_folders(root)
    for folder, likely in near_miss_splits(root):
        _warn_near_miss(folder, likely)
    wanted = splits if splits is not None else tuple(folders)
    out: dict[str, list[Subject]] = {}
    for name in wanted:
        match = SPLIT_PATTERN.match(name)
        if match is None:
            raise DataError(Path(root) / name, "not a split name; expected <domainN>_<train|val|test>")
        if name not in folders:
            raise DataError(Path(root) / name, "split folder not found")
        out[name] = [scan_subject(p, match["domain"], match["phase"])
                     for p in sorted(folders[name].iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return out


def fingerprint(splits: dict[str, list[Subject]]) -> str:
    """A short hash of which files make up these splits (names and sizes): tags a run with its data."""
    import hashlib

    h = hashlib.sha1()
    for name in sorted(splits):
        for s in splits[name]:
            for modality in sorted(s.files):
                path = s.files[modality]
                h.update(f"{name}/{s.id}/{path.name}:{path.stat().st_size};".encode())
    return h.hexdigest()[:12]
