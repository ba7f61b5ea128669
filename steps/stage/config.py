"""params.yaml -> frozen dataclasses, one per stage.

params.yaml is the single source of truth for every knob. Each top-level section maps to one
frozen dataclass below; an unknown key, a missing key or a value of the wrong type is a
`ConfigError` naming the key and the file, so a typo fails at once instead of silently using a
default. CLI flags and `mlflow run -P key=value` go through the same coercion (`override`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from steps.stage.errors import ConfigError, one_line
from steps.stage.paths import PARAMS_FILE


@dataclass(frozen=True)
class IngestConfig:
    """Where the reviews come from and how a missing test split is made."""

    source: str
    """Folder, file, https:// URL, s3://bucket/key, odbc:<connection string> or mssql://..."""
    sha256: str
    """Expected sha256 of the https download of `source` ("" = not checked)."""
    test_size: float
    """Share of the reviews held out as the test split when the source has none."""
    seed: int
    """Seed of the stratified test split carved when the source has none."""
    s3_endpoint_url: str
    """S3-compatible endpoint for s3:// sources ("" = AWS, or $AWS_ENDPOINT_URL)."""
    sql_query: str
    """Query run on ODBC sources; it must return review and sentiment columns."""
    sql_password_env: str
    """Name of the environment variable that holds the SQL password (never the password)."""
    sql_driver: str
    """ODBC driver used to build mssql:// connections."""


@dataclass(frozen=True)
class ValidateConfig:
    """The Great Expectations suites and the bounds their JSON refers to by name."""

    suite: str
    """Expectation suite (JSON) run on each split."""
    train_test_suite: str
    """Expectation suite (JSON) run on both splits stacked (train/test overlap)."""
    unlabeled_suite: str
    """Expectation suite (JSON) run on the unlabeled split stacked with test, when there is one."""
    min_rows: int
    """Fewest reviews a split may have."""
    min_review_chars: int
    """Shortest review allowed, in characters."""
    max_review_chars: int
    """Longest review allowed, in characters."""
    min_class_fraction: float
    """Smallest share of a split each label may have."""
    max_duplicate_fraction: float
    """Largest share of a split's rows that may repeat an earlier review."""
    max_overlap_fraction: float
    """Largest share of test reviews that may also occur in train."""


@dataclass(frozen=True)
class TrainConfig:
    """The model recipe (pyfunc.pipeline.build_pipeline) and how it is validated."""

    val_fraction: float
    """Share of the ingested train split held out for the val_* metrics."""
    val_split: str
    """grouped (by movie, where reviews have a movie key; else random) or random (stratified)."""
    seed: int
    """Seed of the validation split."""
    refit_full: bool
    """Refit on the whole train split after validating (that model ships)."""
    unlabeled: str
    """self_training (learn from the ingested unlabeled reviews, if any) or none."""
    self_training_rounds: int
    """Rounds of pseudo-labelling the unlabeled reviews and refitting the classifier."""
    self_training_weighting: str
    """Weight of a pseudo-labelled review: confidence (|2p - 1|) or uniform (1)."""
    max_unlabeled_copies: float
    """Largest share of unlabeled reviews that may be copies of labelled train reviews."""
    unlabeled_fallback: bool
    """On an unusable unlabeled split, train on the labelled reviews alone (false: stop)."""
    negation: bool
    """Mark negation scope (NLTK mark_negation) before counting n-grams."""
    negation_view: bool
    """Also average in a Naive-Bayes view of negation-marked n-grams."""
    ngram_range: tuple[int, int]
    """Word n-gram sizes, low,high."""
    min_df: int
    """Keep n-grams found in at least this many training reviews."""
    max_features: int | None
    """Keep at most this many n-grams, the most frequent (null = all)."""
    char_ngram_range: tuple[int, int] | None
    """Extra character n-gram sizes, low,high (null = none)."""
    views: tuple[str, ...]
    """Feature weightings averaged: nb, tfidf, nb_tfidf."""
    classifier: str
    """logistic, or svm (linear SVM with sigmoid-calibrated probabilities)."""
    C: float
    """Inverse regularisation strength of each view's classifier."""
    nb_alpha: float
    """Smoothing of the Naive-Bayes log-count ratio."""


