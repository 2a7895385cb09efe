"""``uda3d compare-methods``: every adaptation method against a budget-matched control, subjects as the unit.

Per seed, in one process (the comparison is many short fits; Ray Train's per-launch start-up would
dominate them, and the same library trainers are used either way):

1. ``no_adaptation``: the backbone trained from scratch on ``domain1_train``.
2. Source-side candidates, each fine-tuned from it for ``finetune_epochs`` (same lr, schedule and
   checkpoint rule: the last epoch): ``robust`` (random input-intensity augmentation),
   ``robust_spatial`` (plus spatial augmentation of inputs and T1 alike), ``ttt_joint`` (the backbone
   grows an auxiliary input-reconstruction head trained jointly, ``uda3d.adaptation.ttt``).
3. ``source_ft``, the **control**: the same fine-tune with the standard augmentation only and no
   target data, for ``finetune_epochs`` plus as many epochs as the source steps the target-side
   methods take beside their own, so it has trained at least as much as any candidate.
4. Per target site (``dataroot`` and each of ``extra_dataroots``, sharing the source splits):
   ``ttt_site`` (site-level TTT on ``domain2_train`` inputs, epoch chosen by the auxiliary loss on
   the held-back ``domain2_val`` inputs), ``ttt_subject`` and ``ttt_site+subject`` (per-subject TTT
   before each volume is synthesized), ``self_train`` (uncertainty-masked self-training of
   ``robust`` on ``domain2_train`` inputs), ``kl`` (the method's latent-KL adaptation), and the
   ``supervised`` bound (fine-tuned on labelled ``domain2_train``).

Every model is scored per subject on ``domain2_test`` (target) and ``domain1_test`` (source).
Target-side methods get target batches *without* their T1 (``Data.unlabelled``), so they cannot
read it; target T1 serves only the supervised bound, the scores and the oracle columns that tell
how well each label-free signal ranks candidates (``uda3d.compare.signals``). ``uda`` is the
label-free pick per seed: the best ``selection_signal`` (the highest source-val PSNR by default) within
the source guard when the signal was validated on the development cohort, else the documented
``fallback_method``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uda3d.compare.table import BASELINE, CONTROL, UPPER, MethodResult, summarise_methods
from uda3d.config import (
    CANDIDATES,
    JOINT_AUX_WEIGHT,
    SIGNALS,
    AdaptConfig,
    BackboneConfig,
    CompareConfig,
    VAEConfig,
)
from uda3d.data.in_memory import Data, load_data
from uda3d.errors import DataError
from uda3d.evaluation import score
from uda3d.training.pix2pix import Pix2PixTrainer

SOURCE_SPLITS = ("domain1_train", "domain1_val", "domain1_test")
UDA = "uda"
REFERENCE = (BASELINE, CONTROL)
CPU = torch.device("cpu")
log = logging.getLogger(__name__)


def fine_tune(data: Data, start: dict, config: BackboneConfig, split: str, epochs: int, lr: float,
              progress: bool, device: torch.device = CPU, **changes: Any):
    """Fine-tune ``start`` on labelled ``split`` for ``epochs`` at constant ``lr``; keeps the last epoch.

    One rule for every source-side candidate and the control, so only the ingredient differs.
    """
    from uda3d.training.pix2pix import fit_backbone

    cfg = config.fine_tune(epochs, lr=lr, **changes)
    trainer = Pix2PixTrainer.from_state(cfg, start, device)
    fit_backbone(trainer, lambda e: data.batches(split, cfg.seed * 1000 + e), None, lambda m: None,
                 progress=progress)
    return trainer


def train_vae_in_process(data: Data, config: VAEConfig, slice_size: int, device: torch.device = CPU):
    """The slice VAE on source-training T1 slices, one volume per batch (as ``uda3d train-vae``)."""
    from uda3d.config import SliceConfig
    from uda3d.data.slices import volume_to_slices
    from uda3d.training.vae import VAETrainer, fit_vae

    slice_config = SliceConfig(size=slice_size)
    volumes = [volume_to_slices(item["target"][0], slice_config) for item in data.items["domain1_train"]]
    trainer = VAETrainer(config, slice_size, device)
    fit_vae(trainer, lambda e: volumes, None, lambda m: None)
    return trainer, slice_config


def adapt_latent(data: Data, base_state: dict, base_config: BackboneConfig, vae, slice_config, adapt: AdaptConfig,
                 guards, target_split: str = "domain2_train", device: torch.device = CPU
                 ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The method's adaptation (or a prior variant) from ``base_state``; returns (generator, trace)."""
    from uda3d.adaptation.trainer import adaptation_trainer, fit_adapt

    trainer = adaptation_trainer({**base_state, "config": asdict(base_config)},
                                 {**vae.state_dict(), "slice_config": asdict(slice_config)}, adapt, device)
    backbone = trainer.backbone
    references = [item["target"][None] for item in data.items["domain1_train"]]
    history: list[dict[str, float]] = []

    def oracle() -> dict[str, float]:
        return {"target_test_psnr": score(backbone.generator, data.items["domain2_test"])[0]["psnr"]}

    result = fit_adapt(trainer, lambda e: data.batches("domain1_train", adapt.seed * 1000 + e),
                       lambda: data.unlabelled(target_split), lambda: data.batches("domain1_val"), references,
                       guards, report=history.append, evaluate=oracle)
    return backbone.generator, {"history": history, "kept_epoch": result.decision.kept_epoch,
                                "reason": result.decision.reason}


