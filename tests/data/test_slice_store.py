"""Slice extraction and the Parquet slice store: exact round trips, manifest, errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from uda3d.cli import main
from uda3d.config import PreprocessConfig, SliceConfig
from uda3d.data.layout import discover
from uda3d.data.preprocess import load_subject
from uda3d.data.slice_store import open_slice_store, rank_volumes, read_slices, steps_per_epoch, write_slice_store
from uda3d.data.slices import pad_to_cube, percentile, volume_to_slices
from uda3d.errors import ConfigError, DataError

SPLITS = ("domain1_train", "domain1_val")


def test_percentile_matches_numpy():
    x = torch.rand(7, 9, 11) ** 3
    for q in (0.0, 1.0, 37.5, 99.0, 100.0):
        assert float(percentile(x, q)) == pytest.approx(float(np.percentile(x.numpy(), q)), rel=1e-6)


def test_pad_to_cube_centres_and_crops():
    x = torch.arange(2 * 3 * 40, dtype=torch.float32).reshape(2, 3, 40)
    cube = pad_to_cube(x, 8)
    assert cube.shape == (8, 8, 8)
    np.testing.assert_array_equal(cube[3:5, 2:5, :].numpy(), x[:, :, 16:24].numpy())
    assert float(cube.sum()) == float(x[:, :, 16:24].sum())


@pytest.mark.parametrize("plane,axis", [("coronal", 1), ("axial", 0), ("sagittal", 2)])
def test_slices_match_slicing_the_array_directly(plane, axis):
    volume = np.random.default_rng(0).random((12, 14, 10)).astype(np.float32)
    config = SliceConfig(size=16, plane=plane)
    slices = volume_to_slices(torch.from_numpy(volume), config)
    cube = np.zeros((16, 16, 16), np.float32)
    cube[2:14, 1:15, 3:13] = volume
    lo, hi = np.percentile(cube, [1, 99])
    expected = np.moveaxis(np.clip((cube - lo) / (hi - lo), 0, 1), axis, 0)
    assert slices.shape == (16, 1, 16, 16)
    np.testing.assert_allclose(slices[:, 0].numpy(), expected, atol=1e-6)
    i = 7
    np.testing.assert_allclose(slices[i, 0].numpy(), np.take(np.clip((cube - lo) / (hi - lo), 0, 1), i, axis=axis),
                               atol=1e-6)


def test_slicing_is_differentiable():
    volume = torch.rand(10, 12, 8, requires_grad=True)
    volume_to_slices(volume, SliceConfig(size=16)).sum().backward()
    assert volume.grad is not None and float(volume.grad.abs().sum()) > 0


@pytest.fixture(scope="module")
def store(tiny_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("slices")
    return write_slice_store(tiny_cohort, SPLITS, base / "store", PreprocessConfig(), SliceConfig(size=32),
                             cache_dir=base / "cache", volumes_per_shard=2, progress=False)


def test_store_round_trip_is_exact(store, tiny_cohort):
    slices, meta = read_slices(store)
    subjects = [s for name in SPLITS for s in discover(tiny_cohort, SPLITS)[name]]
    assert len(store.volumes) == len(subjects) == 3 and len(slices) == 3 * 32
    # Order: volume by volume, slice index ascending, with the metadata of each row.
    assert [m["volume_index"] for m in meta] == [v for v in range(3) for _ in range(32)]
    assert [m["slice_index"] for m in meta] == list(range(32)) * 3
    assert [m["subject"] for m in meta[::32]] == [s.id for s in subjects]
    assert {m["split"] for m in meta} == set(SPLITS) and {m["site"] for m in meta} == {"domain1"}
    assert all(m["shape"] == [32, 32] for m in meta)
    for v, subject in enumerate(subjects):
        t1 = load_subject(subject, PreprocessConfig(), None).target[0]
        expected = volume_to_slices(torch.from_numpy(t1), SliceConfig(size=32))[:, 0].numpy()
        np.testing.assert_array_equal(slices[v * 32:(v + 1) * 32], expected)  # bit-exact float32


def test_store_schema_and_manifest(store):
    table = pq.read_table(store.shard_paths[0])
    assert table.schema.field("slice").type.list_size == 32 * 32
    assert str(table.schema.field("slice").type.value_type) == "float"
    assert pq.ParquetFile(store.shard_paths[0]).metadata.num_row_groups == 2  # one row group per volume
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["slices_per_volume"] == 32 and manifest["rows"] == 96
    assert [s["volumes"] for s in manifest["shards"]] == [2, 1]
    assert open_slice_store(store.path, verify=True).manifest == manifest


def test_store_is_readable_by_ray_data(local_ray, store):
    import ray

    rows = ray.data.read_parquet(store.shard_paths).take_all()
    assert len(rows) == 96
    rows.sort(key=lambda r: (r["volume_index"], r["slice_index"]))  # Ray Data may reorder blocks
    via_ray = np.stack([np.asarray(r["slice"]) for r in rows]).reshape(96, 32, 32)
    np.testing.assert_array_equal(via_ray, read_slices(store)[0])


def test_damaged_or_missing_store(store, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store.path, copy)
    shard = copy / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="checksum does not match"):
        open_slice_store(copy, verify=True)
    shard.unlink()
    with pytest.raises(DataError, match="missing"):
        open_slice_store(copy)
    with pytest.raises(DataError, match="not a slice store"):
        open_slice_store(tmp_path)


def test_slices_cli_and_errors(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["slices", str(tiny_cohort), "--out", str(out), "--slice-size", "32", "--quiet"]) == 0
    assert "wrote 3 volumes x 32 slices of [32, 32]" in capsys.readouterr().out
    code = main(["slices", str(tiny_cohort), "--out", str(tmp_path / "x"), "--slice-size", "48", "--quiet"])
    assert code == 2 and "power of two" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    code = main(["slices", str(tiny_cohort), "--out", str(tmp_path / "y"), "--domain", "domain7", "--quiet"])
    assert code == 2 and "domain7_train: split folder not found" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        SliceConfig(plane="oblique")


def test_volumes_are_dealt_whole_and_steps_are_equal():
    assert [rank_volumes(5, 2, r) for r in (0, 1)] == [[0, 2, 4], [1, 3]]
    assert steps_per_epoch(5, 2) == 3 and steps_per_epoch(4, 2) == 2
    assert sorted(sum((rank_volumes(7, 3, r) for r in range(3)), [])) == list(range(7))
