"""Ray Train's overhead over a plain PyTorch loop: same model, data and epochs, measured in one run.

Runs the backbone loop (``fit_backbone``) twice on a synthetic cohort: directly in this process,
then under Ray Train with one worker (DDP wrapper, distributed sampler, a checkpoint and a
``ray.train.report`` per epoch). "Once started" compares the loop's own wall time (``fit_elapsed_s``
at the last report), excluding Ray's start-up, which is printed separately. The last line ends with
the ratio. Goal: <= 1.10.

    python benchmarks/ray_overhead.py [--shape 64 64 64] [--epochs 3] [--ngf 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import BackboneConfig, PreprocessConfig, ScalingOptions, StageRun
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.data.prepare import preprocess_root
from uda3d.training.backbone_stage import BackboneSpec, run_backbone
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--subjects", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ngf", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a Ray worker with 1 CPU gets one intra-op thread; match it

    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "cohort", Path(tmp) / "work"
        generate_cohort(root, CohortConfig(sites=("site-a",), subjects_per_site=args.subjects,
                                           shape=tuple(args.shape)), progress=False)
        config = BackboneConfig(ngf=args.ngf, ndf=args.ngf, epochs=args.epochs, epochs_decay=0, seed=0)
        pre = PreprocessConfig()
        splits = ("domain1_train", "domain1_val")
        preprocess_root(root, pre, work / "cache", splits=splits, progress=False)
        subjects = discover(root, splits)
        train = paired_dataset(subjects["domain1_train"], pre, work / "cache")
        val = paired_dataset(subjects["domain1_val"], pre, work / "cache")

        trainer = Pix2PixTrainer(config, torch.device("cpu"))
        history: list[dict] = []
        fit_backbone(trainer, lambda e: DataLoader(train, batch_size=1, shuffle=True),
                     lambda: DataLoader(val, batch_size=1), history.append)
        plain = history[-1]["fit_elapsed_s"]

        start = time.perf_counter()
        stage = StageRun(dataroot=str(root), workdir=str(work), preprocess=pre, scaling=ScalingOptions(num_workers=1),
                         run_name="backbone", progress=False)
        result = run_backbone(BackboneSpec(stage=stage, backbone=config))
        total = time.perf_counter() - start
        ray_loop = result.metrics["fit_elapsed_s"]
        print(f"{len(train)} training volumes of {tuple(train[0]['input'].shape)}, {args.epochs} epochs, "
              f"SIT ngf={args.ngf}, CPU")
        print(f"plain PyTorch loop: {plain:.2f} s")
        print(f"Ray Train, 1 worker: {ray_loop:.2f} s in the loop, {total:.2f} s including Ray start-up")
        print(f"Ray Train / plain loop once started: {ray_loop / plain:.3f}")


if __name__ == "__main__":
    main()
