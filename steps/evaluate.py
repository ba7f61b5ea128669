"""`evaluate` entry point: score a trained model on the ingested test split.

    python -m steps.evaluate                  (mlflow run . -e evaluate; the stage after train)
    python -m steps.evaluate --run_id RUN     (-P run_id=RUN: the model a train run logged)
    python -m steps.evaluate --model_uri URI  (-P model_uri=models:/m-... or runs:/RUN/<model name>)

By default the model train saved in models/model (loaded as MLflow loads it anywhere); with
--run_id or --model_uri, the one chosen (e.g. after `make compare`). Writes:
- reports/metrics.json: accuracy, F1, precision, recall, ROC AUC, log loss and the behavioural
  pass rates, numbers only (`dvc metrics show`);
- reports/evaluation.json: which model was evaluated (URI, train run) on which data, and
  `behavioural_checks_passed` (register refuses a record made for another model);
- reports/plots/: confusion matrix, ROC and precision-recall curves and the reliability diagram
  (accuracy against confidence, 15 bins: the ECE's table) as PNG, and the data behind them as
  CSV/JSON (confusion.json, predictions.csv, roc.csv, precision_recall.csv, reliability.csv)
  for DVC plots;
- reports/misclassified.csv: the most confidently wrong test reviews (a review that starts like a
  spreadsheet formula, with = + - @ or a tab, gets a leading apostrophe: shown as text);
- reports/behavioural.json: every behavioural case with its score and outcome;
- reports/analysis_sample.json: `analysis_sample` labelled test reviews (steps/measure/sample.py)
  that deploy replays through a new slot before the switch.
All of it is logged to the MLflow run (metrics as `test_*`, also linked to the logged model), the
test split as the run's input dataset, the files as artifacts; the analysis sample also goes to
the run that logged the model, which every version registered from it names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

from pyfunc.contract import SCORE_FIELD
from steps.data import dataset
from steps.data.dataset import NEGATIVE, POSITIVE
from steps.entry import cli
from steps.measure import behavioural, sample, scoring
from steps.measure.calibration import expected_calibration_error, reliability_table
from steps.measure.metrics import ACCURACY, ECE, F1, LOG_LOSS, ROC_AUC, classification_metrics
from steps.stage import lock
from steps.stage.config import EvaluateConfig, Params
from steps.stage.errors import StageError, one_line
from steps.stage.files import atomic_path, write_csv, write_json
from steps.stage.paths import (
    ANALYSIS_SAMPLE_FILE,
    BEHAVIOURAL_FILE,
    EVALUATION_FILE,
    INGESTED_DIR,
    METRICS_FILE,
    MISCLASSIFIED_FILE,
    PLOTS_DIR,
    VALIDATED_MARKER,
)
from steps.tracking import loading, registry, runs, store

log = logging.getLogger(__name__)

CHECKS_PASSED_KEY = behavioural.PASSED_KEY
EVALUATED_MODEL_TAG = "evaluated_model_uri"  # the model the run's figures are of

CURVE_POINTS = 500  # rows kept in roc.csv / precision_recall.csv (enough to draw, small to diff)


def worst_misclassified(frame: pd.DataFrame, scores: np.ndarray, count: int) -> pd.DataFrame:
    """The `count` wrong predictions the model was most sure of."""
    predicted = np.where(scores > 0.5, POSITIVE, NEGATIVE)
    confidence = np.abs(scores - 0.5) * 2
    wrong = frame.assign(predicted=predicted, score=scores, confidence=confidence)
    wrong = wrong[wrong["predicted"] != wrong["sentiment"]]
    return wrong.sort_values("confidence", ascending=False).head(count).reset_index(drop=True)


def write_plots(labels: np.ndarray, scores: np.ndarray, plots_dir: Path) -> list[Path]:
    """Confusion matrix, ROC and PR curves as PNG plus their data as CSV/JSON; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (set here, not at import time)
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    truth = labels == POSITIVE
    predicted = np.where(scores > 0.5, POSITIVE, NEGATIVE)
    written = []

    matrix = confusion_matrix(labels, predicted, labels=[NEGATIVE, POSITIVE])
    write_json(
        plots_dir / "confusion.json",
        {"labels": [NEGATIVE, POSITIVE], "matrix": matrix.tolist(), "rows": "actual"},
    )
    written.append(plots_dir / "confusion.json")
    written.append(
        write_csv(
            pd.DataFrame({"actual": labels, "predicted": predicted}),
            plots_dir / "predictions.csv",
        )
    )
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(j, i, f"{value:,}", ha="center", va="center", color=colour)
    ax.set(
        xticks=[0, 1], yticks=[0, 1], xticklabels=[NEGATIVE, POSITIVE],
        yticklabels=[NEGATIVE, POSITIVE], xlabel="predicted", ylabel="actual",
        title="Confusion matrix (test split)",
    )  # fmt: skip
    written.append(_save(fig, plots_dir / "confusion_matrix.png"))

    fpr, tpr, _ = roc_curve(truth, scores)
    keep = _thin(len(fpr))
    written.append(
        write_csv(pd.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]}), plots_dir / "roc.csv")
    )
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(truth, scores):.4f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    ax.legend(loc="lower right")
    written.append(_save(fig, plots_dir / "roc.png"))

    precision, recall, _ = precision_recall_curve(truth, scores)
    keep = _thin(len(precision))
    frame = pd.DataFrame({"recall": recall[keep], "precision": precision[keep]})
    written.append(write_csv(frame, plots_dir / "precision_recall.csv"))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)")
    ax.set_ylim(0, 1.02)
    written.append(_save(fig, plots_dir / "precision_recall.png"))
    written += _reliability(truth, scores, plots_dir, plt)
    plt.close("all")
    return written


