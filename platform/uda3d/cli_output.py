"""What a person sees of a command: the library's log records as lines, and each command's results.

The library logs its narration (``log.info``) and returns results; ``uda3d.cli`` decides what to print,
with the helpers here.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from uda3d.cli_parser import EXIT_BAD_INPUT


class _Stream(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` / ``sys.stderr`` is when a record comes (tests swap them)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_of_stream = name

    @property
    def stream(self):  # type: ignore[override]
        return getattr(sys, self.name_of_stream)

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(debug: bool) -> None:
    """The library's narration (``uda3d`` INFO) as plain lines on stdout, its warnings with their level on stderr.

    Other libraries log through the root logger as before; calling ``main`` again adds no second handler.
    """
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig, but the uda3d records are shown by their own handlers
        other = _Stream("stderr")
        other.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        other.addFilter(lambda record: not record.name.startswith("uda3d"))
        root.addHandler(other)
        root.setLevel(logging.INFO)
    library = logging.getLogger("uda3d")
    for handler in [h for h in library.handlers if getattr(h, "uda3d_cli", False)]:
        library.removeHandler(handler)
    out, err = _Stream("stdout"), _Stream("stderr")
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for handler in (out, err):
        handler.uda3d_cli = True  # type: ignore[attr-defined]
        library.addHandler(handler)
    library.setLevel(logging.DEBUG if debug else logging.INFO)


def validation(root: Path, report) -> int:
    """A data check's summary on stdout, one problem a line on stderr; the exit code (2 if any problem)."""
    for line in report.summary_lines():
        print(line)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if report.ok:
        print(f"{root}: OK")
        return 0
    # the summary (stdout) says where the problems went, so a log of either stream is not silently half
    print(f"{root}: {len(report.problems)} problem(s), one line each on stderr")
    print(f"{root}: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_BAD_INPUT


def stage_result(stage: str, result, keys: list[str]) -> None:
    """A Ray Train stage's checkpoint, final metrics and MLflow run."""
    shown = {k: round(result.metrics[k], 5) for k in ["epoch", *keys] if k in result.metrics}
    print(f"{stage} checkpoint: {result.checkpoint}")
    print(f"final metrics: {shown}")
    if result.mlflow_run_id:
        print(f"MLflow run: {result.mlflow_run_id}")


def adaptation(outcome) -> None:
    """The adaptation's epochs (objective, source-val and target-test PSNR), its guard and its model."""
    print(f"{'epoch':>5}{'objective':>12}{'source-val PSNR':>17}{'target-test PSNR (eval only)':>30}")
    for h in outcome.history:
        target = h.get("eval_target_test_psnr")
        print(f"{int(h['epoch']):>5}{h['objective']:>12.4f}{h['source_val_psnr']:>17.2f}"
              f"{'' if target is None else f'{target:.2f}':>30}")
    print(f"guard: {outcome.decision['reason']}")
    print(f"Spearman(objective, target-test PSNR) across checkpoints: "
          f"{outcome.decision['spearman_objective_vs_target_psnr']:.2f}")
    print(f"adapted model: {outcome.checkpoint}")


def pipeline(report: dict[str, Any], workdir: Path) -> None:
    """The pipeline's before/after table, choices, outputs and what it skipped."""
    from uda3d.pipeline import format_table

    print(format_table(report))
    print(f"uda (label-free choice): {report['uda']['selection']['reason']}")
    print(f"method_kl guard: {report['method_kl']['guard']['reason']}")
    synthesis = report["synthesis"]
    print(f"synthesized T1 + uncertainty maps: {synthesis['folder']}/<split>/ (quality.csv in each)")
    if synthesis["outside_source_range"]:
        print(f"outside the source's intensity range: {', '.join(synthesis['outside_source_range'])}")
    for part, reason in report["skipped"].items():
        print(f"skipped {part}: {reason}")
    if report.get("registered_model"):
        print(f"registered model: {report['registered_model']['uri']}")
    print(f"report: {workdir / 'report.json'}")


def method_comparison(report: dict[str, Any], workdir: Path) -> None:
    """Each target site's table of methods and how well each label-free signal ranked them."""
    from uda3d.compare.report import markdown_table

    for name, site in report["sites"].items():
        print(f"target site {name}:")
        print(markdown_table(site["rows"]))
        for signal, s in site["signals"].items():
            print(f"Spearman({signal}, target PSNR) across candidates: {s['rho_oriented']:+.2f} (n={s['n']})")
    print(f"tables and figures: {workdir}/<site>/comparison.{{md,csv,png}}")


def interrupted(kind: str, summary: dict[str, Any]) -> int:
    print(f"{kind} {summary['study']} interrupted after {summary['trials']} of {summary['planned']} trials; "
          "run the same command with --resume to finish it")
    return 130


def tuning(space, summary: dict[str, Any], study_dir: Path) -> int:
    """A tuning run's trials, its label-free best and what was registered; the exit code."""
    if summary.get("interrupted"):
        return interrupted("study", summary)
    print(f"study {space.name}: {summary['trials']} of {summary['planned']} trials, "
          f"{summary['stopped_early']} stopped early (ASHA or a guard)")
    best = summary["best"]
    if best:
        shown = {p.name: best[p.name] for p in space.params}
        oracle = best["target_test_psnr"]
        print(f"best without target labels ({space.metric}, {space.mode}): {shown} -> {best[space.metric]:.4f}; "
              + (f"oracle target-test PSNR {oracle:.2f} dB" if not math.isnan(oracle) else "no oracle (no T1 on "
                 "domain2_test)"))
    else:
        print("no trial kept every guard: nothing registered")
    if summary["registered_model"]:
        print(f"registered: {summary['registered_model']['uri']}")
    print(f"Spearman(label-free metric, target-test PSNR) across trials: "
          f"{summary['spearman_label_free_vs_target_psnr']:.2f}")
    print(f"trials: {study_dir / 'trials.csv'}")
    return 0


def study(space, summary: dict[str, Any]) -> int:
    """A study's points (metric mean +- seed std, guards kept) and where its tables are; the exit code."""
    from uda3d.tuning.study import format_value

    if summary.get("interrupted"):
        return interrupted("study", summary)
    for note in summary["notes"]:
        print(f"note: {note}")
    metric = summary["metric"]
    names = [p.name for p in space.params]
    print(f"study {space.name} ({summary['design']}): {summary['trials']} trials, seeds {summary['seeds']}; "
          f"no adaptation: target-test PSNR {summary['no_adaptation_target_test_psnr']:.2f} dB")
    print("  " + "".join(f"{n:>16}" for n in names) + f"{metric + ' (mean +- seed std)':>36}{'guards kept':>13}")
    for point in summary["points"]:
        print("  " + "".join(f"{format_value(point[n]):>16}" for n in names)
              + f"{point[f'{metric}_mean']:>27.3f} +- {point[f'{metric}_std']:<6.3f}"
              + f"{point['guard_ok']:>9}/{point['seeds']}")
    print(f"tables and figures: {Path(summary['files']['points']).parent}")
    return 0


def synthesis(rows: list[dict[str, Any]], out: Path, device) -> None:
    flagged = [r["subject"] for r in rows if r.get("outside_source_range")]
    print(f"wrote {len(rows)} synthesized T1 volume(s) to {out} ({device}); quality estimates in "
          f"{out / 'quality.csv'}")
    if flagged:
        print(f"outside the source's intensity range (check these first): {', '.join(flagged)}")


def demo_pipeline(report: dict[str, Any], workdir: Path) -> None:
    """The demo's pipeline step: the before/after table and what it chose, registered and wrote."""
    from uda3d.pipeline import format_table

    print(format_table(report))
    print(f"  uda (label-free choice): {report['uda']['selection']['reason']}")
    print(f"  method_kl guard: {report['method_kl']['guard']['reason']}")
    print(f"  Spearman(KL objective, target PSNR) across adaptation checkpoints: "
          f"{report['spearman_objective_vs_target_psnr']:.2f}")
    print(f"  synthesized T1 + uncertainty maps for every target subject: {report['synthesis']['folder']}/<split>/; "
          f"uda registered as {report.get('registered_model', {}).get('uri', '-')}")
    print(f"  report: {workdir / 'report.json'}; figure: {report['files']['figure']}")


def demo_tuning(summary: dict[str, Any], tracking, workdir: Path) -> None:
    """The demo's closing tuning run, and the commands that show every run."""
    best = summary["best"]
    print(f"  {summary['trials']} trials, {summary['stopped_early']} stopped early; best without target labels: "
          + (f"lr {best['lr']:.2g}, ele_percent {best['ele_percent']:.0f} (oracle target-test PSNR "
             f"{best['target_test_psnr']:.2f} dB), registered as {summary['registered_model'].get('uri', '-')}"
             if best else "none kept every guard"))
    print(f"  Spearman(label-free metric, target-test PSNR) across trials: "
          f"{summary['spearman_label_free_vs_target_psnr']:.2f}")
    print(f"  look at every run: mlflow ui --backend-store-uri {tracking.uri}   (then open http://127.0.0.1:5000)")
    print(f"  compare the trials: uda3d compare --workdir {workdir} --experiment {tracking.experiment} "
          "--filter \"tags.stage = 'tune-trial'\"")
