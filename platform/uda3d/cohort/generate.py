"""Write a synthetic multi-site cohort as a BraTS-layout root.

Layout (as the method's loaders expect, docs/method.md section 1):
``OUT/domain{k}_{train,val,test}/<SUBJECT>/<SUBJECT>_{flair,t1,t1ce,t2,seg}.nii.gz`` for the k-th
site, plus ``OUT/cohort.json`` (config, protocols with each site's population, splits). Intensities
are stored as int16 and the labels as uint8, like BraTS. The whole root is built in a temporary
folder and renamed into place, so an interrupted run leaves nothing behind. Subjects depend only on
(seed, site, index), so the cohort is bit-identical for a seed whatever else changes.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from uda3d.cohort.anatomy import TissueMaps, grid_affine, subject_tissue_maps
from uda3d.cohort.population import POPULATIONS
from uda3d.cohort.render import render_modalities
from uda3d.cohort.signal import TISSUES
from uda3d.cohort.sites import MODALITIES, SITES, get_site
from uda3d.cohort.tumour import BRATS_LABELS, tumour_labels
from uda3d.errors import ConfigError
from uda3d.io.atomic import atomic_dir, atomic_file
from uda3d.io.nifti import save_volume

SPLITS = ("train", "val", "test")
MIN_DIM = 16


@dataclass(frozen=True)
class CohortConfig:
    """What to generate. Validated on construction, so bad values fail before any file is written."""

    sites: tuple[str, ...] = ("site-a", "site-b")
    subjects_per_site: int = 9
    shape: tuple[int, int, int] = (64, 64, 64)
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.sites:
            raise ConfigError("--sites", "give at least one site")
        for name in self.sites:
            get_site(name)
        if len(set(self.sites)) != len(self.sites):
            raise ConfigError("--sites", f"sites must be distinct, got {list(self.sites)}")
        if self.subjects_per_site < len(SPLITS):
            raise ConfigError("--subjects-per-site",
                              f"need at least {len(SPLITS)} (one per split), got {self.subjects_per_site}")
        if len(self.shape) != 3 or any(int(s) < MIN_DIM for s in self.shape):
            raise ConfigError("--shape", f"expected 3 sizes >= {MIN_DIM}, got {list(self.shape)}")
        if any(int(s) > 512 for s in self.shape):
            raise ConfigError("--shape", f"expected sizes <= 512, got {list(self.shape)}")
        if self.seed < 0:
            raise ConfigError("--seed", f"expected a non-negative integer, got {self.seed}")
        if len(self.split_fractions) != 3 or any(f <= 0 for f in self.split_fractions):
            raise ConfigError("split_fractions", f"expected 3 positive fractions, got {self.split_fractions}")


def split_counts(n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, int]:
    """Subjects per split: at least one in each, the remainder in train."""
    total = sum(fractions)
    val = max(1, round(n * fractions[1] / total))
    test = max(1, round(n * fractions[2] / total))
    train = n - val - test
    if train < 1:
        raise ConfigError("--subjects-per-site", f"{n} subjects cannot fill three splits")
    return {"train": train, "val": val, "test": test}


def subject_rng(seed: int, site: str, index: int) -> np.random.Generator:
    """The generator for one subject, independent of which other sites or subjects are made."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(site.encode()), index]))


def subject_anatomy(rng: np.random.Generator, shape: tuple[int, int, int],
                    population: str = "typical") -> tuple[TissueMaps, np.ndarray]:
    """One subject's tissue maps and lesion labels, drawn from its site's population."""
    pop = POPULATIONS[population]
    affine = grid_affine(shape)
    spacing = np.abs(np.diag(affine)[:3])
    tissues = subject_tissue_maps(rng, shape, affine, brain_scale=pop.brain_scale, atrophy=pop.atrophy)
    labels = tumour_labels(rng, tissues, spacing, lesions=pop.lesions, radius_mm=pop.radius_mm)
    return tissues, labels


def render_subject(config: CohortConfig, site: str, index: int) -> dict[str, np.ndarray]:
    """All four modalities and the label map of one subject (arrays on the cohort grid)."""
    rng = subject_rng(config.seed, site, index)
    protocol = get_site(site)
    spacing = np.abs(np.diag(grid_affine(config.shape))[:3])
    tissues, labels = subject_anatomy(rng, config.shape, protocol.population)
    volumes = render_modalities(rng, tissues, labels, protocol, spacing)
    volumes["seg"] = labels
    return volumes


def subject_id(site: str, index: int) -> str:
    return f"SYN_{get_site(site).tag}_{index + 1:03d}"


def generate_cohort(out: str | Path, config: CohortConfig, overwrite: bool = False,
                    progress: bool = True) -> Path:
    """Generate the cohort into ``out`` (atomically) and return the path of its ``cohort.json``."""
    from uda3d.progress import progress as progress_bar

    out = Path(out)
    affine = grid_affine(config.shape)
    counts = split_counts(config.subjects_per_site, config.split_fractions)
    jobs = [(k, site, i) for k, site in enumerate(config.sites, start=1)
            for i in range(config.subjects_per_site)]
    splits: dict[str, list[str]] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for k, site, i in progress_bar(jobs, desc="cohort", unit="subject", disable=not progress):
            split = _split_of(i, counts)
            sid = subject_id(site, i)
            folder = tmp / f"domain{k}_{split}" / sid
            folder.mkdir(parents=True, exist_ok=True)
            for name, volume in render_subject(config, site, i).items():
                dtype = np.uint8 if name == "seg" else np.int16
                save_volume(folder / f"{sid}_{name}.nii.gz", volume, affine, dtype=dtype)
            splits.setdefault(f"domain{k}_{split}", []).append(sid)
        summary = {
            "generator": "uda3d synthetic cohort",
            "config": {k: v for k, v in asdict(config).items() if k != "extra"},
            "domains": {f"domain{k}": site for k, site in enumerate(config.sites, start=1)},
            "protocols": {name: asdict(SITES[name]) for name in config.sites},
            "tissues": {name: asdict(t) for name, t in TISSUES.items()},
            "labels": list(BRATS_LABELS),
            "modalities": list(MODALITIES) + ["seg"],
            "affine": affine.tolist(),
            "splits": splits,
        }
        with atomic_file(tmp / "cohort.json") as staged:
            staged.write_text(json.dumps(summary, indent=2) + "\n")
    return out / "cohort.json"


def _split_of(index: int, counts: dict[str, int]) -> str:
    edge = 0
    for split in SPLITS:
        edge += counts[split]
        if index < edge:
            return split
    raise AssertionError("index beyond the split counts")
