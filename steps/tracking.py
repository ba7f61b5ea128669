"""MLflow tracking set-up shared by every stage.

Default: a project-local SQLite store (`sqlite:///mlflow.db`) with artifacts in `./mlartifacts`,
never the deprecated `./mlruns` file store. `MLFLOW_TRACKING_URI` and `MLFLOW_EXPERIMENT_NAME`
(or the `MLFLOW_EXPERIMENT_ID`/`MLFLOW_RUN_ID` that `mlflow run` passes down) take precedence.
Nothing here runs on import: stage CLIs call `configure()` first.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from steps.paths import ARTIFACTS_DIR, PROJECT_ROOT, TRACKING_DB

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "imdb-sentiment"
DEFAULT_TRACKING_URI = f"sqlite:///{TRACKING_DB}"


def configure() -> str:
    """Point MLflow at the tracking store and experiment; return the experiment id."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    artifact_root = local_artifact_root(uri)
    if artifact_root and not _sqlite_path(uri).exists():
        _bootstrap_local_store(uri, artifact_root)
    mlflow.set_tracking_uri(uri)
    if experiment_id := os.environ.get("MLFLOW_EXPERIMENT_ID"):
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = client.create_experiment(name, artifact_location=location)
        log.info("created MLflow experiment %r (artifacts: %s)", name, location or "server default")
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def local_artifact_root(uri: str) -> Path | None:
    """For a SQLite store, the `mlartifacts` folder beside the database file; else None."""
    return _sqlite_path(uri).parent / ARTIFACTS_DIR if uri.startswith("sqlite:///") else None


def _sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def _bootstrap_local_store(uri: str, artifact_root: Path) -> None:
    """Create the SQLite store with `artifact_root` as its default artifact root.

    MLflow's client-side SQLite store otherwise creates its Default experiment under ./mlruns.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    _sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, artifact_root.resolve().as_uri())
    log.info("created tracking store %s (artifacts in %s)", uri, artifact_root)


@contextmanager
def stage_run(stage: str) -> Iterator[mlflow.ActiveRun]:
    """The MLflow run a stage logs into.

    Under `mlflow run` the run already exists (MLFLOW_RUN_ID) and is resumed; run directly
    (dvc repro, python -m steps.x) a new run is started, nested if another run is active.
    A stage that raises marks its run FAILED.
    """
    if os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run()
    else:
        run = mlflow.start_run(run_name=stage, nested=mlflow.active_run() is not None)
    with run:
        mlflow.set_tag("stage", stage)
        if commit := git_commit():
            mlflow.set_tag("git_commit", commit)
        yield run


def log_config(cfg: Any, prefix: str = "") -> None:
    """Log a stage config's fields as run params.

    Keys already on the run are left alone: `mlflow run -P C=.5` has logged them as given, and
    MLflow refuses to change a logged param.
    """
    values = {f"{prefix}{k}": _param_value(v) for k, v in dataclasses.asdict(cfg).items()}
    log_params(values)


def log_params(values: Mapping[str, Any]) -> None:
    """Log params, skipping keys the active run already has."""
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params if run else {}
    fresh = {k: _param_value(v) for k, v in values.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def _param_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def git_commit(repo: Path = PROJECT_ROOT) -> str | None:
    """The checked-out commit of the project (with '-dirty' when there are local changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


if __name__ == "__main__":  # `python -m steps.tracking`: create the store and experiment
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    experiment = configure()
    print(f"tracking store {mlflow.get_tracking_uri()}, experiment id {experiment}")
