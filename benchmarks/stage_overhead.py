"""Start-up of each Ray Train stage in one session, against a plain PyTorch loop doing the same work.

The pipeline runs its training stages one after another in one Ray session; each stage is a
``TorchTrainer.fit`` through ``uda3d.training.ray_runtime.launch`` (a controller, a worker group,
the worker's imports). This runs ``--stages`` identical small stages that way (a few SIT epochs on
random volumes) and reports, per stage:

- start-up: from ``fit()`` being called to the first line of the training loop in the worker
  (the first stage also pays ``ray.init``);
- the loop itself, and the whole stage;
- the ratio of the stage to the same loop run in this process without Ray.

    python benchmarks/stage_overhead.py [--stages 4] [--epochs 3]

Results go to ``benchmarks/results/stage_overhead.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

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


def worker(config: dict) -> None:
    """The stage's training loop: records when it began (wall clock) and how long the work took."""
    began = time.time()
    import ray.train

    seconds = small_training(config["epochs"])
    with tempfile.TemporaryDirectory() as directory:  # a stage always leaves a checkpoint
        Path(directory, "done").write_text("1")
        ray.train.report({"loop_began": began, "loop_s": seconds},
                         checkpoint=ray.train.Checkpoint.from_directory(directory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import torch

    from uda3d.config import ScalingOptions
    from uda3d.training.ray_runtime import launch

    torch.set_num_threads(1)  # as the one-CPU worker gets
    plain = min(small_training(args.epochs) for _ in range(2))
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for i in range(args.stages):
            called = time.time()
            result = launch(worker, {"epochs": args.epochs}, ScalingOptions(num_workers=1), f"stage{i}", storage)
            total = time.time() - called
            startup = result.metrics["loop_began"] - called
            rows.append({"stage": i + 1, "startup_s": startup, "loop_s": result.metrics["loop_s"], "total_s": total,
                         "ratio": total / plain})
            print(f"stage {i + 1}: start-up {startup:.1f} s, loop {result.metrics['loop_s']:.1f} s, "
                  f"whole stage {total:.1f} s = {total / plain:.2f} x the plain loop", flush=True)
    later = [r["startup_s"] for r in rows[1:]]
    lines = ["# Ray Train stage start-up", "",
             f"`python benchmarks/stage_overhead.py --stages {args.stages} --epochs {args.epochs}` on "
             f"{os.cpu_count()} cores, one worker, one Ray session for all stages. The plain loop (same work, "
             f"this process, no Ray) took {plain:.1f} s.", "",
             "| stage | start-up s | loop s | whole stage s | stage / plain loop |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['startup_s']:.1f} | {r['loop_s']:.1f} | {r['total_s']:.1f} | {r['ratio']:.2f} |"
              for r in rows]
    if later:
        lines += ["", f"Start-up after the first stage: mean {sum(later) / len(later):.1f} s, "
                      f"max {max(later):.1f} s (goal <= 5 s)."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"start-up after the first stage: mean {sum(later) / max(1, len(later)):.1f} s")


if __name__ == "__main__":
    main()
