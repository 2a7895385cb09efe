"""Turn one subject's NIfTI files into network-ready arrays, with a per-subject cache.

Decoding gzip is the slow part of reading BraTS (four ~3 MB ``.nii.gz`` per subject, every epoch).
The cache stores the preprocessed arrays once per subject as an uncompressed ``.npz`` keyed by the
files' paths, sizes and modification times and by the preprocessing config, so later epochs and
later stages read them back without decoding, and a changed file or config is never served stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from uda3d.config import PreprocessConfig
from uda3d.data.layout import INPUT_MODALITIES, TARGET_MODALITY, Subject, missing_modality
from uda3d.data.transforms import (
    CropBox,
    auto_shape,
    centred_box,
    covering_shape,
    covers,
    crop,
    fixed_box,
    minmax_normalise,
    percentile_normalise,
    reorient,
)
from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file
from uda3d.io.nifti import grid_mismatch, load_volume

CACHE_VERSION = 1


@dataclass(frozen=True)
class PreprocessedSubject:
    """Network-ready arrays of one subject.

    Attributes:
        inputs: (2, D, H, W) float32 in [0, 1], channels (T2, FLAIR) as the method orders them.
        target: (1, D, H, W) float32 T1 in [0, 1], or None for an unlabeled subject.
        mask: (D, H, W) bool brain mask (non-zero input voxels of the skull-stripped images).
        box: where the crop sits in the reoriented volume (to put outputs back).
        affine: the original file's voxel-to-world affine.
    """

    id: str
    split: str
    inputs: np.ndarray
    target: np.ndarray | None
    mask: np.ndarray
    box: CropBox
    affine: np.ndarray


def preprocess_subject(subject: Subject, config: PreprocessConfig, cover_brain: bool = False) -> PreprocessedSubject:
    """Load, check, reorient, crop and normalise one subject (no cache).

    ``cover_brain``: where the configured crop would cut brain off, a window centred on the brain and
    widened, axis by axis, to its extent (a multiple of 8) is used instead; inference then runs over
    it window by window rather than losing the voxels outside the crop.
    """
    for modality in INPUT_MODALITIES:
        if modality not in subject.files:
            raise DataError(subject.folder, missing_modality(modality))
    names = list(INPUT_MODALITIES) + ([TARGET_MODALITY] if subject.has_target else [])
    volumes = [load_volume(subject.files[m]) for m in names]
    reference = volumes[0]
    for volume in volumes[1:]:
        mismatch = grid_mismatch(volume, reference)
        if mismatch:
            raise DataError(volume.path, mismatch)
    oriented = [reorient(v.data, v.affine, config.orientation)[0] for v in volumes]
    brain = np.zeros(oriented[0].shape, dtype=bool)
    for array in oriented[: len(INPUT_MODALITIES)]:
        brain |= array > 0
    shape = config.shape if config.shape is not None else auto_shape(oriented[0].shape)
    box = fixed_box(oriented[0].shape, shape) if config.crop == "fixed" else centred_box(brain, shape)
    if cover_brain and not covers(box, brain):
        box = centred_box(brain, covering_shape(brain, shape))
    normalise = (lambda a: minmax_normalise(a)[0]) if config.normalisation == "minmax" else percentile_normalise
    channels = np.stack([normalise(crop(a, box)) for a in oriented]).astype(np.float32)
    n_in = len(INPUT_MODALITIES)
    return PreprocessedSubject(
        id=subject.id, split=subject.split, inputs=channels[:n_in],
        target=channels[n_in:] if subject.has_target else None,
        mask=crop(brain, box), box=box, affine=reference.affine,
    )


def cache_key(subject: Subject, config: PreprocessConfig) -> str:
    """Hash of the subject's files (path, size, mtime) and the config: changes when either does."""
    stats = {}
    for modality in sorted(subject.files):
        path = subject.files[modality]
        st = path.stat()
        stats[modality] = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    blob = json.dumps({"v": CACHE_VERSION, "files": stats, "config": asdict(config)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_subject(subject: Subject, config: PreprocessConfig,
                 cache_dir: str | Path | None = None) -> PreprocessedSubject:
    """Preprocessed arrays of ``subject``, read from ``cache_dir`` when present, else computed and cached."""
    if cache_dir is None:
        return preprocess_subject(subject, config)
    path = Path(cache_dir) / subject.split / f"{subject.id}-{cache_key(subject, config)}.npz"
    if path.is_file():
        try:
            return _read_cached(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never trusted
    result = preprocess_subject(subject, config)
    _write_cached(path, result)
    return result


def _write_cached(path: Path, s: PreprocessedSubject) -> None:
    arrays = {"inputs": s.inputs, "mask": s.mask, "affine": s.affine,
              "box": np.asarray([s.box.start, s.box.shape, s.box.source_shape], dtype=np.int64)}
    if s.target is not None:
        arrays["target"] = s.target
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, id=np.asarray(s.id), split=np.asarray(s.split), **arrays)


def _read_cached(path: Path) -> PreprocessedSubject:
    with np.load(path, allow_pickle=False) as z:
        box = z["box"]
        return PreprocessedSubject(
            id=str(z["id"]), split=str(z["split"]), inputs=z["inputs"],
            target=z["target"] if "target" in z.files else None, mask=z["mask"],
            box=CropBox(tuple(int(v) for v in box[0]), tuple(int(v) for v in box[1]),
                        tuple(int(v) for v in box[2])),
            affine=z["affine"],
        )
