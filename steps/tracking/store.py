"""MLflow tracking set-up shared by every stage.

Default: a project-local SQLite store (`sqlite:///mlflow.db`) with artifacts in `./mlartifacts`,
never the deprecated `./mlruns` file store. `MLFLOW_TRACKING_URI` and `MLFLOW_EXPERIMENT_NAME`
(or the `MLFLOW_EXPERIMENT_ID`/`MLFLOW_RUN_ID` that `mlflow run` passes down) take precedence.
Nothing here runs on import: stage CLIs call `configure()` first.

Where runs and registered models go (`resolve_target`), first match wins:
1. `MLFLOW_TRACKING_URI` set: runs go there (credentials: MLflow's own `MLFLOW_TRACKING_USERNAME`
   and `MLFLOW_TRACKING_PASSWORD`).
2. `DAGSHUB_REPO=owner/name` (+ `DAGSHUB_USER_TOKEN`, optional `DAGSHUB_USERNAME`): runs go to
   `https://dagshub.com/owner/name.mlflow` with basic auth (`DAGSHUB_MLFLOW_URL` overrides the URL,
   `DAGSHUB_CLIENT_HOST` the host of a self-hosted DagsHub).
3. Otherwise the local SQLite store above; under DVC, the one in `DVC_ROOT` (the checkout's root,
   also for `dvc exp run --queue`/`--temp`, which run in a copy under .dvc/tmp/exps that DVC
   deletes afterwards), by its absolute path, so every DVC run lands in the checkout's store.
Registered models go to `MLFLOW_REGISTRY_URI` when set; else, when runs go to DagsHub (whose
hosted MLflow has no Model Registry), to the local SQLite store; else to the tracking store.

Retry budget: MLflow's HTTP client retries a failed request 7 times with exponential backoff
(about 250 s against a dead server) and waits up to 120 s for each answer. Unless the variables
are set, `configure()` (every stage) and `shell_exports()` (MLflow's own CLI under `make`) use
`RETRY_BUDGET` instead: a dead server fails in seconds with one line. Set
`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` and
`MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds) to choose another budget.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from steps.stage.errors import StageError, one_line
from steps.stage.paths import ARTIFACTS_DIR, PROJECT_ROOT, TRACKING_DB
from steps.stage.secrets import find_credential, shown
from steps.tracking import failures, purge

log = logging.getLogger(__name__)

PROJECT_NAME = "imdb-sentiment"  # MLproject's name
EXPERIMENT_NAME = PROJECT_NAME  # the experiment stages log to unless told otherwise
DEFAULT_TRACKING_URI = f"sqlite:///{TRACKING_DB}"

# Tags every stage run carries (stage_run) and the tags of the data and model it made.
PROJECT_TAG = "project"  # = PROJECT_NAME: how runs in any experiment are found (tracking.runs)
STAGE_TAG = "stage"
COMMIT_TAG = "git_commit"
DATA_TAG = "data_manifest_sha256"  # content hash of the ingested data (train, evaluate)
SOURCE_TAG = "data_source"
MODEL_URI_TAG = "model_uri"  # on train runs: the logged model (register -P run_id=... reads it)
REGISTERED_VERSION_TAG = "registered_version"  # on register runs (main rolls it up)
TRAIN_RUN_TAG = "train_run_id"  # on evaluate and register runs: the train run of their model
# MLflow 3's UI opens an experiment of this kind in its classic ML view (runs, metrics, models)
# rather than the GenAI view (traces) it shows an experiment it knows nothing about.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# What DVC tells a stage it runs (dvc/env.py): the checkout's root (for queued and --temp
# experiments, the parent repository's, not the copy they run in), and for `dvc exp run` the
# experiment's name and baseline commit, which each run carries as a tag.
DVC_ROOT_ENV = "DVC_ROOT"
DVC_TAGS = {"DVC_EXP_NAME": "dvc.exp_name", "DVC_EXP_BASELINE_REV": "dvc.baseline_rev"}
EXPERIMENT_KIND = "custom_model_development"


DAGSHUB_HOST = "https://dagshub.com"

# MLflow's HTTP retry settings unless set in the environment (module docstring): 3 attempts,
# about 3 s of backoff in all, 30 s for one answer (an artifact upload included).
RETRY_BUDGET = {
    MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "2",
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name: "1",
    MLFLOW_HTTP_REQUEST_TIMEOUT.name: "30",
}


@dataclass(frozen=True)
class Target:
    """Where runs and registered models go, and why (`origin` names the deciding variable)."""

    tracking_uri: str
    registry_uri: str | None  # None: MLflow's default, the tracking store itself
    origin: str
    username: str | None = None  # basic-auth credentials to export for MLflow (DagsHub only)
    password: str | None = None


def resolve_target(env: Mapping[str, str]) -> Target:
    """Decide the tracking and registry stores from environment variables (see module doc)."""
    registry = env.get("MLFLOW_REGISTRY_URI") or None
    if uri := env.get("MLFLOW_TRACKING_URI"):
        if registry is None and _is_dagshub(uri, env):
            registry = local_store_uri(env)
        return Target(uri, registry, origin="MLFLOW_TRACKING_URI")
    if repo := env.get("DAGSHUB_REPO"):
        owner, _, name = repo.strip().strip("/").partition("/")
        if not owner or not name or "/" in name:
            raise StageError(
                f"DAGSHUB_REPO={repo!r} must be owner/name (e.g. alice/imdb-sentiment)"
            )
        token = env.get("DAGSHUB_USER_TOKEN")
        if not token:
            raise StageError(
                f"DAGSHUB_REPO={repo} is set but DAGSHUB_USER_TOKEN is not: create a token in"
                " DagsHub user settings (Tokens) and export it, or unset DAGSHUB_REPO"
            )
        host = (env.get("DAGSHUB_CLIENT_HOST") or DAGSHUB_HOST).rstrip("/")
        url = env.get("DAGSHUB_MLFLOW_URL") or f"{host}/{owner}/{name}.mlflow"
        return Target(
            url,
            registry or local_store_uri(env),
            origin=f"DAGSHUB_REPO={repo}",
            # DagsHub accepts user:token (its client looks the user up) and token:token (what its
            # client writes for DVC remotes), so the user name is optional.
            username=env.get("DAGSHUB_USERNAME") or token,
            password=token,
        )
    return Target(local_store_uri(env), registry, origin="default")


def local_store_uri(env: Mapping[str, str]) -> str:
    """The project's own SQLite store: `DEFAULT_TRACKING_URI`, or under DVC the one at the root of
    the checkout DVC runs for (DVC_ROOT), whatever folder the stage runs in."""
    if root := env.get(DVC_ROOT_ENV):
        return f"sqlite:///{Path(root).resolve() / TRACKING_DB}"
    return DEFAULT_TRACKING_URI


def _is_dagshub(uri: str, env: Mapping[str, str]) -> bool:
    host = urlparse(uri).hostname or ""
    dagshub = urlparse(env.get("DAGSHUB_CLIENT_HOST") or DAGSHUB_HOST).hostname or ""
    return uri.startswith(("http://", "https://")) and (host == dagshub or uri.endswith(".mlflow"))


def configure() -> str:
    """Point MLflow at the tracking store, registry and experiment; return the experiment id.

    A tracking server that refuses the credentials or cannot be reached is a one-line StageError.
    """
    target = resolve_target(os.environ)
    uri = target.tracking_uri
    for name, value in retry_budget(os.environ).items():
        os.environ[name] = value  # read per request by MLflow, and inherited by child runs
    if target.username is not None:
        # MLflow reads basic-auth credentials from these per request; children inherit them.
        os.environ["MLFLOW_TRACKING_USERNAME"] = target.username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = target.password or ""
    for store in {uri, target.registry_uri} - {None}:
        artifact_root = local_artifact_root(store)
        if artifact_root and not _sqlite_path(store).exists():
            _bootstrap_local_store(store, artifact_root)
    mlflow.set_tracking_uri(uri)
    # Both setters also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI for child processes.
    mlflow.set_registry_uri(target.registry_uri)
    if target.origin != "default":
        log.info(
            "tracking runs at %s (%s), models registered at %s",
            shown(uri),
            target.origin,
            shown(target.registry_uri or uri),
        )
    try:
        return _set_experiment(uri)
    except MlflowException as exc:
        raise StageError(failures.explain(exc, target)) from None


def retry_budget(env: Mapping[str, str]) -> dict[str, str]:
    """MLflow's HTTP retry variables: as set in `env`, else `RETRY_BUDGET`."""
    return {name: env.get(name) or default for name, default in RETRY_BUDGET.items()}


