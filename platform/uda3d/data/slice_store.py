"""The T1 slice store: Parquet shards of normalised slices plus a JSON manifest.

pyarrow writes the shards (one row group per volume, rows ordered by volume then slice), so Ray
Data reads them with ``ray.data.read_parquet`` for training and plain pyarrow reads them in tests
and tools. Columns: ``volume_index`` (int32), ``subject``, ``site``, ``split`` (strings),
``slice_index`` (int16), ``shape`` (2 x int32), ``slice`` (fixed-size list of float32, row-major).
The manifest records the configs, the volumes and each shard's SHA-256, so a store is
self-describing and a damaged shard is detected. The whole store is written to a temporary
folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uda3d.config import PreprocessConfig, SliceConfig, from_dict
from uda3d.data.layout import discover
from uda3d.data.preprocess import load_subject
from uda3d.data.slices import volume_to_slices
from uda3d.errors import DataError
from uda3d.io.atomic import atomic_dir, atomic_file

MANIFEST = "manifest.json"
STORE_VERSION = 1


@dataclass(frozen=True)
class SliceStore:
    """A written store: where it is and what its manifest says."""

    path: Path
    manifest: dict[str, Any]

    @property
    def slice_config(self) -> SliceConfig:
        return from_dict(SliceConfig, self.manifest["slice_config"])

    @property
    def slices_per_volume(self) -> int:
        return int(self.manifest["slices_per_volume"])

    @property
    def volumes(self) -> list[dict[str, Any]]:
        return self.manifest["volumes"]

    @property
    def shard_paths(self) -> list[str]:
        """Absolute: Ray Data reads them in other processes, whose working folder may differ from ours."""
        return [str((self.path / s["file"]).resolve()) for s in self.manifest["shards"]]


def _schema(size: int):
    import pyarrow as pa

    return pa.schema([("volume_index", pa.int32()), ("subject", pa.string()), ("site", pa.string()),
                      ("split", pa.string()), ("slice_index", pa.int16()), ("shape", pa.list_(pa.int32(), 2)),
                      ("slice", pa.list_(pa.float32(), size * size))])


def volume_table(volume_index: int, subject: str, site: str, split: str, slices: np.ndarray):
    """One volume's (S, size, size) slices as an Arrow table in store schema."""
    import pyarrow as pa

    n, h, w = slices.shape
    flat = pa.array(np.ascontiguousarray(slices, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.table({
        "volume_index": pa.array(np.full(n, volume_index, np.int32)),
        "subject": pa.array([subject] * n), "site": pa.array([site] * n), "split": pa.array([split] * n),
        "slice_index": pa.array(np.arange(n, dtype=np.int16)),
        "shape": pa.array([[h, w]] * n, type=pa.list_(pa.int32(), 2)),
        "slice": pa.FixedSizeListArray.from_arrays(flat, h * w),
    }, schema=_schema(h))


def write_slice_store(root: str | Path, splits: tuple[str, ...], out: str | Path, preprocess: PreprocessConfig,
                      slice_config: SliceConfig, cache_dir: str | Path | None = None, volumes_per_shard: int = 4,
                      overwrite: bool = False, progress: bool = True) -> SliceStore:
    """Slice the T1 of every labelled subject in ``splits`` of ``root`` into a Parquet store at ``out``."""
    import pyarrow.parquet as pq

    from uda3d.progress import progress as progress_bar

    found = discover(root, splits)
    subjects = [s for name in splits for s in found[name] if s.has_target]
    if not subjects:
        raise DataError(Path(root), f"no subject with a T1 in {list(splits)}; the slice VAE learns from T1")
    volumes, shards = [], []
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        batch = []
        for index, subject in enumerate(progress_bar(subjects, desc="slices", unit="volume", disable=not progress)):
            item = load_subject(subject, preprocess, cache_dir)
            slices = volume_to_slices(torch.from_numpy(item.target[0]), slice_config)[:, 0].numpy()
            batch.append(volume_table(index, subject.id, subject.domain, subject.split, slices))
            volumes.append({"volume_index": index, "subject": subject.id, "site": subject.domain,
                            "split": subject.split, "shard": len(shards)})
            if len(batch) == volumes_per_shard or index == len(subjects) - 1:
                import pyarrow as pa

                name = f"part-{len(shards):05d}.parquet"
                pq.write_table(pa.concat_tables(batch), tmp / name, row_group_size=slice_config.size)
                digest = hashlib.sha256((tmp / name).read_bytes()).hexdigest()
                shards.append({"file": name, "volumes": len(batch), "sha256": digest})
                batch = []
        manifest = {"version": STORE_VERSION, "root": str(Path(root).resolve()), "splits": list(splits),
                    "preprocess": asdict(preprocess), "slice_config": asdict(slice_config),
                    "slices_per_volume": slice_config.size, "slice_shape": [slice_config.size] * 2,
                    "rows": len(volumes) * slice_config.size, "volumes": volumes, "shards": shards}
        with atomic_file(tmp / MANIFEST) as staged:
            staged.write_text(json.dumps(manifest, indent=2) + "\n")
    return SliceStore(out, manifest)


def open_slice_store(path: str | Path, verify: bool = False) -> SliceStore:
    """Read a store's manifest (and, with ``verify``, check every shard's checksum)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataError(path, f"not a slice store (no {MANIFEST}); build one with 'uda3d slices'")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(manifest_path, f"manifest is not valid JSON ({exc.msg})") from None
    if manifest.get("version") != STORE_VERSION:
        raise DataError(manifest_path, f"store version {manifest.get('version')}; expected {STORE_VERSION}")
    store = SliceStore(path, manifest)
    for shard, file in zip(manifest["shards"], store.shard_paths):
        if not Path(file).is_file():
            raise DataError(file, "shard listed in the manifest is missing")
        if verify and hashlib.sha256(Path(file).read_bytes()).hexdigest() != shard["sha256"]:
            raise DataError(file, "shard checksum does not match the manifest (damaged or modified)")
    return store


def read_slices(store: SliceStore) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All slices as an (N, size, size) float32 array plus per-row metadata, with plain pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(p) for p in store.shard_paths])
    size = store.slice_config.size
    values = table.column("slice").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    meta = table.drop_columns(["slice"]).to_pylist()
    return values.reshape(-1, size, size).astype(np.float32, copy=False), meta


def rank_volumes(n_volumes: int, world_size: int, rank: int) -> list[int]:
    """Volumes a rank trains on: ``rank, rank + W, ...`` (whole volumes, never split across ranks)."""
    return list(range(rank, n_volumes, world_size))


def steps_per_epoch(n_volumes: int, world_size: int) -> int:
    """Every rank takes this many steps (ranks with fewer volumes repeat their first ones), so DDP never waits."""
    return -(-n_volumes // world_size)
