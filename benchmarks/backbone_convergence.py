"""Is the demo's backbone converged? Source-val PSNR after N and 2N epochs, on the development cohort.

#18 asks that doubling the demo backbone's epochs add < 0.2 dB of source-val PSNR. Which N meets
it is a default, so it is chosen here on the development cohort (generator seed 11, source
site-c, as ``benchmarks/compare_methods.py --cohort dev``), never on the demo's own cohort. Each N
is a separate training with the demo's schedule shape (3/4 of the epochs at constant lr, then 1/4
decaying linearly to 0; the demo's share of L1 warm-up epochs, ``--warmup-fraction``), trained in
this process with the library's trainer (no Ray: the same maths, none of the start-up), scored
every ``--every`` epochs on ``domain1_val``.

    python benchmarks/backbone_convergence.py [--epochs 60 120 240] [--lr 6e-3] [--ngf 32] [--ndf 8] \
        [--warmup-fraction 0.75] [--cohort dev|demo] [--seeds 0 1 2] \
        [--fine-tune-from 120 --fine-tune-lrs 3e-3 1e-3 5e-4]

``--seeds`` trains every N once per training seed (weights, data order, augmentation) and reports
the mean over seeds, each seed's gain and the seed spread: one run's source-val PSNR moves by
tenths of a dB from seed to seed, as much as the 0.2 dB the test asks about.

``--cohort demo`` runs the same on the demo's own cohort (seed 0, site-a source): to check a
choice made on the development cohort where the demo runs it, never to make one.

A yardstick for "has learned the task" comes with it: a per-voxel MLP (FLAIR and T2 of one voxel
-> its T1, no neighbourhood, no network depth) fitted to the same training volumes in seconds,
scored the same way. A 3D generator that has learned the task should beat it.

Each run's final generator (and the MLP) is also scored on the target site's val split, for
information only: does more source training carry over to the new site? Nothing here is chosen
by it, and the demo's cohort is never scored on its target.

``--fine-tune-from N`` also asks which constant lr the fine-tunes that start from the N-epoch
backbone should use: 20 epochs of ``source_ft`` and ``robust`` (scored on source val and, for
information, target val) and of the supervised bound on ``domain2_train`` (scored on target val:
the bound is trained with target labels by definition, and this is the development cohort).

Each run's section goes first in ``benchmarks/results/backbone_convergence.md``, above the earlier runs'.
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


def train(data, config):
    """The trained trainer, and (epoch, source-val PSNR, seconds so far) after the epochs the trainer would
    validate (every ``config.val_every``-th and the last)."""
    from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone, validates

    trainer = Pix2PixTrainer.from_state(config)
    curve, started = [], time.perf_counter()

    def on_epoch_end(t, metrics) -> None:
        if validates(config, t.epoch):
            psnr = val_scores(data, t.generator, ("domain1_val",))[0]  # the curve needs source val only
            curve.append((t.epoch, psnr, time.perf_counter() - started))
            print(f"  {config.total_epochs}-epoch run, epoch {t.epoch}: source-val PSNR {psnr:.2f} dB", flush=True)

    fit_backbone(trainer, lambda e: data.batches("domain1_train", config.seed * 1000 + e), None, lambda m: None,
                 on_epoch_end=on_epoch_end)
    return trainer, curve


def fine_tune(data, backbone, config, split: str) -> tuple[float, float]:
    """Source-val and target-val PSNR after fine-tuning ``backbone`` (a trainer) with ``config`` on ``split``."""
    from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone

    trainer = Pix2PixTrainer.from_state(config, backbone.state_dict())
    fit_backbone(trainer, lambda e: data.batches(split, config.seed * 1000 + e), None, lambda m: None)
    return val_scores(data, trainer.generator)


def val_scores(data, generator, splits: tuple[str, ...] = ("domain1_val", "domain2_val")) -> tuple[float, ...]:
    """Brain PSNR on each split (source val, target val), of a copy (as a checkpoint is loaded; training goes on)."""
    import torch

    from uda3d.evaluation import score

    scored = copy.deepcopy(generator).eval()
    with torch.no_grad():
        return tuple(score(scored, data.items[s])[0]["psnr"] for s in splits)


def voxel_reference(data, steps: int = 3000, seed: int = 0,
                    splits: tuple[str, ...] = ("domain1_val",)) -> tuple[float, ...]:
    """Brain PSNR on each split of a per-voxel MLP (2 -> 64 -> 64 -> 1, L1, Adam) fitted to the training voxels."""
    import torch
    from torch import nn

    from uda3d.metrics.image import psnr

    torch.manual_seed(seed)
    train_items = data.items["domain1_train"]
    inputs = torch.cat([item["input"].flatten(1).T for item in train_items])
    targets = torch.cat([item["target"].flatten() for item in train_items])
    mlp = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    optimiser = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    for _ in range(steps):
        pick = torch.randint(0, len(inputs), (8192,))
        loss = (mlp(inputs[pick])[:, 0] - targets[pick]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    means = []
    with torch.no_grad():
        for split in splits:
            scores = [psnr(mlp(item["input"].flatten(1).T)[:, 0].clamp(0, 1).reshape(item["target"].shape[1:]),
                           item["target"][0], 1.0, item["mask"][0]) for item in data.items[split]]
            means.append(sum(scores) / len(scores))
    return tuple(means)


FINE_TUNES = (("source_ft", "domain1_train", {}), ("robust", "domain1_train", {"robust_augment": True}),
              ("supervised", "domain2_train", {}))
FINE_TUNE_EPOCHS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[60, 120, 240])
    parser.add_argument("--lr", type=float, default=None, help="default: the demo backbone's")
    parser.add_argument("--ngf", type=int, default=None, help="default: the demo backbone's")
    parser.add_argument("--ndf", type=int, default=None, help="default: the demo backbone's")
    parser.add_argument("--warmup-fraction", type=float, default=None,
                        help="share of each run's epochs in L1 warm-up (default: the demo backbone's)")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--cohort", choices=("dev", "demo"), default="dev",
                        help="dev: choose here; demo: the demo's own cohort, to check a choice made on dev")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds, one run per N and seed (default: the demo backbone's seed)")
    parser.add_argument("--fine-tune-from", type=int, default=None, help="one of --epochs")
    parser.add_argument("--fine-tune-lrs", type=float, nargs="+", default=[3e-3, 1e-3, 5e-4])
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
        seed, sites = (DEV_SEED, DEV_SITES) if args.cohort == "dev" else (demo.seed, demo.sites)
        generate_cohort(root, CohortConfig(sites=sites, subjects_per_site=demo.subjects_per_site,
                                           shape=demo.shape, seed=seed), progress=False)
        data = load_data(str(root), PreprocessConfig(), Path(work) / "cache",
                         ("domain1_train", "domain1_val", "domain2_train", "domain2_val"), ())
        overrides = {k: v for k, v in (("lr", args.lr), ("ngf", args.ngf), ("ndf", args.ndf)) if v is not None}
        base = dataclasses.replace(demo.backbone, **overrides)
        seeds = args.seeds or [base.seed]
        warmup = (demo.backbone.l1_warmup_epochs / demo.backbone.total_epochs if args.warmup_fraction is None
                  else args.warmup_fraction)
        target_split = ("domain2_val",) if args.cohort == "dev" else ()  # the demo's target is never scored
        reference, *reference_target = voxel_reference(data, splits=("domain1_val", *target_split))
        print(f"  per-voxel MLP: source-val PSNR {reference:.2f} dB", flush=True)
        finals: dict[int, dict[int, tuple]] = {}  # N -> seed -> (epoch, dB, seconds)
        targets: dict[int, dict[int, float]] = {}  # N -> seed -> target-val dB of the final generator
        curves = {}
        tuned = []
        for total in args.epochs:
            for run_seed in seeds:
                config = dataclasses.replace(base, epochs=total - total // 4, epochs_decay=total // 4,
                                             l1_warmup_epochs=round(warmup * total), seed=run_seed,
                                             val_every=args.every)
                trainer, curves[total, run_seed] = train(data, config)
                finals.setdefault(total, {})[run_seed] = curves[total, run_seed][-1]
                if target_split:
                    targets.setdefault(total, {})[run_seed] = val_scores(data, trainer.generator, target_split)[0]
                if total == args.fine_tune_from and run_seed == seeds[0]:
                    tuned.append(("backbone (no fine-tune)", "", *val_scores(data, trainer.generator)))
                    for lr in args.fine_tune_lrs:
                        for name, split, extra in FINE_TUNES:
                            ft = config.fine_tune(FINE_TUNE_EPOCHS, lr=lr, **extra)
                            tuned.append((name, f"{lr:g}", *fine_tune(data, trainer, ft, split)))
                            print(f"  {name} at lr {lr:g}: source-val {tuned[-1][2]:.2f} dB, "
                                  f"target-val {tuned[-1][3]:.2f} dB", flush=True)
    flags = "".join(f" --{k} {v:g}" for k, v in overrides.items())
    if args.warmup_fraction is not None:
        flags += f" --warmup-fraction {args.warmup_fraction:g}"
    if args.fine_tune_from is not None:
        flags += f" --fine-tune-from {args.fine_tune_from} --fine-tune-lrs " + " ".join(map("{:g}".format,
                                                                                          args.fine_tune_lrs))
    if args.cohort != "dev":
        flags += f" --cohort {args.cohort}"
    if args.every != 10:
        flags += f" --every {args.every}"
    if args.seeds:
        flags += " --seeds " + " ".join(map(str, args.seeds))
    cohort = "the development cohort" if args.cohort == "dev" else "the demo's cohort"
    recipe = ", L1 alone" if warmup == 1 else ""
    recipe += f", {len(seeds)} training seeds" if len(seeds) > 1 else ""
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {' and '.join(map(str, args.epochs))} "
             f"epochs{recipe}, {cohort}", "",
             f"`python benchmarks/backbone_convergence.py --epochs {' '.join(map(str, args.epochs))}{flags}`: "
             f"the demo's backbone (ngf {base.ngf}, ndf {base.ndf}, "
             f"lr {base.lr:g}, 3/4 constant then 1/4 linear decay, the first {warmup:.0%} of the epochs L1 "
             f"alone) on {cohort} "
             f"(seed {seed}, {sites[0]} source, {demo.subjects_per_site} subjects per site at "
             f"{demo.shape}), one run per N and training seed ({', '.join(map(str, seeds))}), in-process on "
             f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at the end).", ""]
    table = doubling_table(finals, seeds, targets)
    lines += table
    lines += ["", f"Yardstick: a per-voxel MLP (FLAIR and T2 of one voxel -> its T1) fitted to the same "
              f"training volumes scores **{reference:.2f} dB** on source val"
              + (f" and {reference_target[0]:.2f} dB on target val." if reference_target else "."), ""]
    lines += ["Every run's curve (epoch: dB), the decay included:", ""]
    for (total, run_seed), curve in curves.items():
        lines.append(f"- {total}, seed {run_seed}: " + ", ".join(f"{e}: {p:.2f}" for e, p, _ in curve))
    if tuned:
        lines += ["", f"Fine-tunes of {FINE_TUNE_EPOCHS} epochs at a constant lr from the {args.fine_tune_from}-epoch "
                  "backbone (source_ft and robust on domain1_train, the supervised bound on domain2_train):", "",
                  "| fine-tune | lr | source-val PSNR dB | target-val PSNR dB |", "|---|---|---|---|"]
        lines += [f"| {name} | {lr} | {d1:.2f} | {d2:.2f} |" for name, lr, d1, d2 in tuned]
    prepend_section(RESULTS, TITLE, lines)
    print("\n".join(table))


def doubling_table(finals: dict[int, dict[int, tuple]], seeds: list[int],
                   targets: dict[int, dict[int, float]] | None = None) -> list[str]:
    """Markdown rows: per N the mean source-val PSNR over seeds, its spread, minutes, and the gain over N/2.

    The gain over N/2 is given for the mean and for each seed (the same seed's N/2 run), so a reader
    sees whether the mean's gain is larger than the seeds' scatter. With ``targets`` (N -> seed ->
    target-val dB), a last column gives the final generators' mean target-val PSNR and its spread.
    """
    import statistics

    rows = ["| epochs N | source-val PSNR dB, mean over seeds | seed spread (max - min) dB | minutes per run "
            "| gain over N/2 dB, mean | gain over N/2 dB, per seed |" + (" target-val PSNR dB, mean (spread) |"
                                                                       if targets else ""),
            "|---|---|---|---|---|---|" + ("---|" if targets else "")]
    for total, by_seed in finals.items():
        scores = [by_seed[s][1] for s in seeds]
        half = finals.get(total // 2)
        mean_gain = per_seed = ""
        if half:
            gains = [by_seed[s][1] - half[s][1] for s in seeds]
            mean_gain = f"{statistics.fmean(gains):+.2f}"
            per_seed = ", ".join(f"{s}: {g:+.2f}" for s, g in zip(seeds, gains))
        minutes = statistics.fmean(by_seed[s][2] for s in seeds) / 60
        row = (f"| {total} | {statistics.fmean(scores):.2f} | {max(scores) - min(scores):.2f} | {minutes:.1f} "
               f"| {mean_gain} | {per_seed} |")
        if targets:
            on_target = [targets[total][s] for s in seeds]
            row += f" {statistics.fmean(on_target):.2f} ({max(on_target) - min(on_target):.2f}) |"
        rows.append(row)
    return rows


TITLE = "# Demo backbone: source-val PSNR after N epochs"


def prepend_section(path: Path, title: str, section: list[str]) -> None:
    """Put this run's section first under ``title``, keeping every earlier run's below it (written atomically)."""
    from uda3d.io.atomic import atomic_file

    earlier = path.read_text() if path.exists() else ""
    if earlier.startswith(title):
        earlier = earlier[len(title):]
    text = "\n".join([title, "", *section]).rstrip("\n") + "\n\n" + earlier.lstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as staging:
        staging.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
