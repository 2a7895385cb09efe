"""Determinism: the same seed gives the same split and, on CPU, bit-identical trained weights.

(The cohort itself: ``tests/cohort/test_generate.py``. Where GPUs make bit-identity impossible:
README, *Reliability*.)
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from tests.helpers import fake_brats_release
from uda3d.cli import main
from uda3d.config import BackboneConfig, PreprocessConfig, SliceConfig, VAEConfig
from uda3d.data.datasets import paired_dataset
from uda3d.data.layout import discover
from uda3d.data.slices import volume_to_slices
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone
from uda3d.training.ray_runtime import weights_digest
from uda3d.training.runtime import seed_everything, unwrap
from uda3d.training.vae import VAETrainer, fit_vae

CPU = torch.device("cpu")


def _membership(src, out, seed: int) -> dict[str, list[str]]:
    assert main(["ingest-brats", str(src), str(out), "--seed", str(seed), "--quiet"]) == 0
    return json.loads((out / "ingest.json").read_text())["splits"]


def test_same_seed_same_split_through_the_cli(tiny_cohort, tmp_path):
    src = fake_brats_release(tmp_path / "brats", tiny_cohort, {"CBICA": 8, "TCIA01": 8})
    first = _membership(src, tmp_path / "a", seed=3)
    assert _membership(src, tmp_path / "b", seed=3) == first
    assert _membership(src, tmp_path / "c", seed=4) != first


@pytest.fixture(scope="module")
def train_set(tiny_cohort, tmp_path_factory):
    subjects = discover(tiny_cohort, ("domain1_train",))["domain1_train"]
    return paired_dataset(subjects, PreprocessConfig(), tmp_path_factory.mktemp("cache"))


def _backbone_digest(train_set, seed: int) -> str:
    """Train as a worker does: seeded RNGs, shuffled data order, the method's augmentation."""
    seed_everything(seed)
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=2, epochs_decay=1, seed=seed)
    trainer = Pix2PixTrainer(config, CPU)
    order = torch.Generator().manual_seed(seed)
    fit_backbone(trainer, lambda epoch: DataLoader(train_set, batch_size=1, shuffle=True, generator=order), None,
                 lambda m: None)
    return weights_digest(unwrap(trainer.generator))


def test_same_seed_same_backbone_weights_on_cpu(train_set):
    first = _backbone_digest(train_set, seed=11)
    assert _backbone_digest(train_set, seed=11) == first
    assert _backbone_digest(train_set, seed=12) != first


def test_same_seed_same_vae_weights_on_cpu(train_set):
    volumes = [volume_to_slices(train_set[i]["target"][0], SliceConfig(size=32)) for i in range(len(train_set))]

    def digest(seed: int) -> str:
        seed_everything(seed)
        trainer = VAETrainer(VAEConfig(latent_channels=8, lr=3e-3, epochs=2, seed=seed), 32, CPU)
        fit_vae(trainer, lambda epoch: volumes, None, lambda m: None)
        return weights_digest(unwrap(trainer.model))

    first = digest(5)
    assert digest(5) == first and digest(6) != first
