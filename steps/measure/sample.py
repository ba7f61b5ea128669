"""The analysis sample: a few labelled test reviews stored with a model at evaluation, so deploy
can replay them through a new slot before it takes traffic, with no data source at deploy time.

`evaluate` draws it (stratified by label and by whether the model got the review right, so the
sample's accuracy is the test accuracy up to rounding) and logs it, with the figures it was drawn
from, as `evaluation/analysis_sample.json` in the run that logged the model: the run every
registered version of that model names (`ModelVersion.run_id`). `steps/rollout/analysis.py`
reads it back for a version.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from steps.data.dataset import NEGATIVE, POSITIVE
from steps.stage.errors import StageError, one_line

ARTIFACT_DIR = "evaluation"
FILE_NAME = "analysis_sample.json"


@dataclass(frozen=True)
class Sample:
    """Labelled reviews and what evaluation measured on the whole test split."""

    reviews: list[str]
    labels: list[str]  # positive / negative: the truth
    accuracy: float  # the model's accuracy on the whole test split
    positive_share: float  # share of the test split the model called positive
    sample_accuracy: float  # the model's accuracy on these reviews, in-process
    model_uri: str | None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False), encoding="utf-8")


def draw(
    reviews: Sequence[str],
    labels: Sequence[str],
    scores: np.ndarray,
    size: int,
    model_uri: str | None = None,
    seed: int = 0,
) -> Sample:
    """`size` reviews stratified by (label, right or wrong), with the test split's figures."""
    predicted = np.where(np.asarray(scores) > 0.5, POSITIVE, NEGATIVE)
    truth = np.asarray(labels)
    right = predicted == truth
    frame = pd.DataFrame({"review": list(reviews), "label": truth, "right": right})
    if size < len(frame):
        frame = frame.groupby(["label", "right"], group_keys=False).sample(
            frac=size / len(frame), random_state=seed
        )
    return Sample(
        reviews=frame["review"].astype(str).tolist(),
        labels=frame["label"].astype(str).tolist(),
        accuracy=float(right.mean()),
        positive_share=float((predicted == POSITIVE).mean()),
        sample_accuracy=float(frame["right"].mean()),
        model_uri=model_uri,
    )


def load(run_id: str, where: str) -> Sample:
    """The sample logged in a run (`where` names whose run it is, for the error)."""
    from mlflow.artifacts import download_artifacts

    artifact = f"{ARTIFACT_DIR}/{FILE_NAME}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=folder)
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (MlflowException, OSError) as exc:
            raise StageError(
                f"{where} has no analysis sample ({artifact} in run {run_id}:"
                f" {one_line(exc)[:200]}): evaluate and register it again"
            ) from None
        except ValueError as exc:
            raise StageError(f"{where}: {artifact} is not JSON ({one_line(exc)})") from None
    try:
        sample = Sample(**raw)
    except TypeError as exc:
        raise StageError(f"{where}: {artifact} has other fields ({one_line(exc)})") from None
    if not sample.reviews or len(sample.reviews) != len(sample.labels):
        raise StageError(f"{where}: {artifact} holds no labelled reviews")
    return sample
