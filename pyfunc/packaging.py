"""Save or log a fitted Pipeline as the MLflow pyfunc model, with everything a fresh environment
needs: the model as code (code_model.py, with this package as code_paths), its fitted state as
data (pyfunc/state.py), a signature, an input example and the pip requirements the format needs.

Nothing in the logged model is a pickle, so it loads where MLFLOW_ALLOW_PICKLE_DESERIALIZATION is
false (tests/pyfunc/test_packaging_roundtrip.py scans every file for one)."""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from packaging.specifiers import SpecifierSet

from pyfunc.calibration import Calibrator
from pyfunc.contract import (
    LABEL_FIELD,
    PROFILE_ARTIFACT,
    SCORE_FIELD,
    STATE_ARTIFACT,
    TEXT_COLUMN,
)
from pyfunc.state import write_state

PACKAGE_DIR = Path(__file__).resolve().parent  # shipped inside the model as code
MODEL_CODE = PACKAGE_DIR / "code_model.py"  # what MLflow runs to get the model object
# What the model needs at load time besides mlflow (which MLflow pins itself), as ranges: the
# state is data, so any release in the range reads it (tests/pyfunc/test_packaging_versions.py
# loads a model with the previous scikit-learn minor release and the oldest numpy 2). Lower
# bounds: the releases tested; upper bounds: the next major release, which may remove what the
# loader uses.
# prometheus-client for the metrics the model exposes when served (pyfunc/telemetry.py).
RUNTIME_REQUIREMENTS = {
    "scikit-learn": ">=1.8,<2",
    "scipy": ">=1.13,<2",
    "numpy": ">=2.0,<3",
    "pandas": ">=2.2,<4",
    "prometheus-client": ">=0.21,<1",
}
RUNTIME_PACKAGES = tuple(RUNTIME_REQUIREMENTS)

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
    """The runtime packages with the ranges the format needs (installed here: within them)."""
    for name, wanted in RUNTIME_REQUIREMENTS.items():
        if not SpecifierSet(wanted).contains(version(name)):
            raise RuntimeError(f"{name} {version(name)} is outside the model's range {wanted}")
    return [f"{name}{wanted}" for name, wanted in RUNTIME_REQUIREMENTS.items()]


def save_model(
    pipeline: Any,
    path: str | Path,
    profile: dict | None = None,
    calibrator: Calibrator | None = None,
) -> None:
    """Write the model to a local folder (which must not exist yet), loadable anywhere.

    `profile`: the training data profile (JSON-able) shipped with the model as an artifact;
    `calibrator`: the score's calibrator, shipped in the state (none: an uncalibrated model).
    """
    with tempfile.TemporaryDirectory() as tmp:
        arguments = _model_arguments(pipeline, Path(tmp), profile, calibrator)
        mlflow.pyfunc.save_model(path=str(path), **arguments)


def log_model(
    pipeline: Any,
    name: str = "model",
    profile: dict | None = None,
    calibrator: Calibrator | None = None,
    **kwargs: Any,
) -> mlflow.models.model.ModelInfo:
    """Log the model to the active MLflow run; extra keyword arguments go to `log_model`."""
    with tempfile.TemporaryDirectory() as tmp:
        arguments = _model_arguments(pipeline, Path(tmp), profile, calibrator)
        return mlflow.pyfunc.log_model(name=name, **arguments, **kwargs)


def _model_arguments(
    pipeline: Any, tmp: Path, profile: dict | None, calibrator: Calibrator | None
) -> dict[str, Any]:
    state_dir = tmp / STATE_ARTIFACT
    write_state(pipeline, state_dir, calibrator)
    artifacts = {STATE_ARTIFACT: str(state_dir)}
    if profile is not None:
        profile_file = tmp / "profile.json"
        profile_file.write_text(json.dumps(profile), encoding="utf-8")
        artifacts[PROFILE_ARTIFACT] = str(profile_file)
    return {
        "python_model": str(MODEL_CODE),
        "artifacts": artifacts,
        "code_paths": [str(PACKAGE_DIR)],
        "signature": SIGNATURE,
        "input_example": INPUT_EXAMPLE,
        "pip_requirements": pip_requirements(),
    }
