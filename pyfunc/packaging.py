"""Save or log a fitted Pipeline as the MLflow pyfunc model, with everything a fresh environment
needs: this package (code_paths), a signature, an input example and pinned pip requirements."""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pyfunc.contract import (
    LABEL_FIELD,
    PIPELINE_ARTIFACT,
    PROFILE_ARTIFACT,
    SCORE_FIELD,
    TEXT_COLUMN,
)
from pyfunc.model import SentimentModel

PACKAGE_DIR = Path(__file__).resolve().parent  # shipped inside the model as code
# What the pipeline needs at load time besides mlflow (which MLflow pins itself);
# prometheus-client for the metrics the model exposes when served (pyfunc/telemetry.py).
RUNTIME_PACKAGES = ("scikit-learn", "scipy", "numpy", "pandas", "joblib", "prometheus-client")

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
    outputs=Schema([ColSpec("string", LABEL_FIELD), ColSpec("double", SCORE_FIELD)]),
)
INPUT_EXAMPLE = pd.DataFrame(
    {
        TEXT_COLUMN: [
            "A wonderful film: moving, funny and beautifully acted.<br /><br />10/10!",
            "Dull and far too long. I didn't care about anyone in it.",
        ]
    }
)


def pip_requirements() -> list[str]:
    """The runtime packages pinned to the versions installed here (the ones it was trained with)."""
    return [f"{name}=={version(name)}" for name in RUNTIME_PACKAGES]


def save_model(pipeline: Any, path: str | Path, profile: dict | None = None) -> None:
    """Write the model to a local folder (which must not exist yet), loadable anywhere.

    `profile`: the training data profile (JSON-able) shipped with the model as an artifact.
    """
    with tempfile.TemporaryDirectory() as tmp:
        arguments = _model_arguments(pipeline, Path(tmp), profile)
        mlflow.pyfunc.save_model(path=str(path), **arguments)


def log_model(
    pipeline: Any, name: str = "model", profile: dict | None = None, **kwargs: Any
) -> mlflow.models.model.ModelInfo:
    """Log the model to the active MLflow run; extra keyword arguments go to `log_model`."""
    with tempfile.TemporaryDirectory() as tmp:
        arguments = _model_arguments(pipeline, Path(tmp), profile)
        return mlflow.pyfunc.log_model(name=name, **arguments, **kwargs)


def _model_arguments(pipeline: Any, tmp: Path, profile: dict | None) -> dict[str, Any]:
    pipeline_file = tmp / "pipeline.joblib"
    joblib.dump(pipeline, pipeline_file)
    artifacts = {PIPELINE_ARTIFACT: str(pipeline_file)}
    if profile is not None:
        profile_file = tmp / "profile.json"
        profile_file.write_text(json.dumps(profile), encoding="utf-8")
        artifacts[PROFILE_ARTIFACT] = str(profile_file)
    return {
        "python_model": SentimentModel(),
        "artifacts": artifacts,
        "code_paths": [str(PACKAGE_DIR)],
        "signature": SIGNATURE,
        "input_example": INPUT_EXAMPLE,
        "pip_requirements": pip_requirements(),
    }
