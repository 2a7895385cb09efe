"""The bad-input corpus: every way a user's input can be wrong, generated at test time (no binaries in git).

Each ``Case`` breaks a fresh workspace that holds a valid cohort at ``root/`` (a copy of the tiny
cohort) and returns the ``uda3d`` command line that must reject it, the file or field the one
error line must name, and a pattern for what that line must say was expected. Outputs of every
command point inside the workspace (``out/``), so "nothing left behind" is: the workspace holds
the same paths after the command as before it.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.helpers import modality_file, subject_dir

Built = tuple[list[str], str]  # (uda3d argv, what the error line must name)


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(workspace)`` breaks it and returns (argv, name); ``expect`` is a regex."""

    name: str
    build: Callable[[Path], Built]
    expect: str


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    """Replace a NIfTI's voxels (and optionally its affine), keeping its name."""
    img = nib.load(str(path))
    new = nib.Nifti1Image(data, img.affine if affine is None else affine)
    path.unlink()
    nib.save(new, str(path))


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _file(ws: Path, modality: str, split: str = "domain1_train") -> Path:
    return modality_file(subject_dir(ws / "root", split), modality)


def _validate(ws: Path, named: Path | str) -> Built:
    return ["validate-data", str(ws / "root"), "--quiet"], str(named)


# --- data --------------------------------------------------------------------------------------------

def missing_modality(ws: Path) -> Built:
    _file(ws, "flair").unlink()
    return _validate(ws, subject_dir(ws / "root"))


def voxels(modality: str, replace: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], Built]:
    """A case that rewrites one modality's voxels of the first source-training subject."""

    def build(ws: Path) -> Built:
        path = _file(ws, modality)
        _rewrite(path, replace(_voxels(path)))
        return _validate(ws, path)

    return build


