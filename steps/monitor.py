"""`monitor` entry point: has the traffic drifted from what the model was trained on?

    python -m steps.monitor --batch data/recent.csv      (mlflow run . -e monitor -P batch=...)
    make monitor BATCH=s3://bucket/reviews/2026-12-01.parquet

Reads a batch of recent reviews from any source ingest accepts (a `sentiment` column is optional),
scores it with the registered model (`monitor.model`, default `champion`) and compares it with the
training profile shipped inside that model (steps/monitoring/profile.py): review length, tokens
the model never saw, reviews not in English, markup, the predicted score distribution (PSI and a
two-sample KS test) and, with labels, the positive share and accuracy against evaluate's figure.
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
from steps.monitoring import drift
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
        counts = model.unwrap_python_model().token_counts(reviews)
    evaluated = version.tags.get(ACCURACY_TAG)
    figures = drift.compare(
        profile, reviews, scores, counts, cfg, labels,
        evaluated_accuracy=float(evaluated) if evaluated is not None else None,
    )  # fmt: skip
    result = Monitored(
        model=name, version=str(version.version), batch=where, reviews=len(reviews),
        labelled=labels is not None, figures=figures, report_dir=Path(report_dir),
    )  # fmt: skip
    summary = {"model": name, "batch": where, "reviews": len(reviews), "labelled": result.labelled}
    write_report(summary, figures, profile, lengths(reviews), scores, report_dir)
    return result


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
    lines.append(f"report: {result.report_dir / MONITOR_HTML_NAME}")
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
