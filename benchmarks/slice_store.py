"""Reading training slices: Parquet slice store through Ray Data vs slicing straight from ``.nii.gz``.

Builds a synthetic cohort and its slice store, then, in this one process, times one full pass over
the same training slices three ways: (1) decode each T1 ``.nii.gz``, preprocess and slice it (what
training would do without a store), (2) plain pyarrow over the store, (3) Ray Data
(``read_parquet`` + ``iter_batches`` of one volume) as the VAE workers read it. Ray's start-up is
excluded. The last line ends with the Ray Data / NIfTI throughput ratio.

    python benchmarks/slice_store.py [--shape 160 160 104] [--subjects 8] [--slice-size 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import PreprocessConfig, SliceConfig
from uda3d.data.layout import discover
from uda3d.data.preprocess import preprocess_subject
from uda3d.data.slice_store import read_slices, write_slice_store
from uda3d.data.slices import volume_to_slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 160, 104])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--slice-size", type=int, default=128)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cohort"
        generate_cohort(root, CohortConfig(sites=("site-a",), subjects_per_site=args.subjects,
                                           shape=tuple(args.shape)), progress=False)
        pre, cfg = PreprocessConfig(), SliceConfig(size=args.slice_size)
        store = write_slice_store(root, ("domain1_train",), Path(tmp) / "store", pre, cfg, progress=False)
        subjects = discover(root, ("domain1_train",))["domain1_train"]
        n_slices = len(subjects) * cfg.size

        start = time.perf_counter()
        for s in subjects:
            volume_to_slices(torch.from_numpy(preprocess_subject(s, pre).target[0]), cfg)
        nifti = time.perf_counter() - start

        start = time.perf_counter()
        slices, _ = read_slices(store)
        arrow = time.perf_counter() - start
        assert len(slices) == n_slices

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        start = time.perf_counter()
        rows = 0
        for batch in ray.data.read_parquet(store.shard_paths).select_columns(["slice"]).iter_batches(
                batch_size=cfg.size, batch_format="numpy"):
            rows += len(batch["slice"])
        raydata = time.perf_counter() - start
        ray.shutdown()
        assert rows == n_slices

        print(f"{len(subjects)} volumes of {tuple(args.shape)}, {n_slices} slices of {cfg.size}x{cfg.size}")
        for name, seconds in (("nii.gz decode + preprocess + slice", nifti), ("Parquet, pyarrow", arrow),
                              ("Parquet, Ray Data", raydata)):
            print(f"{name:<36} {seconds:7.3f} s  {n_slices / seconds:9.0f} slices/s")
        print(f"Ray Data / nii.gz throughput: {nifti / raydata:.2f}")


if __name__ == "__main__":
    main()
