"""``uda3d compare-methods``: every adaptation method and baseline on the same splits and seeds.

Per seed, in one process (the comparison is many short fits; Ray Train's per-launch start-up would
dominate them, and the same library trainers are used either way):

1. ``plain``: the backbone trained from scratch on ``domain1_train`` (the no-adaptation model);
2. ``robust``: ``plain`` fine-tuned on the source with robust input augmentation (METHOD.md section 8),
   and ``plain_ft``, the same fine-tune without it (the control that separates augmentation from
   extra training); each fine-tune keeps the checkpoint with the lowest *augmented source-val MAE*
   among those whose source-val PSNR stays within ``max_source_drop`` of ``plain`` (label-free);
3. ``supervised``: ``plain`` fine-tuned on labelled ``domain2_train`` (the upper bound; needs target T1);
4. on top of ``plain`` and of ``robust``: histogram matching of the inputs to the source, AdaBN,
   the method's latent-KL adaptation (one source subject per target volume), the population-prior
   variant, and the sliced-Wasserstein input harmoniser; adaptation uses ``domain2_val`` inputs only.

Every model is scored on ``domain2_test`` (target) and ``domain1_test`` (source, to show what is
kept). Target T1 is used for the supervised bound, for scoring and for the oracle traces that give
each label-free signal's Spearman correlation with target PSNR — never to train or select.
The label-free pick (lowest augmented source-val MAE among the guarded candidates) is reported per seed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uda3d.adaptation.guards import GuardConfig
from uda3d.compare.config import CompareConfig
from uda3d.compare.table import BASELINE, UPPER, MethodResult, summarise_methods
from uda3d.config import AdaptConfig, BackboneConfig, PreprocessConfig, VAEConfig
from uda3d.data.layout import discover
from uda3d.errors import DataError

SPLITS = ("domain1_train", "domain1_val", "domain1_test", "domain2_train", "domain2_val", "domain2_test")


@dataclass
class Data:
    """Every split's preprocessed items, loaded once."""

    items: dict[str, list[dict]]

    def batches(self, split: str, shuffle_seed: int | None = None):
        data = self.items[split]
        if shuffle_seed is None:
            return [{k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()} for item in data]
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
        return [{k: (v[None] if torch.is_tensor(v) else [v]) for k, v in data[i].items()} for i in order]

    def inputs(self, split: str) -> list[torch.Tensor]:
        return [item["input"] for item in self.items[split]]


def load_data(dataroot: str, preprocess: PreprocessConfig, cache_dir: Path, splits: tuple[str, ...] = SPLITS,
              unlabelled: tuple[str, ...] = ("domain2_val",), stage: str = "compare-methods") -> Data:
    """Every split's preprocessed items (sorted by id); all but ``unlabelled`` splits must have T1."""
    from uda3d.data.datasets import unpaired_dataset

    found = discover(dataroot)
    for name in splits:
        if not found.get(name):
            raise DataError(Path(dataroot) / name, f"split is missing or empty; {stage} needs it")
    items = {}
    for name in splits:
        dataset = unpaired_dataset(sorted(found[name], key=lambda s: s.id), preprocess, cache_dir)
        items[name] = [dataset[i] for i in range(len(dataset))]
        if name not in unlabelled and any("target" not in it for it in items[name]):
            raise DataError(Path(dataroot) / name, "every subject needs a T1 here (training or scoring)")
    return Data(items)


