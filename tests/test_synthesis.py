"""``uda3d synthesize``: the missing T1 on the subject's own grid, correlated with the truth."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.helpers import modality_file
from uda3d.cli import main
from uda3d.config import BackboneConfig, PreprocessConfig
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.training.checkpoint import save_state
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone


@pytest.fixture(scope="module")
def model(tiny_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    train = paired_dataset(discover(tiny_cohort, ("domain1_train",))["domain1_train"], PreprocessConfig(),
                           base / "cache")
    trainer = Pix2PixTrainer(BackboneConfig(ngf=8, ndf=8, lr=2e-3, epochs=25, epochs_decay=0, augment=False),
                             torch.device("cpu"))
    fit_backbone(trainer, lambda e: DataLoader(train, batch_size=1), None, lambda m: None)
    save_state(base / "model", trainer.state_dict())
    return base / "model"


def test_synthesized_t1_overlays_flair_and_tracks_the_true_t1(model, tiny_cohort, tmp_path, capsys):
    source = sorted((tiny_cohort / "domain1_test").iterdir())[0]
    subject = tmp_path / source.name
    shutil.copytree(source, subject)
    true_t1 = nib.load(str(modality_file(subject, "t1"))).get_fdata()
    modality_file(subject, "t1").unlink()  # the use case: no T1 at this site
    assert main(["synthesize", str(subject), "--model", str(model), "--quiet"]) == 0
    out = subject / f"{subject.name}_t1_synth.nii.gz"
    assert f"wrote {out}" in capsys.readouterr().out
    flair = nib.load(str(modality_file(subject, "flair")))
    synth = nib.load(str(out))
    assert synth.shape == flair.shape
    np.testing.assert_allclose(synth.affine, flair.affine)
    data = synth.get_fdata()
    brain = flair.get_fdata() > 0
    assert np.all(data[~brain] == 0)
    r = np.corrcoef(data[brain], true_t1[brain])[0, 1]
    # A tiny backbone (2 training volumes of 24^3) learns a coarse T1; an untrained one gives noise.
    untrained = tmp_path / "untrained"
    save_state(untrained, Pix2PixTrainer(BackboneConfig(ngf=8, ndf=8), torch.device("cpu")).state_dict())
    assert main(["synthesize", str(subject), "--model", str(untrained), "--out", str(tmp_path / "u.nii.gz")]) == 0
    r_untrained = np.corrcoef(nib.load(str(tmp_path / "u.nii.gz")).get_fdata()[brain], true_t1[brain])[0, 1]
    assert r > 0.3 and r > r_untrained + 0.2, (r, r_untrained)


def test_synthesize_errors(model, tmp_path, capsys):
    assert main(["synthesize", str(tmp_path / "nope"), "--model", str(model)]) == 2
    assert "subject folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["synthesize", str(tmp_path / "empty"), "--model", str(model)]) == 2
    assert "missing modality 't2'" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []
