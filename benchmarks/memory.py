"""Peak memory of one backbone training step and one adaptation iteration, at the method's size.

The method's networks (SIT ngf 64, PatchGAN ndf 64 with one layer, slice VAE encoder at 256^2 with
latent 256) on random volumes; one adaptation iteration is a supervised source step (D + G) then a
target step (generate, slice into 256 slices of 256^2, encode, top-55 % latent KL, backpropagate).

- CPU (default): peak resident memory of a fresh process per measurement (``ru_maxrss``, the
  Python and torch libraries included, as a user's machine needs it). With the memory options
  off, at three sizes (1/27, 1/8 and 8/27 of the voxels) with a least-squares line and its
  residual, extrapolated to 144x192x192; with them on, at the same sizes and at full size.
- CUDA (``--device cuda``): ``torch.cuda.max_memory_allocated`` with AMP, both ways at full size.

The memory option is ``checkpointing`` (``BackboneConfig`` / ``AdaptConfig``, ``--checkpointing``):
activation checkpointing in the generator, the discriminator (its full-resolution first stage a
group of 8 channels at a time) and the slice encoder. Each row also records its seconds, so the
time the option costs is measured in the same run.

    python benchmarks/memory.py [--device cpu|cuda] [--out benchmarks/results]

Ends with two lines: the backbone step's peak, then ``adaptation peak GiB at 144x192x192: X``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import resource
import subprocess
import sys
import time
from pathlib import Path

FULL = (144, 192, 192)
FIT_SIZES = ((48, 64, 64), (72, 96, 96), (96, 128, 128))
SEED_GB = {"backbone fp32": 24.0, "backbone AMP": 12.0, "adaptation AMP": 20.0}  # the method's README
RESULTS = Path(__file__).parent / "results"


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def run_iteration(shape: tuple[int, int, int], checkpointing: bool, device: str) -> dict:
    """One source step then one target step; the peak after each (CPU: RSS; CUDA: allocated)."""
    import torch

    from uda3d.adaptation.trainer import AdaptTrainer
    from uda3d.config import AdaptConfig, BackboneConfig, SliceConfig
    from uda3d.models.vae2d import SliceVAE
    from uda3d.training.pix2pix import Pix2PixTrainer

    torch.manual_seed(0)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    peak = (lambda: torch.cuda.max_memory_allocated() / 2**30) if cuda else _peak_gib
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    backbone = Pix2PixTrainer(BackboneConfig(augment=False, amp=cuda, checkpointing=checkpointing), dev)
    source = {"input": torch.rand(1, 2, *shape), "target": torch.rand(1, 1, *shape)}
    target, real = torch.rand(1, 2, *shape), torch.rand(1, 1, *shape)
    base = peak()
    start = time.perf_counter()
    backbone.train_step(source)
    if cuda:
        torch.cuda.synchronize()
    backbone_s, backbone_peak = time.perf_counter() - start, peak()
    trainer = AdaptTrainer(backbone, SliceVAE(256).encoder, SliceConfig(size=256),
                           AdaptConfig(lr=1e-6, amp=cuda, checkpointing=checkpointing))
    start = time.perf_counter()
    trainer.target_step(target, real)
    if cuda:
        torch.cuda.synchronize()
    target_s = time.perf_counter() - start
    return {"shape": list(shape), "voxels": shape[0] * shape[1] * shape[2], "checkpointing": checkpointing,
            "device": device, "base_gib": base, "backbone_peak_gib": backbone_peak, "adapt_peak_gib": peak(),
            "backbone_step_s": backbone_s, "adapt_iteration_s": backbone_s + target_s}


def measure_in_child(shape: tuple[int, int, int], checkpointing: bool) -> dict:
    """A fresh process per CPU measurement: ``ru_maxrss`` is a process's lifetime peak."""
    cmd = [sys.executable, __file__, "--child", *map(str, shape), str(int(checkpointing))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {shape} checkpointing={checkpointing} failed:\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {'x'.join(map(str, shape)):>11}  checkpointing {str(checkpointing):5}  "
          f"backbone {row['backbone_peak_gib']:5.2f} GiB  adaptation {row['adapt_peak_gib']:5.2f} GiB  "
          f"({row['adapt_iteration_s']:.0f} s)", flush=True)
    return row


def linear_fit(rows: list[dict], key: str) -> dict:
    """Least-squares peak = a + b * voxels over ``rows``; its largest residual and the full-size value."""
    import numpy as np

    x = np.array([r["voxels"] for r in rows], dtype=float)
    y = np.array([r[key] for r in rows], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.max(np.abs(y - (intercept + slope * x))))
    full = float(intercept + slope * FULL[0] * FULL[1] * FULL[2])
    return {"intercept_gib": float(intercept), "gib_per_mvoxel": float(slope * 1e6), "max_residual_gib": residual,
            "full_size_gib": full}


