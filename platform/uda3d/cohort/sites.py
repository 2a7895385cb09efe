"""Per-site acquisition protocols of the synthetic cohort.

A site is a scanner + protocol: sequence timings for each modality, and the acquisition effects
that make real multi-site MRI differ (a smooth bias field, Rician noise, thick-slice blur, the
stored intensity scale). The shift between sites sits mainly in the inputs (FLAIR, T2): the T1
protocol is the same everywhere, so a FLAIR+T2 -> T1 model trained on one site degrades on another
because its inputs changed, which is the domain-adaptation problem the platform addresses. One
site (``site-a-atrophy``) instead keeps site-a's protocol and changes its population (anatomy and
pathology, ``uda3d.cohort.population``), the other kind of shift a real target site brings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from uda3d.cohort.population import POPULATIONS
from uda3d.errors import ConfigError

MODALITIES = ("flair", "t1", "t1ce", "t2")


@dataclass(frozen=True)
class Sequence:
    """Timing of one sequence in ms; ``ti`` set means inversion recovery."""

    tr: float
    te: float
    ti: float | None = None


@dataclass(frozen=True)
class Effects:
    """Acquisition effects of one modality at one site.

    Attributes:
        bias: std of the log bias field (0 = flat).
        noise: Rician noise sigma as a fraction of the median brain signal.
        blur_mm: FWHM (mm) of the through-plane blur of thick-slice acquisitions (0 = none).
        blur_axis: array axis of that blur.
    """

    bias: float = 0.05
    noise: float = 0.02
    blur_mm: float = 0.0
    blur_axis: int = 2


@dataclass(frozen=True)
class SiteProtocol:
    """Everything that distinguishes one synthetic site: its protocol and who it scans.

    ``population`` names the subjects' anatomy and pathology (``uda3d.cohort.population``), so two
    sites can share a protocol exactly and differ only in their patients.
    """

    name: str
    sequences: dict[str, Sequence]
    effects: dict[str, Effects]
    scale: float = 1000.0
    tag: str = field(default="")
    population: str = "typical"

    def __post_init__(self) -> None:
        if self.population not in POPULATIONS:
            raise ConfigError("population", f"expected one of {sorted(POPULATIONS)}, got {self.population!r}")


_T1 = Sequence(tr=500.0, te=10.0)
_T1_EFFECTS = Effects(bias=0.05, noise=0.02)

SITES: dict[str, SiteProtocol] = {
    # Source-like: long TR, TI that nulls CSF, mild bias, low noise, isotropic.
    "site-a": SiteProtocol(
        name="site-a", tag="A", scale=1000.0,
        sequences={"t1": _T1, "t1ce": _T1, "t2": Sequence(tr=5000.0, te=100.0),
                   "flair": Sequence(tr=9000.0, te=120.0, ti=2432.0)},
        effects={"t1": _T1_EFFECTS, "t1ce": _T1_EFFECTS,
                 "t2": Effects(bias=0.05, noise=0.02), "flair": Effects(bias=0.05, noise=0.02)},
    ),
    # Target-like: shorter TE/TR (weaker T2 weighting), TI too short to null CSF, strong bias,
    # more noise, thick axial slices for T2 and FLAIR.
    "site-b": SiteProtocol(
        name="site-b", tag="B", scale=3000.0,
        sequences={"t1": _T1, "t1ce": _T1, "t2": Sequence(tr=2500.0, te=60.0),
                   "flair": Sequence(tr=6000.0, te=90.0, ti=1700.0)},
        effects={"t1": _T1_EFFECTS, "t1ce": _T1_EFFECTS,
                 "t2": Effects(bias=0.40, noise=0.03, blur_mm=6.0, blur_axis=2),
                 "flair": Effects(bias=0.40, noise=0.03, blur_mm=6.0, blur_axis=2)},
    ),
    # A third protocol: very long TE T2, long-TI FLAIR, moderate bias, coronal thick slices.
    "site-c": SiteProtocol(
        name="site-c", tag="C", scale=500.0,
        sequences={"t1": _T1, "t1ce": _T1, "t2": Sequence(tr=6000.0, te=130.0),
                   "flair": Sequence(tr=11000.0, te=140.0, ti=2800.0)},
        effects={"t1": _T1_EFFECTS, "t1ce": _T1_EFFECTS,
                 "t2": Effects(bias=0.18, noise=0.035, blur_mm=4.0, blur_axis=1),
                 "flair": Effects(bias=0.18, noise=0.035, blur_mm=4.0, blur_axis=1)},
    ),
}
# Site A's protocol exactly, in an older population: atrophied brains and larger, multifocal
# tumours. The shift from site-a is then anatomy and pathology only, never the acquisition.
SITES["site-a-atrophy"] = replace(SITES["site-a"], name="site-a-atrophy", tag="D", population="atrophic")


def get_site(name: str) -> SiteProtocol:
    """Look up a site protocol by name; an unknown name lists the known ones."""
    try:
        return SITES[name]
    except KeyError:
        raise ConfigError("--sites", f"unknown site {name!r}; expected one of {sorted(SITES)}") from None
