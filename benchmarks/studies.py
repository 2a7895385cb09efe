"""The paper's two studies at demo size, on the demo's backbone and VAE, on 2 CPU cores.

Runs ``uda3d study data-amount`` and ``uda3d study sensitivity`` (the shipped grids, 3 seeds per
point) over the checkpoints a finished ``uda3d demo`` left in ``--demo-dir``, then copies each
study's ``points.csv``, ``trials.csv`` and figures to ``benchmarks/results/study_<name>_*``.
Research runs: the outcome is target-test PSNR (target labels), never used to pick a model.

    uda3d demo && python benchmarks/studies.py [--demo-dir uda3d-demo] [--study data-amount sensitivity]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from uda3d.cli import main as uda3d

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("uda3d-demo"))
    parser.add_argument("--study", nargs="+", default=["data-amount", "sensitivity"])
    parser.add_argument("--no-copy", action="store_true", help="leave benchmarks/results alone")
    args = parser.parse_args()

    report = json.loads((args.demo_dir / "report.json").read_text())
    for study in args.study:
        started = time.time()
        code = uda3d(["study", study, "--dataroot", str(args.demo_dir / "cohort"), "--workdir", str(args.demo_dir),
                      "--experiment", "uda3d-demo", "--backbone", report["runs"]["backbone"]["checkpoint"],
                      "--vae", report["runs"]["vae"]["checkpoint"], "--quiet"])
        if code:
            raise SystemExit(code)
        name = study.replace("-", "_")
        folder = args.demo_dir / "study" / name
        print(f"{study}: {(time.time() - started) / 60:.1f} min")
        if not args.no_copy:
            for path in [folder / "points.csv", folder / "trials.csv", *folder.glob("*.png")]:
                target = path.name if path.name.startswith(name) else f"{name}_{path.name}"
                shutil.copyfile(path, RESULTS / f"study_{target}")


if __name__ == "__main__":
    main()