def control_epochs(config: CompareConfig, n_source: int, n_target: int) -> int:
    """Epochs of ``source_ft``: the candidates' fine-tune plus the source steps target-side methods add.

    Site-level TTT and self-training each take one supervised source step per target volume and epoch;
    the control gets the larger of those step counts, rounded up to whole source epochs.
    """
    extra_steps = 0
    if {"ttt_site", "ttt_site+subject"} & set(config.methods) and config.ttt.source_step:
        extra_steps = max(extra_steps, config.ttt.epochs * n_target)
    if "self_train" in config.methods:
        extra_steps = max(extra_steps, config.self_train.epochs * config.self_train.rounds * n_target)
    if "kl" in config.methods and config.adapt.source_step:
        extra_steps = max(extra_steps, config.adapt.epochs * n_target)
    return config.finetune_epochs + math.ceil(extra_steps / max(n_source, 1))


def load_sites(config: CompareConfig) -> dict[str, Data]:
    """Each target site's data, keyed by its root's folder name; every root must share the source splits."""
    cache = Path(config.workdir) / "cache"
    sites: dict[str, Data] = {}
    for root in (config.dataroot, *config.extra_dataroots):
        name = Path(root).resolve().name
        if name in sites:
            raise DataError(root, f"two target roots share the folder name {name!r}; rename one")
        data = load_data(root, config.preprocess, cache)
        for split in SOURCE_SPLITS if sites else ():
            mine, theirs = data.items[split], next(iter(sites.values())).items[split]
            if [it["id"] for it in mine] != [it["id"] for it in theirs] or any(
                    not torch.equal(a["input"], b["input"]) for a, b in zip(mine, theirs)):
                raise DataError(Path(root) / split,
                                f"differs from {Path(config.dataroot) / split}: --extra-dataroots must share the "
                                "source splits (generate them with the same seed and source site)")
        sites[name] = data
    return sites


class _Scorer:
    """Scores models and computes their label-free signals; collects ``MethodResult``s and signal records.

    A model trained on the source only (``shared``) is the same model on every target site: its
    source-test scores and source-side signals are computed once per (method, seed) and reused.
    """

    def __init__(self, config: CompareConfig, source: Data) -> None:
        from uda3d.adaptation.selection import augmented_source_set, kspace_source_set

        self.config = config
        self.source = source
        self.sets = {"aug_source_mae": augmented_source_set(source.items["domain1_val"], config.selection_copies),
                     "kspace_source_mae": kspace_source_set(source.items["domain1_val"], config.selection_copies)}
        self.results: dict[str, list[MethodResult]] = {}
        self.signal_records: list[dict[str, Any]] = []
        self._source_side: dict[tuple[str, int], tuple[dict, dict[str, float]]] = {}

    def source_side(self, generator: torch.nn.Module, perturbed: bool) -> tuple[dict, dict[str, float]]:
        """(source-test per-subject metrics, source-val PSNR and the perturbed source-val MAEs)."""
        from uda3d.adaptation.selection import augmented_source_error

        tests = score(generator, self.source.items["domain1_test"])[1]
        signals = {"source_val_psnr": score(generator, self.source.items["domain1_val"])[0]["psnr"]}
        if perturbed:
            signals.update({name: augmented_source_error(generator, s) for name, s in self.sets.items()})
        return tests, signals

    def record(self, site_name: str, site: Data, method: str, seed: int, generator: torch.nn.Module,
               note: str = "", per_subject: bool = False, shared: bool = False) -> MethodResult:
        """Score ``generator`` on target-test and source-test subjects (per-subject TTT: no perturbed signals)."""
        from uda3d.adaptation.ttt import held_out_auxiliary_loss
        from uda3d.models.ttt import TTTGenerator

        target = score(generator, site.items["domain2_test"])[1]
        key = (method, seed)
        if shared and key in self._source_side:
            source, signals = self._source_side[key]
        else:
            source, signals = self.source_side(generator, perturbed=not per_subject)
            if shared:
                self._source_side[key] = (source, signals)
        signals = dict(signals)
        if isinstance(generator, TTTGenerator):  # held-back volumes of this target site
            signals["held_out_aux_loss"] = held_out_auxiliary_loss(generator, site.unlabelled("domain2_val"),
                                                                   self.config.ttt)
        result = MethodResult(method, seed, target, source, signals["source_val_psnr"], signals, note)
        self.results.setdefault(site_name, []).append(result)
        oracle = sum(m["psnr"] for m in target.values()) / len(target)
        if method not in (UPPER,):
            self.signal_records.append({"site": site_name, "method": method, "seed": seed, "oracle_psnr": oracle,
                                        **signals})
        log.info(f"    [{site_name}] {method:<18} target {oracle:6.2f} dB  source "
                 f"{sum(m['psnr'] for m in source.values()) / len(source):6.2f} dB"
                 + "".join(f"  {k} {v:.4g}" for k, v in signals.items()) + (f"  ({note})" if note else ""))
        return result


