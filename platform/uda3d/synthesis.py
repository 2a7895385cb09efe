"""``uda3d synthesize``: the missing T1 of a subject, a split or a root, written under an output folder.

The generator runs on reoriented, cropped, min-max scaled volumes (``uda3d.inference``); its output
is put back on the subject's own grid and written with the FLAIR's affine and header, so it
overlays the inputs in any viewer. The absolute T1 scale is unknowable without a T1, so the
model's [0, 1] output is stored times ``scale`` (default 1000) as float32. Next to each T1 goes its
test-time-augmentation uncertainty map (same scale), and ``quality.csv`` lists every subject's
label-free quality estimates. Nothing is ever written into the dataset, and nothing is replaced
unless asked: every output path is checked before the first model call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uda3d.data.layout import SPLIT_PATTERN, Subject, discover, scan_subject
from uda3d.errors import ConfigError, DataError

SUFFIX = "_t1_synth.nii.gz"
UNCERTAINTY_SUFFIX = "_t1_synth_std.nii.gz"
QUALITY_FILE = "quality.csv"
_MODALITY_TAIL = re.compile(r"[_.\-][a-z0-9]+\.nii(?:\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SynthesisJob:
    """What to synthesize and where: subjects, the output folder and how."""

    subjects: tuple[Subject, ...]
    out: Path
    overwrite: bool = False
    uncertainty: bool = True
    scale: float = 1000.0
    batch_size: int = 2

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ConfigError("--scale", f"must be positive, got {self.scale}")
        if self.batch_size < 1:
            raise ConfigError("--batch-size", f"must be at least 1, got {self.batch_size}")


def file_prefix(subject: Subject) -> str:
    """The name the subject's files share (``BraTS19_X_1`` of ``BraTS19_X_1_flair.nii.gz``)."""
    flair = subject.files.get("flair")
    if flair is None:
        return subject.id
    return _MODALITY_TAIL.sub("", flair.name) or subject.id


def find_subjects(path: str | Path | None = None, dataroot: str | Path | None = None,
                  splits: tuple[str, ...] = ()) -> list[Subject]:
    """Subjects of a subject folder, a split folder (``path``) or a root's ``splits`` (``dataroot``)."""
    if (path is None) == (dataroot is None):
        raise ConfigError("SUBJECT_OR_SPLIT", "give a subject or split folder, or --dataroot with --split")
    if dataroot is not None:
        if not splits:
            raise ConfigError("--split", "name the split(s) of --dataroot to synthesize, e.g. --split domain2_test")
        found = discover(dataroot, tuple(splits))
        subjects = [s for name in splits for s in found[name]]
        if not subjects:
            raise DataError(Path(dataroot) / splits[0], "no subject folders in the split(s)")
        return subjects
    folder = Path(path)  # type: ignore[arg-type]
    if not folder.is_dir():
        raise DataError(folder, "subject or split folder not found")
    match = SPLIT_PATTERN.match(folder.name)
    if match or any(p.is_dir() for p in folder.iterdir()):
        domain, phase = (match["domain"], match["phase"]) if match else ("", "")
        subjects = [scan_subject(p, domain, phase) for p in sorted(folder.iterdir())
                    if p.is_dir() and not p.name.startswith(".")]
        return subjects
    return [scan_subject(folder, domain="", phase="")]


def planned_outputs(job: SynthesisJob) -> dict[str, dict[str, Path]]:
    """Each subject's output files, refusing two subjects that would write the same file."""
    planned: dict[str, dict[str, Path]] = {}
    seen: dict[Path, str] = {}
    for subject in job.subjects:
        prefix = file_prefix(subject)
        files = {"t1": job.out / f"{prefix}{SUFFIX}"}
        if job.uncertainty:
            files["uncertainty"] = job.out / f"{prefix}{UNCERTAINTY_SUFFIX}"
        if files["t1"] in seen:
            raise DataError(subject.folder, f"writes the same file as {seen[files['t1']]} ({files['t1'].name}); "
                                            "synthesize the splits into separate --out folders")
        seen[files["t1"]] = str(subject.folder)
        planned[subject.folder.as_posix()] = files
    return planned


def refuse_overwrite(job: SynthesisJob, planned: dict[str, dict[str, Path]]) -> None:
    """Exit before any work if an output exists and ``--overwrite`` was not given."""
    if job.overwrite:
        return
    for files in planned.values():
        for path in files.values():
            if path.exists():
                raise DataError(path, "exists; pass --overwrite to replace it")
    if (job.out / QUALITY_FILE).exists():
        raise DataError(job.out / QUALITY_FILE, "exists; pass --overwrite to replace it")


def check_outside_dataset(out: Path, subjects: tuple[Subject, ...]) -> None:
    """``--out`` must not be inside any subject's folder: synthesized files never go into the dataset."""
    resolved = out.resolve()
    for subject in subjects:
        folder = subject.folder.resolve()
        if resolved == folder or folder in resolved.parents:
            raise ConfigError("--out", f"{out} is inside the subject folder {subject.folder}; write outside "
                                       "the dataset")


def run_synthesis(model, job: SynthesisJob, progress: bool = True, members: tuple = ()) -> list[dict[str, Any]]:
    """Synthesize every subject of ``job`` with ``model`` (``uda3d.inference.InferenceModel``).

    ``members``: other models whose disagreement with ``model`` is reported as ``ensemble_spread``.
    Returns one row per subject: its files and quality estimates (also written to ``quality.csv``).
    """
    import nibabel as nib

    from uda3d.inference import synthesize
    from uda3d.io.nifti import save_volume
    from uda3d.io.tables import write_csv
    from uda3d.progress import progress as progress_bar

    check_outside_dataset(job.out, job.subjects)
    planned = planned_outputs(job)
    refuse_overwrite(job, planned)
    rows = []
    bar = progress_bar(total=len(job.subjects), desc="synthesize", unit="subject", disable=not progress)
    for start in range(0, len(job.subjects), job.batch_size):
        chunk = list(job.subjects[start:start + job.batch_size])
        for subject, result in zip(chunk, synthesize(model, chunk, job.scale, job.uncertainty, job.batch_size,
                                                     members)):
            files = planned[subject.folder.as_posix()]
            flair = nib.load(str(subject.files["flair"]))
            header = flair.header.copy()
            header.set_data_dtype(np.float32)
            header.set_slope_inter(1.0, 0.0)
            save_volume(files["t1"], result.t1, flair.affine, dtype=np.float32, header=header)
            if result.uncertainty is not None:
                save_volume(files["uncertainty"], result.uncertainty, flair.affine, dtype=np.float32, header=header)
            rows.append({**result.quality, "split": subject.split if subject.domain else "",
                         **{f"{k}_file": str(v) for k, v in files.items()}})
            bar.update(1)
    bar.close()
    write_csv(job.out / QUALITY_FILE, rows)
    return rows