@dataclass(frozen=True)
class EvaluateConfig:
    """Test-split scoring, reports and the behavioural checks."""

    batch_size: int
    """Reviews per predict call (the progress bar advances per batch)."""
    worst_examples: int
    """Most confidently wrong test reviews written to reports/misclassified.csv."""
    min_check_pass_rate: float
    """Share of each behavioural suite's cases that must hold."""
    analysis_sample: int
    """Test reviews kept with the model for deploy's pre-promotion replay (0 = none)."""


@dataclass(frozen=True)
class RegisterConfig:
    """The Model Registry entry every stage after training refers to."""

    model_name: str
    """Registered model name; versions are promoted with aliases (champion, previous)."""


@dataclass(frozen=True)
class PromoteConfig:
    """When a registered candidate replaces `champion` (steps/promote.py)."""

    metric: str
    """Metric both models are measured on, on the same reviews: accuracy, f1 or roc_auc."""
    min_gain: float
    """The candidate must beat the champion's metric by at least this much (absolute)."""
    eval_data: str
    """Parquet/CSV file (review, sentiment) to compare on ("" = the ingested test split)."""


@dataclass(frozen=True)
class CompareConfig:
    """How `compare` ranks the experiment's runs and what it shows."""

    metric: str
    """Run metric to rank by."""
    higher_is_better: bool
    """false for metrics such as losses, where lower is better."""
    top_n: int
    """Rows in the table (the chart shows every run)."""
    stage: str
    """Only runs tagged stage=<this> ("" = every run that logged the metric)."""
    key_metrics: tuple[str, ...]
    """Metrics shown beside the ranking metric."""


@dataclass(frozen=True)
class AnalysisConfig:
    """What deploy checks before the live switch (preview Service) and after it (Prometheus)."""

    replay: bool
    """Before the switch, replay the version's labelled sample through the preview Service."""
    max_accuracy_drop: float
    """Largest fall of the replayed sample's accuracy below the version's evaluated accuracy."""
    replay_p99_seconds: float
    """Largest p99 of one replayed review's round trip through the preview Service, seconds."""
    prometheus_url: str
    """Prometheus queried after the switch ("" = $IMDB_PROMETHEUS_URL; neither = no queries)."""
    duration: float
    """Seconds the live slot is watched in Prometheus after the switch (0 = not watched)."""
    interval: float
    """Seconds between two rounds of Prometheus queries after the switch."""
    window: float
    """Seconds of samples each query rates over (several scrape intervals)."""
    max_error_ratio: float
    """Largest share of the live slot's calls that may fail inside the model."""
    max_p99_seconds: float
    """Largest p99 time inside the model of the live slot's calls, seconds."""
    max_positive_share_shift: float
    """Largest distance of the live slot's positive share from the evaluated one."""


@dataclass(frozen=True)
class DeployConfig:
    """Blue/green deployment on Kubernetes, driven by the registry's `champion` alias."""

    namespace: str
    """Kubernetes namespace of the slots and Services (must match k8s/*.yaml)."""
    app: str
    """Deployments <app>-blue/<app>-green, Services <app> (live) and <app>-preview."""
    container: str
    """The serving container's name in both Deployments."""
    port_name: str
    """The Services' port name, used by the smoke test's service proxy call."""
    image_registry: str
    """Registry images are pushed to, as <image_registry>/<image_repository>:<version>."""
    image_repository: str
    """Image repository of the serving images."""
    build: bool
    """Build and push the image (false: CI has pushed <registry>/<repo>:<version>)."""
    workers: int
    """MLFLOW_MODELS_WORKERS in each pod (else one per node CPU)."""
    rollout_timeout: float
    """Seconds for the idle slot's pods to become ready."""
    poll_interval: float
    """Seconds between rollout status checks."""
    request_timeout: float
    """Seconds for one Kubernetes API call or smoke-test request."""
    smoke_reviews: tuple[str, ...]
    """Reviews sent through the preview Service; labels must match the model in-process."""
    text_column: str
    """The model's input column."""
    label_field: str
    """The field of each prediction that holds the label."""
    watch_interval: float
    """Seconds between registry polls with --watch."""
    context: str
    """kubeconfig context ("" = current context, or in-cluster config in a pod)."""
    preview_replicas: int
    """Pods the idle slot runs while analysed; scaled to the live slot's count before the switch."""
    scale_down_delay: float | None
    """Seconds after a passed analysis until the old slot goes to 0 replicas (null = never)."""
    analysis: AnalysisConfig
    """Pre- and post-promotion analysis."""


