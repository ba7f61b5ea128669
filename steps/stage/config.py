"""params.yaml -> frozen dataclasses, one per stage: every knob, what it means and what it accepts.

params.yaml is the single source of truth for every knob. Each top-level section maps to one
frozen dataclass below, and each field says under it what it does and, in its type, which values
it accepts: `Literal[...]` for a closed set of words, `Annotated[..., Range(...)]` for bounds,
`conflicts()` for rules across fields (steps/stage/schema.py). An unknown, missing or
mistyped key, or a value its field refuses, is one `ConfigError` line naming the key, the value,
what is allowed and where it came from, through every door: params.yaml (`load_params`, also what
`dvc exp run -S` reaches), the command line and `mlflow run -P` (`coercion.override`), and
`main --check`, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pyfunc.contract import CALIBRATIONS, CLASSIFIERS, VIEWS, WEIGHTINGS
from steps.stage import coercion, grid
from steps.stage.paths import PARAMS_FILE
from steps.stage.schema import NonEmpty, Pattern, Range, Section, hints
from steps.stage.shapes import Count, Fraction, Name, NgramSizes, Positive, Seconds, Seed

# The recipe's choices, declared once in pyfunc/contract.py (which imports nothing, so config
# loads none of the model's code): Literal[("a", "b")] is Literal["a", "b"].
View = Literal[VIEWS]
Classifier = Literal[CLASSIFIERS]
Weighting = Literal[WEIGHTINGS]
# A calibration method, or "best" (the lower held-out ECE of the two) or "none".
Calibration = Literal[("best", *CALIBRATIONS, "none")]


@dataclass(frozen=True)
class IngestConfig(Section):
    """Where the reviews come from and how a missing test split is made."""

    source: str
    """Folder, file, https:// URL, s3://bucket/key, odbc:<connection string> or mssql://..."""
    sha256: Annotated[str, Pattern(r"\s*([0-9a-fA-F]{64})?\s*", "64 hex digits or empty")]
    """Expected sha256 of the https download of `source` ("" = not checked)."""
    test_size: Annotated[float, Range(gt=0, lt=1)]
    """Share of the reviews held out as the test split when the source has none."""
    seed: Seed
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
class ValidateConfig(Section):
    """The Great Expectations suites and the bounds their JSON refers to by name."""

    suite: str
    """Expectation suite (JSON) run on each split."""
    train_test_suite: str
    """Expectation suite (JSON) run on both splits stacked (train/test overlap)."""
    unlabeled_suite: str
    """Expectation suite (JSON) run on the unlabeled split stacked with test, when there is one."""
    min_rows: Annotated[int, Range(ge=0)]
    """Fewest reviews a split may have."""
    min_review_chars: Annotated[int, Range(ge=0)]
    """Shortest review allowed, in characters."""
    max_review_chars: Count
    """Longest review allowed, in characters."""
    min_class_fraction: Annotated[float, Range(ge=0, le=0.5)]
    """Smallest share of a split each label may have."""
    max_duplicate_fraction: Fraction
    """Largest share of a split's rows that may repeat an earlier review."""
    max_overlap_fraction: Fraction
    """Largest share of test reviews that may also occur in train."""

    def conflicts(self) -> dict[str, str]:
        if self.min_review_chars > self.max_review_chars:
            return {
                "min_review_chars": f"must be at most max_review_chars"
                f" ({self.max_review_chars}), got {self.min_review_chars}"
            }
        return {}


