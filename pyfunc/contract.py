"""The names the model and the stages share, declared once: what the model reads and answers,
the keys of its artifacts, the environment variables a server sets for it, and the Prometheus
series it exports.

pyfunc/ uses them to be the model, steps/ to call it, measure it and watch it (the alert rules,
dashboard and analysis queries are built from these names: steps/monitoring/promql.py).
Dependency-free (no imports at all), so a stage loads none of the model's code by importing it
(steps/measure/scoring.py `load_model` says why that matters). Files that are not Python name
some of these too (k8s/deployment-*.yaml, the Makefile): tests/pyfunc/test_contract.py checks
them against this module.
"""

# What the model reads and answers (pyfunc/model.py). The input column is the data's review
# column too (steps/data/dataset.py).
TEXT_COLUMN = "review"
LABEL_FIELD = "label"
SCORE_FIELD = "score"  # probability of positive, 0..1
OUTPUT_FIELDS = (LABEL_FIELD, SCORE_FIELD)
LABELS = ("negative", "positive")  # index = the numeric class (0/1) the classifier learns
NEGATIVE, POSITIVE = LABELS
UNKNOWN_LABEL = "unknown"  # the answer for a review without evidence (no known word)

# The recipe's choices (params.yaml train.*): the views the classifier averages
# (pyfunc/classifier.py), its linear model, the self-training weighting (pyfunc/self_training.py),
# the score calibrators (pyfunc/calibration.py); steps/stage/config.py declares its fields
# with them.
VIEWS = ("nb", "tfidf", "nb_tfidf")
CLASSIFIERS = ("logistic", "svm")
WEIGHTINGS = ("confidence", "uniform")
CALIBRATIONS = ("isotonic", "platt")

# Keys of the logged model's artifacts (pyfunc/packaging.py).
STATE_ARTIFACT = "state"  # the fitted Pipeline as data: JSON + .npz, no pickle (pyfunc/state.py)
PIPELINE_ARTIFACT = "pipeline"  # in versions logged before the state: the Pipeline as joblib
PROFILE_ARTIFACT = "profile"  # the training data profile (JSON) the monitor compares with
BASELINE_SHARE_KEY = "predicted_positive_share"  # the profile's field the metrics publish

# What a server's environment sets for the model (pyfunc/model.py, pyfunc/telemetry.py).
MAX_CALL_CHARS_ENV = "IMDB_MAX_CALL_CHARS"
MAX_REVIEW_CHARS_ENV = "IMDB_MAX_REVIEW_CHARS"
MAX_CALL_REVIEWS_ENV = "IMDB_MAX_CALL_REVIEWS"
SERVING_LIMITS_ENV = (MAX_CALL_CHARS_ENV, MAX_REVIEW_CHARS_ENV, MAX_CALL_REVIEWS_ENV)
METRICS_PORT_ENV = "IMDB_METRICS_PORT"
PREDICTION_LOG_ENV = "IMDB_PREDICTION_LOG"
SLOT_ENV = "IMDB_SLOT"
MODEL_NAME_ENV = "IMDB_MODEL_NAME"
MODEL_VERSION_ENV = "IMDB_MODEL_VERSION"
# The version's accuracy on evaluate's test split (the registry's tag); unset: the profile's
# validation accuracy stands in.
EVALUATED_ACCURACY_ENV = "IMDB_EVALUATED_ACCURACY"
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it

# The Prometheus metrics, as named to prometheus_client (pyfunc/telemetry.py). Exported series
# add the usual suffixes: a counter's `_total`, a histogram's `_bucket`, `_count` and `_sum`.
METRIC_PREFIX = "imdb_sentiment"
CALLS_METRIC = f"{METRIC_PREFIX}_calls"  # counter: predict calls by slot, outcome
REVIEWS_METRIC = f"{METRIC_PREFIX}_reviews"  # counter: reviews scored by slot, label
REJECTED_METRIC = f"{METRIC_PREFIX}_rejected"  # counter: refused calls by slot, reason
PREDICT_SECONDS_METRIC = f"{METRIC_PREFIX}_predict_seconds"  # histogram: time in the model
SCORE_METRIC = f"{METRIC_PREFIX}_score"  # histogram: score per review
REVIEW_CHARS_METRIC = f"{METRIC_PREFIX}_review_chars"  # histogram: characters per review
MODEL_INFO_METRIC = f"{METRIC_PREFIX}_model_info"  # gauge: 1, labelled with the model served
BASELINE_SHARE_METRIC = f"{METRIC_PREFIX}_baseline_positive_share"  # gauge: training's share
# counter: sum over reviews scored of max(p, 1 - p), by slot; only a calibrated model has it,
# and over any window its rate divided by the reviews' is the label-free accuracy estimate
EXPECTED_CORRECT_METRIC = f"{METRIC_PREFIX}_expected_correct"
EVALUATED_ACCURACY_METRIC = f"{METRIC_PREFIX}_evaluated_accuracy"  # gauge: the version's figure
ACCURACY_KEY = (
    "accuracy"  # the profile's validation accuracy (when EVALUATED_ACCURACY_ENV is unset)
)
# Their labels: every series carries the slot; the model's identity is on the info series.
SLOT_LABEL = "slot"
OUTCOME_LABEL = "outcome"
PREDICTED_LABEL = "label"  # on REVIEWS_METRIC: the predicted label (LABELS or UNKNOWN_LABEL)
REASON_LABEL = "reason"  # on REJECTED_METRIC: why the input was refused
IDENTITY_LABELS = ("model_name", "model_version", "run_id", "model_id")
# Values of OUTCOME_LABEL: answered, refused as bad input (HTTP 400), failed inside (HTTP 500).
OK, REJECTED, ERROR = OUTCOMES = ("ok", "rejected", "error")
