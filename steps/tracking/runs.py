"""The project's runs wherever they were logged, and the model a train run logged.

Every stage run carries the tag `project=imdb-sentiment` (store.stage_run). A bare
`mlflow run . -e train` creates its run before any project code runs, in the experiment MLflow
picks (`Default` unless --experiment-name or MLFLOW_EXPERIMENT_NAME says otherwise), and MLflow
cannot move a run between experiments; so the project's runs are found by that tag in every
experiment, plus every run of the project's own experiment (runs logged before the tag existed).

A trained model is named three ways: by its train run (`--run_id`), by MLflow's URI for it
(`--model_uri models:/<model id>` or `runs:/<run id>/<name>`), or by what train wrote beside it
in models/ (the default). `TrainedModel` is the one answer evaluate and register share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from steps.stage.errors import StageError, one_line
from steps.stage.files import read_json
from steps.stage.paths import MODEL_DIR, TRAINED_MODEL_INFO_FILE
from steps.tracking.store import (
    DATA_TAG,
    EXPERIMENT_NAME,
    MODEL_URI_TAG,
    PROJECT_NAME,
    PROJECT_TAG,
    SOURCE_TAG,
    STAGE_TAG,
)

PAGE_SIZE = 500  # under the 1,000-row page limit of MLflow servers (DagsHub's included)
# The name train logged its model under before it used the registered model's name: such runs'
# `runs:/<run id>/model` still names their model.
LEGACY_MODEL_NAME_IN_RUN = "model"
TRAIN_STAGE = "train"


@dataclass(frozen=True)
class TrainedModel:
    """A model train logged: the run that trained it, MLflow's URI for it, and where to load it."""

    run_id: str
    model_uri: str  # models:/<model id>; runs:/<run id>/<name> on MLflow 2.x servers
    model_id: str | None  # the LoggedModel its metrics are linked to (None on 2.x servers)
    location: str  # what mlflow.pyfunc.load_model reads: models/model, or model_uri
    data_sha256: str | None = None  # the manifest hash of the data it was trained on
    data_source: str | None = None


def search(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str,
    order_by: list[str],
    max_runs: int,
) -> Iterator[Run]:
    """Active runs matching the filter, page by page, at most `max_runs`."""
    token, seen = None, 0
    while seen < max_runs:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=min(PAGE_SIZE, max_runs - seen),
            order_by=order_by,
            page_token=token,
        )
        yield from page
        seen += len(page)
        token = page.token
        if not token:
            return


def experiments(client: MlflowClient) -> dict[str, str]:
    """Every active experiment of the tracking store: id -> name."""
    found, token = {}, None
    while True:
        page = client.search_experiments(
            view_type=ViewType.ACTIVE_ONLY, max_results=PAGE_SIZE, page_token=token
        )
        found.update({e.experiment_id: e.name for e in page})
        token = page.token
        if not token:
            return found


def project_runs(
    client: MlflowClient, filter_string: str, order_by: list[str], max_runs: int
) -> list[Run]:
    """The project's runs matching the filter: tagged as the project's in any experiment, or in
    the project's own experiment; each once, in the order the first search gave them."""
    tagged = f"tags.{PROJECT_TAG} = '{PROJECT_NAME}'"
    searches = [(list(experiments(client)), " and ".join(filter(None, [filter_string, tagged])))]
    own = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME)
    if own is not None:
        searches.append(([own.experiment_id], filter_string))
    found: dict[str, Run] = {}
    for ids, where in searches:
        for run in search(client, ids, where, order_by, max_runs):
            found.setdefault(run.info.run_id, run)
    return list(found.values())[:max_runs]


def from_record(
    info_file: Path = TRAINED_MODEL_INFO_FILE, model_dir: Path = MODEL_DIR
) -> TrainedModel:
    """The model train saved in models/, from the record it wrote beside it."""
    raw = read_json(info_file, "trained model record", "run the train stage first")
    try:
        return TrainedModel(
            run_id=str(raw["run_id"]),
            model_uri=str(raw["model_uri"]),
            model_id=raw.get("model_id"),
            location=str(model_dir),
            data_sha256=raw.get("data_manifest_sha256"),
            data_source=raw.get("data_source"),
        )
    except KeyError as exc:
        raise StageError(f"{info_file}: missing key {exc}: run the train stage again") from None


