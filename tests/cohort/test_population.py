"""A target site that shares site-a's protocol but scans another population (atrophy, larger tumours)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from uda3d.cli import main
from uda3d.cohort.generate import CohortConfig, render_subject, subject_anatomy, subject_rng
from uda3d.cohort.sites import SITES, get_site
from uda3d.errors import ConfigError

SHAPE = (32, 32, 32)
SEED = 7
N = 4


def _stats(site: str) -> dict[str, float]:
    """Mean brain fraction of the grid, CSF fraction of the brain and lesion voxels over N subjects."""
    rows = []
    for i in range(N):
        tissues, labels = subject_anatomy(subject_rng(SEED, site, i), SHAPE, get_site(site).population)
        np.testing.assert_allclose(tissues.gm + tissues.wm + tissues.csf, tissues.brain, atol=1e-5)
        assert all(0.0 <= m.min() and m.max() <= 1.0 for m in (tissues.gm, tissues.wm, tissues.csf))
        assert np.all(tissues.brain[labels > 0] > 0.5)
        rows.append((tissues.brain.mean(), tissues.csf.sum() / tissues.brain.sum(), float((labels > 0).sum())))
    brain, csf, lesion = np.mean(rows, axis=0)
    return {"brain": brain, "csf": csf, "lesion": lesion}


def test_atrophic_site_has_smaller_brains_more_csf_and_larger_lesions():
    typical, atrophic = _stats("site-a"), _stats("site-a-atrophy")
    assert atrophic["brain"] < 0.9 * typical["brain"], (typical, atrophic)
    assert atrophic["csf"] > 1.2 * typical["csf"], (typical, atrophic)
    assert atrophic["lesion"] > 1.2 * typical["lesion"], (typical, atrophic)


def test_atrophic_site_keeps_site_a_protocol():
    a, d = SITES["site-a"], SITES["site-a-atrophy"]
    assert (d.sequences, d.effects, d.scale) == (a.sequences, a.effects, a.scale)
    assert (a.population, d.population) == ("typical", "atrophic")
    assert d.tag not in {s.tag for name, s in SITES.items() if name != "site-a-atrophy"}


def test_unknown_population_is_refused():
    with pytest.raises(ConfigError) as err:
        replace(SITES["site-a"], population="elderly")
    assert err.value.field == "population"


# SHA-256 of render_subject(seed 7, 32^3) for typical sites, computed from the code BEFORE
# populations existed (git HEAD at the time): the typical path must stay bit-identical. The arrays
# depend on numpy/scipy/nilearn too, so a library upgrade may change these without a code change.
TYPICAL_SHA256 = {
    ("site-a", 0): "a7c6883b49f9fab886121b3b5d8245f7c27b000cd1acdbb2966a46f89181179c",
    ("site-b", 1): "b8b189720db7efafa2e22fdc09c452abb8a8966be315e57e6f0e6785348c1753",
}


@pytest.mark.parametrize("site,index", sorted(TYPICAL_SHA256))
def test_typical_sites_are_bit_identical_to_before(site, index):
    config = CohortConfig(sites=("site-a", "site-b"), subjects_per_site=3, shape=SHAPE, seed=SEED)
    volumes = render_subject(config, site, index)
    digest = hashlib.sha256()
    for key in sorted(volumes):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(volumes[key]).tobytes())
    assert digest.hexdigest() == TYPICAL_SHA256[(site, index)]


def test_cli_generates_site_a_with_its_atrophic_twin(tmp_path):
    root = tmp_path / "root"
    assert main(["cohort", str(root), "--sites", "site-a", "site-a-atrophy", "--subjects-per-site", "3",
                 "--shape", "16", "16", "16", "--quiet"]) == 0
    summary = json.loads((root / "cohort.json").read_text())
    assert summary["domains"] == {"domain1": "site-a", "domain2": "site-a-atrophy"}
    assert {k: v["population"] for k, v in summary["protocols"].items()} == {
        "site-a": "typical", "site-a-atrophy": "atrophic"}
    assert all(sid.startswith("SYN_D_") for k, ids in summary["splits"].items() if k.startswith("domain2")
               for sid in ids)
