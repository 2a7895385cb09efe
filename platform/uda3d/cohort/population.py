"""Who is scanned at a site: the anatomy and pathology of its subjects, apart from the protocol.

Real target sites differ not only in scanner and protocol but in the patients they see: an older
population has atrophied brains (smaller, with wider sulci and ventricles) and a referral centre
sees larger or multifocal tumours. A ``Population`` holds the ranges the cohort generator draws
those from, so a site can share another site's protocol exactly and differ only in anatomy and
pathology. The ``typical`` ranges are the generator's original ones, so typical sites stay
bit-identical for a seed; the atrophic branch is the only one that draws extra random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Population:
    """Ranges (low, high) a subject's anatomy and lesions are drawn from.

    Attributes:
        brain_scale: global scale of the brain against MNI152 (volume goes with its cube).
        atrophy: strength of the CSF widening into GM/WM (0 = none; no random draw at all then).
        lesions: number of lesions (inclusive; equal bounds draw nothing).
        radius_mm: lesion radius.
    """

    brain_scale: tuple[float, float] = (0.86, 0.94)
    atrophy: tuple[float, float] = (0.0, 0.0)
    lesions: tuple[int, int] = (1, 1)
    radius_mm: tuple[float, float] = (10.0, 18.0)


POPULATIONS: dict[str, Population] = {
    "typical": Population(),
    # Older, atrophied brains (~25 % less volume, CSF spreading into the tissue next to it) with
    # larger, often multifocal tumours.
    "atrophic": Population(brain_scale=(0.79, 0.86), atrophy=(0.5, 0.9), lesions=(1, 3), radius_mm=(15.0, 26.0)),
}
