"""Run MLproject entry points as child runs: the chaining code `main` uses, and that a stage uses
when it needs an earlier one (train on data that was never ingested). Stages are reached by their
entry-point name, never imported, so stage modules stay independent of each other.

MLflow logs every parameter of a project run in clear (and prints it in its "Running command"
line) before the entry point starts, and has no way to declare a parameter secret: a parameter
value that carries a credential is refused here, before any run is created."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import mlflow
from mlflow.exceptions import ExecutionException

from steps.stage.errors import CredentialRefused, StageError
from steps.stage.paths import PROJECT_ROOT
from steps.stage.secrets import find_credential, shown

log = logging.getLogger(__name__)

DATA_STAGES = ("ingest", "validate")
MODEL_STAGES = ("train", "evaluate", "register", "promote")
PIPELINE = DATA_STAGES + MODEL_STAGES


def run_entry_point(entry_point: str, parameters: Mapping[str, str] | None = None) -> str:
    """Run one entry point of this project synchronously, in this environment; return its run id.

    The child run is nested under the active run (if any) and logs to the same experiment.
    """
    parameters = dict(parameters or {})
    refuse_credentials(entry_point, parameters)
    given = " ".join(f"-P {k}={shown(v)}" for k, v in parameters.items())
    log.info("running entry point %r %s", entry_point, given)
    active = mlflow.active_run()
    try:
        submitted = mlflow.projects.run(
            uri=str(PROJECT_ROOT),
            entry_point=entry_point,
            parameters=parameters,
            experiment_id=active.info.experiment_id if active else None,
            env_manager="local",
            synchronous=True,
        )
    except ExecutionException:
        # The child has already printed its own one-line error; say which stage stopped us.
        raise StageError(f"stage {entry_point!r} failed (see its error above)") from None
    return submitted.run_id


def refuse_credentials(entry_point: str, parameters: Mapping[str, str]) -> None:
    """Raise CredentialRefused when a parameter value carries a password or token."""
    for key, value in parameters.items():
        if found := find_credential(str(value)):
            raise CredentialRefused(
                f"{entry_point} parameter {key}={shown(value)}: a credential in a parameter is"
                f" refused ({found}): MLflow would log it in clear with the run; give it through"
                " the environment (the SQL password: the variable ingest.sql_password_env names)"
            )
