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
    resample,
    resampled_shape,
    uncrop,
    undo_reorient,
    voxel_sizes,
)
from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file
from uda3d.io.nifti import grid_mismatch, load_volume

CACHE_VERSION = 2


@dataclass(frozen=True)
class PreprocessedSubject:
    """Network-ready arrays of one subject.

    Attributes:
        inputs: (2, D, H, W) float32 in [0, 1], channels (T2, FLAIR) as the method orders them.
        target: (1, D, H, W) float32 T1 in [0, 1], or None for an unlabeled subject.
        mask: (D, H, W) bool brain mask (non-zero input voxels of the skull-stripped images).
        box: where the crop sits in the reoriented (and, with ``spacing``, resampled) volume.
        affine: the original file's voxel-to-world affine.
        native_mask: the brain on the reoriented file's own grid, kept only when the config resamples
            (``spacing``): outputs are resampled back to its grid and zeroed outside it (interpolation
            would otherwise spread them a voxel wider).
    """

    id: str
    split: str
    inputs: np.ndarray
    target: np.ndarray | None
    mask: np.ndarray
    box: CropBox
    affine: np.ndarray
    native_mask: np.ndarray | None = None

    @property
    def native_shape(self) -> tuple[int, int, int]:
        """The reoriented file's shape: what outputs go back to before the orientation is undone."""
        return tuple(self.native_mask.shape) if self.native_mask is not None else self.box.source_shape  # type: ignore[return-value]

    def to_native(self, volume: np.ndarray, orientation: str) -> np.ndarray:
        """A network-grid volume (masked outside the brain) put back on the file's own grid."""
        placed = uncrop(np.where(self.mask, volume, 0.0), self.box)
        if self.native_mask is not None:  # resampled: back to the file's grid, zero outside its brain
            placed = np.where(self.native_mask, resample(placed, self.native_shape), 0.0)
        return undo_reorient(placed, self.affine, orientation)


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
    oriented_pairs = [reorient(v.data, v.affine, config.orientation) for v in volumes]
    oriented = [a for a, _ in oriented_pairs]
    brain = np.zeros(oriented[0].shape, dtype=bool)
    for array in oriented[: len(INPUT_MODALITIES)]:
        brain |= array > 0
    native_mask = None
    if config.spacing is not None:  # one grid for every subject: the network sees mm, not voxels
        grid = resampled_shape(oriented[0].shape, voxel_sizes(oriented_pairs[0][1]), config.spacing)
        oriented = [resample(a.astype(np.float32), grid) for a in oriented]
        native_mask, brain = brain, resample(brain, grid, nearest=True)
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
        mask=crop(brain, box), box=box, affine=reference.affine, native_mask=native_mask,
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
    if s.native_mask is not None:
        arrays["native_mask"] = s.native_mask
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
            affine=z["affine"], native_mask=z["native_mask"] if "native_mask" in z.files else None,
        )
