"""The chosen model as an MLflow pyfunc model: ``mlflow models serve`` and ``mlflow.pyfunc.load_model`` run it.

The pyfunc wraps a uda3d checkpoint folder (generator, harmoniser if any, preprocessing, trained
crop, source intensity reference) and runs exactly what ``uda3d synthesize`` runs
(``uda3d.inference``), so a served T1 equals the file the CLI writes. Input (the signature MLflow
infers from the ``SubjectPaths`` type hint): rows with the string fields ``flair`` and ``t2``, NIfTI paths, as a
DataFrame or a list of dicts; output: each row's synthesized T1 on its FLAIR's grid, stacked as
(rows, X, Y, Z) float32. Arrays already preprocessed go through ``uda3d.inference.predict``.

The model is logged "from code" (``serving_model.py`` is the model's code file): MLflow warns that
a pickled Python model can run arbitrary code when loaded, the same reason uda3d's checkpoints
refuse pickles. This module and ``serving_model.py`` use MLflow's model *format* (``mlflow.pyfunc``);
runs and the Model Registry go through the tracking adapter (``uda3d.tracking.register_model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from uda3d.config import TrackingConfig

CHECKPOINT_ARTIFACT = "checkpoint"
CODE_FILE = Path(__file__).with_name("serving_model.py")


def _pyfunc_base():
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class SubjectPaths(pydantic.BaseModel):
    """One subject's inputs: the row type of the model's signature."""

    flair: str
    t2: str


class SynthesisModel(_pyfunc_base()):  # type: ignore[misc]
    """FLAIR + T2 paths in, synthesized T1 volumes out (see the module docstring).

    The input type hint is MLflow's signature (two required string fields); MLflow turns a
    DataFrame's rows or a list of dicts into ``SubjectPaths`` and refuses rows without them.
    """

    def load_context(self, context) -> None:
        from uda3d.inference import load_model

        self.model = load_model(context.artifacts[CHECKPOINT_ARTIFACT], device="cpu")

    def predict(self, context, model_input: list[SubjectPaths], params: dict[str, Any] | None = None):
        from uda3d.data.layout import Subject
        from uda3d.inference import synthesize

        subjects = []
        for row in model_input:
            files = {"flair": Path(row.flair), "t2": Path(row.t2)}
            subjects.append(Subject(id=files["flair"].name, domain="", phase="", folder=files["flair"].parent,
                                    files=files))
        volumes = [s.t1 for s in synthesize(self.model, subjects, uncertainty=False)]
        return np.stack(volumes) if len({v.shape for v in volumes}) == 1 else volumes


def log_servable_model(tracking: TrackingConfig, run_id: str, checkpoint: str | Path, name: str,
                       alias: str | None = None, tags: dict[str, str] | None = None) -> dict[str, str]:
    """Save ``checkpoint`` as a pyfunc model and register it as a new version of ``name`` (``tracking.register_model``).

    Only the model format is MLflow's business here; runs and the registry go through the tracking adapter.
    """
    import tempfile

    import mlflow.pyfunc

    from uda3d import __version__
    from uda3d.tracking import register_model

    folder = Path(checkpoint)
    state = folder if folder.is_file() else folder / "state.pt"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(path=str(local), python_model=str(CODE_FILE),
                                 artifacts={CHECKPOINT_ARTIFACT: str(state)},
                                 pip_requirements=[f"uda3d=={__version__}"])
        return register_model(tracking, run_id, local, name, alias, tags)
