"""The MLflow pyfunc: a thin adapter from request data to the fitted Pipeline and back.

What it accepts: a DataFrame with a `text` column of review strings (other columns are ignored),
a dict {"text": [...]}, a plain list/tuple/array/Series of strings, or one string.
What it answers: a DataFrame with, per review, `label` ("positive"/"negative") and `score`
(probability of positive, 0..1).

What it checks itself, because it also runs outside the server (in a notebook, a batch job, a
Spark UDF) where nothing else does: a missing `text` column, and values that are not strings
(null/NaN/None, numbers, lists...) are an `MlflowException` (INVALID_PARAMETER_VALUE, a 400 in
`mlflow models serve`) that says which row is wrong and what to send instead.

The defined answer for a review without evidence: when the model finds no known word in it
(an empty or whitespace-only string, markup only, or words never seen in training), the answer
is label "unknown" with score 0.5, rather than a guess from the intercept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from pyfunc.classifier import NO_EVIDENCE

TEXT_COLUMN = "text"
LABELS = ("negative", "positive")
UNKNOWN_LABEL = "unknown"
NO_EVIDENCE_SCORE = NO_EVIDENCE
PIPELINE_ARTIFACT = "pipeline"  # key of the joblib file in the logged model's artifacts
_HOW_TO_SEND = (
    f'send a DataFrame with a "{TEXT_COLUMN}" column of strings, e.g. '
    f'{{"dataframe_records": [{{"{TEXT_COLUMN}": "A great film"}}]}}'
    ' or {"inputs": ["A great film"]}'
)


class SentimentModel(PythonModel):
    """Loads the fitted Pipeline from the model's artifacts; maps input rows to label and score."""

    def __init__(self, pipeline: Any = None):
        # Set directly in tests and in-process use; a loaded model gets it in load_context.
        self.pipeline = pipeline

    def load_context(self, context: PythonModelContext) -> None:
        self.pipeline = joblib.load(context.artifacts[PIPELINE_ARTIFACT])

    # No type hints here on purpose: MLflow would read them as the input schema and warn; the
    # logged signature (text: string -> label, score) is the schema.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """A DataFrame with `label` and `score` per review (see the module docstring)."""
        reviews = review_texts(model_input)
        return score_reviews(self.pipeline, reviews)


def score_reviews(pipeline: Any, reviews: list[str]) -> pd.DataFrame:
    """Label and probability of positive per review (see the module docstring for "unknown")."""
    if not reviews:
        return pd.DataFrame({"label": pd.Series([], dtype=object), "score": np.zeros(0)})
    positive = list(pipeline.classes_).index(LABELS[1])
    score = pipeline.predict_proba(reviews)[:, positive].astype(np.float64)
    label = np.where(score > 0.5, LABELS[1], LABELS[0]).astype(object)
    # The classifier gives exactly NO_EVIDENCE to a review without any known n-gram (and only
    # to those: a real mixture of weights never lands on 0.5 exactly).
    label[score == NO_EVIDENCE_SCORE] = UNKNOWN_LABEL
    return pd.DataFrame({"label": label, "score": score})


def review_texts(model_input: Any) -> list[str]:
    """The review strings of any accepted input shape, or an MlflowException saying what to send."""
    if isinstance(model_input, str):
        values: Sequence = [model_input]
    elif isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            columns = ", ".join(map(repr, map(str, model_input.columns))) or "none"
            _reject(f'input has no "{TEXT_COLUMN}" column (columns: {columns}); {_HOW_TO_SEND}')
        values = model_input[TEXT_COLUMN].tolist()
    elif isinstance(model_input, dict):
        if TEXT_COLUMN not in model_input:
            _reject(f'input has no "{TEXT_COLUMN}" key; {_HOW_TO_SEND}')
        values = model_input[TEXT_COLUMN]
        values = [values] if isinstance(values, str) else list(values)
    elif isinstance(model_input, np.ndarray):
        values = model_input.ravel().tolist()
    elif isinstance(model_input, (list, tuple, pd.Series)):
        values = list(model_input)
    else:
        _reject(f"cannot read reviews from a {type(model_input).__name__}; {_HOW_TO_SEND}")
    bad = [(i, v) for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        shown = ", ".join(f"row {i} is {_describe(v)}" for i, v in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        _reject(
            f"every review must be a string: {shown}{more};"
            f' send "" for an empty review (it is answered "unknown"); {_HOW_TO_SEND}'
        )
    return list(values)


def _describe(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "null"
    return f"{type(value).__name__} {value!r:.40}"


def _reject(message: str) -> None:
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
