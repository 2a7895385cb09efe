"""Render one subject's four modalities from tissue maps, lesion labels and a site protocol.

Order follows the physics of an acquisition: per-tissue signal equations mixed by partial-volume
fractions, a multiplicative coil bias field, thick-slice blur, Rician noise (magnitude of complex
Gaussian noise), skull stripping to the brain mask, then the site's stored intensity scale.
"""

from __future__ import annotations

import numpy as np

from uda3d.cohort.anatomy import TissueMaps, smooth_field
from uda3d.cohort.signal import TISSUES, Tissue, gadolinium_t1, inversion_recovery, spin_echo
from uda3d.cohort.sites import MODALITIES, Sequence, SiteProtocol
from uda3d.cohort.tumour import ENHANCING, NECROSIS, OEDEMA

_LESION_TISSUE = {NECROSIS: "necrosis", OEDEMA: "oedema", ENHANCING: "enhancing"}


def tissue_fractions(tissues: TissueMaps, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Partial-volume fraction of every tissue class; lesion voxels are pure lesion tissue."""
    fractions = {"gm": tissues.gm.copy(), "wm": tissues.wm.copy(), "csf": tissues.csf.copy()}
    lesion = labels > 0
    for name in fractions:
        fractions[name][lesion] = 0.0
    for label, name in _LESION_TISSUE.items():
        fractions[name] = np.where(labels == label, tissues.brain, 0.0).astype(np.float32)
    return fractions


def tissue_signal(tissue: Tissue, sequence: Sequence) -> float:
    """Signal of a pure tissue under a sequence (spin echo, or inversion recovery if TI is set)."""
    if sequence.ti is None:
        return float(spin_echo(tissue.pd, tissue.t1, tissue.t2, sequence.tr, sequence.te))
    return float(inversion_recovery(tissue.pd, tissue.t1, tissue.t2, sequence.tr, sequence.te, sequence.ti))


def subject_tissues(rng: np.random.Generator, jitter: float = 0.03) -> dict[str, Tissue]:
    """Per-subject relaxation times: the table's values times U(1 - jitter, 1 + jitter)."""
    out = {}
    for name, t in TISSUES.items():
        f1, f2 = rng.uniform(1.0 - jitter, 1.0 + jitter, size=2)
        out[name] = Tissue(pd=t.pd, t1=t.t1 * f1, t2=t.t2 * f2)
    return out


def render_modalities(
    rng: np.random.Generator, tissues: TissueMaps, labels: np.ndarray, site: SiteProtocol,
    spacing_mm: np.ndarray,
) -> dict[str, np.ndarray]:
    """Return ``{modality: float32 volume}`` in the site's stored intensity scale, 0 outside the brain."""
    from scipy.ndimage import gaussian_filter1d

    fractions = tissue_fractions(tissues, labels)
    relax = subject_tissues(rng)
    bias_pattern = smooth_field(rng, labels.shape, control=3)
    brain = tissues.brain > 0.5
    out: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        seq = site.sequences[modality]
        fx = site.effects[modality]
        image = np.zeros(labels.shape, dtype=np.float64)
        for name, frac in fractions.items():
            tissue = relax[name]
            if modality == "t1ce" and name == "enhancing":
                tissue = Tissue(tissue.pd, gadolinium_t1(tissue.t1), tissue.t2)
            image += frac * tissue_signal(tissue, seq)
        image *= np.exp(fx.bias * bias_pattern)
        if fx.blur_mm > 0:
            sigma = fx.blur_mm / 2.3548 / float(spacing_mm[fx.blur_axis])
            image = gaussian_filter1d(image, sigma, axis=fx.blur_axis, mode="constant")
        sigma_n = fx.noise * float(np.median(image[brain]))
        real = image + sigma_n * rng.standard_normal(image.shape)
        imag = sigma_n * rng.standard_normal(image.shape)
        image = np.sqrt(real ** 2 + imag ** 2) * brain
        ref = float(np.percentile(image[brain], 99.5))
        image *= site.scale * rng.uniform(0.9, 1.1) / (ref if ref > 0 else 1.0)
        out[modality] = image.astype(np.float32)
    return out
