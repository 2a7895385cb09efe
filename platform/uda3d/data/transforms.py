"""Preprocessing as pure array functions: reorientation, brain crop/pad, intensity normalisation.

The method (docs/method.md section 1) reorients every BraTS volume to axis code ``IPL`` (240x240x155 ->
155x240x240), crops it to 144x192x192, and min-max scales each channel to [0, 1] per volume. Here
the crop window is centred on the brain's bounding box (and zero-padded where it leaves the image),
so the same code serves BraTS, the small synthetic cohort and any other grid; ``auto_shape`` scales
the method's crop ratios to the input size and rounds down to a multiple of 8 (three stride-2
stages), which gives exactly 144x192x192 for BraTS. Every crop records a ``CropBox`` so a
synthesized volume can be put back on the input grid. Reorientation uses nibabel's orientation
helpers, so the affine stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD_CROP_RATIOS = (144 / 155, 192 / 240, 192 / 240)  # IPL axes, docs/method.md section 1
SHAPE_MULTIPLE = 8


@dataclass(frozen=True)
class CropBox:
    """Where a crop window sits in the reoriented input: ``start`` may be negative (padding)."""

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    source_shape: tuple[int, int, int]


def reorient(data: np.ndarray, affine: np.ndarray, code: str = "IPL") -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip axes so the array's axes point along ``code`` (e.g. ``IPL``); returns (data, affine)."""
    import nibabel.orientations as ornt

    current = ornt.io_orientation(affine)
    wanted = ornt.axcodes2ornt(tuple(code))
    transform = ornt.ornt_transform(current, wanted)
    out = ornt.apply_orientation(data, transform)
    new_affine = affine @ ornt.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(out), new_affine


def undo_reorient(data: np.ndarray, affine: np.ndarray, code: str = "IPL") -> np.ndarray:
    """Inverse of ``reorient``: map an array in ``code`` orientation back to ``affine``'s axes."""
    import nibabel.orientations as ornt

    transform = ornt.ornt_transform(ornt.axcodes2ornt(tuple(code)), ornt.io_orientation(affine))
    return np.ascontiguousarray(ornt.apply_orientation(data, transform))


def voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (the column norms of the affine's 3x3 part)."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def resampled_shape(shape: tuple[int, ...], voxel: tuple[float, ...], spacing: tuple[float, ...]
                    ) -> tuple[int, int, int]:
    """The grid that covers the same field of view at ``spacing`` mm (at least one voxel per axis)."""
    return tuple(max(1, int(round(n * v / s))) for n, v, s in zip(shape, voxel, spacing))  # type: ignore[return-value]


def resample(data: np.ndarray, shape: tuple[int, int, int], nearest: bool = False) -> np.ndarray:
    """``data`` (last three axes spatial) interpolated onto ``shape`` over the same field of view.

    MONAI's ``Resize`` does the work: trilinear for intensities (with its Gaussian anti-aliasing when
    shrinking, so a finer grid is not aliased), nearest neighbour for masks. Same shape: unchanged.
    """
    from monai.transforms import Resize

    if tuple(data.shape[-3:]) == tuple(shape):
        return data
    lead = data.shape[:-3]
    flat = data.reshape((-1,) + data.shape[-3:]).astype(np.float32)
    resize = Resize(spatial_size=tuple(int(v) for v in shape), mode="nearest" if nearest else "trilinear",
                    anti_aliasing=not nearest)
    out = np.asarray(resize(flat))
    out = out > 0.5 if nearest and data.dtype == bool else out.astype(data.dtype)
    return out.reshape(lead + tuple(shape))