def compare_methods(config: CompareConfig) -> dict[str, Any]:
    """Run the comparison; writes ``WORKDIR/<site>/comparison.{csv,md,png,json}`` and returns the report."""
    from uda3d.adaptation.self_training import self_train
    from uda3d.adaptation.ttt import PerSubjectTTT, adapt_site
    from uda3d.inference import resolve_device
    from uda3d.training.pix2pix import fit_backbone

    device = resolve_device("cuda" if config.use_gpu else "cpu", "--use-gpu")
    workdir = Path(config.workdir)
    started = time.perf_counter()
    sites = load_sites(config)
    source = next(iter(sites.values()))
    n_source, n_target = len(source.items["domain1_train"]), len(source.items["domain2_train"])
    ft_epochs = control_epochs(config, n_source, n_target)
    scorer = _Scorer(config, source)
    traces: list[dict[str, Any]] = []
    methods = set(config.methods)

    for seed in range(config.seeds):
        backbone_config = dataclasses.replace(config.backbone, seed=seed)
        lr = backbone_config.lr * config.finetune_lr_factor
        log.info(f"  seed {seed}: backbone ({backbone_config.total_epochs} epochs)")
        plain = Pix2PixTrainer.from_state(backbone_config, device=device)
        fit_backbone(plain, lambda e: source.batches("domain1_train", seed * 1000 + e), None, lambda m: None,
                     progress=config.progress)
        plain_state = copy.deepcopy(plain.state_dict())
        source_models: dict[str, Any] = {BASELINE: plain}
        log.info(f"  seed {seed}: source_ft control ({ft_epochs} epochs) and source-side candidates "
                 f"({config.finetune_epochs} epochs each, lr {lr:g})")
        source_models[CONTROL] = fine_tune(source, plain_state, backbone_config, "domain1_train", ft_epochs, lr,
                                           config.progress, device)
        if {"robust", "self_train"} & methods:
            source_models["robust"] = fine_tune(source, plain_state, backbone_config, "domain1_train",
                                                config.finetune_epochs, lr, config.progress, device,
                                                robust_augment=True)
        if "robust_spatial" in methods:
            source_models["robust_spatial"] = fine_tune(source, plain_state, backbone_config, "domain1_train",
                                                        config.finetune_epochs, lr, config.progress, device,
                                                        robust_augment=True, spatial_augment=True)
        if methods & {"ttt_joint", "ttt_site", "ttt_subject", "ttt_site+subject"}:
            source_models["ttt_joint"] = fine_tune(source, plain_state, backbone_config, "domain1_train",
                                                   config.finetune_epochs, lr, config.progress, device,
                                                   aux_weight=JOINT_AUX_WEIGHT)
        vae = None
        if "kl" in methods:
            log.info(f"  seed {seed}: slice VAE ({config.vae.epochs} epochs)")
            vae = train_vae_in_process(source, dataclasses.replace(config.vae, seed=42 + seed), config.slice_size,
                                       device)

        for site_name, site in sites.items():
            for name in (BASELINE, CONTROL, "robust", "robust_spatial", "ttt_joint"):
                if name in source_models and (name in REFERENCE or name in methods):
                    scorer.record(site_name, site, name, seed, source_models[name].generator, shared=True)
            joint = source_models.get("ttt_joint")
            if joint is not None and methods & {"ttt_site", "ttt_site+subject"}:
                adapted = copy.deepcopy(joint)
                story = adapt_site(adapted, lambda: site.unlabelled("domain2_train"),
                                   lambda: site.unlabelled("domain2_val"),
                                   lambda e: source.batches("domain1_train", seed * 1000 + 500 + e),
                                   lambda: source.batches("domain1_val"), dataclasses.replace(config.ttt, seed=seed),
                                   config.guards.max_source_drop,
                                   evaluate=lambda a=adapted: {"target_test_psnr": score(
                                       a.generator, site.items["domain2_test"])[0]["psnr"]})
                traces.append({"site": site_name, "seed": seed, "run": "ttt_site", "signal": "held_out_aux_loss",
                               "trace": [{"epoch": h["epoch"], "label_free": h["held_out_aux_loss"],
                                          "source_val_psnr": h["source_val_psnr"],
                                          "target_test_psnr": h["eval_target_test_psnr"]} for h in story.history]})
                if "ttt_site" in methods:
                    scorer.record(site_name, site, "ttt_site", seed, adapted.generator, story.reason)
                if "ttt_site+subject" in methods:
                    scorer.record(site_name, site, "ttt_site+subject", seed,
                                  PerSubjectTTT(adapted.generator, config.ttt), per_subject=True)
            if joint is not None and "ttt_subject" in methods:
                scorer.record(site_name, site, "ttt_subject", seed, PerSubjectTTT(joint.generator, config.ttt),
                              per_subject=True, shared=True)
            if "self_train" in methods:
                student = copy.deepcopy(source_models["robust"])
                history = self_train(student, lambda e: site.unlabelled("domain2_train"),
                                     lambda e: source.batches("domain1_train", seed * 1000 + 700 + e),
                                     dataclasses.replace(config.self_train, seed=seed))
                scorer.record(site_name, site, "self_train", seed, student.generator,
                              f"kept {history[-1]['kept_fraction']:.2f} of the brain")
            if vae is not None:
                adapt = dataclasses.replace(config.adapt, seed=seed)
                adapted_kl, story = adapt_latent(site, plain_state, backbone_config, vae[0], vae[1], adapt,
                                                 config.guards, device=device)
                scorer.record(site_name, site, "kl", seed, adapted_kl, f"kept epoch {story['kept_epoch']}")
            log.info(f"  [{site_name}] seed {seed}: supervised bound ({config.supervised_epochs} epochs on labelled "
                     "domain2_train)")
            supervised = fine_tune(site, plain_state, backbone_config, "domain2_train", config.supervised_epochs, lr,
                                   config.progress, device)
            scorer.record(site_name, site, UPPER, seed, supervised.generator)

    report = {"sites": {}, "config": _jsonable(asdict(config)), "control_epochs": ft_epochs,
              "elapsed_s": time.perf_counter() - started}
    for site_name, results in scorer.results.items():
        picks = pick_uda(results, config)
        uda_results = [dataclasses.replace(next(r for r in results if r.seed == p["seed"] and r.method == p["method"]),
                                           method=UDA, note=f"seed {p['seed']}: {p['method']}") for p in picks]
        rows = summarise_methods(results + uda_results)
        site_records = [r for r in scorer.signal_records if r["site"] == site_name]
        report["sites"][site_name] = {
            "rows": rows, "picks": picks, "signals": signal_validity(site_records, config),
            "traces": [t for t in traces if t["site"] == site_name], "signal_records": site_records,
            "results": [asdict(r) for r in results]}
    report["signals_all_sites"] = signal_validity(scorer.signal_records, config)
    report["elapsed_s"] = time.perf_counter() - started
    report["files"] = _write_outputs(workdir, report, config)
    return report


