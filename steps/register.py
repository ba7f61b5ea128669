"""`register` entry point: a trained model becomes a new version of `register.model_name`.

    python -m steps.register                  (mlflow run . -e register; the stage after evaluate)
    python -m steps.register --run_id RUN     (-P run_id=RUN: the model a train run logged)
    python -m steps.register --model_uri URI  (-P model_uri=models:/m-... or runs:/RUN/<model name>)

By default the model train saved in models/; with --run_id or --model_uri, the one chosen (after
`make compare`), which must have been evaluated the same way first (`-e evaluate -P run_id=RUN`):
a report that evaluated another model than the one being registered is refused, so a version is
never described with a stale evaluation. The version gets a model card as its description (data
hash and source, test metrics, behavioural checks, the recipe, run and commit) and the few tags
code reads: the behavioural verdict (`behavioural_checks`, which promote requires), the data hash
and the commit. It never moves an alias: that is promote's job.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.data import dataset
from steps.entry import cli
from steps.measure import behavioural
from steps.measure.metrics import ACCURACY
from steps.stage import hints, lock
from steps.stage.config import Params, RegisterConfig, TrainConfig
from steps.stage.errors import StageError
from steps.stage.files import read_json
from steps.stage.paths import EVALUATION_FILE, INGESTED_DIR, METRICS_FILE
from steps.stage.schema import section_fields
from steps.tracking import cards, registry, runs, store

log = logging.getLogger(__name__)

CHECKS_SUMMARY_KEY = behavioural.PASSED_KEY  # the evaluation record's boolean verdict
MODEL_NAME_TAG = "registered_model"  # on the register run, with store.REGISTERED_VERSION_TAG


@dataclass(frozen=True)
class EvalReport:
    """The evaluation report: numbers by name, the behavioural verdict, the model evaluated."""

    metrics: dict[str, float]
    checks_passed: bool
    model_uri: str | None


def read_report(
    metrics_file: Path = METRICS_FILE, evaluation_file: Path = EVALUATION_FILE
) -> EvalReport:
    """evaluate's metrics (numbers) and record (model, verdict); the verdict must be there."""
    record = read_json(evaluation_file, "evaluation record", "run the evaluate stage first")
    if not isinstance(record.get(CHECKS_SUMMARY_KEY), bool):
        raise StageError(
            f"{evaluation_file}: no boolean {CHECKS_SUMMARY_KEY!r}: run the evaluate stage again"
        )
    raw = read_json(metrics_file, "evaluation metrics", "run the evaluate stage first")
    metrics = {k: float(v) for k, v in raw.items() if _is_number(v)}
    return EvalReport(
        metrics=metrics, checks_passed=record[CHECKS_SUMMARY_KEY], model_uri=record.get("model_uri")
    )


def version_tags(report: EvalReport, data_sha256: str | None, commit: str | None) -> dict[str, Any]:
    """The tags a new version carries: only what code reads (the rest is its card)."""
    tags = {
        registry.CHECKS_TAG: registry.CHECKS_PASSED
        if report.checks_passed
        else registry.CHECKS_FAILED,
        registry.DATA_TAG: data_sha256 or "unknown",
        registry.COMMIT_TAG: commit or "unknown",
    }
    if ACCURACY in report.metrics:
        tags[registry.ACCURACY_TAG] = report.metrics[ACCURACY]
    return tags


def register(
    model_name: str, model: runs.TrainedModel, report: EvalReport, ingested_dir: Path = INGESTED_DIR
) -> ModelVersion:
    """Register the trained model as a new version with its tags and card; return the version."""
    if report.model_uri != model.model_uri:
        rerun = (
            "run the evaluate stage again"
            if model.location != model.model_uri
            else f"run evaluate on it first ({hints.command('evaluate', {'run_id': model.run_id})})"
        )
        raise StageError(
            f"the evaluation report is for {report.model_uri}, not the trained model"
            f" {model.model_uri}: {rerun}"
        )
    train_run = _train_run(model.run_id)
    data_sha256 = model.data_sha256 or dataset.read_manifest(ingested_dir).content_sha256
    commit = (
        train_run.data.tags.get(store.COMMIT_TAG) if train_run else None
    ) or store.git_commit()
    recipe_keys = section_fields(TrainConfig)
    recipe = {
        k: v for k, v in (train_run.data.params if train_run else {}).items() if k in recipe_keys
    }
    tags = {k: registry.tag_value(v) for k, v in version_tags(report, data_sha256, commit).items()}
    facts = cards.VersionFacts(
        model_uri=model.model_uri,
        run_id=model.run_id,
        commit=commit,
        data_sha256=data_sha256,
        data_source=model.data_source,
        metrics=report.metrics,
        checks_passed=report.checks_passed,
        recipe=recipe,
    )
    with registry.registry_call(f"register {model.model_uri} as {model_name}"):
        version = mlflow.register_model(model.model_uri, model_name, tags=tags)
        MlflowClient().update_model_version(
            model_name, version.version, description=cards.version_card(facts)
        )
    cards.describe_model(model_name)
    return version


def _train_run(run_id: str):
    """The train run (its params are the recipe), or None where the store no longer has it."""
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException:
        log.warning("train run %s not found: the card will not list the recipe", run_id)
        return None


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
    model: runs.TrainedModel,
    metrics_file: Path = METRICS_FILE,
    evaluation_file: Path = EVALUATION_FILE,
    ingested_dir: Path = INGESTED_DIR,
) -> tuple[ModelVersion, EvalReport]:
    """Register `model`, described by evaluate's report on it; the version and that report."""
    report = read_report(metrics_file, evaluation_file)
    version = register(cfg.model_name, model, report, ingested_dir)
    return version, report


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _command(params: Params, cfg: RegisterConfig, args: argparse.Namespace) -> None:
    model = runs.choose(args.run_id, args.model_uri)
    with lock.hold("register"), store.stage_run("register"):
        store.log_config(cfg)
        version, report = run(cfg, model)
        mlflow.set_tags(
            {
                MODEL_NAME_TAG: cfg.model_name,
                store.REGISTERED_VERSION_TAG: version.version,
                store.TRAIN_RUN_TAG: model.run_id,
            }
        )
    print(summary(version, report))


def main(argv: list[str] | None = None) -> int:
    return cli.main("register", argv, _command, cli.add_model_choice)


if __name__ == "__main__":
    sys.exit(main())
