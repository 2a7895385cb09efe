"""MR signal equations and the tissue relaxation table the synthetic cohort renders with.

Pure functions of (PD, T1, T2) and the sequence timing, in milliseconds, so each one can be checked
against its closed form. Magnitude images, as scanners store them.

Relaxation values at 3 T (ms):
- WM T1 832, T2 80; GM T1 1331, T2 110: Wansapura et al., "NMR relaxation times in the human
  brain at 3.0 Tesla", J Magn Reson Imaging 9:531-538 (1999).
- CSF T1 4163: Lu et al., "Routine clinical brain MRI sequences for use at 3.0 Tesla", J Magn
  Reson Imaging 22:13-22 (2005); CSF T2 ~2000 ms (range reported 1500-2500).
- Tumour compartments (oedema, necrosis, enhancing rim) are approximate, chosen inside ranges
  reported for glioma at 3 T: oedema T1 ~1500 / T2 ~160, necrosis fluid-like T1 ~2500 / T2 ~400,
  viable tumour T1 ~1400 / T2 ~120. Gadolinium shortens T1 by 1/T1 = 1/T1_0 + r1 C with
  r1 = 4 /mM/s and C = 0.3 mM in the enhancing rim.
PD is relative to CSF = 1 (WM 0.69, GM 0.80: typical water content ratios).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """Proton density (relative), T1 and T2 (ms) of one tissue class."""

    pd: float
    t1: float
    t2: float


GADOLINIUM_R1_PER_MM_S = 4.0
GADOLINIUM_CONC_MM = 0.3

TISSUES: dict[str, Tissue] = {
    "csf": Tissue(pd=1.00, t1=4163.0, t2=2000.0),
    "gm": Tissue(pd=0.80, t1=1331.0, t2=110.0),
    "wm": Tissue(pd=0.69, t1=832.0, t2=80.0),
    "oedema": Tissue(pd=0.86, t1=1500.0, t2=160.0),
    "necrosis": Tissue(pd=0.95, t1=2500.0, t2=400.0),
    "enhancing": Tissue(pd=0.85, t1=1400.0, t2=120.0),
}


def spin_echo(pd, t1, t2, tr: float, te: float):
    """Spin-echo magnitude: S = PD (1 - exp(-TR/T1)) exp(-TE/T2)."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(pd, t1, t2, tr: float, te: float, ti: float):
    """Inversion-recovery spin-echo magnitude: S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2).

    FLAIR is this sequence with TI chosen to null CSF (``null_inversion_time``).
    """
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def null_inversion_time(t1: float, tr: float = float("inf")) -> float:
    """TI that nulls a tissue of longitudinal relaxation ``t1``: T1 ln(2 / (1 + exp(-TR/T1))).

    For TR >> T1 this is the textbook T1 ln 2.
    """
    return float(t1 * np.log(2.0 / (1.0 + np.exp(-tr / t1))))


def gadolinium_t1(t1: float, concentration_mm: float = GADOLINIUM_CONC_MM,
                  r1: float = GADOLINIUM_R1_PER_MM_S) -> float:
    """Post-contrast T1 (ms): 1/T1 = 1/T1_0 + r1 C, with r1 in /mM/s and C in mM."""
    return 1.0 / (1.0 / t1 + r1 * concentration_mm / 1000.0)
