"""`monitor` entry point: has the traffic drifted from what the model was trained on?

    python -m steps.monitor --batch data/recent.csv      (mlflow run . -e monitor -P batch=...)
    make monitor BATCH=s3://bucket/reviews/2026-12-01.parquet

Reads a batch of recent reviews from any source ingest accepts (a `sentiment` column is optional),
scores it with the registered model (`monitor.model`, default `champion`) and compares it with the
training profile shipped inside that model (steps/monitoring/profile.py): review length, tokens
the model never saw, reviews not in English, markup, the predicted score distribution (PSI and a
two-sample KS test) and, with labels, the positive share and accuracy against evaluate's figure.
Without labels it estimates accuracy, precision, recall and F1 from the calibrated scores
(steps/monitoring/quality.py), each with a 95% interval, beside the truth when there are labels;
the estimated accuracy's fall below evaluate's figure is a figure like the others
(`estimated_accuracy_drop`), judged only for a calibrated version on `min_estimate_reviews`+.
Writes reports/monitor/report.html and report.json, logs a `monitor` run with every figure, and
exits non-zero with one line naming each figure over its `monitor.*` bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from steps.data import sources
from steps.entry import cli
from steps.measure import scoring
from steps.monitoring import drift, quality
from steps.monitoring.profile import read_profile
from steps.monitoring.report import write_report
from steps.monitoring.text import lengths
from steps.stage import hints
from steps.stage.config import IngestConfig, MonitorConfig, Params
from steps.stage.errors import StageError, one_line
from steps.stage.paths import DOWNLOAD_DIR, MONITOR_HTML_NAME, MONITOR_REPORT_DIR
from steps.tracking import registry, store

log = logging.getLogger(__name__)

ACCURACY_TAG = registry.ACCURACY_TAG
DRIFT_TAG = "drift"  # the run's verdict: "found" / "none"
LABELLED_TAG = "labelled"  # whether the batch had labels (the accuracy figures need them)


@dataclass(frozen=True)
class Monitored:
    """What monitor found: the model and batch it compared, and every figure."""

    model: str  # "imdb-sentiment version 3"
    version: str
    batch: str  # the source, passwords removed
    reviews: int
    labelled: bool
    figures: list[drift.Figure]
    report_dir: Path
    calibrated: bool = False  # whether the version's scores are calibrated probabilities
    estimates: dict[str, quality.Estimate] | None = None
    evaluated_accuracy: float | None = None

    @property
    def crossed(self) -> list[drift.Figure]:
        return [f for f in self.figures if f.crossed]


def read_batch(source: str, ingest: IngestConfig, download_dir: Path) -> pd.DataFrame:
    """The batch's reviews (and labels, when it has them) from any source ingest accepts."""
    if not source.strip():
        raise StageError(
            "monitor.batch is empty: give the reviews, e.g."
            f" {hints.setting('batch', 'data/recent.csv')}"
        )
    # ingest.sha256 pins ingest's own download; a batch is another file.
    cfg = dataclasses.replace(ingest, source=source, sha256="")
    loaded = sources.load(cfg, download_dir, labels=sources.Labels.OPTIONAL)
    parts = [loaded.train] + ([loaded.test] if loaded.test is not None else [])
    return pd.concat(parts, ignore_index=True)


def resolve_version(model_name: str, which: str) -> ModelVersion:
    """The version `which` (an alias such as champion, or a number) names."""
    text = which.strip()
    if text.isdigit():
        return registry.get_version(model_name, text)
    version = registry.version_by_alias(model_name, text)
    if version is None:
        raise StageError(f"{model_name} has no @{text}: register and promote a model first")
    return version