@dataclass(frozen=True)
class TrainConfig(Section):
    """The model recipe (pyfunc.pipeline.build_pipeline) and how it is validated."""

    val_fraction: Annotated[float, Range(gt=0, lt=1)]
    """Share of the ingested train split held out for the val_* metrics."""
    val_split: Literal["grouped", "random"]
    """grouped (by movie, where reviews have a movie key; else random) or random (stratified)."""
    seed: Seed
    """Seed of the validation split."""
    refit_full: bool
    """Refit on the whole train split after validating (that model ships)."""
    unlabeled: Literal["self_training", "none"]
    """self_training (learn from the ingested unlabeled reviews, if any) or none."""
    self_training_rounds: Annotated[int, Range(ge=0)]
    """Rounds of pseudo-labelling the unlabeled reviews and refitting the classifier."""
    self_training_weighting: Weighting
    """Weight of a pseudo-labelled review: confidence (|2p - 1|) or uniform (1)."""
    max_unlabeled_copies: Fraction
    """Largest share of unlabeled reviews that may be copies of labelled train reviews."""
    unlabeled_fallback: bool
    """On an unusable unlabeled split, train on the labelled reviews alone (false: stop)."""
    negation: bool
    """Mark negation scope (NLTK mark_negation) before counting n-grams."""
    negation_view: bool
    """Also average in a Naive-Bayes view of negation-marked n-grams."""
    ngram_range: NgramSizes
    """Word n-gram sizes, low,high."""
    min_df: Count
    """Keep n-grams found in at least this many training reviews."""
    max_features: Count | None
    """Keep at most this many n-grams, the most frequent (null = all)."""
    char_ngram_range: NgramSizes | None
    """Extra character n-gram sizes, low,high (null = none)."""
    views: Annotated[tuple[View, ...], NonEmpty()]
    """Feature weightings averaged: nb, tfidf, nb_tfidf."""
    classifier: Classifier
    """logistic, or svm (linear SVM with sigmoid-calibrated probabilities)."""
    C: Positive
    """Inverse regularisation strength of each view's classifier."""
    nb_alpha: Positive
    """Smoothing of the Naive-Bayes log-count ratio."""
    calibration: Calibration
    """Score calibrator fitted on out-of-fold scores: best (lower ECE), isotonic, platt, none."""
    calibration_folds: Annotated[int, Range(ge=2, le=10)]
    """Folds (grouped by movie where there are movies) giving the out-of-fold scores."""


@dataclass(frozen=True)
class TuneConfig(Section):
    """Cross-validation of train recipes (steps/tune.py; steps/stage/grid.py)."""

    grid: Annotated[dict[str, tuple[Any, ...]], NonEmpty()]
    """train recipe keys -> the values tried; each combination a candidate (C=10|30;min_df=2|3)."""
    folds: Annotated[int, Range(ge=2, le=10)]
    """Folds, by movie where reviews have a movie key (else stratified), seeded by train.seed."""
    max_fits: Count
    """Most fits one tune may take: candidates x folds."""

    def conflicts(self) -> dict[str, str]:
        return grid.problems(self.grid, hints(TrainConfig), self.folds, self.max_fits)


@dataclass(frozen=True)
class EvaluateConfig(Section):
    """Test-split scoring, reports and the behavioural checks."""

    batch_size: Count
    """Reviews per predict call (the progress bar advances per batch)."""
    worst_examples: Annotated[int, Range(ge=0)]
    """Most confidently wrong test reviews written to reports/misclassified.csv."""
    min_check_pass_rate: Fraction
    """Share of each behavioural suite's cases that must hold."""
    analysis_sample: Annotated[int, Range(ge=0)]
    """Test reviews kept with the model for deploy's pre-promotion replay (0 = none)."""


@dataclass(frozen=True)
class RegisterConfig(Section):
    """The Model Registry entry every stage after training refers to."""

    model_name: Name
    """Registered model name; versions are promoted with aliases (champion, previous)."""


@dataclass(frozen=True)
class PromoteConfig(Section):
    """When a registered candidate replaces `champion` (steps/promote.py)."""

    # Figures of steps.measure.metrics where higher is better, as promotion compares them.
    metric: Literal["accuracy", "f1", "roc_auc"]
    """Metric both models are measured on, on the same reviews: accuracy, f1 or roc_auc."""
    min_gain: float
    """The candidate must beat the champion's metric by at least this much (absolute)."""
    eval_data: str
    """Parquet/CSV file (review, sentiment) to compare on ("" = the ingested test split)."""


@dataclass(frozen=True)
class MigrateConfig(Section):
    """How `migrate` re-logs a version logged as pickles as code and data (steps/migrate.py)."""

    max_score_difference: Annotated[float, Range(ge=0, lt=0.5)]
    """The most any comparison review's score may differ between the old and the new version."""


