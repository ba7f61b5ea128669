"""`train` entry point: fit the model on the ingested train split, measure it on a held-out
validation split, and ship it.

    python -m steps.train [--C 0.5] [--ngram_range 1,3] ...   (mlflow run . -e train -P C=0.5)

1. Carve a validation split (`train.val_fraction`, `train.seed`) from the ingested train split:
   grouped by movie where the reviews have a movie key (`train.val_split: grouped`), else
   stratified at random; fit the pipeline (pyfunc.pipeline) on the rest; log val_accuracy,
   val_f1, val_roc_auc, val_log_loss.
   With `train.unlabeled: self_training` and an ingested unlabeled split, every fit is
   self-trained on it (pyfunc.self_training); an unusable unlabeled split (empty, mostly copies
   of labelled reviews, sharing reviews with the test split) stops the stage, or with
   `train.unlabeled_fallback` is left out.
2. With `train.refit_full` (default), refit the same recipe on the whole train split: that model
   ships, as the published IMDB figures are for models trained on all 25,000 reviews.
   A calibrator fitted on out-of-fold scores of the split (`train.calibration`) ships with it:
   its score is a calibrated probability (steps/measure/calibration.py, pyfunc/calibration.py).
3. Save the model to models/model (atomically, for DVC), log it to the MLflow run, and write
   models/model.json (run id, model URI) for evaluate and register.
The fits of 1 and 2 (validation, calibration folds, refit) do not depend on each other: on real
data (FIT_IN_WORKERS_FROM reviews or more) they run at once, one worker process per CPU.
Data that was never ingested or validated, or whose files changed since they were validated, is
first made (again) by the ingest and validate entry points, run as child runs of this one; the
train split is then read only if its bytes are those validation passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline

from pyfunc import calibration, packaging
from pyfunc.calibration import Calibrator
from pyfunc.pipeline import n_features, token_counts
from steps.data import dataset
from steps.data.dataset import MOVIE_COLUMN, POSITIVE, model_text
from steps.data.splits import Unlabeled, usable_unlabeled, validation_split
from steps.entry import cli
from steps.fitting.recipe import Cleaned, clean_once, fit_job
from steps.measure import calibration as measure_calibration
from steps.measure.metrics import ACCURACY, F1, LOG_LOSS, ROC_AUC, classification_metrics
from steps.monitoring.profile import build_profile
from steps.stage import lock, workers
from steps.stage.config import Params, TrainConfig
from steps.stage.files import atomic_dir, write_json
from steps.stage.paths import (
    INGESTED_DIR,
    MODEL_DIR,
    TRAIN_METRICS_FILE,
    TRAIN_STATS_FILE,
    TRAINED_MODEL_INFO_FILE,
    UNLABELED_FILE_NAME,
    VALIDATED_MARKER,
)
from steps.tracking import store

log = logging.getLogger(__name__)

# The logged model is named after the registered model (register.model_name; the entry point
# passes params.yaml's), so the run's Models tab says what it is; runs before were "model".
DEFAULT_MODEL_NAME = store.PROJECT_NAME
VAL_METRICS = (ACCURACY, F1, ROC_AUC, LOG_LOSS)  # logged as val_<name>
VAL_METRIC_NAMES = tuple(f"val_{name}" for name in VAL_METRICS)
# Labelled + unlabeled reviews from which the fits run in worker processes: each worker costs
# about 3 CPU-s to start (imports), worth it for fits of a minute, not for a test's 400 reviews.
FIT_IN_WORKERS_FROM = 10_000


@dataclass(frozen=True)
class Trained:
    """A fitted pipeline and what was measured while making it."""

    pipeline: Pipeline
    metrics: dict[str, float]  # val_* metrics, timings, sizes
    profile: dict[str, Any]  # the validation split as drift monitoring sees it (shipped inside)
    validation: pd.DataFrame  # the held-out reviews the val_* metrics were measured on
    calibrator: Calibrator | None = None  # maps the pipeline's score to a calibrated one


def train_model(
    reviews: list[str],
    labels: list[str],
    cfg: TrainConfig,
    movies: list[str] | None = None,
    unlabeled: Unlabeled | None = None,
    processes: int = 1,
) -> Trained:
    """Fit on all but a validation split, score it, then (refit_full) refit on all.

    `movies` (one key per review) groups the validation split by movie (`train.val_split`);
    `unlabeled` reviews are learnt from by self-training (`train.unlabeled`). The fits run in up
    to `processes` worker processes at once (on FIT_IN_WORKERS_FROM reviews or more).
    """
    fit_idx, val_idx, how = validation_split(labels, movies, cfg)
    fit_x, val_x = [reviews[i] for i in fit_idx], [reviews[i] for i in val_idx]
    fit_y, val_y = [labels[i] for i in fit_idx], [labels[i] for i in val_idx]
    unlabeled = unlabeled if cfg.unlabeled == "self_training" and unlabeled else None
    # as ingest does for the test split: no unlabeled copy of a validation review, as the model
    # sees it (a case or spacing variant too), is learnt from
    val_unlabeled = None
    if unlabeled:
        val_unlabeled = unlabeled.copying_none_of(set(model_text(pd.Series(val_x, dtype=object))))
    extra = f" + {len(val_unlabeled):,} unlabeled (self-training)" if val_unlabeled else ""
    log.info("fitting on %d reviews%s, validating on %d (%s)", len(fit_x), extra, len(val_x), how)
    size = len(reviews) + len(unlabeled or ())
    with workers.pool(processes if size >= FIT_IN_WORKERS_FROM else 1) as pool:
        learnt = unlabeled.reviews if unlabeled else None
        cleaned = clean_once(cfg, learnt, unlabeled.as_model if unlabeled else None)
        val_fit = pool.submit(fit_job, cfg, fit_x, fit_y, cleaned.pick(val_unlabeled), val_x)
        refit = cfg.refit_full and pool.submit(fit_job, cfg, reviews, labels, cleaned.pick(learnt))
        calibrator, calibration_metrics = calibrate(cfg, reviews, labels, movies, cleaned, pool)
        pipeline, scores, fit_seconds, fit_cpu, predict_cpu = val_fit.result()
        # the profile's unseen words as the model that never saw the validation reviews sees them
        val_tokens = token_counts(pipeline, val_x)
        measured = classification_metrics(val_y, scores)
        log.info(
            "validation: accuracy %.4f, F1 %.4f, ROC AUC %.4f, log loss %.4f (fit %.1f s)",
            measured[ACCURACY], measured[F1], measured[ROC_AUC], measured[LOG_LOSS], fit_seconds,
        )  # fmt: skip
        metrics = {f"val_{name}": measured[name] for name in VAL_METRICS}
        metrics.update(calibration_metrics, val_fit_seconds=fit_seconds)
        if refit:
            extra = f" + {len(unlabeled):,} unlabeled (self-training)" if unlabeled else ""
            log.info("refitting on the whole train split (%d reviews%s)", len(reviews), extra)
            pipeline, _, fit_seconds, fit_cpu, _ = refit.result()
    profile = build_profile(
        val_x,
        calibrator(scores) if calibrator is not None else scores,  # as the served model answers
        val_tokens,
        positive_label_share=float(np.mean(np.asarray(labels) == POSITIVE)),
        accuracy=measured[ACCURACY],
        seed=cfg.seed,
    )
    metrics.update(
        val_predict_reviews_per_cpu_second=len(val_x) / max(predict_cpu, 1e-9),
        train_reviews=float(len(reviews) if refit else len(fit_x)),
        val_reviews=float(len(val_x)),
        val_grouped=float(how.startswith("grouped")),
        val_unlabeled_reviews=float(len(val_unlabeled or ())),
        unlabeled_reviews=float(len(unlabeled or ())),
        train_seconds=fit_seconds,
        train_cpu_seconds=fit_cpu,
        n_features=float(n_features(pipeline)),
    )
    validation = pd.DataFrame({"review": val_x, "sentiment": val_y})
    return Trained(pipeline, metrics, profile, validation, calibrator)


def calibrate(
    cfg: TrainConfig,
    reviews: list[str],
    labels: list[str],
    movies: list | None,
    unlabeled: list[str] | Cleaned | None,
    pool: Executor | None = None,
) -> tuple[Calibrator | None, dict[str, float]]:
    """`train.calibration`'s calibrator on out-of-fold scores (folds fitted like the model, and
    submitted to `pool` all before any is waited for); calibration_cpu_seconds counts theirs."""
    if cfg.calibration == "none":
        return None, {}
    cleaned = unlabeled if isinstance(unlabeled, Cleaned) else clean_once(cfg, unlabeled)
    started: list[Future] = []

    def fit_and_score(fit_rows: np.ndarray, held_rows: np.ndarray) -> Callable[[], np.ndarray]:
        held = [reviews[i] for i in held_rows]
        kept = set(held)
        extra = [text for text in cleaned.reviews if text not in kept]
        started.append(
            (pool or workers.InProcess()).submit(
                fit_job, cfg, [reviews[i] for i in fit_rows], [labels[i] for i in fit_rows],
                cleaned.pick(extra), held,
            )
        )  # fmt: skip
        return lambda job=started[-1]: job.result()[1]  # the scores, once the fit is done

    methods = calibration.METHODS if cfg.calibration == "best" else (cfg.calibration,)
    calibrator, figures = measure_calibration.fit_calibrator(
        fit_and_score, calibration.fit, methods, labels, movies, cfg.calibration_folds, cfg.seed
    )
    figures["calibration_cpu_seconds"] += sum(job.result()[3] + job.result()[4] for job in started)
    return calibrator, figures


def save_model(
    pipeline: Pipeline, model_dir: Path = MODEL_DIR, profile: dict | None = None, calibrator=None
) -> float:
    """Write the pyfunc model to `model_dir`, replacing any previous one atomically; size in MB."""
    with atomic_dir(model_dir) as tmp:
        packaging.save_model(pipeline, tmp, profile=profile, calibrator=calibrator)
    return sum(f.stat().st_size for f in Path(model_dir).rglob("*") if f.is_file()) / 1e6


def run(
    cfg: TrainConfig,
    ingested_dir: Path = INGESTED_DIR,
    model_dir: Path = MODEL_DIR,
    info_file: Path = TRAINED_MODEL_INFO_FILE,
    metrics_file: Path = TRAIN_METRICS_FILE,
    marker: Path = VALIDATED_MARKER,
    model_name: str = DEFAULT_MODEL_NAME,
    processes: int = 1,
) -> dict[str, Any]:
    """The whole stage inside the active MLflow run; returns what it wrote to `info_file`.

    The train split and the validation reviews carved from it are logged as run inputs, the
    model as a LoggedModel with the val_* metrics linked to it and to the validation reviews.
    """
    manifest = dataset.read_manifest(ingested_dir)
    frame = dataset.read_validated_split("train", ingested_dir, marker)
    reviews, labels = frame["review"].tolist(), frame["sentiment"].tolist()
    movies = frame[MOVIE_COLUMN].tolist() if MOVIE_COLUMN in frame.columns else None
    unlabeled = usable_unlabeled(
        dataset.read_validated_unlabeled(ingested_dir, marker),
        frame,
        dataset.read_validated_split("test", ingested_dir, marker),
        cfg,
        where=str(Path(ingested_dir) / UNLABELED_FILE_NAME),
    )
    if cfg.val_split == "grouped" and movies is None:
        # What was used is what the run, the main run and the model card then say.
        log.info("val_split random: the reviews have no movie key to group them by")
        cfg = dataclasses.replace(cfg, val_split="random")
    store.log_config(cfg)
    mlflow.set_tags({store.DATA_TAG: manifest.content_sha256, store.SOURCE_TAG: manifest.source})
    mlflow.log_input(dataset.as_mlflow_dataset(frame, manifest, "train", ingested_dir), "train")
    if unlabeled:  # self-training learns from them too
        extra = pd.DataFrame({"review": unlabeled.reviews})
        mlflow.log_input(
            dataset.as_mlflow_dataset(extra, manifest, "unlabeled", ingested_dir), "unlabeled"
        )
    trained = train_model(reviews, labels, cfg, movies, unlabeled, processes)
    size_mb = save_model(trained.pipeline, model_dir, trained.profile, trained.calibrator)
    log.info("saved the model to %s (%.1f MB)", model_dir, size_mb)
    metrics = {**trained.metrics, "model_size_mb": size_mb}
    # The headline (val_accuracy first) in the metrics file, the rest beside it: `dvc exp show`
    # makes its first columns of the first metrics file's keys, in order (dvc.yaml).
    write_json(metrics_file, {k: metrics[k] for k in VAL_METRIC_NAMES}, sort_keys=False)
    stats = {k: v for k, v in metrics.items() if k not in VAL_METRIC_NAMES}
    write_json(Path(metrics_file).with_name(TRAIN_STATS_FILE.name), stats)
    run = mlflow.active_run()
    model_uri, model_id = log_model(trained, model_dir, run.info.run_id, model_name)
    mlflow.set_tag(store.MODEL_URI_TAG, model_uri)
    validation = dataset.as_mlflow_dataset(trained.validation, manifest, "validation", ingested_dir)
    mlflow.log_input(validation, "validation")
    val = {k: v for k, v in metrics.items() if k in VAL_METRIC_NAMES}
    store.log_model_metrics(val, model_id, validation)
    mlflow.log_metrics({k: v for k, v in metrics.items() if k not in val})
    info = {
        "run_id": run.info.run_id,
        "model_uri": model_uri,
        "model_id": model_id,
        "model_dir": str(model_dir),
        "data_manifest_sha256": manifest.content_sha256,
        "data_source": manifest.source,
        "metrics": metrics,
    }
    write_json(info_file, info)
    log.info("logged the model as %s (run %s)", model_uri, run.info.run_id)
    return info


def log_model(
    trained: Trained, model_dir: Path, run_id: str, name: str = DEFAULT_MODEL_NAME
) -> tuple[str, str | None]:
    """Log the model to the active run as `name`; return its URI and logged-model id.

    MLflow 2.x tracking servers (DagsHub's hosted MLflow among them) have no logged-models API,
    so there the saved model folder is logged as run artifacts and referred to as `runs:/`.
    """
    try:
        info = packaging.log_model(
            trained.pipeline, name=name, profile=trained.profile, calibrator=trained.calibrator
        )
    except MlflowException as exc:
        if not _missing_logged_models_api(exc):
            raise
        log.warning(
            "the tracking server has no logged-models API (an MLflow 2.x server such as"
            " DagsHub's): logging %s as run artifacts instead",
            model_dir,
        )
        mlflow.log_artifacts(str(model_dir), artifact_path=name)
        return f"runs:/{run_id}/{name}", None
    return info.model_uri, info.model_id


def _missing_logged_models_api(exc: MlflowException) -> bool:
    message = str(exc)
    return "logged-models" in message and ("404" in message or "ENDPOINT_NOT_FOUND" in message)


def _command(params: Params, cfg: TrainConfig, args: argparse.Namespace) -> None:
    with lock.hold("train"), store.stage_run("train"):
        dataset.ensure_validated(args.params)
        dataset.require_validated()
        # one fit per CPU at once (there are up to 2 + train.calibration_folds of them)
        run(cfg, model_name=params.register.model_name, processes=os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    return cli.main("train", argv, _command)


if __name__ == "__main__":
    sys.exit(main())
