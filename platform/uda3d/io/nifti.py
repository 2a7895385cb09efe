"""Read and write NIfTI volumes with nibabel, turning every way a file can be wrong into one line.

nibabel is the reference NIfTI implementation in Python (BraTS ships ``.nii.gz``); it reads lazily,
so a truncated gzip only fails when the voxels are decoded. ``load_volume`` decodes eagerly and
checks what every later stage assumes: a 3D image, finite voxels, a usable affine.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uda3d.errors import DataError
from uda3d.io.atomic import atomic_file

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# The most voxels uda3d decodes from one file: 512^3 (0.5 GB as float32). BraTS is 240x240x155
# (8.9M); a header declaring more is refused before any voxel is read.
MAX_VOXELS = 512**3


@dataclass(frozen=True)
class Volume:
    """A decoded 3D image: voxels (float32), the voxel-to-world affine and the source path."""

    data: np.ndarray
    affine: np.ndarray
    path: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]


def load_header(path: str | Path):
    """Open a NIfTI lazily (header only); raise ``DataError`` if it is not a readable NIfTI."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, gzip/zlib errors, OSError, ...
        raise DataError(path, f"not a readable NIfTI file ({_describe(exc)}); expected a .nii or .nii.gz "
                              "image") from None


def load_volume(path: str | Path, check_finite: bool = True) -> Volume:
    """Decode a 3D NIfTI into float32 voxels, checking dimensionality and finiteness.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        check_finite: reject NaN/Inf voxels (every stage after loading assumes finite data).

    Raises:
        DataError: unreadable, corrupt or truncated file; not 3D; complex or RGB voxels; non-finite
            voxels or affine.
    """
    img = load_header(path)
    shape = tuple(int(s) for s in img.shape)
    squeezed = shape[:3] if len(shape) > 3 and all(s == 1 for s in shape[3:]) else shape
    if len(squeezed) != 3:
        raise DataError(path, f"expected a 3D image, got shape {shape}")
    dtype = np.dtype(img.get_data_dtype())
    check_declared_size(img, Path(path), dtype)
    if dtype.kind not in "iuf":  # complex would lose its imaginary part silently; RGB cannot be cast at all
        kind = "RGB" if dtype.names else dtype.name
        raise DataError(path, f"voxel type {kind} is not an intensity; expected an integer or floating-point image")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(squeezed)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise DataError(path, f"corrupt or truncated image data ({_describe(exc)}); expected the whole file "
                              "(copy or download it again)") from None
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(path, f"affine is singular or not finite: {affine.tolist()}")
    if check_finite:
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise DataError(path, f"{bad} voxel(s) are NaN or Inf; expected finite intensities")
    return Volume(data=data, affine=affine, path=str(path))


def check_declared_size(img, path: Path, dtype: np.dtype) -> None:
    """Refuse a header whose declared voxels exceed the budget or the payload, before decoding any.

    A damaged or hostile header can declare 2048^3 voxels over a few kB; decoding it would try to
    allocate 32 GB. Beyond ``MAX_VOXELS`` nothing is read; a ``.nii`` must also hold ``vox_offset``
    plus the voxel bytes its header declares.
    """
    shape = tuple(int(s) for s in img.shape)
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise DataError(path, f"header declares {'x'.join(map(str, shape))} voxels ({voxels:.3g}), more than the "
                              f"{MAX_VOXELS:.3g} uda3d reads; expected a brain MRI (a damaged header?)")
    needed = int(img.header.get("vox_offset", 0)) + voxels * dtype.itemsize
    # .nii only: a .nii.gz's size says little (its trailer holds the size of the last gzip member,
    # and multi-member files are valid); a short .nii.gz fails in decoding, within the voxel budget
    if not path.name.endswith(".gz") and path.stat().st_size < needed:
        raise DataError(path, f"header declares {needed} bytes of image but the file holds {path.stat().st_size}; "
                              "expected the whole file (copy or download it again)")


AFFINE_TOLERANCE = 1e-3


def grid_mismatch(volume: Volume, reference: Volume) -> str | None:
    """Why ``volume`` is not on ``reference``'s voxel grid (shape, then affine), or None if it is."""
    ref_name = Path(reference.path).name
    if volume.shape != reference.shape:
        return (f"shape {volume.shape} differs from {ref_name} shape {reference.shape}; "
                "expected co-registered modalities")
    if not np.allclose(volume.affine, reference.affine, atol=AFFINE_TOLERANCE):
        return f"affine differs from {ref_name}; expected co-registered modalities"
    return None


def save_volume(
    path: str | Path, data: np.ndarray, affine: np.ndarray, dtype: np.dtype | type = np.float32,
    header=None,
) -> Path:
    """Write a 3D array as NIfTI atomically (temporary file, then rename).

    Args:
        path: destination ``.nii.gz`` or ``.nii``.
        data: 3D array.
        affine: 4x4 voxel-to-world matrix.
        dtype: on-disk dtype (BraTS stores int16 intensities and uint8 labels).
        header: optional header to copy (e.g. the input's, so a synthesized image overlays it).
    """
    import nibabel as nib

    path = Path(path)
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D array to write, got shape {data.shape}")
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), np.asarray(affine, dtype=np.float64), header)
    img.set_data_dtype(dtype)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_file(path) as tmp:
        staged = tmp.with_name(tmp.name + suffix)  # nibabel picks gzip from the file name
        try:
            nib.save(img, str(staged))
            staged.replace(tmp)
        finally:
            if staged.exists():
                staged.unlink()
    return path


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