def _set_experiment(uri: str) -> str:
    artifact_root = local_artifact_root(uri)
    if experiment_id := os.environ.get("MLFLOW_EXPERIMENT_ID"):
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
        log.info("created MLflow experiment %r (artifacts: %s)", name, location or "server default")
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the stages tagged it
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
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
    """The MLflow run a stage logs into, named after the stage and tagged as this project's.

    Under `mlflow run` the run already exists (MLFLOW_RUN_ID) and is resumed: MLflow named it
    (`bold-fox-123`), so it is renamed after the stage unless `--run-name` named it. Run directly
    (dvc repro, python -m steps.x) a new run is started, nested if another run is active.
    A stage that raises marks its run FAILED.
    """
    if os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run()
    else:
        run = mlflow.start_run(run_name=stage, nested=mlflow.active_run() is not None)
    with run:
        tags = {STAGE_TAG: stage, PROJECT_TAG: PROJECT_NAME}
        if commit := git_commit():
            tags[COMMIT_TAG] = commit
        tags.update({tag: os.environ[var] for var, tag in DVC_TAGS.items() if os.environ.get(var)})
        if _generated_name(run.info.run_name):
            tags[MLFLOW_RUN_NAME] = stage
        mlflow.set_tags(tags)
        _say_where(run)
        yield run


