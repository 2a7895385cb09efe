"""Start-up of each stage in one Ray session: a fit per stage against the stage pool, and study trials.

The pipeline runs its training stages one after another in one Ray session. Each stage used to be
its own ``TorchTrainer.fit`` (a controller, a worker group, the worker's imports); inside
``uda3d.training.stage_pool.stage_pool`` (what ``uda3d pipeline`` opens) the first stage starts one
worker group and every later stage runs on it. This runs ``--stages`` identical small stages
(a few SIT epochs on random volumes) each way, through ``uda3d.training.ray_runtime.launch``, and
reports per stage:

- start-up: from ``launch`` being called to the first line of the training loop in the worker
  (the very first stage also pays ``ray.init``);
- the loop itself, and the whole stage (``launch`` returning);
- the ratio of the stage to the same loop run in this process without Ray.

Then the same work as ``--stages`` Tune trials run one at a time, as ``uda3d study`` and
``uda3d tune`` run theirs, with Tune's ``reuse_actors`` off and on (uda3d's setting).

    python benchmarks/stage_overhead.py [--stages 4] [--epochs 2]

Results go to ``benchmarks/results/stage_overhead.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "stage_overhead.md"
SHAPE = (32, 48, 48)


def small_training(epochs: int) -> float:
    """A few epochs of a small SIT generator on random volumes; returns its seconds."""
    import torch

    from uda3d.models.sit import SITGenerator

    torch.manual_seed(0)
    model = SITGenerator(ngf=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.rand(4, 1, 2, *SHAPE), torch.rand(4, 1, 1, *SHAPE)
    start = time.perf_counter()
    for _ in range(epochs):
        for xi, yi in zip(x, y):
            opt.zero_grad()
            torch.nn.functional.l1_loss(model(xi), yi).backward()
            opt.step()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Spec:
    """The least a stage's spec holds for ``launch``: its ``StageRun`` (scaling, run name, storage)."""

    stage: Any
    epochs: int


def worker(job) -> None:
    """The stage's training loop: records when it began (wall clock) and how long the work took."""
    began = time.time()
    from uda3d.training.ray_runtime import report

    seconds = small_training(job.spec.epochs)
    with tempfile.TemporaryDirectory() as directory:  # a stage always leaves a checkpoint
        Path(directory, "done").write_text("1")
        report({"loop_began": began, "loop_s": seconds}, directory)


def run_stages(way: str, stages: int, epochs: int, workdir: str, plain: float) -> list[dict[str, Any]]:
    """``stages`` stages one after another, each a fresh ``fit`` (``way="fresh"``) or all in one pool."""
    from uda3d.config import ScalingOptions, StageRun
    from uda3d.training.ray_runtime import StageJob, launch
    from uda3d.training.stage_pool import stage_pool

    scaling = ScalingOptions(num_workers=1)
    rows = []
    with stage_pool(scaling, Path(workdir) / "ray_results") if way == "pool" else contextlib.nullcontext():
        for i in range(stages):
            stage = StageRun(dataroot="", workdir=workdir, scaling=scaling, run_name=f"{way}{i}", progress=False)
            called = time.time()
            result = launch(worker, StageJob(Spec(stage, epochs), None))
            total = time.time() - called
            startup = result.metrics["loop_began"] - called
            rows.append({"way": way, "stage": i + 1, "startup_s": startup, "loop_s": result.metrics["loop_s"],
                         "total_s": total, "ratio": total / plain})
            print(f"{way} stage {i + 1}: start-up {startup:.1f} s, loop {result.metrics['loop_s']:.1f} s, "
                  f"whole stage {total:.1f} s = {total / plain:.2f} x the plain loop", flush=True)
        closing = time.time()
    rows[-1]["close_s"] = time.time() - closing
    return rows


def trial(config: dict[str, Any]) -> None:
    """A Tune trial doing the same work; reports when it began and ended (wall clock)."""
    began = time.time()
    import ray.tune
    import torch

    torch.set_num_threads(1)
    seconds = small_training(config["epochs"])
    ray.tune.report({"began": began, "ended": time.time(), "loop_s": seconds})


def run_trials(reuse: bool, trials: int, epochs: int, workdir: str, plain: float) -> list[dict[str, Any]]:
    """``trials`` trials one at a time, as a study runs them; a trial's start-up is from the previous
    trial's end (the study's call, for the first) to its own first line."""
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(trial, {"CPU": 1}),
                       param_space={"epochs": epochs, "i": tune.grid_search(list(range(trials)))},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse),
                       run_config=tune.RunConfig(name=f"trials-reuse{int(reuse)}", storage_path=workdir, verbose=0))
    called = time.time()
    results = sorted((r.metrics for r in tuner.fit()), key=lambda m: m["began"])
    rows, previous_end = [], called
    for i, m in enumerate(results):
        startup = m["began"] - previous_end
        whole = m["ended"] - previous_end
        rows.append({"way": f"tune, reuse_actors={reuse}", "stage": i + 1, "startup_s": startup,
                     "loop_s": m["loop_s"], "total_s": whole, "ratio": whole / plain})
        print(f"trial {i + 1} (reuse_actors={reuse}): start-up {startup:.1f} s, loop {m['loop_s']:.1f} s", flush=True)
        previous_end = m["ended"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as the one-CPU worker gets
    plain = min(small_training(args.epochs) for _ in range(2))
    with tempfile.TemporaryDirectory() as workdir:
        rows = {way: run_stages(way, args.stages, args.epochs, workdir, plain) for way in ("fresh", "pool")}
        for reuse in (False, True):
            rows[f"tune, reuse_actors={reuse}"] = run_trials(reuse, args.stages, args.epochs, workdir, plain)
    lines = ["# Ray Train stage start-up: a fresh fit per stage against the stage pool", "",
             f"`python benchmarks/stage_overhead.py --stages {args.stages} --epochs {args.epochs}` on "
             f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at the end), one worker, one Ray "
             f"session for both ways (fresh first, so it also pays `ray.init`). The plain loop (same work, this "
             f"process, no Ray) took {plain:.1f} s.", "",
             "Pipeline stages go through `launch` (`fresh`: a `TorchTrainer.fit` each; `pool`: inside "
             "`stage_pool`, as `uda3d pipeline` runs them). A study's trials are Tune trials of one CPU each, "
             "one at a time; a trial's start-up runs from the previous trial's end to its first line, its "
             "whole time to its own end.", "",
             "| way | stage | start-up s | loop s | whole stage s | stage / plain loop |", "|---|---|---|---|---|---|"]
    for way, found in rows.items():
        lines += [f"| {way} | {r['stage']} | {r['startup_s']:.1f} | {r['loop_s']:.1f} | {r['total_s']:.1f} | "
                  f"{r['ratio']:.2f} |" for r in found]
    lines.append("")
    for way, found in rows.items():
        later = [r["startup_s"] for r in found[1:]]
        if later:
            lines.append(f"- {way}: start-up after the first stage: mean {sum(later) / len(later):.2f} s, "
                         f"max {max(later):.2f} s (goal <= 5 s).")
    lines.append(f"- pool: closing it (its workers and run folder) took {rows['pool'][-1]['close_s']:.1f} s, once "
                 "per pipeline; a fresh fit's teardown is inside each of its stages' whole time.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-5:]))


if __name__ == "__main__":
    main()
