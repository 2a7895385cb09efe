"""Helpers shared by tests (importable as ``tests.helpers``)."""

from __future__ import annotations

from pathlib import Path

from uda3d.cohort.generate import CohortConfig

TINY = CohortConfig(sites=("site-a", "site-b"), subjects_per_site=4, shape=(32, 32, 32), seed=7)


def subject_dir(root: Path, split: str = "domain1_train", index: int = 0) -> Path:
    return sorted(p for p in (root / split).iterdir() if p.is_dir())[index]


def modality_file(folder: Path, modality: str) -> Path:
    return folder / f"{folder.name}_{modality}.nii.gz"


def tiny_checkpoints(cohort: Path, base: Path) -> tuple[Path, Path]:
    """A tiny trained backbone and slice VAE (32^2 slices) for adaptation tests: (backbone dir, VAE dir)."""
    import torch
    from torch.utils.data import DataLoader

    from uda3d.config import BackboneConfig, PreprocessConfig, SliceConfig, VAEConfig
    from uda3d.data.datasets import paired_dataset
    from uda3d.data.layout import discover
    from uda3d.data.slices import volume_to_slices
    from uda3d.training.checkpoint import save_state
    from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone
    from uda3d.training.vae import VAETrainer, fit_vae

    cpu = torch.device("cpu")
    train = paired_dataset(discover(cohort, ("domain1_train",))["domain1_train"], PreprocessConfig(), base / "cache")
    backbone = Pix2PixTrainer(BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=3, epochs_decay=0, augment=False), cpu)
    fit_backbone(backbone, lambda e: DataLoader(train, batch_size=1), None, lambda m: None)
    save_state(base / "backbone", backbone.state_dict())
    slices = SliceConfig(size=32)
    vae = VAETrainer(VAEConfig(latent_channels=8, lr=3e-3, epochs=3), 32, cpu)
    fit_vae(vae, lambda e: [volume_to_slices(train[i]["target"][0], slices) for i in range(len(train))], None,
            lambda m: None)
    save_state(base / "vae", {**vae.state_dict(), "slice_config": {"size": 32, "plane": "coronal", "low": 1.0,
                                                                   "high": 99.0}})
    return base / "backbone", base / "vae"


def fake_brats_release(root: Path, cohort: Path, counts: dict[str, int]) -> Path:
    """A BraTS19-like folder: HGG/BraTS19_<INST>_<n>_1/BraTS19_<INST>_<n>_1_<mod>.nii.gz (linked files)."""
    from uda3d.data.layout import discover

    donor = discover(cohort, ("domain1_train",))["domain1_train"][0]
    for inst, n in counts.items():
        for i in range(n):
            sid = f"BraTS19_{inst}_{i:03d}_1"
            folder = root / "HGG" / sid
            folder.mkdir(parents=True)
            for modality, path in donor.files.items():
                (folder / f"{sid}_{modality}.nii.gz").symlink_to(path)
    return root