def pick_uda(results: list[MethodResult], config: CompareConfig) -> list[dict[str, Any]]:
    """Per seed, the label-free choice of ``uda`` (see the module docstring); never reads target scores.

    The pool is the adaptation candidates and ``no_adaptation`` (always safe): never the control
    ``source_ft``, which ``uda`` is measured against, nor the supervised bound.
    """
    picks = []
    for seed in sorted({r.seed for r in results}):
        pool = {r.method: r for r in results if r.seed == seed and r.method not in (CONTROL, UPPER)}
        if config.signal_usable:
            name, lower = config.selection_signal, dict((n, lo) for n, _, lo in SIGNALS)[config.selection_signal]
            floor = pool[BASELINE].source_val_psnr - config.guards.max_source_drop
            allowed = [r for r in pool.values() if name in r.label_free and math.isfinite(r.label_free[name])
                       and (r.source_val_psnr >= floor or r.method == BASELINE)]
            best = (min if lower else max)(allowed, key=lambda r: r.label_free[name])
            picks.append({"seed": seed, "method": best.method,
                          "reason": f"{'lowest' if lower else 'highest'} {name} within the source guard"})
        else:
            method = config.fallback_method if config.fallback_method in pool else BASELINE
            picks.append({"seed": seed, "method": method,
                          "reason": f"fallback rule: {config.selection_signal} did not reach Spearman 0.6 across "
                                    "candidates on the development cohort"})
    return picks


