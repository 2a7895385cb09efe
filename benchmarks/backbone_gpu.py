"""Backbone training cost on a GPU at the method's size: peak memory and volumes/s, fp32 vs --amp.

One training step = one D update + one G update on a (1, 2, 144, 192, 192) volume (docs/method.md
section 1: SIT ngf 64, PatchGAN ndf 64, n_layers_D 1). Measured in one process, fp32 first, then
AMP (bf16 where supported, else fp16 with a scaler). The method's README quotes >= 24 GB for
fp32 training and ~12 GB with AMP. Results go to ``benchmarks/results/backbone_gpu.json``.
Needs CUDA; on a CPU machine it says so and measures nothing.

    python benchmarks/backbone_gpu.py [--shape 144 192 192] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from uda3d.config import BackboneConfig
from uda3d.training.pix2pix import Pix2PixTrainer

RESULTS = Path(__file__).parent / "results" / "backbone_gpu.json"


def measure(amp: bool, shape: tuple[int, int, int], steps: int, warmup: int = 2) -> dict:
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    trainer = Pix2PixTrainer(BackboneConfig(amp=amp, augment=False), device)
    batch = {"input": torch.rand(1, 2, *shape, device=device), "target": torch.rand(1, 1, *shape, device=device)}
    for _ in range(warmup):
        trainer.train_step(batch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"amp": amp, "precision": trainer.precision.name, "shape": list(shape), "steps": steps,
            "volumes_per_s": steps / seconds, "seconds_per_step": seconds / steps,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[144, 192, 192])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (run this where a GPU is lent)")
    rows = [measure(amp, tuple(args.shape), args.steps) for amp in (False, True)]
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['precision']:>4}: {r['volumes_per_s']:.2f} volumes/s, peak {r['peak_memory_gib']:.1f} GiB")
    print(f"AMP speed-up: {rows[1]['volumes_per_s'] / rows[0]['volumes_per_s']:.2f}, "
          f"memory ratio: {rows[1]['peak_memory_gib'] / rows[0]['peak_memory_gib']:.2f}")


if __name__ == "__main__":
    main()