def _reliability(truth: np.ndarray, scores: np.ndarray, plots_dir: Path, plt) -> list[Path]:
    """The reliability diagram: per confidence bin, accuracy against mean confidence."""
    table = pd.DataFrame(reliability_table(truth, scores))
    table = table[table["count"] > 0]
    written = [write_csv(table, plots_dir / "reliability.csv")]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="calibrated")
    ax.plot(table["confidence"], table["accuracy"], marker="o", label="model")
    ece = expected_calibration_error(truth, scores)
    ax.set(xlabel="confidence max(p, 1 - p)", ylabel="accuracy",
           title=f"Reliability (test split), ECE {ece:.4f}")  # fmt: skip
    ax.legend(loc="upper left")
    written.append(_save(fig, plots_dir / "reliability.png"))
    return written


def _thin(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).astype(int))


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def load_model(location: str | Path) -> Any:
    """The pyfunc model at a folder (models/model) or MLflow URI, loaded as any consumer would."""
    if not urlparse(str(location)).scheme:  # a folder, not models:/... or runs:/...
        if not (Path(location) / "MLmodel").is_file():
            raise StageError(f"no model at {location}: run the train stage first")
        return scoring.load_model(str(location))
    try:
        return scoring.load_model(str(location), version=loading.registered_version(str(location)))
    except StageError:
        raise
    except Exception as exc:  # MlflowException, OSError...: one line either way
        raise StageError(f"cannot load {location}: {one_line(exc, 300)}") from None


