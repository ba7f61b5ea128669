"""A user's own MLflow habits, with real `mlflow run` processes and nothing exported first: a bare
`mlflow run . -e train -P C=0.5` (MLflow's Default experiment) is ranked with the project's other
runs, evaluated, registered and promoted by its run id; a champion set by hand is what a rollback
returns from; and what MLflow's UI shows (run names, datasets, the model's metrics, cards) is
filled in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import small_data_project

from steps.tracking import store

VENV_BIN = Path(sys.executable).parent
NAME = "imdb-sentiment"


def bare_env() -> dict[str, str]:
    """The user's shell: no MLFLOW_* or DagsHub variables, the project venv first on PATH."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_", "DAGSHUB_"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return env


def mlflow_run(project: Path, entry_point: str, *params: str) -> subprocess.CompletedProcess:
    """`mlflow run . -e <entry point> -P ... --env-manager local`, typed bare in the project."""
    command = ["mlflow", "run", ".", "-e", entry_point, "--env-manager", "local"]
    for param in params:
        command += ["-P", param]
    return subprocess.run(
        command, cwd=project, env=bare_env(), capture_output=True, text=True, timeout=900
    )


def stage(project: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m steps.<module> ...` in the project, as `make` and `dvc repro` run stages."""
    return subprocess.run(
        [sys.executable, "-m", f"steps.{module}", *args],
        cwd=project, env=bare_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def aliases(client: MlflowClient) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()}


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_bare_mlflow_runs_are_the_project_s_from_compare_to_rollback(project_copy):
    small_data_project(project_copy)

    # 1. Bare `mlflow run` (Default experiment) and a stage run the project's way.
    ok(mlflow_run(project_copy, "train", "C=0.5"))
    ok(stage(project_copy, "train", "--C", "2"))
    # Opened once the project made its store: a client creating it here would give the Default
    # experiment an artifact root in this process's working directory (the checkout).
    client = MlflowClient(f"sqlite:///{project_copy / 'mlflow.db'}")
    trains = {
        float(r.data.params["C"]): r
        for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.stage = 'train'"
        )
    }
    bare, own = trains[0.5], trains[2.0]
    default = client.get_experiment_by_name("Default")
    project_experiment = client.get_experiment_by_name(NAME)
    assert bare.info.experiment_id == default.experiment_id
    assert own.info.experiment_id == project_experiment.experiment_id
    assert bare.data.tags[store.PROJECT_TAG] == NAME

    # 2. compare ranks them together, whichever way it is started.
    shown = ok(mlflow_run(project_copy, "compare")).stdout
    table = (project_copy / "reports" / "compare.md").read_text()
    assert table.strip() == shown.strip()
    rows = [line.split("|") for line in table.splitlines()[2:]]
    assert {row[1].strip() for row in rows} == {"1", "2"}
    assert {row[3].strip() for row in rows} == {"Default", NAME}  # the experiment column
    assert set(re.findall(r"\((\w{8})\)", table)) == {r.info.run_id[:8] for r in (bare, own)}
    assert "params" not in table.splitlines()[0]

    # 3. The run the user chose is evaluated and registered by its id; promote crowns it.
    ok(mlflow_run(project_copy, "evaluate", f"run_id={bare.info.run_id}"))
    refused = mlflow_run(project_copy, "register", f"run_id={own.info.run_id}")
    assert refused.returncode == 1
    assert (
        f"run evaluate on it first (mlflow run . -e evaluate -P run_id={own.info.run_id}"
        " --env-manager local)"
    ) in refused.stderr
    ok(mlflow_run(project_copy, "register", f"run_id={bare.info.run_id}"))
    v1 = client.get_model_version(NAME, "1")
    assert v1.run_id == bare.info.run_id
    ok(mlflow_run(project_copy, "promote"))
    assert aliases(client) == {"champion": "1"}
    models = ok(stage(project_copy, "models")).stdout
    assert any(line.split()[:2] == ["1", "champion"] for line in models.splitlines())

    # 4. The other run too (by its model URI), then the champion is moved by hand, as in the UI.
    model_uri = own.data.tags[store.MODEL_URI_TAG]
    ok(stage(project_copy, "evaluate", "--model_uri", model_uri))
    ok(stage(project_copy, "register", "--model_uri", model_uri))
    client.set_registered_model_alias(NAME, "champion", "2")
    ok(mlflow_run(project_copy, "promote", "rollback=true"))
    assert aliases(client) == {"champion": "1"}
    assert "set as champion by hand (noticed by rollback)" in (
        client.get_model_version(NAME, "2").description
    )

    # 5. What the MLflow UI shows: stage names, datasets, the model's own metrics, cards.
    bare = client.get_run(bare.info.run_id)
    assert bare.info.run_name == "train"
    contexts = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset
        for i in bare.inputs.dataset_inputs
    }
    assert set(contexts) == {"train", "validation"}
    assert contexts["train"].name == "imdb-reviews-train" and contexts["train"].digest
    model_metrics = {
        m.key for m in client.get_logged_model(v1.source.removeprefix("models:/")).metrics
    }
    assert {"val_accuracy", "test_accuracy", "test_f1"} <= model_metrics
    assert "| accuracy |" in v1.description and "`C=0.5`" in v1.description
    assert len(v1.tags) <= 4
    assert project_experiment.tags["mlflow.experimentKind"] == "custom_model_development"
