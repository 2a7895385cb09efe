"""``uda3d synthesize``: the missing T1 on the subject's own grid, correlated with the truth."""

from __future__ import annotations

import shutil
from dataclasses import asdict

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
    before = sorted(p.name for p in subject.iterdir())
    assert main(["synthesize", str(subject), "--model", str(model), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = tmp_path / "out" / f"{subject.name}_t1_synth.nii.gz"
    assert f"wrote 1 synthesized T1 volume(s) to {tmp_path / 'out'}" in capsys.readouterr().out
    assert sorted(p.name for p in subject.iterdir()) == before  # nothing written into the dataset
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
    assert main(["synthesize", str(subject), "--model", str(untrained), "--out", str(tmp_path / "u")]) == 0
    u = nib.load(str(tmp_path / "u" / f"{subject.name}_t1_synth.nii.gz")).get_fdata()
    r_untrained = np.corrcoef(u[brain], true_t1[brain])[0, 1]
    assert r > 0.25 and r > r_untrained + 0.2, (r, r_untrained)


def test_synthesize_errors(model, tmp_path, capsys):
    assert main(["synthesize", str(tmp_path / "nope"), "--model", str(model), "--out", str(tmp_path / "o")]) == 2
    assert "subject or split folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["synthesize", str(tmp_path / "empty"), "--model", str(model), "--out", str(tmp_path / "o")]) == 2
    assert "missing modality 't2'" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "o").exists()
    assert main(["synthesize", "--model", str(model), "--out", str(tmp_path / "o")]) == 2
    assert "give a subject or split folder, or --dataroot with --split" in capsys.readouterr().err


def test_a_brain_larger_than_the_trained_crop_is_covered_window_by_window(model, tiny_cohort, tmp_path):
    """The 24^3 training crop cuts these brains (they span more than 24 voxels on one axis): the rim is
    synthesized with 24^3 sliding windows instead of being zeroed."""
    from uda3d.data.layout import scan_subject
    from uda3d.data.preprocess import preprocess_subject
    from uda3d.inference import load_model, synthesize
    from uda3d.training.checkpoint import load_state

    stored = tmp_path / "stored"
    save_state(stored, {**load_state(model), "preprocess": asdict(PreprocessConfig()), "input_shape": [24, 24, 24]})
    folder = sorted((tiny_cohort / "domain2_test").iterdir())[0]
    subject = scan_subject(folder, "domain2", "test")
    brain = nib.load(str(modality_file(folder, "flair"))).get_fdata() > 0
    assert preprocess_subject(subject.inputs_only(), PreprocessConfig()).mask.sum() < np.count_nonzero(brain)
    [windowed] = synthesize(load_model(stored), [subject], uncertainty=False)
    assert windowed.quality["sliding_window"]
    assert np.count_nonzero(windowed.t1[brain]) == np.count_nonzero(brain)  # every brain voxel synthesized
    # the old checkpoint (no stored crop) runs the covering crop in one piece: the two agree closely
    [whole] = synthesize(load_model(model), [subject], uncertainty=False)
    assert not whole.quality["sliding_window"]
    assert np.corrcoef(windowed.t1[brain], whole.t1[brain])[0, 1] > 0.8
    true_t1 = nib.load(str(modality_file(folder, "t1"))).get_fdata()[brain]
    r_windowed, r_whole = (np.corrcoef(v.t1[brain], true_t1)[0, 1] for v in (windowed, whole))
    assert r_windowed > r_whole - 0.05


def test_stored_preprocessing_is_restored_and_conflicts_are_refused():
    from uda3d.errors import ConfigError
    from uda3d.inference import stored_preprocess

    state = {"preprocess": asdict(PreprocessConfig(normalisation="percentile")), "input_shape": [24, 24, 16]}
    config, window = stored_preprocess(state)
    assert config.normalisation == "percentile" and window == (24, 24, 16)
    assert stored_preprocess(state, crop_shape=(24, 24, 16))[0].normalisation == "percentile"
    with pytest.raises(ConfigError, match=r"--crop-shape: the checkpoint was trained with crop \[24, 24, 16\]"):
        stored_preprocess(state, crop_shape=(16, 16, 16))
    with pytest.raises(ConfigError, match="--normalisation: the checkpoint was trained with 'percentile'"):
        stored_preprocess(state, normalisation="minmax")
    # a checkpoint from before preprocessing was stored takes the flags
    old, window = stored_preprocess({}, crop_shape=(16, 16, 16))
    assert old.shape == (16, 16, 16) and window is None


def test_batched_synthesis_equals_one_at_a_time(model, tiny_cohort):
    from uda3d.data.layout import discover
    from uda3d.inference import load_model, synthesize

    subjects = discover(tiny_cohort, ("domain2_train",))["domain2_train"]
    loaded = load_model(model)
    batched = synthesize(loaded, subjects, batch_size=2)
    for subject, together in zip(subjects, batched):
        [alone] = synthesize(loaded, [subject], batch_size=1)
        np.testing.assert_allclose(together.t1, alone.t1, atol=1e-3)
        assert together.quality["tta_uncertainty"] == pytest.approx(alone.quality["tta_uncertainty"], rel=1e-3)


@pytest.mark.parametrize("name, prefix", [("BraTS19_CBICA_AAB_1_flair.nii.gz", "BraTS19_CBICA_AAB_1"),
                                          ("BraTS-GLI-00000-000-t2f.nii.gz", "BraTS-GLI-00000-000"),
                                          ("sub-01_flair.nii", "sub-01")])
def test_output_names_come_from_the_files_prefix(name, prefix, tmp_path):
    from uda3d.data.layout import Subject
    from uda3d.synthesis import file_prefix

    subject = Subject(id="folder-name", domain="", phase="", folder=tmp_path, files={"flair": tmp_path / name})
    assert file_prefix(subject) == prefix


def test_ensemble_members_must_share_the_preprocessing(model, tiny_cohort, tmp_path):
    from uda3d.data.layout import discover
    from uda3d.errors import ConfigError
    from uda3d.inference import load_members, load_model, synthesize
    from uda3d.training.checkpoint import load_state

    other = tmp_path / "other"
    save_state(other, {**load_state(model), "preprocess": asdict(PreprocessConfig(normalisation="percentile"))})
    with pytest.raises(ConfigError, match="--ensemble: .*other was trained with other preprocessing"):
        load_members([other], load_model(model))
    # a member identical to the model agrees with it everywhere: no spread
    subjects = discover(tiny_cohort, ("domain2_test",))["domain2_test"]
    [result] = synthesize(load_model(model), subjects, uncertainty=False, members=load_members([model],
                                                                                              load_model(model)))
    assert result.quality["ensemble_spread"] == 0.0


def test_a_conflicting_crop_mode_is_refused():
    from uda3d.errors import ConfigError
    from uda3d.inference import stored_preprocess

    state = {"preprocess": asdict(PreprocessConfig(crop="fixed")), "input_shape": [24, 24, 24]}
    assert stored_preprocess(state)[0].crop == "fixed"
    with pytest.raises(ConfigError, match="--crop: the checkpoint was trained with the 'fixed' crop, not 'brain'"):
        stored_preprocess(state, crop="brain")
    old = {"preprocess": {"orientation": "IPL", "shape": None, "normalisation": "minmax"}}  # before crop existed
    assert stored_preprocess(old)[0].crop == "brain"
