"""Arrange a real BraTS download into the two-site layout the platform reads.

BraTS releases put every subject in one folder (``MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/``);
the contributing institution is in the 2019 subject id (``BraTS19_CBICA_AAB_1``,
``BraTS19_TCIA01_131_1``), which is how the method chose its source (CBICA) and target (TCIA)
sites. Releases whose ids carry no institution (BraTS 2020's ``BraTS20_Training_001``) take a CSV
mapping ``subject,site``. Subjects are split train/val/test per site by a seeded shuffle and linked
(or copied) into ``domain1_*`` (source) and ``domain2_*`` (target), atomically.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from uda3d.config import IngestConfig
from uda3d.data.layout import modality_of
from uda3d.errors import DataError
from uda3d.io.atomic import atomic_dir, atomic_file

_INSTITUTION = re.compile(r"^BraTS\d{2}_(?P<site>[A-Za-z]+\d*|\d{4})_", re.IGNORECASE)
PHASES = ("train", "val", "test")


def institution_of(subject_id: str) -> str | None:
    """The institution token of a BraTS 2019 id (``TCIA01`` for ``BraTS19_TCIA01_131_1``), or None."""
    match = _INSTITUTION.match(subject_id)
    return match.group("site") if match else None


def find_subject_folders(src: Path) -> list[Path]:
    """Every folder under ``src`` that holds a FLAIR NIfTI, sorted by folder name."""
    folders = {p.parent for p in src.rglob("*.nii*") if modality_of(p.name) == "flair"}
    return sorted(folders, key=lambda p: p.name)


def read_site_mapping(path: Path) -> dict[str, str]:
    """``subject -> site`` from a CSV with columns ``subject`` and ``site``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(path, f"cannot read mapping ({exc.strerror})") from None
    if not rows or not {"subject", "site"} <= set(rows[0]):
        raise DataError(path, "expected a CSV with columns 'subject' and 'site'")
    return {row["subject"]: row["site"] for row in rows}


def split_ids(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Shuffle ``ids`` with ``seed`` and cut them by ``fractions`` (train takes the rounding remainder)."""
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    total = sum(fractions)
    n_val = int(round(len(ids) * fractions[1] / total))
    n_test = int(round(len(ids) * fractions[2] / total))
    n_train = len(ids) - n_val - n_test
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}


def ingest_brats(src: str | Path, out: str | Path, config: IngestConfig,
                 mapping: str | Path | None = None, overwrite: bool = False) -> dict[str, list[str]]:
    """Link (or copy) the source and target sites' subjects of ``src`` into a two-site root ``out``.

    Returns the split membership, also written to ``out/ingest.json``.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError(src, "BraTS folder not found")
    folders = find_subject_folders(src)
    if not folders:
        raise DataError(src, "no subject folders (no *_flair.nii.gz found below it)")
    sites = read_site_mapping(Path(mapping)) if mapping else {}
    by_site: dict[str, list[Path]] = {"domain1": [], "domain2": []}
    for folder in folders:
        site = sites.get(folder.name) or institution_of(folder.name)
        if site is None:
            raise DataError(folder, "no institution in the subject id; pass --mapping CSV with subject,site")
        if site.lower().startswith(config.source.lower()):
            by_site["domain1"].append(folder)
        elif site.lower().startswith(config.target.lower()):
            by_site["domain2"].append(folder)
    for domain, name in (("domain1", config.source), ("domain2", config.target)):
        if len(by_site[domain]) < 3:
            raise DataError(src, f"site {name!r} has {len(by_site[domain])} subject(s); expected at least 3")

    membership: dict[str, list[str]] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for domain, subject_folders in by_site.items():
            lookup = {f.name: f for f in subject_folders}
            for phase, ids in split_ids(sorted(lookup), config.fractions, config.seed).items():
                split = tmp / f"{domain}_{phase}"
                split.mkdir()
                membership[split.name] = ids
                for sid in ids:
                    if config.copy:
                        shutil.copytree(lookup[sid], split / sid)
                    else:
                        os.symlink(lookup[sid].resolve(), split / sid, target_is_directory=True)
        with atomic_file(tmp / "ingest.json") as staged:
            staged.write_text(json.dumps({"source": str(src.resolve()), "config": config.__dict__,
                                          "splits": membership}, indent=2, default=list) + "\n")
    return membership
