"""Devices: synthesis, evaluation, compare-methods and tune trials run where they were told, else refuse."""

from __future__ import annotations

import pytest
import torch

from uda3d.cli import main
from uda3d.errors import ConfigError
from uda3d.inference import resolve_device

NO_CUDA = not torch.cuda.is_available()


def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--use-gpu: asks for CUDA but torch sees no CUDA device"):
        resolve_device("cuda", "--use-gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ConfigError, match="--device: expected one of"):
        resolve_device("tpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_asking_for_a_gpu_that_is_not_there_names_the_flag(tiny_cohort, tmp_path, capsys):
    assert main(["compare-methods", "--dataroot", str(tiny_cohort), "--workdir", str(tmp_path / "c"),
                 "--use-gpu", "--no-tracking", "--quiet"]) == 2
    assert "--use-gpu: asks for CUDA" in capsys.readouterr().err
    subject = next((tiny_cohort / "domain2_test").iterdir())
    assert main(["synthesize", str(subject), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                 "--device", "cuda"]) == 2
    assert "uda3d synthesize: error: --device: asks for CUDA" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
