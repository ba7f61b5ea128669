"""The whole pipeline against an MLflow 2.x tracking server, as DagsHub's hosted MLflow is.

A real `mlflow server` of the 2.x line (installed with uv into its own environment, since this
project pins 3.17.2) runs on 127.0.0.1 and stands in for `https://dagshub.com/<owner>/<name>.mlflow`
through `DAGSHUB_MLFLOW_URL`. 2.x has no logged-models API: train must fall back to logging the
model as run artifacts, register must put the version in the local registry, and promote and
serving must load it from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from support import free_port, make_reviews

# The last 2.x line; its SQLite store predates SQLAlchemy 2.1.
MLFLOW_2 = ("mlflow==2.22.*", "sqlalchemy<2.1")
NAME = "imdb-sentiment"
START_TIMEOUT = 180  # seconds; bounded wait for the server's /health


@pytest.fixture(scope="module")
def mlflow2_server(tmp_path_factory):
    """An MLflow 2.x server with a SQLite store and proxied artifacts; stopped by PID."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    root = tmp_path_factory.mktemp("mlflow2")
    venv = root / "venv"
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *MLFLOW_2],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed in teardown)
    process = subprocess.Popen(
        [
            str(venv / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSHUB_"))},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, (root / "server.log").read_text()[-2000:]
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5)
        else:
            pytest.fail(f"MLflow 2.x server did not answer /health within {START_TIMEOUT} s")
        version = requests.get(f"{url}/version", timeout=5).text
        assert version.startswith("2."), version
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_main_pipeline_logs_to_an_mlflow2_server_and_registers_locally(
    mlflow2_server, project_copy, tracking_uri, monkeypatch
):
    for name in ("MLFLOW_TRACKING_URI", "_MLFLOW_SERVER_ARTIFACT_ROOT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("DAGSHUB_REPO", "alice/imdb-sentiment")
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "not-checked-by-this-server")
    monkeypatch.setenv("DAGSHUB_MLFLOW_URL", mlflow2_server)
    source = project_copy / "reviews.csv"
    make_reviews(5200, seed=7).to_csv(source, index=False)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "steps.main", "--source", str(source), "--min_check_pass_rate", "0"],
        cwd=project_copy, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "no logged-models API" in done.stderr

    remote = MlflowClient(tracking_uri=mlflow2_server)
    runs = remote.search_runs(
        [remote.get_experiment_by_name("imdb-sentiment").experiment_id], max_results=50
    )
    stages = {run.data.tags.get("stage") for run in runs}
    assert {"main", "ingest", "validate", "train", "evaluate", "register", "promote"} <= stages
    train_run = next(run for run in runs if run.data.tags.get("stage") == "train")
    assert NAME in {a.path for a in remote.list_artifacts(train_run.info.run_id)}  # as registered

    local_registry = f"sqlite:///{project_copy / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=mlflow2_server, registry_uri=local_registry)
    champion = registry.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1"
    assert champion.source.endswith(f"/{NAME}") and champion.run_id == train_run.info.run_id

    mlflow.set_tracking_uri(mlflow2_server)
    mlflow.set_registry_uri(local_registry)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    answer = model.predict(pd.DataFrame({"review": ["A superb, moving film."]}))
    assert answer["label"].tolist() == ["positive"]
