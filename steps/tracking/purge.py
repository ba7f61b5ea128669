"""Purging one run for good, as `mlflow gc --run-ids` does, for the run that `mlflow run` logged
a credential with before any project code ran (store.discard_run_with_credentials).

`_hard_delete_run` is the store method `mlflow gc` itself calls: MLflow has no public call that
purges one run, and starting `mlflow gc` as a process would need the store's URI spelt for it.
"""

from __future__ import annotations

import contextlib
import logging
import os

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from steps.stage.errors import CredentialRefused, one_line
from steps.stage.secrets import find_credential, shown

log = logging.getLogger(__name__)


def purge_run(client: MlflowClient, run_id: str) -> bool:
    """Hard-delete a deleted run, its params included: its artifacts, then its rows. Only a
    store this process opens itself (a database or a folder) can; through a tracking server
    (REST) it cannot, and False says so."""
    backend = client._tracking_client.store
    hard_delete = getattr(backend, "_hard_delete_run", None)
    if hard_delete is None:
        return False
    try:
        artifact_uri = backend.get_run(run_id).info.artifact_uri
        with contextlib.suppress(Exception):  # no artifacts (the usual case), or none reachable
            get_artifact_repository(artifact_uri).delete_artifacts()
        hard_delete(run_id)
    except MlflowException as exc:
        log.warning("could not purge run %s: %s", run_id, one_line(exc.message, 200))
        return False
    return True


def refuse_logged_credentials() -> None:
    """Under `mlflow run`, refuse (CredentialRefused) a run whose `-P` values MLflow has already
    logged with a credential in them (a token or signature a stage would otherwise accept): the
    entry point then purges that run. Nothing to do outside `mlflow run`."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    try:
        params = MlflowClient().get_run(run_id).data.params
    except MlflowException:
        return  # no such run here: nothing of ours was logged
    for key, value in sorted(params.items()):
        if found := find_credential(value):
            raise CredentialRefused(
                f"parameter {key}={shown(value)}: a credential in a parameter is refused"
                f" ({found}): MLflow logs parameters in clear; give it through the environment"
            )
