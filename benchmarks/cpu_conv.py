"""How much ``DepthSplitConv3d`` saves on CPU: one layer, and one demo backbone training step, in one run.

PyTorch sends small batch-1 3D convolutions to its unfold kernel (``uda3d.models.cpu_conv``); the
generator's convolutions route such inputs to oneDNN instead. This times both ways, interleaved
(plain, split, plain, split, ...) so a noisy machine slows both alike, and writes the medians and
their ratio to ``benchmarks/results/cpu_conv.md``.

    python benchmarks/cpu_conv.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import types
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cpu_conv.md"


def interleaved(plain_fn, split_fn, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each, alternating calls so a noisy machine slows both alike."""
    plain_fn(), split_fn()  # warm-up: oneDNN builds its kernels on first use
    times = {"plain": [], "split": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain_fn), ("split", split_fn)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def plain(model):
    """``model`` with every DepthSplitConv3d running as a plain ``nn.Conv3d``."""
    from torch import nn

    from uda3d.models.cpu_conv import DepthSplitConv3d

    for m in model.modules():
        if isinstance(m, DepthSplitConv3d):
            m.forward = types.MethodType(nn.Conv3d.forward, m)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import dataclasses

    import torch

    from uda3d.demo import DEMO_BACKBONE
    from uda3d.models.cpu_conv import DepthSplitConv3d
    from uda3d.training.pix2pix import Pix2PixTrainer

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    rows = []

    layer = DepthSplitConv3d(16, 16, 3, padding=1)
    reference = plain(DepthSplitConv3d(16, 16, 3, padding=1))
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(1, 16, 28, 24, 24, requires_grad=True)
    times = interleaved(lambda: reference(x).sum().backward(), lambda: layer(x).sum().backward(), args.repeats)
    rows.append(("one conv k3, 16 -> 16 channels, 28x24x24, forward + backward", times))

    shape = (56, 48, 48)  # the demo's volumes after preprocessing
    batch = {"input": torch.rand(1, 2, *shape), "target": torch.rand(1, 1, *shape), "mask": torch.ones(1, 1, *shape)}
    config = dataclasses.replace(DEMO_BACKBONE, augment=False)
    split_trainer, plain_trainer = Pix2PixTrainer.from_state(config), Pix2PixTrainer.from_state(config)
    plain(plain_trainer.generator)
    times = interleaved(lambda: plain_trainer.train_step(batch), lambda: split_trainer.train_step(batch), args.repeats)
    rows.append((f"demo backbone training step (ngf {config.ngf}, {'x'.join(map(str, shape))}, D and G updates)",
                 times))

    lines = ["# Small 3D convolutions on CPU: PyTorch's choice of kernel against DepthSplitConv3d", "",
             f"`python benchmarks/cpu_conv.py --repeats {args.repeats}` on {os.cpu_count()} cores, torch "
             f"{torch.__version__}, load average {os.getloadavg()[0]:.2f} at the end; medians of {args.repeats} "
             "interleaved runs each.", "",
             "| what | plain nn.Conv3d ms | DepthSplitConv3d ms | speed-up |", "|---|---|---|---|"]
    for name, t in rows:
        p, s = statistics.median(t["plain"]) * 1e3, statistics.median(t["split"]) * 1e3
        lines.append(f"| {name} | {p:.1f} | {s:.1f} | {p / s:.2f}x |")
    lines += ["", "PyTorch runs a batch-1 fp32 convolution with a kernel of at most 3 on its unfold kernel when "
              "N x C x D x H <= 20480 (a rule written for 2D images); the split runs the same convolution as "
              "two overlapping depth halves in a batch of two, which goes to oneDNN. Values and gradients "
              "agree with `F.conv3d` (`tests/models/test_cpu_conv.py`)."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
