"""The fair comparison at demo size: every method against the budget-matched control, on 2 CPU cores.

Two cohorts, never mixed:

- ``dev`` (development): generator seed 11, source site-c, target site-b (another seed and site
  pair than the report's). Defaults, strengths, epochs and the candidate set are chosen here
  (``benchmarks/dev_sweep.py`` for the strengths).
- ``report``: generator seed 23, source site-a, two target sites sharing the same source subjects:
  ``report-protocol`` (site-b: another protocol) and ``report-anatomy`` (site-a-atrophy: site-a's
  protocol, atrophic anatomy, larger and multiple lesions). Nothing was tuned on it; the README
  quotes it.

Each cohort: 20 subjects per site at 48^3 split 6 train / 6 val / 8 test, so every table tests over
8 target-test subjects; 3 seeds. Writes ``benchmarks/results/compare_<cohort>_<site>.{md,csv,png}``,
``compare_<cohort>.json`` and the log. Budget goal: <= 60 min per cohort on 2 cores.

    python benchmarks/compare_methods.py --cohort dev|report [--seeds 3] [--workdir /tmp/uda3d-compare]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.compare.methods import compare_methods
from uda3d.config import AdaptConfig, BackboneConfig, CompareConfig, SelfTrainConfig, TTTConfig, VAEConfig
from uda3d.tracking import resolve_tracking

RESULTS = Path(__file__).parent / "results"
SHAPE = (48, 48, 48)
SUBJECTS = 20
SPLIT = (0.3, 0.3, 0.4)       # 6 train, 6 val, 8 test per site
COHORTS = {
    "dev": (11, {"dev-c-to-b": ("site-c", "site-b")}),
    "report": (23, {"report-protocol": ("site-a", "site-b"), "report-anatomy": ("site-a", "site-a-atrophy")}),
}
# Demo-size networks. The backbone's budget (90 epochs) is where its source-val PSNR rises slowly
# (about +0.3 dB from 45 to 90 epochs on the dev cohort); the tables give no_adaptation's and
# source_ft's source-val PSNR so the remaining headroom is visible.
BACKBONE = BackboneConfig(ngf=16, ndf=16, lr=2e-3, epochs=60, epochs_decay=30, seed=0)
VAE = VAEConfig(latent_channels=32, lr=2e-3, epochs=20)


def compare_config(roots: list[Path], workdir: Path, seeds: int) -> CompareConfig:
    return CompareConfig(dataroot=str(roots[0]), extra_dataroots=tuple(str(r) for r in roots[1:]),
                         workdir=str(workdir), seeds=seeds, backbone=BACKBONE, finetune_epochs=20,
                         supervised_epochs=20, vae=VAE, slice_size=64, adapt=AdaptConfig(),
                         ttt=TTTConfig(), self_train=SelfTrainConfig(),
                         tracking=resolve_tracking(workdir, "uda3d-compare"), progress=False)


def write_results(name: str, lines: list[str]) -> None:
    """A Markdown result under ``benchmarks/results/``, also printed."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def make_cohorts(name: str, workdir: Path) -> list[Path]:
    seed, sites = COHORTS[name]
    roots = []
    for folder, pair in sites.items():
        root = workdir / folder
        if not (root / "cohort.json").is_file():
            generate_cohort(root, CohortConfig(sites=pair, subjects_per_site=SUBJECTS, shape=SHAPE, seed=seed,
                                               split_fractions=SPLIT), overwrite=True, progress=False)
        roots.append(root)
    return roots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", choices=sorted(COHORTS), required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uda3d-compare"))
    parser.add_argument("--no-copy", action="store_true", help="leave benchmarks/results alone")
    args = parser.parse_args()

    work = args.workdir / args.cohort
    roots = make_cohorts(args.cohort, work)
    report = compare_methods(compare_config(roots, work / "run", args.seeds))
    for site in report["sites"]:
        print(Path(report["files"][f"{site}.md"]).read_text())
    print(f"wall time: {report['elapsed_s'] / 60:.1f} min for {args.seeds} seed(s) (goal: <= 60 min)")
    if not args.no_copy:
        RESULTS.mkdir(exist_ok=True)
        for key, path in report["files"].items():
            stem = f"compare_{args.cohort}" if key == "json" else f"compare_{args.cohort}_{Path(path).parent.name}"
            shutil.copyfile(path, RESULTS / f"{stem}{Path(path).suffix}")


if __name__ == "__main__":
    main()