@torch.no_grad()
def score(generator: torch.nn.Module, items: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean metrics, per-subject PSNR) of ``generator`` on labelled items, inside the brain."""
    from uda3d.metrics.image import mean_metrics, volume_metrics

    per = {}
    for item in items:
        fake = generator(item["input"][None])[0, 0].float()
        per[item["id"]] = volume_metrics(fake, item["target"][0], item["mask"][0])
    return mean_metrics(per.values()), {k: v["psnr"] for k, v in per.items()}


def _trainer(config: BackboneConfig, init: dict | None = None):
    from uda3d.training.pix2pix import Pix2PixTrainer

    trainer = Pix2PixTrainer(config, torch.device("cpu"))
    if init is not None:
        trainer.generator.load_state_dict(init["generator"])
        trainer.discriminator.load_state_dict(init["discriminator"])
    return trainer


def fine_tune(data: Data, start: dict, config: BackboneConfig, split: str, epochs: int, lr: float,
              robust: bool, selection, guards: GuardConfig, progress: bool) -> tuple[Any, list[dict[str, float]]]:
    """Fine-tune ``start`` on ``split``; returns (trainer holding the selected checkpoint, checkpoint trace).

    With ``selection`` (an ``AugmentedSet``), checkpoints every ``checkpoint_every`` epochs are scored
    by augmented source-val MAE and source-val PSNR; the kept one is the lowest-MAE checkpoint
    within the source guard (the starting model if none is). The trace also holds oracle target
    PSNRs filled in by the caller.
    """
    from uda3d.adaptation.selection import augmented_source_error
    from uda3d.training.pix2pix import fit_backbone

    cfg = dataclasses.replace(config, epochs=epochs, epochs_decay=0, lr=lr, robust_augment=robust)
    trainer = _trainer(cfg, start)
    trace: list[dict[str, Any]] = []

    def checkpoint(t, metrics: dict[str, float]) -> None:
        if selection is None or (t.epoch % selection["every"] and t.epoch != cfg.total_epochs):
            return
        trace.append({"epoch": t.epoch, "label_free": augmented_source_error(t.generator, selection["set"]),
                      "source_val_psnr": t.evaluate(data.batches("domain1_val"))["psnr"],
                      "state": copy.deepcopy(t.generator.state_dict())})

    if selection is not None:
        trace.append({"epoch": 0, "label_free": augmented_source_error(trainer.generator, selection["set"]),
                      "source_val_psnr": trainer.evaluate(data.batches("domain1_val"))["psnr"],
                      "state": copy.deepcopy(trainer.generator.state_dict())})
    fit_backbone(trainer, lambda e: data.batches(split, cfg.seed * 1000 + e), None, lambda m: None,
                 on_epoch_end=checkpoint, progress=progress)
    if selection is not None:
        start_psnr = trace[0]["source_val_psnr"]
        allowed = [c for c in trace if start_psnr - c["source_val_psnr"] <= guards.max_source_drop]
        kept = min(allowed, key=lambda c: c["label_free"])
        trainer.generator.load_state_dict(kept["state"])
        for c in trace:
            c["kept"] = c is kept
    return trainer, trace


def train_vae_in_process(data: Data, config: VAEConfig, slice_size: int):
    """The slice VAE on source-training T1 slices, one volume per batch (as ``uda3d train-vae``)."""
    from uda3d.data.slices import SliceConfig, volume_to_slices
    from uda3d.training.vae import VAETrainer, fit_vae

    slice_config = SliceConfig(size=slice_size)
    volumes = [volume_to_slices(item["target"][0], slice_config) for item in data.items["domain1_train"]]
    trainer = VAETrainer(config, slice_size, torch.device("cpu"))
    fit_vae(trainer, lambda e: volumes, None, lambda m: None)
    return trainer, slice_config


def adapt_latent(data: Data, base_state: dict, base_config: BackboneConfig, vae, slice_config, adapt: AdaptConfig,
                 guards: GuardConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The method's adaptation (or a prior variant) from ``base_state``; returns (generator, trace)."""
    from uda3d.adaptation.trainer import AdaptTrainer, fit_adapt

    backbone = _trainer(base_config, base_state)
    trainer = AdaptTrainer(backbone, copy.deepcopy(vae.model.encoder), slice_config, adapt)
    references = [item["target"][None] for item in data.items["domain1_train"]]
    history: list[dict[str, float]] = []

    def oracle() -> dict[str, float]:
        return {"target_test_psnr": score(backbone.generator, data.items["domain2_test"])[0]["psnr"]}

    result = fit_adapt(trainer, lambda e: data.batches("domain1_train", adapt.seed * 1000 + e),
                       lambda: data.batches("domain2_val"), lambda: data.batches("domain1_val"), references,
                       guards, report=history.append, evaluate=oracle)
    return backbone.generator, {"history": history, "kept_epoch": result.decision.kept_epoch,
                                "reason": result.decision.reason}


