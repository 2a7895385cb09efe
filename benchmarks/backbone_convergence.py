"""Is the demo's backbone converged? Source-val PSNR after N and 2N epochs, on the development cohort.

#18 asks that doubling the demo backbone's epochs add < 0.2 dB of source-val PSNR. Which N meets
it is a default, so it is chosen here on the development cohort (generator seed 11, source
site-c, as ``benchmarks/compare_methods.py --cohort dev``), never on the demo's own cohort. Each N
is a separate training with the demo's schedule shape (3/4 of the epochs at constant lr, then 1/4
decaying linearly to 0), trained in this process with the library's trainer (no Ray: the same
maths, none of the start-up), scored every ``--every`` epochs on ``domain1_val``.

    python benchmarks/backbone_convergence.py [--epochs 40 80 160] [--lr 1e-3]

Results go to ``benchmarks/results/backbone_convergence.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "backbone_convergence.md"
DEV_SEED, DEV_SITES = 11, ("site-c", "site-b")


def train(data, config, every: int) -> list[tuple[int, float, float]]:
    """(epoch, source-val PSNR, seconds so far) every ``every`` epochs and at the end."""
    import torch

    from uda3d.evaluation import score
    from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone

    trainer = Pix2PixTrainer.from_state(config)
    curve, started = [], time.perf_counter()

    def on_epoch_end(t, metrics) -> None:
        if t.epoch % every == 0 or t.epoch == config.total_epochs:
            scored = copy.deepcopy(t.generator).eval()  # as a checkpoint is loaded; training goes on untouched
            with torch.no_grad():
                psnr = score(scored, data.items["domain1_val"])[0]["psnr"]
            curve.append((t.epoch, psnr, time.perf_counter() - started))
            print(f"  {config.total_epochs}-epoch run, epoch {t.epoch}: source-val PSNR {psnr:.2f} dB", flush=True)

    fit_backbone(trainer, lambda e: data.batches("domain1_train", config.seed * 1000 + e), None, lambda m: None,
                 on_epoch_end=on_epoch_end)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[40, 80, 160])
    parser.add_argument("--lr", type=float, default=None, help="default: the demo backbone's")
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    import torch

    from uda3d.cohort.generate import CohortConfig, generate_cohort
    from uda3d.config import PreprocessConfig
    from uda3d.data.in_memory import load_data
    from uda3d.demo import DemoConfig

    demo = DemoConfig()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "dev"
        generate_cohort(root, CohortConfig(sites=DEV_SITES, subjects_per_site=demo.subjects_per_site,
                                           shape=demo.shape, seed=DEV_SEED), progress=False)
        data = load_data(str(root), PreprocessConfig(), Path(work) / "cache",
                         ("domain1_train", "domain1_val"), ())
        base = demo.backbone if args.lr is None else dataclasses.replace(demo.backbone, lr=args.lr)
        finals = {}
        curves = {}
        for total in args.epochs:
            config = dataclasses.replace(base, epochs=total - total // 4, epochs_decay=total // 4)
            curves[total] = train(data, config, args.every)
            finals[total] = curves[total][-1]
    lines = ["# Demo backbone: source-val PSNR after N epochs (development cohort)", "",
             f"`python benchmarks/backbone_convergence.py --epochs {' '.join(map(str, args.epochs))}"
             f"{'' if args.lr is None else f' --lr {args.lr:g}'}`: the demo's backbone (ngf {base.ngf}, "
             f"lr {base.lr:g}, 3/4 constant then 1/4 linear decay) on the development cohort "
             f"(seed {DEV_SEED}, {DEV_SITES[0]} source, {demo.subjects_per_site} subjects per site at "
             f"{demo.shape}), one run per N, in-process on "
             f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at the end).", "",
             "| epochs N | source-val PSNR dB | minutes | gain over N/2 dB |", "|---|---|---|---|"]
    for total, (_, psnr, seconds) in finals.items():
        half = finals.get(total // 2)
        gain = f"{psnr - half[1]:+.2f}" if half else ""
        lines.append(f"| {total} | {psnr:.2f} | {seconds / 60:.1f} | {gain} |")
    lines += ["", "Every run's curve (epoch: dB), the decay included:", ""]
    for total, curve in curves.items():
        lines.append(f"- {total}: " + ", ".join(f"{e}: {p:.2f}" for e, p, _ in curve))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[6:6 + len(finals)]))


if __name__ == "__main__":
    main()
