"""A glioma-like lesion written as a BraTS label map (0 background, 1 necrosis, 2 oedema, 4 enhancing).

The lesion is an ellipsoid whose radius is perturbed by a smooth random field, so boundaries look
irregular: necrotic centre, enhancing rim, and oedema spreading further, confined to the brain.
"""

from __future__ import annotations

import numpy as np

from uda3d.cohort.anatomy import TissueMaps, smooth_field

NECROSIS, OEDEMA, ENHANCING = 1, 2, 4
BRATS_LABELS = (0, NECROSIS, OEDEMA, ENHANCING)


def tumour_labels(
    rng: np.random.Generator, tissues: TissueMaps, spacing_mm: np.ndarray
) -> np.ndarray:
    """Draw one lesion inside white matter and return its uint8 BraTS label map.

    Every compartment is at least a couple of voxels across at any grid size, so all four labels
    occur even on tiny test volumes.
    """
    shape = tissues.brain.shape
    candidates = np.argwhere((tissues.wm > 0.5) & (tissues.brain > 0.9))
    if len(candidates) == 0:
        candidates = np.argwhere(tissues.brain > 0.5)
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)

    radius_mm = max(rng.uniform(10.0, 18.0), 2.5 * float(spacing_mm.max()))
    radii_vox = radius_mm * rng.uniform(0.8, 1.2, size=3) / spacing_mm
    grid = np.indices(shape, dtype=np.float64)
    offsets = (grid - centre[:, None, None, None]) / radii_vox[:, None, None, None]
    distance = np.sqrt((offsets ** 2).sum(axis=0))
    distance = distance * (1.0 + 0.15 * smooth_field(rng, shape, control=5))

    labels = np.zeros(shape, dtype=np.uint8)
    inside_brain = tissues.brain > 0.5
    labels[(distance < 1.6) & inside_brain] = OEDEMA
    labels[(distance < 1.0) & inside_brain] = ENHANCING
    labels[(distance < 0.5) & inside_brain] = NECROSIS
    return labels