@dataclass(frozen=True)
class CompareConfig(Section):
    """How `compare` ranks the experiment's runs and what it shows."""

    metric: Name
    """Run metric to rank by."""
    higher_is_better: bool
    """false for metrics such as losses, where lower is better."""
    top_n: Count
    """Rows in the table (the chart shows every run)."""
    stage: str
    """Only runs tagged stage=<this> ("" = every run that logged the metric)."""
    key_metrics: tuple[str, ...]
    """Metrics shown beside the ranking metric."""


@dataclass(frozen=True)
class AnalysisConfig(Section):
    """What deploy checks before the live switch (preview Service) and after it (Prometheus)."""

    replay: bool
    """Before the switch, replay the version's labelled sample through the preview Service."""
    max_accuracy_drop: Fraction
    """Largest fall of the replayed sample's accuracy below the version's evaluated accuracy."""
    replay_p99_seconds: Positive
    """Largest p99 of one replayed review's round trip through the preview Service, seconds."""
    prometheus_url: str
    """Prometheus queried after the switch ("" = $IMDB_PROMETHEUS_URL; neither = no queries)."""
    duration: Seconds
    """Seconds the live slot is watched in Prometheus after the switch (0 = not watched)."""
    interval: Positive
    """Seconds between two rounds of Prometheus queries after the switch."""
    window: Annotated[float, Range(ge=1)]
    """Seconds of samples each query rates over (several scrape intervals)."""
    max_error_ratio: Fraction
    """Largest share of the live slot's calls that may fail inside the model."""
    max_p99_seconds: Positive
    """Largest p99 time inside the model of the live slot's calls, seconds."""
    max_positive_share_shift: Fraction
    """Largest distance of the live slot's positive share from the evaluated one."""
    max_estimated_accuracy_drop: Fraction
    """Largest fall of the live slot's label-free accuracy estimate below the evaluated one."""
    min_estimate_reviews: Count
    """Fewest reviews in the window for the estimate to be judged (the alert's: in 1h)."""


@dataclass(frozen=True)
class DeployConfig(Section):
    """Blue/green deployment on Kubernetes, driven by the registry's `champion` alias."""

    namespace: Name
    """Kubernetes namespace of the slots and Services (must match k8s/*.yaml)."""
    app: Name
    """Deployments <app>-blue/<app>-green, Services <app> (live) and <app>-preview."""
    container: Name
    """The serving container's name in both Deployments."""
    port_name: Name
    """The Services' port name, used by the smoke test's service proxy call."""
    image_registry: str
    """Registry images are pushed to, as <image_registry>/<image_repository>:<version>."""
    image_repository: Name
    """Image repository of the serving images."""
    build: bool
    """Build and push the image (false: CI has pushed <registry>/<repo>:<version>)."""
    workers: Count
    """MLFLOW_MODELS_WORKERS in each pod (else one per node CPU)."""
    rollout_timeout: Positive
    """Seconds for the idle slot's pods to become ready."""
    poll_interval: Positive
    """Seconds between rollout status checks."""
    request_timeout: Positive
    """Seconds for one Kubernetes API call or smoke-test request."""
    smoke_reviews: Annotated[tuple[str, ...], NonEmpty()]
    """Reviews sent through the preview Service; labels must match the model in-process."""
    text_column: Name
    """The model's input column."""
    label_field: Name
    """The field of each prediction that holds the label."""
    watch_interval: Seconds
    """Seconds between registry polls with --watch."""
    context: str
    """kubeconfig context ("" = current context, or in-cluster config in a pod)."""
    preview_replicas: Count
    """Pods the idle slot runs while analysed; scaled to the live slot's count before the switch."""
    scale_down_delay: Seconds | None
    """Seconds after a passed analysis until the old slot goes to 0 replicas (null = never)."""
    analysis: AnalysisConfig
    """Pre- and post-promotion analysis."""


