"""Adaptation cost on a GPU at the method's size: peak memory and seconds per step, with AMP.

One adaptation iteration as the method runs it (docs/method.md section 3): a supervised source step
(D + G updates) and a target step that generates a (1, 1, 144, 192, 192) T1, slices it and an
unpaired real T1 into 256 slices of 256 x 256, encodes both with the frozen slice-VAE encoder
(latent 256 x 2 x 2) and backpropagates the top-55 % latent KL into the generator. The method's
README quotes >= 20 GB with AMP. Results go to ``benchmarks/results/adapt_gpu.json``; on a CPU
machine it says so and measures nothing.

    python benchmarks/adapt_gpu.py [--shape 144 192 192] [--steps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from uda3d.adaptation.trainer import AdaptTrainer
from uda3d.config import AdaptConfig, BackboneConfig, SliceConfig
from uda3d.models.vae2d import SliceVAE
from uda3d.training.pix2pix import Pix2PixTrainer

RESULTS = Path(__file__).parent / "results" / "adapt_gpu.json"
METHOD_REPORTED_GB = 20.0


def measure(amp: bool, shape: tuple[int, int, int], steps: int, warmup: int = 1) -> dict:
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    backbone = Pix2PixTrainer(dataclasses.replace(BackboneConfig(), amp=amp, augment=False), device)
    trainer = AdaptTrainer(backbone, SliceVAE(256).encoder, SliceConfig(size=256), AdaptConfig(lr=1e-6, amp=amp))
    source = {"input": torch.rand(1, 2, *shape, device=device), "target": torch.rand(1, 1, *shape, device=device)}
    target, real = torch.rand(1, 2, *shape, device=device), torch.rand(1, 1, *shape, device=device)
    for _ in range(warmup):
        backbone.train_step(source)
        trainer.target_step(target, real)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        backbone.train_step(source)
        trainer.target_step(target, real)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"amp": amp, "precision": backbone.precision.name, "shape": list(shape), "seconds_per_iteration": seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[144, 192, 192])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (run this where a GPU is lent)")
    rows = [measure(amp, tuple(args.shape), args.steps) for amp in (True, False)]
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "method_reported_gb_with_amp": METHOD_REPORTED_GB, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['precision']:>4}: {r['seconds_per_iteration']:.2f} s/iteration, peak {r['peak_memory_gib']:.1f} GiB")
    print(f"AMP peak memory / method's reported {METHOD_REPORTED_GB:.0f} GB: "
          f"{rows[0]['peak_memory_gib'] * 2**30 / 1e9 / METHOD_REPORTED_GB:.2f}")


if __name__ == "__main__":
    main()
