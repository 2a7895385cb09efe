"""The code file MLflow logs with uda3d's pyfunc model ("models from code"): it names the model class."""

import mlflow.models

from uda3d.serving import SynthesisModel

mlflow.models.set_model(SynthesisModel())
