"""``benchmarks/gpu_suite.sh`` refuses loudly where there is no GPU: one line, exit 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the suite would run")
def test_gpu_suite_fails_loudly_without_cuda():
    results = REPO / "benchmarks" / "results" / "gpu_suite"
    existed = results.exists()
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable), timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "gpu_suite.sh: torch sees no CUDA device (a CPU-only torch build, or no GPU here): nothing measured"]
    assert results.exists() == existed
