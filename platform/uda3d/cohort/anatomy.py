"""Subject anatomy in one shared atlas space, from the MNI152 tissue templates nilearn ships.

BraTS volumes are skull-stripped, co-registered to one template and resampled to 1 mm, so slice i
of one subject shows roughly the anatomy of slice i of another (docs/method.md section 0); the method's
latent comparison between different subjects relies on it. Each synthetic subject is therefore the
MNI152 GM/WM/brain-mask maps (nilearn 0.14, no download) seen through a *small* random transform:
a global scale near the size of an individual brain, a few degrees of rotation, a few mm of shift
and a smooth residual displacement. CSF is the brain mask minus GM and WM (the templates have no
CSF map). Resampling uses scipy's ``map_coordinates``. An atrophic population (``population.py``)
draws a smaller brain and lets CSF spread into the tissue next to it (scipy's ``gaussian_filter``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from uda3d.errors import ConfigError

# nilearn is a core dependency (see pyproject.toml); an environment built without it gets this line
NILEARN_INSTALL = "pip install 'nilearn>=0.14' (or reinstall uda3d: pip install -e .)"
# Field of view (mm) of a BraTS volume (240 x 240 x 155 at 1 mm), stored LPS like BraTS files.
BRATS_FOV_MM = (240.0, 240.0, 155.0)
BRAIN_CENTRE_MNI_MM = np.array([0.0, -17.0, 5.0])


@dataclass(frozen=True)
class TissueMaps:
    """Partial-volume fractions on the output grid; gm + wm + csf == brain (all in [0, 1])."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray


@functools.lru_cache(maxsize=2)
def mni_templates(resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNI152 (GM, WM, brain mask, affine) at 1 or 2 mm, as float32, GM/WM clipped to the mask."""
    try:
        from nilearn.datasets import (
            load_mni152_brain_mask,
            load_mni152_gm_template,
            load_mni152_wm_template,
        )
    except ImportError as exc:
        raise ConfigError("nilearn", f"cannot be imported ({exc}); the synthetic cohort renders its anatomy from "
                                     f"the MNI152 templates nilearn ships: {NILEARN_INSTALL}") from None

    mask_img = load_mni152_brain_mask(resolution=resolution)
    mask = (np.asarray(mask_img.get_fdata()) > 0).astype(np.float32)
    gm = np.asarray(load_mni152_gm_template(resolution=resolution).get_fdata(), np.float32) * mask
    wm = np.asarray(load_mni152_wm_template(resolution=resolution).get_fdata(), np.float32) * mask
    return gm, wm, mask, np.asarray(mask_img.affine, dtype=np.float64)


def grid_affine(shape: tuple[int, int, int], fov_mm: tuple[float, float, float] = BRATS_FOV_MM) -> np.ndarray:
    """LPS voxel-to-world affine of a grid covering the BraTS field of view, centred on the brain."""
    spacing = np.asarray(fov_mm, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    centre_vox = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = BRAIN_CENTRE_MNI_MM - affine[:3, :3] @ centre_vox
    return affine


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], control: int = 4) -> np.ndarray:
    """A smooth random field of unit std: Gaussian noise on a coarse grid, cubic-upsampled."""
    from scipy.ndimage import zoom

    coarse = rng.standard_normal((control,) * len(shape))
    field = zoom(coarse, [s / control for s in shape], order=3, mode="nearest")
    field = field[tuple(slice(0, s) for s in shape)]
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def subject_tissue_maps(
    rng: np.random.Generator, shape: tuple[int, int, int], affine: np.ndarray,
    deformation_mm: float = 2.0, brain_scale: tuple[float, float] = (0.86, 0.94),
    atrophy: tuple[float, float] = (0.0, 0.0),
) -> TissueMaps:
    """Resample the MNI152 tissue maps through a small random subject transform.

    Args:
        rng: the subject's generator (the maps are a deterministic function of its state).
        shape: output grid shape.
        affine: output voxel-to-world affine (``grid_affine``).
        deformation_mm: std of the smooth residual displacement.
        brain_scale: range of the global brain scale against MNI152.
        atrophy: range of the atrophy strength (``widen_csf``); (0, 0) draws nothing, so typical
            subjects are the same for a seed as before atrophy existed.
    """
    from scipy.ndimage import map_coordinates

    spacing = np.abs(np.diag(affine)[:3])
    resolution = 1 if spacing.min() < 1.5 else 2
    gm_t, wm_t, mask_t, affine_t = mni_templates(resolution)

    scale = rng.uniform(*brain_scale) * rng.uniform(0.98, 1.02, size=3)  # individual brain vs MNI
    rotation = _rotation(np.deg2rad(rng.uniform(-3.0, 3.0, size=3)))
    shift = rng.uniform(-3.0, 3.0, size=3)
    disp = np.stack([smooth_field(rng, shape) for _ in range(3)]) * deformation_mm

    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4] + disp.reshape(3, -1)
    # Subject space -> template space: undo shift, rotation and scale about the brain centre.
    centred = world - BRAIN_CENTRE_MNI_MM[:, None] - shift[:, None]
    template_world = (rotation.T @ centred) / scale[:, None] + BRAIN_CENTRE_MNI_MM[:, None]
    inv = np.linalg.inv(affine_t)
    coords = inv[:3, :3] @ template_world + inv[:3, 3:4]

    def sample(volume: np.ndarray) -> np.ndarray:
        out = map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
        return np.clip(out.reshape(shape), 0.0, 1.0).astype(np.float32)

    brain = sample(mask_t)
    gm = sample(gm_t)
    wm = np.minimum(sample(wm_t), np.clip(brain - gm, 0.0, 1.0))
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    maps = TissueMaps(gm=gm, wm=wm, csf=csf, brain=brain)
    if atrophy[1] > 0:
        maps = widen_csf(rng, maps, spacing, rng.uniform(*atrophy))
    return maps


def widen_csf(rng: np.random.Generator, tissues: TissueMaps, spacing_mm: np.ndarray, strength: float,
              reach_mm: float = 6.0) -> TissueMaps:
    """Atrophy: CSF spreads into the GM/WM next to it (wider sulci and ventricles).

    The new CSF fraction is the old one plus ``strength`` times a blurred copy of it (reach
    ``reach_mm``), modulated by a smooth field so atrophy is patchy; GM and WM shrink by the same
    factor where CSF grew, so gm + wm + csf == brain still holds and the brain outline stays put
    (its shrinking is the global scale's job).
    """
    from scipy.ndimage import gaussian_filter

    near_csf = gaussian_filter(tissues.csf, reach_mm / np.asarray(spacing_mm, dtype=np.float64), mode="constant")
    patchy = np.clip(1.0 + 0.3 * smooth_field(rng, tissues.brain.shape), 0.0, None)
    tissue = tissues.gm + tissues.wm
    target_csf = np.clip(tissues.csf + strength * patchy * near_csf, tissues.csf, tissues.brain)
    keep = np.clip(np.divide(tissues.brain - target_csf, tissue, out=np.zeros_like(tissue), where=tissue > 0),
                   0.0, 1.0)
    gm = (tissues.gm * keep).astype(np.float32)
    wm = (tissues.wm * keep).astype(np.float32)
    csf = np.clip(tissues.brain - gm - wm, 0.0, 1.0).astype(np.float32)
    return TissueMaps(gm=gm, wm=wm, csf=csf, brain=tissues.brain)
