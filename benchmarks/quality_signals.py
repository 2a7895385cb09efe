"""Do the label-free quality estimates tell which synthesized T1s to trust? Spearman with the true PSNR.

For every subject of a target site (all 20: the user has them all and no T1), ``uda3d synthesize``'s
estimates (``tta_uncertainty``: flip test-time-augmentation spread in the brain; ``input_shift``:
1-Wasserstein distance of the inputs' brain intensities from the source's) are set against the
subject's true brain PSNR, per model, per seed. Within a site is the question a user asks ("which
of my subjects are bad?"); the pooled row (source test + both target sites) asks whether the
estimates see a site's shift at all. Nothing here was tuned: the estimates have no free
parameters, so the report cohort of ``benchmarks/compare_methods.py`` is used directly (seed 23,
site-a source; site-b protocol shift and site-a-atrophy anatomy shift; 20 subjects per site at 48^3).

A third estimate, ``ensemble_spread``, is the spread of the pipeline's candidates' outputs: the
backbone and its three 20-epoch fine-tunes (``source_ft``, ``robust``, ``ttt_joint``), as
``uda3d pipeline`` computes it for the model it chose. Each of the four is scored as the model of
interest with the other three as members. Demo-size budgets as in that benchmark, trained
in-process (no Ray). Writes ``benchmarks/results/quality_signals.{md,csv}``.

    python benchmarks/quality_signals.py [--seeds 2] [--workdir /tmp/uda3d-quality]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from uda3d.cohort.generate import CohortConfig, generate_cohort
from uda3d.config import JOINT_AUX_WEIGHT, BackboneConfig, PreprocessConfig
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.inference import InferenceModel, synthesize
from uda3d.io.tables import write_csv
from uda3d.metrics.image import volume_metrics
from uda3d.metrics.summary import spearman
from uda3d.training.backbone_stage import inference_record
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone

RESULTS = Path(__file__).parent / "results"
SEED, SHAPE, SUBJECTS, SPLIT = 23, (48, 48, 48), 20, (0.3, 0.3, 0.4)
SITES = {"report-protocol": ("site-a", "site-b"), "report-anatomy": ("site-a", "site-a-atrophy")}
BACKBONE = BackboneConfig(ngf=16, ndf=16, lr=2e-3, epochs=60, epochs_decay=30)
FINETUNE_EPOCHS = 20
ESTIMATES = ("tta_uncertainty", "input_shift", "ensemble_spread")


def cohorts(work: Path) -> dict[str, Path]:
    roots = {}
    for name, pair in SITES.items():
        root = work / name
        if not (root / "cohort.json").is_file():
            generate_cohort(root, CohortConfig(sites=pair, subjects_per_site=SUBJECTS, shape=SHAPE, seed=SEED,
                                               split_fractions=SPLIT), overwrite=True, progress=False)
        roots[name] = root
    return roots


def train(config: BackboneConfig, train_set, init: dict | None = None) -> Pix2PixTrainer:
    trainer = Pix2PixTrainer.from_state(config, init)  # a plain backbone may start a joint fine-tune
    fit_backbone(trainer, lambda e: DataLoader(train_set, batch_size=1, shuffle=True,
                                               generator=torch.Generator().manual_seed(config.seed * 100 + e)),
                 None, lambda m: None)
    return trainer


def score(model: InferenceModel, subjects, preprocess: PreprocessConfig, cache: Path,
          members: tuple[InferenceModel, ...]) -> list[dict]:
    """Estimates (label-free) and the true brain PSNR of each subject."""
    rows = []
    data = paired_dataset(subjects, preprocess, cache)
    truth = {}
    with torch.no_grad():
        for i in range(len(data)):
            item = data[i]
            fake = model.generator(item["input"][None])[0, 0]
            truth[item["id"]] = volume_metrics(fake, item["target"][0], item["mask"][0])["psnr"]
    for result in synthesize(model, subjects, batch_size=2, members=members):
        rows.append({**{k: result.quality[k] for k in ("subject", *ESTIMATES, "outside_source_range")},
                     "psnr": truth[result.subject]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uda3d-quality"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    roots = cohorts(args.workdir)
    preprocess = PreprocessConfig()
    cache = args.workdir / "cache"
    first = next(iter(roots.values()))
    source = discover(first, ("domain1_train", "domain1_test"))
    train_set = paired_dataset(source["domain1_train"], preprocess, cache)
    groups = {"source test (site-a)": source["domain1_test"]}
    for name, root in roots.items():
        found = discover(root, ("domain2_train", "domain2_val", "domain2_test"))
        groups[name] = [s for split in found.values() for s in split]
    meta = inference_record(train_set, preprocess)
    rows, table = [], []
    for seed in range(args.seeds):
        backbone = train(dataclasses.replace(BACKBONE, seed=seed), train_set)
        tune = BACKBONE.fine_tune(FINETUNE_EPOCHS, seed=seed, lr=BACKBONE.lr * 0.5)
        start_state = backbone.state_dict()
        trained = {"no_adaptation": backbone,
                   "source_ft": train(tune, train_set, start_state),
                   "robust": train(dataclasses.replace(tune, robust_augment=True), train_set, start_state),
                   "ttt_joint": train(dataclasses.replace(tune, aux_weight=JOINT_AUX_WEIGHT), train_set, start_state)}
        print(f"seed {seed}: trained ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
        models = {name: InferenceModel(generator=t.generator.eval(), preprocess=preprocess,
                                       window=tuple(meta["input_shape"]), source_reference=meta["source_reference"],
                                       device=torch.device("cpu"), checkpoint="")
                  for name, t in trained.items()}
        for model_name, model in models.items():
            members = tuple(m for n, m in models.items() if n != model_name)
            pooled = []
            for group, subjects in groups.items():
                scored = score(model, subjects, preprocess, cache, members)
                pooled += scored
                rows += [{"seed": seed, "model": model_name, "group": group, **r} for r in scored]
                table.append(_row(seed, model_name, group, scored))
            table.append(_row(seed, model_name, "pooled (source test + both targets)", pooled))
            print("\n".join(_fmt(t) for t in table[-len(groups) - 1:]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_csv(RESULTS / "quality_signals.csv", rows)
    header = ("| seed | model | subjects | n | Spearman(tta_uncertainty, PSNR) | Spearman(input_shift, PSNR) | "
              "Spearman(ensemble_spread, PSNR) | outside source range |\n|---|---|---|---|---|---|---|---|")
    body = "\n".join(_fmt(t) for t in table)
    summary = _summary(table)
    (RESULTS / "quality_signals.md").write_text(
        f"# Label-free quality estimates vs true PSNR (report cohort, seed {SEED})\n\n"
        "Spearman over subjects; the expected sign is negative (a larger estimate, a worse T1).\n\n"
        f"{header}\n{body}\n\n## Mean over seeds\n\n{summary}\n\n"
        f"Wall time {(time.perf_counter() - start) / 60:.1f} min on 2 CPU cores.\n")
    print(summary)


def _row(seed: int, model: str, group: str, scored: list[dict]) -> dict:
    psnr = [r["psnr"] for r in scored]
    out = {"seed": seed, "model": model, "group": group, "n": len(scored),
           "outside": sum(bool(r["outside_source_range"]) for r in scored)}
    for e in ESTIMATES:
        out[e] = spearman([r[e] for r in scored], psnr)
    return out


def _fmt(t: dict) -> str:
    return (f"| {t['seed']} | {t['model']} | {t['group']} | {t['n']} | {t['tta_uncertainty']:+.2f} | "
            f"{t['input_shift']:+.2f} | {t['ensemble_spread']:+.2f} | {t['outside']}/{t['n']} |")


def _summary(table: list[dict]) -> str:
    lines = ["| model | subjects | " + " | ".join(f"Spearman({e}, PSNR) mean (seed range)" for e in ESTIMATES) + " |",
             "|---|---|" + "---|" * len(ESTIMATES)]
    for key in dict.fromkeys((t["model"], t["group"]) for t in table):
        picked = [t for t in table if (t["model"], t["group"]) == key]
        cells = []
        for e in ESTIMATES:
            values = np.array([t[e] for t in picked])
            cells.append(f"{values.mean():+.2f} ({values.min():+.2f} to {values.max():+.2f})")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
