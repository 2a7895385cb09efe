"""Safe loading: a checkpoint whose pickle would run code is refused by every loader, and the code never runs."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

from tests.helpers import subject_dir
from uda3d.cli import main
from uda3d.errors import DataError
from uda3d.training.checkpoint import load_state


class _RunsCode:
    """Unpickling this calls ``action(*args)``: what a crafted checkpoint would do."""

    def __init__(self, action, args) -> None:
        self.action, self.args = action, args

    def __reduce__(self):
        return self.action, self.args


def _malicious(folder: pathlib.Path, marker: pathlib.Path, how: str) -> pathlib.Path:
    """A checkpoint folder that looks like a backbone but creates ``marker`` when unpickled."""
    payload = {"system": _RunsCode(os.system, (f"touch {marker}",)),
               "touch": _RunsCode(pathlib.Path.touch, (marker,))}[how]
    folder.mkdir()
    torch.save({"config": {"ngf": 4}, "generator": payload, "discriminator": {}, "epoch": 1}, folder / "state.pt")
    return folder


@pytest.fixture(params=["system", "touch"])
def evil(request, tmp_path):
    marker = tmp_path / "code-ran"
    return _malicious(tmp_path / "evil", marker, request.param), marker


def test_load_state_refuses_code_and_runs_none(evil):
    checkpoint, marker = evil
    with pytest.raises(DataError, match=r"state\.pt: refused: it holds a pickled Python object \(\S+\)") as info:
        load_state(checkpoint)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    torch.load(checkpoint / "state.pt", weights_only=False)  # the control: an unsafe load does run it
    assert marker.exists()


def _one_error_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_every_cli_loader_refuses_it(evil, tiny_cohort, tmp_path, capsys):
    checkpoint, marker = evil
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["synthesize", str(subject_dir(tiny_cohort, "domain2_test")), "--model",
                                    str(checkpoint), "--out", str(out / "t1.nii.gz")])
    assert line.startswith("uda3d synthesize: error: ") and f"{checkpoint / 'state.pt'}: refused" in line
    line = _one_error_line(capsys, ["evaluate", "--dataroot", str(tiny_cohort), "--model",
                                    f"no_adaptation={checkpoint}", "--out", str(out)])
    assert f"{checkpoint / 'state.pt'}: refused" in line
    line = _one_error_line(capsys, ["train-backbone", "--dataroot", str(tiny_cohort), "--workdir", str(out),
                                    "--init-checkpoint", str(checkpoint), "--quiet"])
    assert f"{checkpoint / 'state.pt'}: refused" in line
    line = _one_error_line(capsys, ["adapt", "--dataroot", str(tiny_cohort), "--backbone", str(checkpoint),
                                    "--vae", str(checkpoint), "--workdir", str(out), "--quiet"])
    assert f"{checkpoint / 'state.pt'}: refused" in line
    assert not marker.exists() and not out.exists()


def test_a_checkpoint_that_is_not_a_generator_is_named(tmp_path, tiny_cohort, capsys):
    (tmp_path / "vae").mkdir()
    torch.save({"encoder": {}, "config": {}}, tmp_path / "vae" / "state.pt")
    line = _one_error_line(capsys, ["synthesize", str(subject_dir(tiny_cohort, "domain2_test")), "--model",
                                    str(tmp_path / "vae"), "--out", str(tmp_path / "t1.nii.gz")])
    assert "not a generator checkpoint" in line and not (tmp_path / "t1.nii.gz").exists()
    (tmp_path / "list.pt").parent.mkdir(exist_ok=True)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match=r"list\.pt: checkpoint holds a list; expected a dict"):
        load_state(tmp_path / "list.pt")
