"""``uda3d synthesize``: write the missing T1 of one subject, on the subject's own voxel grid.

The generator works on reoriented (IPL), cropped, min-max scaled volumes; its output is put back
on the input grid by undoing the crop (``uncrop``) and the reorientation (``undo_reorient``), zeroed
outside the brain (the inputs are skull-stripped), and written with the FLAIR's affine and header so
it overlays the inputs in any viewer. The absolute T1 scale is unknowable without a T1, so the
model's [0, 1] output is stored times ``scale`` (default 1000) as float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uda3d.config import PreprocessConfig
from uda3d.data.layout import scan_subject
from uda3d.data.preprocess import preprocess_subject
from uda3d.data.transforms import uncrop, undo_reorient
from uda3d.errors import DataError
from uda3d.io.nifti import save_volume

SUFFIX = "_t1_synth.nii.gz"


def synthesize_subject(checkpoint: str | Path, subject_dir: str | Path, out: str | Path | None = None,
                       preprocess: PreprocessConfig | None = None, scale: float = 1000.0) -> Path:
    """Synthesize T1 for the subject in ``subject_dir``; returns the written file.

    Args:
        checkpoint: a backbone or adapted checkpoint (folder or ``state.pt``).
        subject_dir: a BraTS subject folder with ``*_flair`` and ``*_t2`` (T1 is not needed).
        out: output path (default ``<subject_dir>/<subject>_t1_synth.nii.gz``).
        preprocess: the preprocessing the model was trained with (default: the platform's).
        scale: multiplier for the [0, 1] output.
    """
    import nibabel as nib

    from uda3d.evaluation import load_generator

    folder = Path(subject_dir)
    if not folder.is_dir():
        raise DataError(folder, "subject folder not found")
    if scale <= 0:
        raise DataError(folder, f"--scale must be positive, got {scale}")
    preprocess = preprocess or PreprocessConfig()
    subject = scan_subject(folder, domain="", phase="")
    item = preprocess_subject(subject, preprocess)
    generator = load_generator(checkpoint)
    with torch.no_grad():
        output = generator(torch.from_numpy(item.inputs)[None])[0, 0].float().numpy()
    output = np.where(item.mask, output, 0.0)
    native = undo_reorient(uncrop(output, item.box), item.affine, preprocess.orientation)
    flair = nib.load(str(subject.files["flair"]))
    path = Path(out) if out is not None else folder / f"{subject.id}{SUFFIX}"
    header = flair.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    return save_volume(path, native * scale, flair.affine, dtype=np.float32, header=header)
