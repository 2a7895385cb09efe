"""Which crop window should be the default: one centred on each brain, or the method's fixed one?

On ``compare_methods.py``'s development cohort only (site-c -> site-b, generator seed 11; the
report cohort is never used to choose a default): the same backbone budget trained with
``--crop brain`` and with ``--crop fixed``, 2 seeds each, scored on the 8 target-test subjects and
the 8 source-test subjects (brain PSNR/SSIM, each seed's model scored on its own crop, subjects as
the unit: seeds averaged per subject, then a paired Wilcoxon test over subjects). Writes
``benchmarks/results/crop_modes.md``.

    python benchmarks/crop_modes.py [--seeds 2] [--workdir /tmp/uda3d-compare]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from compare_methods import BACKBONE, make_cohorts, write_results  # noqa: E402

from uda3d.config import PreprocessConfig  # noqa: E402
from uda3d.data.in_memory import load_data  # noqa: E402
from uda3d.evaluation import score  # noqa: E402
from uda3d.metrics.summary import paired_wilcoxon  # noqa: E402
from uda3d.training.pix2pix import (
    Pix2PixTrainer,  # noqa: E402
    fit_backbone,  # noqa: E402
)

SPLITS = ("domain1_train", "domain1_test", "domain2_test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uda3d-compare"))
    args = parser.parse_args()
    start = time.perf_counter()
    [root] = make_cohorts("dev", args.workdir / "dev")
    per: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    for mode in ("brain", "fixed"):
        data = load_data(str(root), PreprocessConfig(crop=mode), args.workdir / "crop-cache", SPLITS, (), "crop")
        for seed in range(args.seeds):
            trainer = Pix2PixTrainer.from_state(dataclasses.replace(BACKBONE, seed=seed))
            fit_backbone(trainer, lambda e, d=data, s=seed: d.batches("domain1_train", s * 1000 + e), None,
                         lambda m: None)
            for split in ("domain2_test", "domain1_test"):
                for subject, metrics in score(trainer.generator, data.items[split])[1].items():
                    per.setdefault(split, {}).setdefault(mode, {}).setdefault(subject, []).append(metrics)
            print(f"{mode} seed {seed} done ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    lines = ["# Crop window: centred on the brain vs the method's fixed window (development cohort)", "",
             f"Backbone {BACKBONE.ngf} ngf, {BACKBONE.total_epochs} epochs, {args.seeds} seeds; per subject the "
             "seed mean; Wilcoxon over subjects (fixed - brain).", "",
             "| split | metric | brain | fixed | fixed - brain | p | n |", "|---|---|---|---|---|---|---|"]
    for split, modes in per.items():
        for metric in ("psnr", "ssim"):
            means = {mode: {s: sum(m[metric] for m in runs) / len(runs) for s, runs in subjects.items()}
                     for mode, subjects in modes.items()}
            test = paired_wilcoxon(means["fixed"], means["brain"])
            avg = {mode: sum(v.values()) / len(v) for mode, v in means.items()}
            lines.append(f"| {split} | {metric} | {avg['brain']:.3f} | {avg['fixed']:.3f} | "
                         f"{test['mean_difference']:+.3f} | {test['p_value']:.3g} | {test['n']} |")
    lines += ["", f"Wall time {(time.perf_counter() - start) / 60:.1f} min on 2 CPU cores."]
    write_results("crop_modes.md", lines)


if __name__ == "__main__":
    main()
