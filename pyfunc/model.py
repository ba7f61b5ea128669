"""The MLflow pyfunc: a thin adapter from request data to the fitted Pipeline and back.

What it accepts: a DataFrame with a `review` column of review strings (other columns are ignored),
a dict {"review": [...]}, a plain list/tuple/array/Series of strings, or one string.
What it answers: a DataFrame with, per review, `label` ("positive"/"negative") and `score`
(probability of positive, 0..1), calibrated when the model was logged with a calibrator
(pyfunc/calibration.py: every version trained since issue 24; `calibrated` says which).

A string is a review, whatever it says: "10", "None" or "" are scored like any other text. What
it refuses itself, because it also runs outside the server (in a notebook, a batch job, a Spark
UDF) where nothing else checks: a missing `review` column; values that are not strings
(null/NaN/None, numbers, booleans, lists...); a call over the request limits a server sets
(below). Each is an `InvalidReviews` error (an MlflowException with
INVALID_PARAMETER_VALUE, so a 400 in `mlflow models serve`, and a ValueError for in-process
callers) that says which row is wrong and what to send instead. Behind `mlflow models serve`,
only `dataframe_records` and `dataframe_split` bring JSON nulls, numbers and booleans to the model
as such: MLflow's `inputs`/`instances` parser turns every value into text first (see
pyfunc/README.md "What it accepts and answers").

When the environment asks for it (IMDB_METRICS_PORT, IMDB_PREDICTION_LOG: pyfunc/telemetry.py),
each call is also recorded as Prometheus metrics and a JSON log line; otherwise nothing is.

Any number of reviews can be scored in one call: the pipeline sees them in chunks of at most
CHUNK_REVIEWS reviews or CHUNK_CHARS characters, so the memory a call needs beyond its input and
its answer does not grow with the batch. Request limits protect a server, so they belong to
serving: the server's environment sets them (IMDB_MAX_CALL_CHARS, IMDB_MAX_REVIEW_CHARS; `make
serve` and the pods in k8s/ do), and a call over one is refused like any bad input. A notebook,
`mlflow models predict` or a Spark job loads the model without them and scores everything.

The defined answer for a review without evidence: when the model finds no known word in it
(an empty or whitespace-only string, markup only, or words never seen in training), the answer
is label "unknown" with score 0.5, rather than a guess from the intercept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from pyfunc.calibration import Calibrator
from pyfunc.classifier import NO_EVIDENCE
from pyfunc.contract import (
    LABEL_FIELD,
    MAX_CALL_CHARS_ENV,
    MAX_CALL_REVIEWS_ENV,
    MAX_REVIEW_CHARS_ENV,
    NEGATIVE,
    PIPELINE_ARTIFACT,
    POSITIVE,
    PROFILE_ARTIFACT,
    SCORE_FIELD,
    STATE_ARTIFACT,
    TEXT_COLUMN,
    UNKNOWN_LABEL,
)
from pyfunc.pipeline import token_counts
from pyfunc.state import read_calibrated_state
from pyfunc.telemetry import Telemetry, from_environment, watch

NO_EVIDENCE_SCORE = NO_EVIDENCE
# The pipeline's working memory grows with the reviews it is given at once; these bound it
# whatever the batch. 2,000 IMDB reviews (~2.7 M characters) per chunk score as fast per review as
# larger chunks, in a fraction of their memory (bench/bench_score.py measures a whole batch).
CHUNK_REVIEWS = 2_000
CHUNK_CHARS = 4_000_000
# The server's request limits (MAX_CALL_CHARS_ENV, MAX_REVIEW_CHARS_ENV in characters,
# MAX_CALL_REVIEWS_ENV in reviews; unset or "" = no limit), bound the work and memory one request
# can ask for before any cleaning: characters alone let a body of a million tiny reviews through,
# which costs the pipeline and telemetry a per-review price a million times; values: `make serve`,
# k8s/deployment-*.yaml.
_HOW_TO_SEND = (
    f'send a DataFrame with a "{TEXT_COLUMN}" column of strings, e.g. '
    f'{{"dataframe_records": [{{"{TEXT_COLUMN}": "A great film"}}]}}'
    ' or {"inputs": ["A great film"]}'
)


class InvalidReviews(MlflowException, ValueError):
    """Input the model cannot score; the message says which row and what to send instead."""

    MAX_MESSAGE_CHARS = 2000

    def __init__(self, message: str, reason: str = "invalid_input"):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)
        self.reason = reason  # a short name for metrics: rejected inputs by reason

    # The scoring server rewrites `message` to prepend the whole parsed request; bounded here
    # so that a 20 MB payload is not echoed back in the 400 answer.
    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        value, keep = str(value), self.MAX_MESSAGE_CHARS
        self._message = value if len(value) <= keep else f"{value[:300]} ... {value[305 - keep :]}"


@dataclass(frozen=True)
class RequestLimits:
    """A server's limits on one call, in characters and reviews (None = no limit)."""

    max_call_chars: int | None = None
    max_review_chars: int | None = None
    max_call_reviews: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> RequestLimits:
        """The limits the serving environment sets; none where it sets none."""
        return cls(
            max_call_chars=_limit(environ, MAX_CALL_CHARS_ENV),
            max_review_chars=_limit(environ, MAX_REVIEW_CHARS_ENV),
            max_call_reviews=_limit(environ, MAX_CALL_REVIEWS_ENV, "reviews"),
        )

    def check(self, values: Sequence[str]) -> None:
        """Refuse a call over a limit, saying which and how to get the reviews scored."""
        if self.max_call_reviews is not None and len(values) > self.max_call_reviews:
            _reject(  # first: it costs nothing, where the others read every review
                f"{len(values):,} reviews in one call; this server's limit is"
                f" {self.max_call_reviews:,} reviews per call ({MAX_CALL_REVIEWS_ENV}): split them"
                " into smaller batches, or score them offline (mlflow models predict, or the"
                " project's `score` entry point)",
                "call_too_many_reviews",
            )
        if self.max_review_chars is not None:
            for i, value in enumerate(values):
                if len(value) > self.max_review_chars:
                    _reject(
                        f"row {i} has {len(value):,} characters; this server's limit is"
                        f" {self.max_review_chars:,} per review ({MAX_REVIEW_CHARS_ENV}):"
                        " send the review text only, or shorten it",
                        "review_too_long",
                    )
        if self.max_call_chars is not None:
            total = sum(map(len, values))
            if total > self.max_call_chars:
                _reject(
                    f"{len(values):,} reviews with {total:,} characters in one call; this"
                    f" server's limit is {self.max_call_chars:,} characters per call"
                    f" ({MAX_CALL_CHARS_ENV}): split them into smaller batches, or score them"
                    " offline (mlflow models predict, or the project's `score` entry point)",
                    "call_too_long",
                )


