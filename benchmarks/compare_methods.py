"""The issue-7 comparison at demo size: every method and baseline, 3 seeds, on 2 CPU cores.

Generates the demo's synthetic two-site cohort (64^3, 9 subjects per site), then runs
``uda3d.compare.run.compare_methods`` with the demo's small networks and copies the table (CSV,
Markdown), the bar chart and the JSON report into ``benchmarks/results/compare_methods.*``.
Budget goal: under 30 minutes for 3 seeds on 2 cores (the wall time is printed and written).

    python benchmarks/compare_methods.py [--seeds 3] [--workdir /tmp/uda3d-compare]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.compare.config import CompareConfig
from uda3d.compare.run import compare_methods
from uda3d.demo import (
    DEMO_BACKBONE,
    DEMO_ROBUST_EPOCHS,
    DEMO_SLICE_SIZE,
    DEMO_SUPERVISED_EPOCHS,
    DEMO_VAE,
    DemoConfig,
)
from uda3d.tracking import resolve_tracking

RESULTS = Path(__file__).parent / "results"


def demo_compare_config(root: Path, workdir: Path, seeds: int) -> CompareConfig:
    """The demo's budgets (the same backbone, VAE and adaptation the demo pipeline uses)."""
    return CompareConfig(dataroot=str(root), workdir=str(workdir), seeds=seeds, backbone=DEMO_BACKBONE,
                         finetune_epochs=DEMO_ROBUST_EPOCHS, checkpoint_every=5,
                         supervised_epochs=DEMO_SUPERVISED_EPOCHS, vae=DEMO_VAE, slice_size=DEMO_SLICE_SIZE,
                         tracking=resolve_tracking(workdir, "uda3d-compare"), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uda3d-compare"))
    parser.add_argument("--no-copy", action="store_true", help="leave benchmarks/results alone")
    args = parser.parse_args()

    demo = DemoConfig()
    root = args.workdir / "cohort"
    if not (root / "cohort.json").is_file():
        generate_cohort(root, CohortConfig(sites=demo.sites, subjects_per_site=demo.subjects_per_site,
                                           shape=demo.shape, seed=demo.seed), overwrite=True, progress=False)
    config = demo_compare_config(root, args.workdir, args.seeds)
    report = compare_methods(config)
    print(Path(report["files"]["markdown"]).read_text())
    print(f"wall time: {report['elapsed_s'] / 60:.1f} min for {args.seeds} seed(s) (goal: < 30 min for 3)")
    if not args.no_copy:
        RESULTS.mkdir(exist_ok=True)
        for path in report["files"].values():
            shutil.copyfile(path, RESULTS / f"compare_methods{Path(path).suffix}")


if __name__ == "__main__":
    main()
