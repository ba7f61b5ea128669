"""Models as they were logged before the state format (a cloudpickled PythonModel and the fitted
pipeline as a joblib pickle), built by the tests themselves, and a scan for pickles in a folder.

Users' registries hold versions logged this way; the tests log one to check that they still load
where pickle is allowed, are refused in one line where it is not, and can be migrated.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def _arguments(pipeline: Any, tmp: Path) -> dict[str, Any]:
    import joblib

    from pyfunc import packaging
    from pyfunc.model import PIPELINE_ARTIFACT, SentimentModel

    joblib.dump(pipeline, tmp / "pipeline.joblib")
    return {
        "python_model": SentimentModel(),  # an object: MLflow cloudpickles it
        "artifacts": {PIPELINE_ARTIFACT: str(tmp / "pipeline.joblib")},
        "code_paths": [str(packaging.PACKAGE_DIR)],
        "signature": packaging.SIGNATURE,
        "input_example": packaging.INPUT_EXAMPLE,
        "pip_requirements": packaging.pip_requirements(),
    }


def log_pickled(pipeline: Any, name: str = "model", **kwargs: Any):
    """Log `pipeline` to the active run the old way; MLflow's ModelInfo."""
    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(name=name, **_arguments(pipeline, Path(tmp)), **kwargs)


def save_pickled(pipeline: Any, path: Path) -> None:
    """Save `pipeline` to a new folder the old way."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(path=str(path), **_arguments(pipeline, Path(tmp)))


def pickles_in(folder: Path) -> list[str]:
    """Every pickle in a folder, as "<file>: why": a pickle's name, a pickle protocol header at
    the start of a file or of a zip member, or a .npy array (loose or in a zip) of objects."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.name.endswith(PICKLE_SUFFIXES):
            found.append(f"{path}: named like a pickle")
        found += [f"{path}: {why}" for why in _pickle_signs(path.name, path.read_bytes())]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    signs = _pickle_signs(member, archive.read(member))
                    found += [f"{path}[{member}]: {why}" for why in signs]
    return found


def _pickle_signs(name: str, data: bytes) -> list[str]:
    signs = []
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        signs.append(f"pickle protocol {data[1]} header")
    if name.endswith(".npy") or data.startswith(b"\x93NUMPY"):
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        _, _, dtype = read(stream)
        if dtype.hasobject:
            signs.append("a .npy array of Python objects (pickled)")
    return signs