def _limit(environ: Mapping[str, str], name: str, unit: str = "characters") -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        # Raised while the server loads the model: it stops with this line instead of serving
        # without the limit its operator asked for.
        raise ValueError(f"{name} must be a positive whole number of {unit}, got {text!r}")
    return value


class SentimentModel(PythonModel):
    """Rebuilds the fitted Pipeline from the model's state folder (data, no pickle: see
    pyfunc/state.py); maps input rows to label and score. MLflow gets it from code_model.py."""

    telemetry: Telemetry | None = None  # metrics and call logs, when the environment asks
    limits = RequestLimits()  # none in-process; load_context reads the serving environment's

    def __init__(
        self,
        pipeline: Any = None,
        limits: RequestLimits | None = None,
        calibrator: Calibrator | None = None,
    ):
        # Set directly in tests and in-process use; a loaded model gets it in load_context.
        self.pipeline = pipeline
        self.calibrator = calibrator
        if limits is not None:
            self.limits = limits

    @property
    def calibrated(self) -> bool:
        """Whether `score` is a calibrated probability (a label-free accuracy estimate)."""
        return self.calibrator is not None

    def load_context(self, context: PythonModelContext) -> None:
        artifacts = context.artifacts
        calibrator = None
        if STATE_ARTIFACT in artifacts:
            where = artifacts[STATE_ARTIFACT]
            pipeline, calibrator = read_calibrated_state(where)
        else:
            where = artifacts[PIPELINE_ARTIFACT]
            pipeline = _pickled_pipeline(where)
        self.telemetry = from_environment(
            where, artifacts.get(PROFILE_ARTIFACT), calibrated=calibrator is not None
        )
        self.pipeline, self.calibrator = pipeline, calibrator
        self.limits = RequestLimits.from_environment()

    # No type hints here on purpose: MLflow would read them as the input schema and warn; the
    # logged signature (review: string -> label, score) is the schema.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """A DataFrame with `label` and `score` per review (see the module docstring)."""
        with watch(self.telemetry) as call:
            reviews = review_texts(model_input)
            self.limits.check(reviews)
            return score_reviews(self.pipeline, reviews, call.scored, self.calibrator)

    def token_counts(self, reviews: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per review: tokens never seen in training, and all tokens (for drift monitoring)."""
        return token_counts(self.pipeline, reviews)


def _pickled_pipeline(path: str) -> Any:
    """A version logged before the state format: its pipeline is a joblib pickle.

    Such a version is a cloudpickled PythonModel, which MLflow itself refuses to unpickle when
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false, so this only runs where pickles are allowed
    (checked again here). It is needed where this code is imported first: MLflow then unpickles
    the old version's model as this class, and this method must read the old artifact.
    """
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        raise ValueError(
            f"{path} is a pickle and MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false: re-log the"
            " version in the data format (the `migrate` entry point), or train it again"
        )
    import joblib

    return joblib.load(path)


def score_reviews(
    pipeline: Any,
    reviews: list[str],
    observe: Callable[..., None] | None = None,
    calibrator: Calibrator | None = None,
) -> pd.DataFrame:
    """Label and probability of positive per review (see the module docstring for "unknown"),
    computed in chunks (`chunk_bounds`), so any number of reviews takes bounded extra memory;
    with a `calibrator`, the score is calibrated and the label follows it.

    `observe(reviews, labels, scores)` sees the two arrays before they become the answer (the
    served model's metrics: reading them back from the DataFrame costs more than recording).
    """
    if not reviews:
        if observe is not None:
            observe(reviews, np.empty(0, dtype=object), np.zeros(0))
        return pd.DataFrame({LABEL_FIELD: pd.Series([], dtype=object), SCORE_FIELD: np.zeros(0)})
    positive = list(pipeline.classes_).index(POSITIVE)
    score = np.empty(len(reviews), dtype=np.float64)
    for start, stop in chunk_bounds(reviews):
        score[start:stop] = pipeline.predict_proba(reviews[start:stop])[:, positive]
    if calibrator is not None:
        score = calibrator(score)  # keeps NO_EVIDENCE exactly where it was, and only there
    label = np.where(score > 0.5, POSITIVE, NEGATIVE).astype(object)
    # The classifier gives exactly NO_EVIDENCE to a review without any known n-gram (and only
    # to those: a real mixture of weights never lands on 0.5 exactly).
    label[score == NO_EVIDENCE_SCORE] = UNKNOWN_LABEL
    if observe is not None:
        observe(reviews, label, score)
    return pd.DataFrame({LABEL_FIELD: label, SCORE_FIELD: score})


def chunk_bounds(
    reviews: Sequence[str], max_reviews: int = CHUNK_REVIEWS, max_chars: int = CHUNK_CHARS
) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of at most `max_reviews` reviews and `max_chars`
    characters (a longer review is a chunk of its own)."""
    start = chars = 0
    for i, review in enumerate(reviews):
        if i > start and (i - start >= max_reviews or chars + len(review) > max_chars):
            yield start, i
            start, chars = i, 0
        chars += len(review)
    if start < len(reviews):
        yield start, len(reviews)


def review_texts(model_input: Any) -> list[str]:
    """The review strings of any accepted input shape, or an MlflowException saying what to send."""
    if isinstance(model_input, str):
        values: Sequence = [model_input]
    elif isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            columns = ", ".join(map(repr, map(str, model_input.columns))) or "none"
            _reject(
                f'input has no "{TEXT_COLUMN}" column (columns: {columns}); {_HOW_TO_SEND}',
                "no_text_column",
            )
        values = model_input[TEXT_COLUMN].tolist()
    elif isinstance(model_input, dict):
        if TEXT_COLUMN not in model_input:
            _reject(f'input has no "{TEXT_COLUMN}" key; {_HOW_TO_SEND}', "no_text_column")
        values = model_input[TEXT_COLUMN]
        values = [values] if isinstance(values, str) else list(values)
    elif isinstance(model_input, np.ndarray):
        values = model_input.ravel().tolist()
    elif isinstance(model_input, (list, tuple, pd.Series)):
        values = list(model_input)
    else:
        _reject(
            f"cannot read reviews from a {type(model_input).__name__}; {_HOW_TO_SEND}",
            "unreadable_input",
        )
    bad = [(i, v) for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        shown = ", ".join(f"row {i} is {_describe(v)}" for i, v in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        _reject(
            f"every review must be a string: {shown}{more};"
            f' send "" for an empty review (it is answered "unknown"); {_HOW_TO_SEND}',
            "not_a_string",
        )
    return list(values)


def _describe(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "null"
    return f"{type(value).__name__} {value!r:.40}"


def _reject(message: str, reason: str) -> None:
    raise InvalidReviews(message, reason)
