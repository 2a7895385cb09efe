"""Arranging a BraTS-2019-style release into the two-site layout."""

from __future__ import annotations

import json

import pytest

from tests.helpers import fake_brats_release
from uda3d.cli import main
from uda3d.config import IngestConfig
from uda3d.data.ingest import ingest_brats, institution_of, split_ids
from uda3d.data.layout import discover
from uda3d.errors import ConfigError, DataError


@pytest.mark.parametrize("sid,site", [("BraTS19_CBICA_AAB_1", "CBICA"), ("BraTS19_TCIA01_131_1", "TCIA01"),
                                      ("BraTS19_2013_10_1", "2013"), ("BraTS19_TMC_06290_1", "TMC"),
                                      ("BraTS20_Training_001", "Training"), ("subject7", None)])
def test_institution_of(sid, site):
    assert institution_of(sid) == site


def test_split_is_a_deterministic_partition():
    ids = [f"s{i}" for i in range(10)]
    a = split_ids(ids, (0.6, 0.2, 0.2), seed=1)
    assert a == split_ids(ids, (0.6, 0.2, 0.2), seed=1)
    assert [len(a[p]) for p in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(sum(a.values(), [])) == sorted(ids)
    assert a != split_ids(ids, (0.6, 0.2, 0.2), seed=2)


def test_ingest_links_sites_into_domains_and_validates(tmp_path, tiny_cohort, capsys):
    src = fake_brats_release(tmp_path / "brats", tiny_cohort, {"CBICA": 5, "TCIA01": 3, "TCIA08": 2, "2013": 2})
    out = tmp_path / "uda"
    assert main(["ingest-brats", str(src), str(out), "--quiet"]) == 0
    splits = discover(out)
    ids = {name: [s.id for s in subjects] for name, subjects in splits.items()}
    assert sum(len(v) for k, v in ids.items() if k.startswith("domain1")) == 5
    assert all("CBICA" in i for k, v in ids.items() if k.startswith("domain1") for i in v)
    assert sum(len(v) for k, v in ids.items() if k.startswith("domain2")) == 5
    assert all("TCIA" in i for k, v in ids.items() if k.startswith("domain2") for i in v)
    assert (out / "domain1_train" / ids["domain1_train"][0]).is_symlink()
    assert json.loads((out / "ingest.json").read_text())["splits"] == ids
    assert main(["validate-data", str(out), "--quiet"]) == 0


def test_ingest_errors(tmp_path, tiny_cohort):
    src = fake_brats_release(tmp_path / "brats", tiny_cohort, {"CBICA": 4, "TCIA01": 2})
    with pytest.raises(DataError, match="site 'TCIA' has 2 subject\\(s\\); expected at least 3"):
        ingest_brats(src, tmp_path / "out", IngestConfig())
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="--source/--target"):
        IngestConfig(source="CBICA", target="cbica")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no subject folders"):
        ingest_brats(empty, tmp_path / "o2", IngestConfig())


def test_ids_without_institution_need_a_mapping(tmp_path, tiny_cohort):
    src = fake_brats_release(tmp_path / "brats", tiny_cohort, {"CBICA": 3, "TCIA01": 3})
    (src / "HGG" / "BraTS19_CBICA_000_1").rename(src / "HGG" / "anonymous7")
    with pytest.raises(DataError, match="no institution in the subject id"):
        ingest_brats(src, tmp_path / "out", IngestConfig())
    mapping = tmp_path / "map.csv"
    mapping.write_text("subject,site\nanonymous7,CBICA\n")
    membership = ingest_brats(src, tmp_path / "out", IngestConfig(), mapping=mapping)
    assert "anonymous7" in sum((v for k, v in membership.items() if k.startswith("domain1")), [])