@dataclass(frozen=True)
class MonitorConfig:
    """Drift report: a batch of recent reviews against the model's training profile."""

    batch: str
    """The reviews: any source ingest accepts (folder, file, https, s3, odbc); labels optional."""
    model: str
    """Alias or version of register.model_name whose profile the batch is compared with."""
    min_reviews: int
    """Fewest reviews a batch may have (fewer say nothing about a distribution)."""
    chunk_size: int
    """Reviews per predict call while scoring the batch."""
    max_length_psi: float
    """Largest PSI of review length against training."""
    max_unseen_token_increase: float
    """Largest rise in the share of tokens the model never saw in training."""
    max_not_english_increase: float
    """Largest rise in the share of reviews that do not read as English."""
    max_markup_increase: float
    """Largest rise in the share of characters that are markup (tags, entities, URLs)."""
    max_score_psi: float
    """Largest PSI of the predicted score against the validation split's."""
    max_score_ks: float
    """Largest two-sample Kolmogorov-Smirnov statistic of the predicted scores."""
    max_label_shift: float
    """With labels: largest difference of the positive share from training's."""
    max_accuracy_drop: float
    """With labels: largest fall of accuracy below the evaluated figure."""


@dataclass(frozen=True)
class ImageConfig:
    """The serving and deployer images, and the stand-in base image built where Docker Hub is
    out of reach (steps/rollout/base_image.py)."""

    pull_timeout: float
    """Seconds `docker pull` of a base image may take before a stand-in is built instead."""
    debian_suite: str
    """Debian release the stand-in base is built from (its Python must match the tag's)."""
    debian_mirror: str
    """Debian mirror host for the stand-in: <mirror>/debian and <mirror>/debian-security."""
    ca_bundle: str
    """CA bundle the stand-in trusts for pip and TLS ("" = this host's default bundle)."""
    max_body_mb: int
    """Largest request body (MiB) the serving image's nginx lets through to /invocations."""
    deployer_tag: str
    """Tag of the deployer image built from k8s/deployer/Dockerfile."""


@dataclass(frozen=True)
class SparkConfig:
    """The Spark session `score` starts with engine=spark (spark-submit's own settings win)."""

    master: str
    """Spark master: local[*], spark://host:7077, yarn...; $SPARK_MASTER overrides this file."""
    driver_memory: str
    """spark.driver.memory of a session started here (a local master runs all in it)."""
    partitions: int
    """Partitions scored in parallel (0 = at least the session's default parallelism)."""
    conf: tuple[str, ...]
    """Extra Spark settings as key=value (e.g. spark.executor.memory=4g)."""


@dataclass(frozen=True)
class ScoreConfig:
    """Batch scoring: reviews from any source in, a label and score per review out."""

    input: str
    """The reviews: what ingest reads (folder, file, https, s3, odbc), or a Parquet folder."""
    output: str
    """Where the scores go: a .parquet or .csv[.gz] path or s3:// key (format by extension)."""
    model: str
    """Model URI to score with ("" = models:/<register.model_name>@champion)."""
    engine: str
    """local (this process, streaming in chunks) or spark (mlflow.pyfunc.spark_udf)."""
    review_column: str
    """Input column holding the review text (any case)."""
    id_column: str
    """Input column kept as each row's id (any case); without it, rows are numbered (row)."""
    bad_rows: str
    """Null, empty or non-UTF-8 reviews: skip (counted) or refuse (stop, write nothing)."""
    overwrite: bool
    """Replace an existing output (else an existing output is an error)."""
    chunk_rows: int
    """engine=local: rows read, scored and written at a time (bounds the memory used)."""
    sql_query: str
    """Query run on ODBC sources (ingest's connection settings apply)."""
    spark: SparkConfig
    """engine=spark: the session's settings."""


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml."""

    ingest: IngestConfig
    validate: ValidateConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    register: RegisterConfig
    promote: PromoteConfig
    deploy: DeployConfig
    image: ImageConfig
    compare: CompareConfig
    monitor: MonitorConfig
    score: ScoreConfig


T = TypeVar("T")

# How true/false may be written on the command line and in `mlflow run -P`.
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml; raise ConfigError naming the bad key and the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    return _build(Params, raw, path, prefix="")


def override(cfg: T, values: dict[str, Any], origin: str = "command line") -> T:
    """Return a copy of a stage config with some fields replaced, coerced to their declared types.

    Values may be strings (as they arrive from argparse or `mlflow run -P`) or already typed. A
    field of a nested section is named with dots (`spark.master`).
    """
    return _override(cfg, values, origin, prefix="")


def _override(cfg: T, values: dict[str, Any], origin: str, prefix: str) -> T:
    if not values:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if head not in hints or bool(dot) != dataclasses.is_dataclass(hints[head]):
            known = ", ".join(sorted(prefix + name for name in flat_fields(type(cfg))))
            raise ConfigError(f"{origin}: unknown parameter {prefix + key!r} (known: {known})")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            changes[key] = _coerce(
                value, hints[key], prefix + key, origin, from_text=isinstance(value, str)
            )
    for head, inner in nested.items():
        changes[head] = _override(getattr(cfg, head), inner, origin, prefix=f"{prefix}{head}.")
    return dataclasses.replace(cfg, **changes)


def section_fields(cls: type) -> dict[str, Any]:
    """Field name -> declared type of a stage config class (used to build CLIs)."""
    return typing.get_type_hints(cls)


def flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every settable key of a config class -> its declared type, a nested section's fields
    named with dots (`spark.master`): the flags of a stage's command line."""
    fields: dict[str, Any] = {}
    for name, typ in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(typ):
            fields.update(flat_fields(typ, f"{prefix}{name}."))
        else:
            fields[prefix + name] = typ
    return fields


