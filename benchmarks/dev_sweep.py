"""Strengths of the target-side methods, chosen on the development cohort only (one seed, 2 CPU cores).

On ``compare_methods.py``'s ``dev`` cohort (site-c -> site-b, generator seed 11): one backbone, its
``source_ft`` control, ``ttt_joint``, ``robust`` and ``robust_spatial``; then site-level TTT at
several learning rates (every epoch's held-out auxiliary loss beside its oracle target PSNR),
per-subject TTT at several step counts and learning rates, and self-training at two learning rates.
Target T1 is read here for the oracle column only: this is the development cohort, where choosing
by it is allowed; the report cohort never is. Writes ``benchmarks/results/dev_sweep.md``.

    python benchmarks/dev_sweep.py [--workdir /tmp/uda3d-compare]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from compare_methods import BACKBONE, make_cohorts, write_results  # noqa: E402

from uda3d.adaptation.self_training import self_train  # noqa: E402
from uda3d.adaptation.ttt import PerSubjectTTT, adapt_site  # noqa: E402
from uda3d.compare.methods import control_epochs, fine_tune, load_sites  # noqa: E402
from uda3d.config import (  # noqa: E402
    JOINT_AUX_WEIGHT,
    CompareConfig,  # noqa: E402
    SelfTrainConfig,
    TTTConfig,
)
from uda3d.evaluation import score  # noqa: E402
from uda3d.training.pix2pix import (
    Pix2PixTrainer,  # noqa: E402
    fit_backbone,  # noqa: E402
)


def mean(per: dict, key: str = "psnr") -> float:
    return sum(m[key] for m in per.values()) / len(per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uda3d-compare"))
    args = parser.parse_args()
    started = time.perf_counter()
    [root] = make_cohorts("dev", args.workdir / "dev")
    config = CompareConfig(dataroot=str(root), workdir=str(args.workdir / "dev" / "sweep"), backbone=BACKBONE,
                           progress=False)
    data = next(iter(load_sites(config).values()))
    rows: list[tuple[str, float, float, float, str]] = []

    def record(name: str, generator, note: str = "", source: bool = True) -> float:
        target = score(generator, data.items["domain2_test"])[1]
        src = mean(score(generator, data.items["domain1_test"])[1]) if source else float("nan")
        rows.append((name, mean(target), mean(target, "ssim"), src, note))
        print(f"{name:<40} target {mean(target):6.2f} dB  ssim {mean(target, 'ssim'):.3f}  source {src:6.2f}  {note}",
              flush=True)
        return mean(target)

    seed = 0
    plain = Pix2PixTrainer.from_state(BACKBONE)
    fit_backbone(plain, lambda e: data.batches("domain1_train", e), None, lambda m: None)
    state = copy.deepcopy(plain.state_dict())
    lr = BACKBONE.lr * config.finetune_lr_factor
    record("no_adaptation", plain.generator)
    n_s, n_t = len(data.items["domain1_train"]), len(data.items["domain2_train"])
    record("source_ft", fine_tune(data, state, BACKBONE, "domain1_train", control_epochs(config, n_s, n_t), lr,
                                  False).generator)
    robust = fine_tune(data, state, BACKBONE, "domain1_train", config.finetune_epochs, lr, False, robust_augment=True)
    record("robust", robust.generator)
    record("robust_spatial", fine_tune(data, state, BACKBONE, "domain1_train", config.finetune_epochs, lr, False,
                                       robust_augment=True, spatial_augment=True).generator)

    joint = fine_tune(data, state, BACKBONE, "domain1_train", config.finetune_epochs, lr, False,
                      aux_weight=JOINT_AUX_WEIGHT)
    record("ttt_joint", joint.generator)
    for ttt_lr in (1e-4, 1e-3, 3e-3):
        ttt = TTTConfig(lr=ttt_lr, epochs=4, seed=seed)
        adapted = copy.deepcopy(joint)
        story = adapt_site(adapted, lambda: data.unlabelled("domain2_train"), lambda: data.unlabelled("domain2_val"),
                           lambda e: data.batches("domain1_train", 500 + e), lambda: data.batches("domain1_val"), ttt,
                           0.5, evaluate=lambda a=adapted: {"psnr": score(a.generator, data.items["domain2_test"])[0]
                                                            ["psnr"]})
        trace = ", ".join(f"e{int(h['epoch'])}: aux {h['held_out_aux_loss']:.4f} / {h['eval_psnr']:.2f} dB"
                          for h in story.history)
        record(f"ttt_site lr {ttt_lr:g}", adapted.generator, f"kept epoch {story.kept_epoch}; {trace}")
    for steps, subject_lr in ((20, 1e-3), (20, 3e-3), (50, 1e-3)):
        ttt = TTTConfig(subject_steps=steps, subject_lr=subject_lr)
        record(f"ttt_subject {steps} steps lr {subject_lr:g}", PerSubjectTTT(joint.generator, ttt), source=False)
    for st_lr in (2e-4, 1e-3):
        student = copy.deepcopy(robust)
        history = self_train(student, lambda e: data.unlabelled("domain2_train"),
                             lambda e: data.batches("domain1_train", 700 + e), SelfTrainConfig(lr=st_lr))
        record(f"self_train lr {st_lr:g}", student.generator, f"loss {history[0]['self_training_loss']:.4f} -> "
                                                              f"{history[-1]['self_training_loss']:.4f}")
    supervised = fine_tune(data, state, BACKBONE, "domain2_train", config.supervised_epochs, lr, False)
    record("supervised", supervised.generator)

    lines = ["# Development sweep (dev cohort: site-c -> site-b, generator seed 11, seed 0)", "",
             "Oracle target-test PSNR/SSIM inside the brain over 8 subjects; chosen here, never on the report "
             "cohort. Per-subject TTT rows skip the source test (each source volume would be adapted too).", "",
             "| model | target PSNR (dB) | target SSIM | source PSNR (dB) | note |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {p:.2f} | {s:.3f} | {src:.2f} | {note} |" for n, p, s, src, note in rows]
    lines += ["", f"wall time {(time.perf_counter() - started) / 60:.1f} min"]
    write_results("dev_sweep.md", lines)


if __name__ == "__main__":
    main()