def discard_run_with_credentials() -> str | None:
    """Under `mlflow run`, MLflow has logged every `-P` value with the run before any project
    code starts. When one carries a credential, end that run as FAILED and delete it, and say so
    (None when there is no such run)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    client = MlflowClient()
    try:
        params = client.get_run(run_id).data.params
        if not any(find_credential(value) for value in params.values()):
            return None
        # Terminated first: `mlflow run` then leaves the run alone instead of failing on it.
        client.set_terminated(run_id, "FAILED")
        client.delete_run(run_id)
    except MlflowException as exc:
        log.warning("could not delete run %s: %s", run_id, one_line(exc.message, 200))
        return None
    said = (
        f"`mlflow run` had already logged it as a parameter of run {run_id} before any project"
        " code ran: that run is now"
    )
    if purge.purge_run(client, run_id):
        return f"{said} purged from the tracking store (as `mlflow gc --run-ids {run_id}` does)"
    return (
        f"{said} deleted; purge it for good with `mlflow gc --run-ids {run_id}` against the"
        " tracking server's database (only the server can)"
    )


def _generated_name(name: str | None) -> bool:
    """Whether a run name is one MLflow made up (`<predicate>-<noun>-<number>`)."""
    from mlflow.utils import name_utils

    parts = (name or "").split("-")
    return (
        len(parts) == 3
        and parts[0] in name_utils._GENERATOR_PREDICATES
        and parts[1] in name_utils._GENERATOR_NOUNS
        and parts[2].isdigit()
    )


def _say_where(run: mlflow.ActiveRun) -> None:
    """Log where the run is when it is not in the project's experiment (a bare `mlflow run`)."""
    wanted = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME
    experiment = MlflowClient().get_experiment(run.info.experiment_id)
    if experiment.name != wanted:
        log.info(
            "run %s is in experiment %r, not %r (`mlflow run` without --experiment-name picks"
            " it): compare and register find it by its tag %s=%s",
            run.info.run_id, experiment.name, wanted, PROJECT_TAG, PROJECT_NAME,
        )  # fmt: skip


def log_model_metrics(metrics: Mapping[str, float], model_id: str | None, dataset: Any) -> None:
    """Log metrics to the active run and, on an MLflow 3 store (a logged-model id), to the model
    too, measured on `dataset`: the model's page then shows them. MLflow 2.x servers (DagsHub)
    have no logged models: there they go to the run only."""
    if model_id is None:
        mlflow.log_metrics(dict(metrics))
    else:
        mlflow.log_metrics(dict(metrics), model_id=model_id, dataset=dataset)


def log_config(cfg: Any) -> None:
    """Log a stage config's fields as run params, by the keys a user types (`C`, `min_gain`,
    `-P key=value`), every stage alike; a nested section's as `section.field`.

    Keys already on the run are left alone: `mlflow run -P C=.5` has logged them as given, and
    MLflow refuses to change a logged param.
    """
    values = {}
    for key, value in dataclasses.asdict(cfg).items():
        if isinstance(value, dict):  # a nested section: its fields as section.field
            values.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            values[key] = value
    log_params(values)


def log_params(values: Mapping[str, Any]) -> None:
    """Log params (credentials hidden), skipping keys the active run already has."""
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params if run else {}
    fresh = {k: shown(_param_value(v)) for k, v in values.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def _param_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


@functools.cache
def git_commit(repo: Path = PROJECT_ROOT) -> str | None:
    """The checked-out commit of the project (with '-dirty' when there are local changes).
    Asked once per process: every run a process starts records the checkout it started from."""
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


def shell_exports(env: Mapping[str, str]) -> str:
    """`export` lines that point MLflow's own CLI (`mlflow run`, `mlflow models serve`) where the
    stages log: the same decision as `configure()`. Secrets appear as references to the variables
    that hold them, never as values."""
    target = resolve_target(env)
    token = env.get("DAGSHUB_USER_TOKEN")
    values = {
        "MLFLOW_TRACKING_URI": shlex.quote(target.tracking_uri),
        "MLFLOW_REGISTRY_URI": shlex.quote(target.registry_uri or target.tracking_uri),
        "MLFLOW_EXPERIMENT_NAME": shlex.quote(env.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME),
        **{name: shlex.quote(value) for name, value in retry_budget(env).items()},
    }
    if target.username is not None:
        values["MLFLOW_TRACKING_USERNAME"] = (
            '"$DAGSHUB_USER_TOKEN"' if target.username == token else shlex.quote(target.username)
        )
        values["MLFLOW_TRACKING_PASSWORD"] = '"$DAGSHUB_USER_TOKEN"'
    return "\n".join(f"export {name}={value}" for name, value in values.items())