def flat_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """`flat_fields`' keys -> their docstrings."""
    docs: dict[str, str] = {}
    for name, typ in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(typ):
            docs.update(flat_docs(typ, f"{prefix}{name}."))
        else:
            docs[prefix + name] = field_docs(cls)[name]
    return docs


def flat_value(cfg: Any, key: str) -> Any:
    """The value of a `flat_fields` key (`spark.master`) in a config."""
    for name in key.split("."):
        cfg = getattr(cfg, name)
    return cfg


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field), for `--help`."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs


def _build(cls: type[T], raw: dict, path: Path, prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key '{prefix}{unknown[0]}'"
            f" (known under {prefix.rstrip('.') or 'top level'}: {', '.join(sorted(hints))})"
        )
    missing = sorted(set(hints) - set(raw))
    if missing:
        raise ConfigError(f"{path}: missing key '{prefix}{missing[0]}'")
    values = {}
    for name, typ in hints.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(typ):
            if not isinstance(raw[name], dict):
                raise ConfigError(f"{path}: {key!r} must be a mapping")
            values[name] = _build(typ, raw[name], path, prefix=f"{key}.")
        else:
            values[name] = _coerce(raw[name], typ, key, str(path), from_text=False)
    return cls(**values)


def _coerce(value: Any, typ: Any, key: str, origin: str, *, from_text: bool) -> Any:
    """Check (YAML) or convert (CLI text) one value against its declared type."""
    origin_type = typing.get_origin(typ)
    if origin_type in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        is_null = value is None or (from_text and value.lower() in ("", "none", "null"))
        if is_null and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, origin, from_text=from_text)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin_type is tuple:
        args = typing.get_args(typ)
        items = value.split(",") if from_text else value
        if not isinstance(items, (list, tuple)):
            raise _type_error(key, origin, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(items)
        elif len(items) != len(args):
            raise _type_error(key, origin, value, f"a list of {len(args)} values")
        pairs = zip(items, args, strict=True)
        return tuple(_coerce(v, t, key, origin, from_text=from_text) for v, t in pairs)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
        raise _type_error(key, origin, value, "true or false")
    if typ in (int, float):
        expected = "a whole number" if typ is int else "a number"
        accepted = int if typ is int else (int, float)  # YAML's 1 is a fine float, 1.5 no int
        if from_text:
            try:
                return typ(value)
            except ValueError:
                raise _type_error(key, origin, value, expected) from None
        if isinstance(value, accepted) and not isinstance(value, bool):
            return typ(value)
        raise _type_error(key, origin, value, expected)
    if typ is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, origin, value, "a string (quote it in YAML)")
    raise TypeError(f"unsupported config type {typ!r} for {key}")


def _type_error(key: str, origin: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{origin}: {key} must be {expected}, got {value!r}")