def auto_shape(shape: tuple[int, ...], ratios: tuple[float, ...] = METHOD_CROP_RATIOS) -> tuple[int, int, int]:
    """The method's crop ratios applied to ``shape``, rounded down to a multiple of 8 (>= 8)."""
    return tuple(max(SHAPE_MULTIPLE, int(s * r) // SHAPE_MULTIPLE * SHAPE_MULTIPLE)
                 for s, r in zip(shape, ratios))  # type: ignore[return-value]


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive-exclusive bounds (lo, hi) of the non-zero voxels; the whole array if none."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return np.zeros(mask.ndim, dtype=int), np.asarray(mask.shape)
    return idx.min(axis=0), idx.max(axis=0) + 1


def covering_shape(mask: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape``, widened on each axis where the mask's bounding box is longer, to a multiple of 8."""
    lo, hi = bounding_box(mask)
    return tuple(max(int(size), -(-int(top - bottom) // SHAPE_MULTIPLE) * SHAPE_MULTIPLE)
                 for size, bottom, top in zip(shape, lo, hi))  # type: ignore[return-value]


# The method's crop of a 155x240x240 (IPL) BraTS volume to 144x192x192 (docs/method.md section 1).
METHOD_FIXED_CROP = ((155, 240, 240), (144, 192, 192), (8, 24, 24))


def fixed_box(source_shape: tuple[int, ...], shape: tuple[int, int, int]) -> CropBox:
    """One window for every subject: the method's offsets for BraTS, else centred in the volume."""
    full, size, start = METHOD_FIXED_CROP
    if tuple(source_shape) == full and tuple(shape) == size:
        begin = start
    else:
        begin = tuple((int(n) - int(s)) // 2 for n, s in zip(source_shape, shape))
    return CropBox(start=tuple(begin), shape=tuple(shape), source_shape=tuple(source_shape))  # type: ignore[arg-type]


def covers(box: CropBox, mask: np.ndarray) -> bool:
    """Whether every non-zero voxel of ``mask`` lies inside ``box``."""
    lo, hi = bounding_box(mask)
    return all(b <= low and high <= b + s for b, s, low, high in zip(box.start, box.shape, lo, hi))


def centred_box(mask: np.ndarray, shape: tuple[int, int, int]) -> CropBox:
    """A window of ``shape`` centred on the mask's bounding box, kept inside the image where it fits."""
    lo, hi = bounding_box(mask)
    start = []
    for axis, size in enumerate(shape):
        full = mask.shape[axis]
        begin = int((lo[axis] + hi[axis]) // 2 - size // 2)
        if size <= full:
            begin = min(max(begin, 0), full - size)
        else:
            begin = -((size - full) // 2)
        start.append(begin)
    return CropBox(start=tuple(start), shape=tuple(shape), source_shape=tuple(mask.shape))  # type: ignore[arg-type]


def crop(data: np.ndarray, box: CropBox) -> np.ndarray:
    """Cut ``box`` out of the last three axes of ``data``, zero-padding outside the image."""
    out = np.zeros(data.shape[:-3] + box.shape, dtype=data.dtype)
    src, dst = _overlap(box)
    out[(...,) + dst] = data[(...,) + src]
    return out


def uncrop(data: np.ndarray, box: CropBox) -> np.ndarray:
    """Inverse of ``crop``: place a cropped array back on the source grid (zeros elsewhere)."""
    out = np.zeros(data.shape[:-3] + box.source_shape, dtype=data.dtype)
    src, dst = _overlap(box)
    out[(...,) + src] = data[(...,) + dst]
    return out


def _overlap(box: CropBox) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    src, dst = [], []
    for begin, size, full in zip(box.start, box.shape, box.source_shape):
        a, b = max(begin, 0), min(begin + size, full)
        src.append(slice(a, b))
        dst.append(slice(a - begin, b - begin))
    return tuple(src), tuple(dst)


def minmax_normalise(volume: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Scale to [0, 1] by the volume's min and max (the method's per-volume, per-channel rule).

    Returns the scaled volume and (min, max) so the scaling can be undone. A constant volume maps to 0.
    """
    lo, hi = float(volume.min()), float(volume.max())
    scale = hi - lo
    out = (volume - lo) / scale if scale > 0 else np.zeros_like(volume)
    return out.astype(np.float32), (lo, hi)


def percentile_normalise(volume: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``/``high`` percentiles to [0, 1] and clip (the slice VAE's rule, docs/method.md section 2)."""
    lo, hi = np.percentile(volume, [low, high])
    if hi <= lo:
        return np.zeros_like(volume, dtype=np.float32)
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)