def from_run(run_id: str, client: MlflowClient | None = None) -> TrainedModel:
    """The model a train run logged (a run id from `make compare` or the MLflow UI)."""
    client = client or MlflowClient()
    run_id = run_id.strip()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise StageError(f"run {run_id!r} not found ({one_line(exc.message, 200)})") from None
    stage = run.data.tags.get(STAGE_TAG)
    if stage != TRAIN_STAGE:
        raise StageError(
            f"run {run_id} was logged by {f'the {stage} stage' if stage else 'no stage'}, not by"
            " train: pick a train run (make compare lists them with their ids)"
        )
    model_uri = run.data.tags.get(MODEL_URI_TAG)
    model_id = None
    if model_uri is None:  # trained before train tagged its run with the URI
        outputs = [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])]
        if len(outputs) != 1:
            raise StageError(f"train run {run_id} logged {len(outputs)} models, expected one")
        model_uri = f"models:/{outputs[0]}"
    if model_uri.startswith("models:/"):
        model_id = model_uri.removeprefix("models:/")
    return TrainedModel(
        run_id=run_id,
        model_uri=model_uri,
        model_id=model_id,
        location=model_uri,
        data_sha256=run.data.tags.get(DATA_TAG),
        data_source=run.data.tags.get(SOURCE_TAG),
    )


def from_uri(model_uri: str, client: MlflowClient | None = None) -> TrainedModel:
    """The model behind `models:/<model id>` or `runs:/<run id>/<name>`, with its train run."""
    client = client or MlflowClient()
    uri = model_uri.strip()
    if uri.startswith("runs:/"):
        run_id, _, name = uri.removeprefix("runs:/").partition("/")
        name = name.strip("/")
        if run_id and name and "/" not in name:
            trained = from_run(run_id, client)
            logged = logged_name(trained, client)
            if name not in {logged, LEGACY_MODEL_NAME_IN_RUN}:  # `model`: the name it had before
                raise StageError(f"train run {run_id} logged its model as {logged!r}, not {name!r}")
            return trained
    elif uri.startswith("models:/m-"):
        model_id = uri.removeprefix("models:/")
        try:
            logged = client.get_logged_model(model_id)
        except MlflowException as exc:
            raise StageError(
                f"{uri}: no such logged model ({one_line(exc.message, 200)})"
            ) from None
        if not logged.source_run_id:
            raise StageError(f"{uri} was not logged by a run: register it by its train run")
        return from_run(logged.source_run_id, client)
    raise StageError(
        f"model_uri must be models:/<model id> (m-...) or runs:/<train run id>/<model name>,"
        f" got {uri!r}"
    )


def logged_name(trained: TrainedModel, client: MlflowClient) -> str:
    """The name the train run logged its model under (`model` before it used the registered
    model's name)."""
    if trained.model_id is None:  # runs:/<run id>/<name> (an MLflow 2.x server)
        return trained.model_uri.rstrip("/").rsplit("/", 1)[-1]
    try:
        return client.get_logged_model(trained.model_id).name
    except MlflowException as exc:
        raise StageError(f"{trained.model_uri}: {one_line(exc.message, 200)}") from None


def choose(
    run_id: str | None,
    model_uri: str | None,
    info_file: Path = TRAINED_MODEL_INFO_FILE,
    model_dir: Path = MODEL_DIR,
) -> TrainedModel:
    """The model a stage works on: the one named by `run_id` or `model_uri`, else models/."""
    if run_id and model_uri:
        raise StageError("give either run_id or model_uri, not both")
    if run_id:
        return from_run(run_id)
    if model_uri:
        return from_uri(model_uri)
    return from_record(info_file, model_dir)


# MLflow 3's UI (mlflow/server/js: a hash router, route /experiments/:experimentId/:tabName)
# opens an experiment in the view the browser last used (local storage `mlflow.workflowType`,
# GenAI by default: traces, token usage); the `workflowType` query parameter overrides it, so
# this link opens the classic-ML runs table whatever the browser remembers.
UI_RUNS_VIEW = "#/experiments/{experiment_id}/runs?workflowType=machine_learning"
UI_PORT = 5000  # `mlflow ui`'s own default (make ui UI_PORT=...)


def ui_link(tracking_uri: str, experiment_id: str, port: int = UI_PORT) -> str:
    """The link that opens the experiment's runs view: at the tracking server when runs go to
    one, else at `make ui`'s local UI on `port`."""
    if tracking_uri.startswith(("http://", "https://")):
        base = tracking_uri.rstrip("/")
    else:
        base = f"http://127.0.0.1:{port}"
    return f"{base}/{UI_RUNS_VIEW.format(experiment_id=experiment_id)}"