def run(
    cfg: EvaluateConfig,
    model: runs.TrainedModel,
    ingested_dir: Path = INGESTED_DIR,
    metrics_file: Path = METRICS_FILE,
    evaluation_file: Path = EVALUATION_FILE,
    plots_dir: Path = PLOTS_DIR,
    misclassified_file: Path = MISCLASSIFIED_FILE,
    behavioural_file: Path = BEHAVIOURAL_FILE,
    marker: Path = VALIDATED_MARKER,
    sample_file: Path = ANALYSIS_SAMPLE_FILE,
) -> dict[str, Any]:
    """The whole stage inside the active MLflow run; returns the record written to
    evaluation_file (what was evaluated, the behavioural verdict) with the metrics under
    `metrics` (metrics_file: numbers only, for `dvc metrics show`)."""
    manifest = dataset.read_manifest(ingested_dir)
    frame = dataset.read_validated_split("test", ingested_dir, marker)  # the data first
    loaded = load_model(model.location)
    reviews, labels = frame["review"].tolist(), frame["sentiment"].to_numpy()
    store.log_config(cfg)
    if model.data_sha256 not in (None, manifest.content_sha256):
        log.warning(
            "%s was trained on other data (manifest %s) than this test split's (%s): its figures"
            " are optimistic if that data overlaps these reviews",
            model.model_uri, model.data_sha256, manifest.content_sha256,
        )  # fmt: skip
    test_data = dataset.as_mlflow_dataset(frame, manifest, "test", ingested_dir)
    mlflow.log_input(test_data, "test")
    log.info("scoring %d test reviews with %s", len(reviews), model.model_uri)
    scores = scoring.predict_scores(loaded, reviews, cfg.batch_size)
    metrics = classification_metrics(labels, scores)
    log.info(
        "test: accuracy %.4f, F1 %.4f, ROC AUC %.4f, log loss %.4f, ECE %.4f",
        metrics[ACCURACY], metrics[F1], metrics[ROC_AUC], metrics[LOG_LOSS], metrics[ECE],
    )  # fmt: skip

    def score(texts: list[str]) -> np.ndarray:
        answer = loaded.predict(scoring.review_frame(loaded, texts))
        return answer[SCORE_FIELD].to_numpy(dtype=float)

    checks = behavioural.run_checks(score, cfg.min_check_pass_rate)
    for case in behavioural.failures(checks):
        log.warning("behavioural %s failed: %r scored %.3f", case.suite, case.text, case.score)
    log.info(
        "behavioural checks %s: %s",
        "passed" if checks.passed else "FAILED",
        ", ".join(f"{k} {v:.0%}" for k, v in checks.pass_rates.items()),
    )
    check_metrics = checks.metrics()
    numbers = {  # test accuracy first: after the val_* headline in `dvc exp show`'s columns
        ACCURACY: metrics[ACCURACY],
        **dict(sorted(metrics.items())),
        **{k: v for k, v in sorted(check_metrics.items()) if k != CHECKS_PASSED_KEY},
    }
    record = {
        CHECKS_PASSED_KEY: checks.passed,
        "model_uri": model.model_uri,
        "model_id": model.model_id,
        "train_run_id": model.run_id,
        "data_manifest_sha256": manifest.content_sha256,
    }
    written = write_plots(labels, scores, Path(plots_dir))
    written.append(
        write_csv(worst_misclassified(frame, scores, cfg.worst_examples), Path(misclassified_file))
    )
    write_json(behavioural_file, checks.to_dict())
    write_json(metrics_file, numbers, sort_keys=False)
    write_json(evaluation_file, record)
    written += [Path(behavioural_file), Path(metrics_file), Path(evaluation_file)]
    if cfg.analysis_sample > 0:
        written.append(
            write_sample(reviews, labels, scores, cfg.analysis_sample, model, Path(sample_file))
        )
    store.log_model_metrics({f"test_{k}": v for k, v in metrics.items()}, model.model_id, test_data)
    mlflow.log_metrics(check_metrics)
    verdict = registry.CHECKS_PASSED if checks.passed else registry.CHECKS_FAILED
    mlflow.set_tags(
        {
            registry.CHECKS_TAG: verdict,
            EVALUATED_MODEL_TAG: model.model_uri,
            store.TRAIN_RUN_TAG: model.run_id,
        }
    )
    for path in written:
        mlflow.log_artifact(str(path), artifact_path=sample.ARTIFACT_DIR)
    return {**record, "metrics": numbers}


def write_sample(
    reviews: list[str],
    labels: np.ndarray,
    scores: np.ndarray,
    size: int,
    model: runs.TrainedModel,
    path: Path,
) -> Path:
    """Write the analysis sample and log it to the model's own run too (where a registered
    version points), so deploy finds it from the version alone."""
    drawn = sample.draw(reviews, labels, scores, size, model_uri=model.model_uri)
    with atomic_path(path) as tmp:
        drawn.write(tmp)
    model_run = model.run_id
    active = mlflow.active_run()
    if model_run and (active is None or active.info.run_id != model_run):
        mlflow.MlflowClient().log_artifact(model_run, str(path), sample.ARTIFACT_DIR)
    log.info(
        "analysis sample: %d reviews (accuracy %.4f in-process, test %.4f)",
        len(drawn.reviews), drawn.sample_accuracy, drawn.accuracy,
    )  # fmt: skip
    return path


def _command(params: Params, cfg: EvaluateConfig, args: argparse.Namespace) -> None:
    with lock.hold("evaluate"):
        dataset.require_validated()
        model = runs.choose(args.run_id, args.model_uri)
        with store.stage_run("evaluate"):
            run(cfg, model)


def main(argv: list[str] | None = None) -> int:
    return cli.main("evaluate", argv, _command, cli.add_model_choice)


if __name__ == "__main__":
    sys.exit(main())
