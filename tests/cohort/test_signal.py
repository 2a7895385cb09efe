"""Signal equations against their closed forms, and the site protocols against the physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uda3d.cohort.render import tissue_signal
from uda3d.cohort.signal import (
    TISSUES,
    gadolinium_t1,
    inversion_recovery,
    null_inversion_time,
    spin_echo,
)
from uda3d.cohort.sites import SITES


@pytest.mark.parametrize("pd,t1,t2,tr,te", [(1.0, 1000.0, 100.0, 500.0, 10.0), (0.7, 832.0, 80.0, 5000.0, 100.0)])
def test_spin_echo_closed_form(pd, t1, t2, tr, te):
    expected = pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2)
    assert spin_echo(pd, t1, t2, tr, te) == pytest.approx(expected, rel=1e-12)


def test_spin_echo_limits_are_proton_density():
    assert spin_echo(0.8, 1331.0, 110.0, tr=1e9, te=0.0) == pytest.approx(0.8, rel=1e-12)


def test_flair_nulls_csf_at_t1_ln2():
    t1_csf = TISSUES["csf"].t1
    ti = t1_csf * math.log(2)
    assert null_inversion_time(t1_csf) == pytest.approx(ti, rel=1e-12)
    signal = inversion_recovery(1.0, t1_csf, TISSUES["csf"].t2, tr=float("inf"), te=0.0, ti=ti)
    assert abs(signal) < 1e-12
    # A tissue of different T1 is not nulled at that TI.
    assert inversion_recovery(1.0, TISSUES["wm"].t1, 80.0, tr=float("inf"), te=0.0, ti=ti) > 0.3


def test_finite_tr_null_time_nulls_exactly():
    t1, tr = 4163.0, 9000.0
    ti = null_inversion_time(t1, tr)
    assert ti == pytest.approx(t1 * math.log(2 / (1 + math.exp(-tr / t1))), rel=1e-12)
    assert abs(inversion_recovery(1.0, t1, 2000.0, tr, 100.0, ti)) < 1e-12


def test_source_site_flair_is_tuned_to_null_csf():
    seq = SITES["site-a"].sequences["flair"]
    assert seq.ti == pytest.approx(null_inversion_time(TISSUES["csf"].t1, seq.tr), abs=1.0)
    csf = tissue_signal(TISSUES["csf"], seq)
    wm = tissue_signal(TISSUES["wm"], seq)
    assert csf < 0.01 * wm


def test_target_site_flair_leaves_csf_signal():
    seq = SITES["site-b"].sequences["flair"]
    assert tissue_signal(TISSUES["csf"], seq) > 0.1 * tissue_signal(TISSUES["wm"], seq)


def test_contrast_orderings():
    t1w, t2w = SITES["site-a"].sequences["t1"], SITES["site-a"].sequences["t2"]
    s = {k: (tissue_signal(TISSUES[k], t1w), tissue_signal(TISSUES[k], t2w)) for k in ("wm", "gm", "csf")}
    assert s["wm"][0] > s["gm"][0] > s["csf"][0]  # T1-weighted: WM bright, CSF dark
    assert s["csf"][1] > s["gm"][1] > s["wm"][1]  # T2-weighted: CSF bright


def test_gadolinium_shortens_t1_by_r1_c():
    t1 = 1400.0
    expected = 1 / (1 / t1 + 4.0 * 0.3 / 1000.0)
    assert gadolinium_t1(t1) == pytest.approx(expected, rel=1e-12)
    assert gadolinium_t1(t1, concentration_mm=0.0) == pytest.approx(t1)


def test_signal_functions_broadcast_over_arrays():
    t1 = np.array([832.0, 1331.0, 4163.0])
    out = spin_echo(1.0, t1, 100.0, 500.0, 10.0)
    assert out.shape == (3,) and np.all(np.diff(out) < 0)