def run(
    cfg: MonitorConfig,
    ingest: IngestConfig,
    model_name: str,
    report_dir: Path = MONITOR_REPORT_DIR,
    download_dir: Path = DOWNLOAD_DIR,
) -> Monitored:
    """Compare the batch with the model's training profile; write the report; return it all."""
    batch = read_batch(cfg.batch, ingest, download_dir)
    where = sources.describe(cfg.batch.strip())
    if len(batch) < cfg.min_reviews:
        raise StageError(
            f"{where}: {len(batch)} reviews, fewer than monitor.min_reviews={cfg.min_reviews}:"
            " too few to compare distributions"
        )
    version = resolve_version(model_name, cfg.model)
    name = f"{model_name} version {version.version}"
    reviews = batch["review"].tolist()
    labels = batch["sentiment"].tolist() if "sentiment" in batch.columns else None
    log.info("comparing %d reviews from %s with %s's training profile", len(reviews), where, name)
    with tempfile.TemporaryDirectory(prefix="imdb-monitor-") as tmp:
        uri = registry.model_uri(model_name, version.version)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as exc:  # MlflowException, OSError...: one line either way
            raise StageError(f"cannot download {name}: {one_line(exc)}") from None
        profile = read_profile(local, name)
        model = scoring.load_model(str(local), name, version.version)
        scores = scoring.predict_scores(model, reviews, cfg.chunk_size)
        python_model = model.unwrap_python_model()
        counts = python_model.token_counts(reviews)
        calibrated = bool(getattr(python_model, "calibrated", False))  # older code: no calibrator
    evaluated = version.tags.get(ACCURACY_TAG)
    evaluated = float(evaluated) if evaluated is not None else None
    figures = drift.compare(profile, reviews, scores, counts, cfg, labels, evaluated)
    estimates = quality.estimate(scores, labels)
    reference = evaluated if evaluated is not None else float(profile["accuracy"])
    figures.append(estimated_drop(estimates["accuracy"], reference, calibrated, cfg))
    result = Monitored(
        model=name, version=str(version.version), batch=where, reviews=len(reviews),
        labelled=labels is not None, figures=figures, report_dir=Path(report_dir),
        calibrated=calibrated, estimates=estimates, evaluated_accuracy=reference,
    )  # fmt: skip
    summary = {
        "model": name, "batch": where, "reviews": len(reviews), "labelled": result.labelled,
        "calibrated": calibrated, "evaluated_accuracy": reference,
        "estimated_accuracy": estimates["accuracy"].estimate,
        **({"accuracy": estimates["accuracy"].truth} if labels is not None else {}),
        "estimates": {key: value.to_dict() for key, value in estimates.items()},
    }  # fmt: skip
    write_report(summary, figures, profile, lengths(reviews), scores, report_dir)
    return result


def estimated_drop(
    accuracy: quality.Estimate, evaluated: float, calibrated: bool, cfg: MonitorConfig
) -> drift.Figure:
    """The estimate's fall below the evaluated accuracy: judged against
    `monitor.max_estimated_accuracy_drop`, or only reported (no bound) when the version is
    uncalibrated or the batch has fewer than `monitor.min_estimate_reviews` reviews."""
    interval = f"95% interval {accuracy.low:.4f}-{accuracy.high:.4f}"
    judged = calibrated and accuracy.reviews >= cfg.min_estimate_reviews
    if not calibrated:
        why = "uncalibrated version (logged before calibration): not judged"
    elif not judged:
        why = f"fewer than monitor.min_estimate_reviews={cfg.min_estimate_reviews}: not judged"
    else:
        why = "estimate/evaluate's test accuracy"
    return drift.Figure(
        "estimated_accuracy_drop", evaluated - accuracy.estimate, accuracy.estimate, evaluated,
        cfg.max_estimated_accuracy_drop if judged else None,
        "monitor.max_estimated_accuracy_drop", f"{why}; {interval}",
    )  # fmt: skip


def log_run(result: Monitored) -> None:
    """The figures as metrics, what was compared as params, the report as artifacts."""
    store.log_params(
        {"batch": result.batch, "model_version": result.version, "reviews": result.reviews}
    )
    mlflow.log_metrics({f.name: f.value for f in result.figures})
    drift = "found" if result.crossed else "none"
    mlflow.set_tags({DRIFT_TAG: drift, LABELLED_TAG: result.labelled})
    mlflow.log_artifacts(str(result.report_dir), artifact_path="monitor")


def summary_lines(result: Monitored) -> list[str]:
    """What monitor prints: one line per figure, then the report's path."""
    lines = [f"{result.model} vs {result.batch} ({result.reviews:,} reviews):"]
    for f in result.figures:
        bound = f"<= {f.bound:g}" if f.bound is not None else ""
        mark = "DRIFT" if f.crossed else "ok"
        lines.append(f"  {f.name:<24} {f.value:>9.4f} {bound:<10} {mark}")
    if result.estimates is not None:
        lines += estimate_lines(result)
    lines.append(f"report: {result.report_dir / MONITOR_HTML_NAME}")
    return lines


def estimate_lines(result: Monitored) -> list[str]:
    """The label-free estimates, each with its interval and (with labels) the truth."""
    if not result.calibrated:
        lines = ["  label-free estimate: uncalibrated version, mean confidence only (not judged)"]
    else:
        lines = [f"  label-free estimate (evaluated accuracy {result.evaluated_accuracy:.4f}):"]
    for e in result.estimates.values():
        truth = f"  true {e.truth:.4f}" if e.truth is not None else ""
        lines.append(f"    {e.name:<10} {e.estimate:.4f}  95% {e.low:.4f}-{e.high:.4f}{truth}")
    return lines


def _command(params: Params, cfg: MonitorConfig, args: argparse.Namespace) -> None:
    with store.stage_run("monitor"):
        store.log_config(cfg)
        result = run(cfg, params.ingest, params.register.model_name)
        log_run(result)
    print("\n".join(summary_lines(result)))
    if result.crossed:
        raise StageError("drift: " + "; ".join(f.verdict() for f in result.crossed))


def main(argv: list[str] | None = None) -> int:
    return cli.main("monitor", argv, _command)


if __name__ == "__main__":
    sys.exit(main())