def with_voxel(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def replace(data: np.ndarray) -> np.ndarray:
        data = data.astype(np.float32)
        data[16, 16, 16] = value
        return data

    return replace


RGB = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def affine_mismatch(ws: Path) -> Built:
    t2 = _file(ws, "t2")
    affine = nib.load(str(t2)).affine.copy()
    affine[0, 3] += 5.0
    _rewrite(t2, _voxels(t2), affine)
    return _validate(ws, t2)


def truncated_gzip(ws: Path) -> Built:
    t1 = _file(ws, "t1")
    t1.write_bytes(t1.read_bytes()[: len(t1.read_bytes()) // 2])
    return _validate(ws, t1)


def not_gzip(ws: Path) -> Built:
    t1 = _file(ws, "t1")
    t1.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    return _validate(ws, t1)


def duplicate_modality(ws: Path) -> Built:
    folder = subject_dir(ws / "root")
    shutil.copy(modality_file(folder, "t1"), folder / "copy_of_t1.nii.gz")
    return _validate(ws, folder)


def empty_split(ws: Path) -> Built:
    split = ws / "root" / "domain2_val"
    shutil.rmtree(split)
    split.mkdir()
    return _validate(ws, split)


def empty_training_split(ws: Path) -> Built:
    split = ws / "root" / "domain1_train"
    shutil.rmtree(split)
    split.mkdir()
    return ["train-backbone", "--dataroot", str(ws / "root"), "--workdir", str(ws / "out"), "--quiet"], str(split)


def subject_in_two_splits(ws: Path) -> Built:
    folder = subject_dir(ws / "root", "domain1_train")
    shutil.copytree(folder, ws / "root" / "domain1_test" / folder.name)
    return _validate(ws, folder.name)


def no_splits(ws: Path) -> Built:
    (ws / "empty").mkdir()
    return ["preprocess", str(ws / "empty"), "--cache-dir", str(ws / "out"), "--quiet"], str(ws / "empty")


def not_a_slice_store(ws: Path) -> Built:
    return ["train-vae", "--store", str(ws / "root"), "--workdir", str(ws / "out"), "--quiet"], str(ws / "root")


# --- configs and search spaces -----------------------------------------------------------------------

def space(text: str) -> Callable[[Path], Built]:
    def build(ws: Path) -> Built:
        path = ws / "space.yaml"
        path.write_text(text)
        return ["tune", "--space", str(path), "--dataroot", str(ws / "root"), "--backbone", str(ws / "none"),
                "--vae", str(ws / "none"), "--workdir", str(ws / "out"), "--quiet"], str(path)

    return build


def runtime_env(ws: Path) -> Built:
    path = ws / "env.yaml"
    path.write_text("working_dir: .\npip_packages: [torch]\n")
    return ["submit", "--address", "http://127.0.0.1:9", "--runtime-env", str(path), "validate-data", "x"], str(path)


# --- command-line options ----------------------------------------------------------------------------

def options(*argv: str, named: str) -> Callable[[Path], Built]:
    def build(ws: Path) -> Built:
        full = [a.replace("ROOT", str(ws / "root")).replace("OUT", str(ws / "out")) for a in argv]
        return full, named

    return build


def missing_checkpoint(ws: Path) -> Built:
    return ["synthesize", str(subject_dir(ws / "root", "domain2_test")), "--model", str(ws / "none"),
            "--out", str(ws / "out" / "t1.nii.gz")], str(ws / "none")


CASES: tuple[Case, ...] = (
    Case("missing modality", missing_modality, r"missing modality 'flair'; expected a file named \*_flair"),
    Case("shape mismatch", voxels("t2", lambda v: np.ones((30, 32, 32), np.int16)),
         r"shape \(30, 32, 32\) differs .* expected co-registered"),
    Case("affine mismatch", affine_mismatch, r"affine differs .* expected co-registered"),
    Case("NaN voxels", voxels("flair", with_voxel(np.nan)), r"1 voxel\(s\) are NaN or Inf; expected finite"),
    Case("Inf voxels", voxels("flair", with_voxel(np.inf)), r"1 voxel\(s\) are NaN or Inf; expected finite"),
    Case("all-zero volume", voxels("t2", np.zeros_like), r"image is empty \(every voxel is 0\); expected a scan"),
    Case("truncated gzip", truncated_gzip, r"corrupt or truncated image data .*; expected the whole file"),
    Case("gzip of something else", not_gzip, r"not a readable NIfTI file .*; expected a \.nii or \.nii\.gz image"),
    Case("4D image", voxels("flair", lambda v: np.ones((32, 32, 32, 2), np.int16)),
         r"expected a 3D image, got shape \(32, 32, 32, 2\)"),
    Case("complex voxels", voxels("t2", lambda v: v.astype(np.complex64)),
         r"voxel type complex64 is not an intensity; expected an integer or floating"),
    Case("RGB voxels", voxels("t2", lambda v: np.zeros(v.shape, RGB)),
         r"voxel type RGB is not an intensity; expected an integer or floating"),
    Case("labels outside BraTS", voxels("seg", lambda v: np.full(v.shape, 7, np.uint8)),
         r"label values \[7\] are not BraTS labels; expected a subset"),
    Case("two files for one modality", duplicate_modality,
         r"several files for modality 't1': .*; expected one file per modality"),
    Case("empty split", empty_split, r"split is empty; expected subject folders"),
    Case("empty training split", empty_training_split, r"split is empty; expected subject folders"),
    Case("subject in two splits", subject_in_two_splits, r"subject also in domain1_t\w+; expected each subject in one"),
    Case("root without splits", no_splits, r"no split folders found; expected e\.g\. domain1_train"),
    Case("not a slice store", not_a_slice_store, r"not a slice store .*; build one with 'uda3d slices'"),
    Case("space: unknown key", space("paramz: {}\n"), r"paramz: unknown key"),
    Case("space: unknown parameter", space("params:\n  momentum: {type: uniform, low: 0, high: 1}\n"),
         r"params\.momentum: unknown parameter"),
    Case("space: wrong type", space("params:\n  target_subjects: {type: int, low: one, high: 3}\n"),
         r"params\.target_subjects\.low: expected an integer, got 'one'"),
    Case("space: out of range", space("params:\n  ele_percent: {type: uniform, low: 10, high: 120}\n"),
         r"params\.ele_percent\.high: expected 0 < ele_percent <= 100"),
    Case("runtime env: unknown field", runtime_env, r"pip_packages: unknown runtime_env field; expected one of"),
    Case("option: not a positive integer",
         options("cohort", "OUT", "--subjects-per-site", "0", named="--subjects-per-site"),
         r"expected a positive integer, got '0'"),
    Case("option: wrong type", options("cohort", "OUT", "--seed", "minus", named="--seed"),
         r"expected a non-negative integer, got 'minus'"),
    Case("option: unknown choice", options("preprocess", "ROOT", "--cache-dir", "OUT", "--normalisation", "zscore",
                                           named="--normalisation"), r"invalid choice: 'zscore'"),
    Case("option: unknown site", options("cohort", "OUT", "--sites", "site-a", "mars", "--quiet", named="--sites"),
         r"unknown site 'mars'; expected one of"),
    Case("option: lr out of range", options("train-backbone", "--dataroot", "ROOT", "--workdir", "OUT", "--lr", "0",
                                            "--quiet", named="lr"), r"expected 0 < lr < 1, got 0"),
    Case("option: ele_percent out of range", options("adapt", "--dataroot", "ROOT", "--backbone", "ROOT",
                                                     "--vae", "ROOT", "--workdir", "OUT", "--ele-percent", "120",
                                                     "--quiet", named="ele_percent"),
         r"expected 0 < ele_percent <= 100, got 120"),
    Case("option: max failures", options("train-backbone", "--dataroot", "ROOT", "--workdir", "OUT",
                                         "--max-failures", "-5", "--quiet", named="--max-failures"),
         r"expected >= -1 \(-1 = retry forever\), got -5"),
    Case("option: GPUs without --use-gpu", options("train-vae", "--store", "ROOT", "--workdir", "OUT",
                                                   "--gpus-per-worker", "1", "--quiet", named="--gpus-per-worker"),
         r"needs --use-gpu"),
    Case("option: --resume with nothing to resume", options("train-backbone", "--dataroot", "ROOT", "--workdir", "OUT",
                                                            "--resume", "--quiet", named="--resume"),
         r"no run 'backbone' under .* to resume"),
    Case("option: missing checkpoint", missing_checkpoint,
         r"checkpoint not found; expected a checkpoint folder holding state\.pt"),
)