def signal_validity(records: list[dict[str, Any]], config: CompareConfig) -> dict[str, dict[str, Any]]:
    """Each signal's Spearman with oracle target PSNR across candidates x seeds x sites, and eligibility."""
    from uda3d.compare.signals import SignalRecord, across_candidate_spearman, excluded_candidates, usable
    from uda3d.config import SignalSpec

    candidates = {m: CANDIDATES[m] for m in {r["method"] for r in records} if m in CANDIDATES}
    out = {}
    for name, families, lower in SIGNALS:
        rows = [SignalRecord(r["method"], r["seed"], r["site"], float(r[name]), r["oracle_psnr"])
                for r in records if name in r]
        result = across_candidate_spearman(rows, lower_is_better=lower)
        result["excluded_by"] = excluded_candidates(SignalSpec(name, families), candidates)
        result["eligible"] = not result["excluded_by"]
        result["usable"] = usable(result) and result["eligible"]
        out[name] = result
    return out


def _eligibility(signal: dict[str, Any]) -> str:
    if signal["eligible"]:
        return ""
    return f"; not eligible: {', '.join(signal['excluded_by'])} trained on its perturbations"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_outputs(workdir: Path, report: dict[str, Any], config: CompareConfig) -> dict[str, str]:
    from uda3d.compare.report import bar_chart, write_csv, write_markdown
    from uda3d.io.tables import write_json
    from uda3d.tracking import Tracker

    files: dict[str, str] = {}
    for site_name, site in report["sites"].items():
        out = workdir / site_name
        out.mkdir(parents=True, exist_ok=True)
        rows = site["rows"]
        header = (f"Target site `{site_name}`: {config.seeds} seed(s), {rows[0]['subjects']} target-test subjects. "
                  f"Per-subject metrics are averaged over seeds; p = paired Wilcoxon over subjects; CI = 95% "
                  f"bootstrap over subjects; seed sd = spread of the cohort mean over seeds. Control `{CONTROL}` "
                  f"trained {report['control_epochs']} source epochs on top of the backbone (candidates "
                  f"{config.finetune_epochs} + their adaptation's source steps).")
        signal_lines = [f"- {name}: Spearman across candidates {s['rho_oriented']:+.2f} (n={s['n']}; oriented, "
                        f"higher = better ranking){_eligibility(s)}" for name, s in site["signals"].items()]
        footer = "\n".join(["Label-free signals (oracle used only here, to validate them):", *signal_lines,
                            *[f"- uda pick, seed {p['seed']}: {p['method']} ({p['reason']})" for p in site["picks"]],
                            f"- wall time (whole comparison) {report['elapsed_s'] / 60:.1f} min"])
        files[f"{site_name}.csv"] = str(write_csv(out / "comparison.csv", rows))
        files[f"{site_name}.md"] = str(write_markdown(out / "comparison.md", rows, header, footer))
        files[f"{site_name}.png"] = str(bar_chart(out / "comparison.png", rows,
                                                  f"{site_name}: gain over {CONTROL}, {config.seeds} seeds, "
                                                  "95% CI over subjects"))
    files["json"] = str(workdir / "comparison.json")
    write_json(workdir / "comparison.json", {**report, "files": files})
    tracker = Tracker(config.tracking)
    tracker.start("compare-methods", params={k: v for k, v in report["config"].items() if k != "tracking"},
                  tags={"stage": "compare-methods"})
    for site_name, site in report["sites"].items():
        for row in site["rows"]:
            name = f"{site_name}.{row['method']}".replace("+", "_and_")  # MLflow metric names allow no '+'
            tracker.log_metrics({f"{name}.{key}": row[key] for key in
                                 ("target_psnr", "target_psnr_seed_std", "gain_psnr_vs_control", "source_kept_db")
                                 if isinstance(row[key], float) and math.isfinite(row[key])}, step=0)
    for path in files.values():
        tracker.log_artifact(path)
    tracker.end()
    return files
