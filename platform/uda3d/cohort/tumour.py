"""Glioma-like lesions written as a BraTS label map (0 background, 1 necrosis, 2 oedema, 4 enhancing).

A lesion is an ellipsoid whose radius is perturbed by a smooth random field, so boundaries look
irregular: necrotic centre, enhancing rim, and oedema spreading further, confined to the brain.
A subject has one lesion, or several (a multifocal population, ``population.py``).
"""

from __future__ import annotations

import numpy as np

from uda3d.cohort.anatomy import TissueMaps, smooth_field

NECROSIS, OEDEMA, ENHANCING = 1, 2, 4
BRATS_LABELS = (0, NECROSIS, OEDEMA, ENHANCING)


def tumour_labels(
    rng: np.random.Generator, tissues: TissueMaps, spacing_mm: np.ndarray,
    lesions: tuple[int, int] = (1, 1), radius_mm: tuple[float, float] = (10.0, 18.0),
) -> np.ndarray:
    """Draw lesions inside white matter and return their uint8 BraTS label map.

    Every compartment is at least a couple of voxels across at any grid size, so all four labels
    occur even on tiny test volumes. ``lesions`` is the inclusive range of the lesion count; equal
    bounds draw no count, so the default single lesion is the same for a seed as it always was.
    Overlapping lesions merge: each voxel takes the compartment of the lesion it is deepest in.
    """
    shape = tissues.brain.shape
    candidates = np.argwhere((tissues.wm > 0.5) & (tissues.brain > 0.9))
    if len(candidates) == 0:
        candidates = np.argwhere(tissues.brain > 0.5)
    count = lesions[0] if lesions[0] == lesions[1] else int(rng.integers(lesions[0], lesions[1] + 1))
    grid = np.indices(shape, dtype=np.float64)
    distance = np.full(shape, np.inf)
    for _ in range(count):
        distance = np.minimum(distance, _lesion_distance(rng, candidates, grid, spacing_mm, radius_mm))

    labels = np.zeros(shape, dtype=np.uint8)
    inside_brain = tissues.brain > 0.5
    labels[(distance < 1.6) & inside_brain] = OEDEMA
    labels[(distance < 1.0) & inside_brain] = ENHANCING
    labels[(distance < 0.5) & inside_brain] = NECROSIS
    return labels


def _lesion_distance(rng: np.random.Generator, candidates: np.ndarray, grid: np.ndarray, spacing_mm: np.ndarray,
                     radius_range: tuple[float, float]) -> np.ndarray:
    """Normalised distance from one irregular ellipsoidal lesion (1 = its nominal surface)."""
    shape = grid.shape[1:]
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    radius_mm = max(rng.uniform(*radius_range), 2.5 * float(spacing_mm.max()))
    radii_vox = radius_mm * rng.uniform(0.8, 1.2, size=3) / spacing_mm
    offsets = (grid - centre[:, None, None, None]) / radii_vox[:, None, None, None]
    distance = np.sqrt((offsets ** 2).sum(axis=0))
    return distance * (1.0 + 0.15 * smooth_field(rng, shape, control=5))
