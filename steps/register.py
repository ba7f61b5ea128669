"""`register` entry point: the trained model becomes a new version of `register.model_name`.

    python -m steps.register          (mlflow run . -e register; the stage after evaluate in main)

Reads what train wrote beside the model (its run id and model URI), the evaluation report and the
ingested data's manifest, and registers the model with tags: every evaluation metric
(`metric.<name>`), the behavioural-check verdict (`behavioural_checks`: passed/failed), the data
manifest hash, the git commit and the train run. It never moves an alias: that is promote's job.
A report that evaluated another model than the one being registered is refused, so a version is
never tagged with a stale evaluation.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion

from steps.data import dataset
from steps.stage import cli, lock
from steps.stage.config import Params, RegisterConfig
from steps.stage.errors import StageError
from steps.stage.files import read_json
from steps.stage.paths import INGESTED_DIR, METRICS_FILE, TRAINED_MODEL_INFO_FILE
from steps.tracking import registry, store

log = logging.getLogger(__name__)

CHECKS_SUMMARY_KEY = "behavioural_checks_passed"  # the report's boolean verdict
RUN_TAG = "train_run_id"
SOURCE_TAG = "data_source"


@dataclass(frozen=True)
class TrainedModel:
    """What train wrote beside the model."""

    run_id: str
    model_uri: str


@dataclass(frozen=True)
class EvalReport:
    """The evaluation report: numbers by name, the behavioural verdict, the model evaluated."""

    metrics: dict[str, float]
    checks_passed: bool
    model_uri: str | None


def read_trained_model(path: Path = TRAINED_MODEL_INFO_FILE) -> TrainedModel:
    """The run id and model URI train recorded; say which stage to run when missing."""
    raw = read_json(path, "trained model record", "run the train stage first")
    try:
        return TrainedModel(run_id=str(raw["run_id"]), model_uri=str(raw["model_uri"]))
    except KeyError as exc:
        raise StageError(f"{path}: missing key {exc}: run the train stage again") from None


def read_report(path: Path = METRICS_FILE) -> EvalReport:
    """The evaluation report, flattened to numbers; its behavioural verdict must be there."""
    raw = read_json(path, "evaluation report", "run the evaluate stage first")
    if CHECKS_SUMMARY_KEY not in raw or not isinstance(raw[CHECKS_SUMMARY_KEY], bool):
        raise StageError(f"{path}: no boolean {CHECKS_SUMMARY_KEY!r}: run the evaluate stage again")
    metrics = {k: v for k, v in _flatten(raw).items() if k != CHECKS_SUMMARY_KEY and _is_number(v)}
    uri = raw.get("model_uri")
    return EvalReport(metrics=metrics, checks_passed=raw[CHECKS_SUMMARY_KEY], model_uri=uri)


def version_tags(
    trained: TrainedModel, report: EvalReport, manifest: dataset.Manifest, commit: str | None
) -> dict[str, Any]:
    """Every tag a new version carries."""
    tags: dict[str, Any] = {
        f"{registry.METRIC_TAG_PREFIX}{k}": v for k, v in report.metrics.items()
    }
    checks = registry.CHECKS_PASSED if report.checks_passed else registry.CHECKS_FAILED
    tags[registry.CHECKS_TAG] = checks
    tags[registry.DATA_TAG] = manifest.content_sha256
    tags[SOURCE_TAG] = manifest.source
    tags[RUN_TAG] = trained.run_id
    tags[registry.COMMIT_TAG] = commit or "unknown"
    return tags


def register(
    model_name: str,
    trained: TrainedModel,
    report: EvalReport,
    manifest: dataset.Manifest,
    commit: str | None,
) -> ModelVersion:
    """Register the trained model as a new version with its tags; return the version."""
    if report.model_uri is not None and report.model_uri != trained.model_uri:
        raise StageError(
            f"the evaluation report is for {report.model_uri}, not the trained model"
            f" {trained.model_uri}: run the evaluate stage again"
        )
    tags = {
        k: registry.tag_value(v) for k, v in version_tags(trained, report, manifest, commit).items()
    }
    with registry.registry_call(f"register {trained.model_uri} as {model_name}"):
        return mlflow.register_model(trained.model_uri, model_name, tags=tags)


def summary(version: ModelVersion, report: EvalReport) -> str:
    """The line `register` prints: the new version, its checks and its first figures."""
    shown = ", ".join(f"{k}={registry.tag_value(v)}" for k, v in sorted(report.metrics.items())[:6])
    checks = registry.CHECKS_PASSED if report.checks_passed else registry.CHECKS_FAILED
    return (
        f"registered {version.name} version {version.version}"
        f" (behavioural checks {checks}; {shown})"
    )


def run(
    cfg: RegisterConfig,
    info_file: Path = TRAINED_MODEL_INFO_FILE,
    metrics_file: Path = METRICS_FILE,
    ingested_dir: Path = INGESTED_DIR,
) -> tuple[ModelVersion, EvalReport]:
    """Register what train saved, tagged with evaluate's report; the version and that report."""
    trained = read_trained_model(info_file)
    report = read_report(metrics_file)
    manifest = dataset.read_manifest(ingested_dir)
    version = register(cfg.model_name, trained, report, manifest, store.git_commit())
    return version, report


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _command(params: Params, cfg: RegisterConfig, args: argparse.Namespace) -> None:
    with lock.hold("register"), store.stage_run("register"):
        store.log_config(cfg, prefix="register.")
        version, report = run(cfg)
        mlflow.set_tags({"registered_model": cfg.model_name, "registered_version": version.version})
    print(summary(version, report))


def main(argv: list[str] | None = None) -> int:
    return cli.main("register", argv, _command)


if __name__ == "__main__":
    sys.exit(main())