def compare_methods(config: CompareConfig) -> dict[str, Any]:
    """Run the comparison; writes ``WORKDIR/comparison.{csv,md,png,json}`` and returns the report."""
    from uda3d.adaptation.input_maps import (
        HistogramMatch,
        InputMapped,
        fit_harmoniser,
        pooled_source_quantiles,
        reestimate_norm_statistics,
    )
    from uda3d.adaptation.selection import (
        CandidateScore,
        augmented_source_error,
        augmented_source_set,
        choose_model,
    )
    from uda3d.metrics.summary import spearman
    from uda3d.training.pix2pix import fit_backbone

    workdir = Path(config.workdir)
    started = time.perf_counter()
    data = load_data(config.dataroot, config.preprocess, workdir / "cache")
    selection_set = augmented_source_set(data.items["domain1_val"], copies=config.selection_copies)
    reference_quantiles = pooled_source_quantiles(data.inputs("domain1_train"))
    results: list[MethodResult] = []
    traces: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = []

    def record(method: str, seed: int, generator: torch.nn.Module, note: str = "") -> MethodResult:
        target, per_subject = score(generator, data.items["domain2_test"])
        source, _ = score(generator, data.items["domain1_test"])
        source_val, _ = score(generator, data.items["domain1_val"])
        result = MethodResult(method, seed, target, source, per_subject,
                              augmented_source_error(generator, selection_set), source_val["psnr"], note)
        results.append(result)
        print(f"    {method:<28} target {target['psnr']:6.2f} dB  source {source['psnr']:6.2f} dB  "
              f"aug-source MAE {result.label_free:.4f}{'  (' + note + ')' if note else ''}")
        return result

    for seed in range(config.seeds):
        print(f"  seed {seed}: plain backbone ({config.backbone.total_epochs} epochs)")
        backbone_config = dataclasses.replace(config.backbone, seed=seed)
        plain = _trainer(backbone_config)
        fit_backbone(plain, lambda e: data.batches("domain1_train", seed * 1000 + e), None, lambda m: None,
                     progress=config.progress)
        plain_state = copy.deepcopy(plain.state_dict())
        record(BASELINE, seed, plain.generator)
        lr = backbone_config.lr * config.finetune_lr_factor
        bases = {"plain": (plain_state, plain.generator)}
        selection = {"set": selection_set, "every": config.checkpoint_every}
        for name, robust in (("robust", True), ("plain_ft", False)):
            print(f"  seed {seed}: {name} fine-tune ({config.finetune_epochs} epochs, lr {lr:g})")
            tuned, trace = fine_tune(data, plain_state, backbone_config, "domain1_train", config.finetune_epochs, lr,
                                     robust, selection, config.guards, config.progress)
            for c in trace:  # oracle, for the signal's Spearman only
                generator = _trainer(backbone_config).generator
                generator.load_state_dict(c.pop("state"))
                c["target_test_psnr"] = score(generator, data.items["domain2_test"])[0]["psnr"]
            kept = next(c["epoch"] for c in trace if c["kept"])
            traces.append({"seed": seed, "run": name, "signal": "augmented source-val MAE", "trace": trace})
            record(name, seed, tuned.generator, f"kept epoch {kept}")
            if robust:
                bases["robust"] = (copy.deepcopy(tuned.state_dict()), tuned.generator)
        print(f"  seed {seed}: supervised bound ({config.supervised_epochs} epochs on labelled domain2_train)")
        supervised, _ = fine_tune(data, plain_state, backbone_config, "domain2_train", config.supervised_epochs,
                                  lr, False, None, config.guards, config.progress)
        record(UPPER, seed, supervised.generator)

        print(f"  seed {seed}: slice VAE ({config.vae.epochs} epochs)")
        vae, slice_config = train_vae_in_process(data, dataclasses.replace(config.vae, seed=42 + seed),
                                                 config.slice_size)
        for base_name, (state, generator) in bases.items():
            prefix = "" if base_name == "plain" else f"{base_name}+"
            record(f"{prefix}hist_match", seed, InputMapped(HistogramMatch(reference_quantiles), generator))
            adabn = copy.deepcopy(generator)
            layers = reestimate_norm_statistics(adabn, [x[None] for x in data.inputs("domain2_val")])
            if layers:
                record(f"{prefix}adabn", seed, adabn)
            elif base_name == "plain" and seed == 0:
                print("    adabn: the generator has no running normalisation statistics (InstanceNorm): "
                      "AdaBN is the identity, not scored separately")
            harmoniser, sw = fit_harmoniser(data.inputs("domain2_val"), data.inputs("domain1_train"),
                                            dataclasses.replace(config.harmoniser, seed=seed))
            record(f"{prefix}harmoniser_sw", seed, InputMapped(harmoniser, generator),
                   f"SW {sw[0]:.4f} -> {sw[-1]:.4f}")
            for variant, prior in (("kl_subject", "subject"), ("kl_population", "population")):
                adapt = dataclasses.replace(config.adapt, prior=prior, seed=seed)
                adapted, story = adapt_latent(data, state, backbone_config, vae, slice_config, adapt, config.guards)
                history = story["history"]
                traces.append({"seed": seed, "run": f"{prefix}{variant}", "signal": "latent objective",
                               "trace": [{"epoch": h["epoch"], "label_free": h["objective"],
                                          "target_test_psnr": h["eval_target_test_psnr"]} for h in history]})
                record(f"{prefix}{variant}", seed, adapted,
                       f"objective {history[0]['objective']:.3g} -> {history[-1]['objective']:.3g}, "
                       f"kept epoch {story['kept_epoch']}")
        seed_results = {r.method: r for r in results if r.seed == seed and r.method != UPPER}
        name, reason = choose_model([CandidateScore(r.method, r.label_free, r.source_val_psnr)
                                     for r in seed_results.values()], BASELINE, config.guards.max_source_drop)
        picks.append({"seed": seed, "method": name, "target_psnr": seed_results[name].target["psnr"],
                      "reason": reason})
        print(f"  seed {seed}: label-free pick: {reason}")

    rows = summarise_methods(results)
    report = {"rows": rows, "picks": picks, "signals": _signal_correlations(traces, spearman),
              "config": _jsonable(asdict(config)), "elapsed_s": time.perf_counter() - started,
              "traces": traces}
    report["files"] = _write_outputs(workdir, rows, report, config)
    return report