@dataclass(frozen=True)
class MonitorConfig(Section):
    """Drift report: a batch of recent reviews against the model's training profile."""

    batch: str
    """The reviews: any source ingest accepts (folder, file, https, s3, odbc); labels optional."""
    model: str
    """Alias or version of register.model_name whose profile the batch is compared with."""
    min_reviews: Count
    """Fewest reviews a batch may have (fewer say nothing about a distribution)."""
    chunk_size: Count
    """Reviews per predict call while scoring the batch."""
    max_length_psi: Annotated[float, Range(ge=0)]
    """Largest PSI of review length against training."""
    max_unseen_token_increase: Fraction
    """Largest rise in the share of tokens the model never saw in training."""
    max_not_english_increase: Fraction
    """Largest rise in the share of reviews that do not read as English."""
    max_markup_increase: Fraction
    """Largest rise in the share of characters that are markup (tags, entities, URLs)."""
    max_score_psi: Annotated[float, Range(ge=0)]
    """Largest PSI of the predicted score against the validation split's."""
    max_score_ks: Fraction
    """Largest two-sample Kolmogorov-Smirnov statistic of the predicted scores."""
    max_label_shift: Fraction
    """With labels: largest difference of the positive share from training's."""
    max_accuracy_drop: Fraction
    """With labels: largest fall of accuracy below the evaluated figure."""
    max_estimated_accuracy_drop: Fraction
    """Largest fall of the label-free accuracy estimate below the evaluated figure."""
    min_estimate_reviews: Count
    """Fewer reviews: the estimate is reported with its wide interval, never a finding."""


@dataclass(frozen=True)
class ImageConfig(Section):
    """The serving and deployer images, and the stand-in base image built where Docker Hub is
    out of reach (steps/rollout/base_image.py)."""

    pull_timeout: Positive
    """Seconds `docker pull` of a base image may take before a stand-in is built instead."""
    debian_suite: str
    """Debian release the stand-in base is built from (its Python must match the tag's)."""
    debian_mirror: str
    """Debian mirror host for the stand-in: <mirror>/debian and <mirror>/debian-security."""
    ca_bundle: str
    """CA bundle the stand-in trusts for pip and TLS ("" = this host's default bundle)."""
    max_body_mb: Count
    """Largest request body (MiB) the serving image's nginx lets through to /invocations."""
    deployer_tag: str
    """Tag of the deployer image built from k8s/deployer/Dockerfile."""


@dataclass(frozen=True)
class SparkConfig(Section):
    """The Spark session `score` starts with engine=spark (spark-submit's own settings win)."""

    master: str
    """Spark master: local[*], spark://host:7077, yarn...; $SPARK_MASTER overrides this file."""
    driver_memory: str
    """spark.driver.memory of a session started here (a local master runs all in it)."""
    partitions: Annotated[int, Range(ge=0)]
    """Partitions scored in parallel (0 = at least the session's default parallelism)."""
    conf: tuple[Annotated[str, Pattern(r"\s*|[^=]*[^=\s][^=]*=.*", "key=value")], ...]
    """Extra Spark settings as key=value (e.g. spark.executor.memory=4g)."""


@dataclass(frozen=True)
class ScoreConfig(Section):
    """Batch scoring: reviews from any source in, a label and score per review out."""

    input: str
    """The reviews: what ingest reads (folder, file, https, s3, odbc), or a Parquet folder."""
    output: str
    """Where the scores go: a .parquet or .csv[.gz] path or s3:// key (format by extension)."""
    model: str
    """Model URI to score with ("" = models:/<register.model_name>@champion)."""
    engine: Literal["local", "spark"]
    """local (this process, streaming in chunks) or spark (mlflow.pyfunc.spark_udf)."""
    review_column: Name
    """Input column holding the review text (any case)."""
    id_column: str
    """Input column kept as each row's id (any case); without it, rows are numbered (row)."""
    bad_rows: Literal["skip", "refuse"]
    """Null, empty or non-UTF-8 reviews: skip (counted) or refuse (stop, write nothing)."""
    overwrite: bool
    """Replace an existing output (else an existing output is an error)."""
    chunk_rows: Count
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
    tune: TuneConfig
    evaluate: EvaluateConfig
    register: RegisterConfig
    promote: PromoteConfig
    migrate: MigrateConfig
    deploy: DeployConfig
    image: ImageConfig
    compare: CompareConfig
    monitor: MonitorConfig
    score: ScoreConfig


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml; raise ConfigError naming every bad key and the file."""
    return coercion.load(Params, path)
