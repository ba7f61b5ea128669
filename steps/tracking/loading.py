"""Loading a logged model as the stages do, and the one line for a version that cannot load here.

The model is logged as code and data (pyfunc/code_model.py, pyfunc/state.py): nothing in it is a
pickle. Versions logged before are pickles (a cloudpickled PythonModel and a joblib pipeline), and
MLflow refuses them where MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false (the pods, `make serve`)
with a message that names neither the version nor the way out. `check_loadable` says both, in one
line, before anything is unpickled (steps/measure/scoring.py `load_model` checks, then loads).
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.models import Model
from mlflow.models.model import MODEL_CODE_PATH
from mlflow.pyfunc.model import CONFIG_KEY_PYTHON_MODEL

from steps.stage.errors import StageError, one_line

GUARD_ENV = MLFLOW_ALLOW_PICKLE_DESERIALIZATION.name
_VERSION_URI = re.compile(r"models:/[^/@]+/(?P<version>\d+)")


def pickle_allowed() -> bool:
    """What MLFLOW_ALLOW_PICKLE_DESERIALIZATION says here (MLflow's default: true)."""
    return MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get()


def is_pickled(location: str | Path) -> bool:
    """Whether the model at a folder or URI is a cloudpickled PythonModel (logged before the
    model became code and data), read from its MLmodel file alone."""
    try:
        flavor = Model.load(str(location)).flavors.get(mlflow.pyfunc.FLAVOR_NAME, {})
    except Exception as exc:  # MlflowException, OSError...: one line either way
        raise StageError(f"cannot read the MLmodel of {location}: {one_line(exc, 300)}") from None
    return CONFIG_KEY_PYTHON_MODEL in flavor and MODEL_CODE_PATH not in flavor


def registered_version(uri: str) -> str | None:
    """N of a `models:/<name>/N` URI; None for any other location."""
    match = _VERSION_URI.fullmatch(str(uri))
    return match["version"] if match else None


def refusal(what: str, version: str | int | None = None, where: str = "here") -> str:
    """The line that refuses a pickled model where pickles are not allowed."""
    again = (
        f"`make migrate VERSION={version}` (a new version with the same weights)"
        if version
        else "`make migrate VERSION=<its version>` if it is registered"
    )
    return (
        f"{what} was logged as pickles, before the model became code and data, and"
        f" {GUARD_ENV}=false {where} refuses them: re-log it with {again}, or train and"
        " register a new version"
    )


def check_loadable(location: str | Path, what: str, version: str | int | None = None) -> None:
    """Refuse (StageError) a pickled model where pickles are not allowed; nothing otherwise."""
    if not pickle_allowed() and is_pickled(location):
        raise StageError(refusal(what, version))


def require_mlmodel(folder: str | Path, uri: str) -> None:
    """Refuse, in one line, downloaded files of `uri` that hold no MLmodel file (a folder that
    is not a saved model): MLflow's own error names a temp path and comes later, as a traceback
    in some callers."""
    if not (Path(folder) / "MLmodel").is_file():
        raise StageError(
            f"model {uri}: no MLmodel file there, so not an MLflow model: give the folder a model"
            " was saved to, or models:/<name>/<version>"
        )