def _signal_correlations(traces: list[dict[str, Any]], spearman) -> dict[str, dict[str, float]]:
    """Per label-free signal: mean and per-run Spearman correlation with target PSNR across checkpoints."""
    out: dict[str, dict[str, Any]] = {}
    for t in traces:
        rho = spearman([c["label_free"] for c in t["trace"]], [c["target_test_psnr"] for c in t["trace"]])
        entry = out.setdefault(t["signal"], {"per_run": []})
        entry["per_run"].append({"seed": t["seed"], "run": t["run"], "spearman": rho})
    for entry in out.values():
        finite = [r["spearman"] for r in entry["per_run"] if not math.isnan(r["spearman"])]
        entry["mean_spearman"] = sum(finite) / len(finite) if finite else math.nan
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_outputs(workdir: Path, rows, report: dict[str, Any], config: CompareConfig) -> dict[str, str]:
    from uda3d.compare.report import bar_chart, write_csv, write_markdown
    from uda3d.io.atomic import atomic_file
    from uda3d.tracking import Tracker

    signals = report["signals"]
    header = (f"Target-test PSNR inside the brain, mean +- std over {config.seeds} seed(s); gap share = share of the "
              "no-adaptation -> supervised gap recovered; Wilcoxon: paired over (seed, subject) vs no adaptation.")
    footer = "\n".join([f"- Spearman({name}, target PSNR) across checkpoints: {s['mean_spearman']:.2f} (mean over "
                        f"{len(s['per_run'])} runs)" for name, s in signals.items()]
                       + [f"- label-free pick, seed {p['seed']}: {p['method']} ({p['target_psnr']:.2f} dB)"
                          for p in report["picks"]]
                       + [f"- wall time {report['elapsed_s'] / 60:.1f} min"])
    files = {"csv": str(write_csv(workdir / "comparison.csv", rows)),
             "markdown": str(write_markdown(workdir / "comparison.md", rows, header, footer)),
             "figure": str(bar_chart(workdir / "comparison.png", rows,
                                     f"target-test PSNR, {config.seeds} seed(s), mean +- std"))}
    files["json"] = str(workdir / "comparison.json")
    with atomic_file(workdir / "comparison.json") as tmp:
        tmp.write_text(json.dumps({**report, "files": files}, indent=2, default=float) + "\n")
    tracker = Tracker(config.tracking)
    tracker.start("compare-methods", params={k: v for k, v in report["config"].items() if k != "tracking"},
                  tags={"stage": "compare-methods"})
    for row in rows:
        name = row["method"].replace("+", "/")  # MLflow metric names allow no '+'
        tracker.log_metrics({f"{name}.{key}": row[key] for key in ("target_psnr", "target_psnr_std", "source_kept_db")},
                            step=0)
    for path in files.values():
        tracker.log_artifact(path)
    tracker.end()
    return files