def fit_lines(rows: list[dict]) -> dict[str, dict]:
    """Both steps' lines, with and without checkpointing, over the rows below full size.

    An iteration's peak is the larger of its source step's and its target step's; the target step's
    fixed cost (256 slices of 256^2 through the encoder) dominates small sizes, the source step large
    ones, so the iteration's full-size estimate is the larger of its own line and the backbone's.
    """
    fits = {}
    for ckpt in (False, True):
        below = [r for r in rows if r["checkpointing"] == ckpt and tuple(r["shape"]) != FULL]
        mode = "on" if ckpt else "off"
        fits[f"{mode}:backbone"] = linear_fit(below, "backbone_peak_gib")
        adapt = linear_fit(below, "adapt_peak_gib")
        adapt["full_size_gib"] = max(adapt["full_size_gib"], fits[f"{mode}:backbone"]["full_size_gib"])
        fits[f"{mode}:adapt"] = adapt
    return fits


def write_markdown(report: dict, path: Path) -> None:
    full = "x".join(map(str, FULL))
    lines = ["# Peak memory at the method's size", "",
             f"`python benchmarks/memory.py` on {report['machine']} ({report['device']}), torch {report['torch']}, "
             f"{report['minutes']:.1f} min. One backbone training step and one adaptation iteration (source step + "
             "target step) with the method's networks. CPU: peak resident memory of a fresh process, libraries "
             "included; fp32.", "",
             "| size | checkpointing | backbone step GiB | adaptation iteration GiB | backbone step s | "
             "adaptation iteration s |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {'on' if r['checkpointing'] else 'off'} | "
                     f"{r['backbone_peak_gib']:.2f} | {r['adapt_peak_gib']:.2f} | {r['backbone_step_s']:.1f} | "
                     f"{r['adapt_iteration_s']:.1f} |")
    lines += ["", f"Linear fits over the three smaller sizes (peak = a + b x voxels), extrapolated to {full} (an "
              "adaptation iteration's estimate is the larger of its line and the backbone step's: the source step's "
              "peak overtakes the target step's fixed cost as volumes grow):", "",
              "| checkpointing | step | a (GiB) | b (GiB per Mvoxel) | largest residual (GiB) | at full size (GiB) |",
              "|---|---|---|---|---|---|"]
    for name, fit in report["fits"].items():
        mode, step = name.split(":")
        lines.append(f"| {mode} | {step} | {fit['intercept_gib']:.2f} | {fit['gib_per_mvoxel']:.3f} | "
                     f"{fit['max_residual_gib']:.2f} | {fit['full_size_gib']:.1f} |")
    lines += ["", "Time the option costs, in this run (checkpointing on / off, same size):", ""]
    for size, ratio in report["time_ratios"].items():
        lines.append(f"- {size}: backbone step x{ratio['backbone']:.2f}, adaptation iteration x{ratio['adapt']:.2f}")
    lines += ["", "The method's README (GPU): " + ", ".join(f"{k} >= {v:.0f} GB" for k, v in SEED_GB.items()) + ".", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--from-json", type=Path, default=None,
                        help="rewrite the Markdown from a results JSON (fits recomputed), measuring nothing")
    parser.add_argument("--child", nargs=4, type=int, metavar=("D", "H", "W", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        report["fits"] = fit_lines(report["rows"]) if report["fits"] else {}
        args.from_json.write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(report, args.from_json.with_suffix(".md"))
        return
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    if args.child:
        print(json.dumps(run_iteration(tuple(args.child[:3]), bool(args.child[3]), "cpu")))
        return
    start = time.perf_counter()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device here (a CPU-only build, or no GPU)")
        rows = [run_iteration(FULL, ckpt, "cuda") for ckpt in (False, True)]
        machine, fits, ratios = torch.cuda.get_device_name(), {}, {}
    else:
        print("CPU peak resident memory, one fresh process per row:", flush=True)
        rows = [measure_in_child(size, ckpt) for size in FIT_SIZES for ckpt in (False, True)]
        rows.append(measure_in_child(FULL, True))
        fits = fit_lines(rows)
        ratios = {}
        for size in FIT_SIZES:
            off, on = (next(r for r in rows if tuple(r["shape"]) == size and r["checkpointing"] == c)
                       for c in (False, True))
            ratios["x".join(map(str, size))] = {"backbone": on["backbone_step_s"] / off["backbone_step_s"],
                                                "adapt": on["adapt_iteration_s"] / off["adapt_iteration_s"]}
        machine = f"{host.machine()} {os.cpu_count()} cores"
    report = {"device": args.device, "machine": machine, "torch": torch.__version__, "rows": rows, "fits": fits,
              "time_ratios": ratios, "seed_readme_gb": SEED_GB, "minutes": (time.perf_counter() - start) / 60}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "memory" if args.device == "cpu" else "memory_cuda"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / f"{stem}.md")
    final = next(r for r in rows if tuple(r["shape"]) == FULL and r["checkpointing"])
    full = "x".join(map(str, FULL))
    print(f"backbone step peak GiB at {full}: {final['backbone_peak_gib']:.2f}")
    print(f"adaptation peak GiB at {full}: {final['adapt_peak_gib']:.2f}")


if __name__ == "__main__":
    main()
