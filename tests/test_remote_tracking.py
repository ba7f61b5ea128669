"""DagsHub-style remote tracking against a real `mlflow server --app-name basic-auth` on 127.0.0.1.

The server stands in for `https://dagshub.com/<owner>/<name>.mlflow`: `DAGSHUB_MLFLOW_URL` points
the same code path (DAGSHUB_REPO + DAGSHUB_USER_TOKEN -> basic auth) at it. Runs must land on the
server, registered models in the local SQLite registry (DagsHub's hosted MLflow has none), and a
wrong token must be one error line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from support import REPO_ROOT, free_port

from steps.stage.errors import StageError
from steps.tracking import store

PARAMS = str(REPO_ROOT / "params.yaml")
ADMIN = ("admin", "admin-password-0123")
TOKEN = "dagshub-token-0123456789"  # a user whose name is the token: DagsHub's token:token form
ALICE = ("alice", "alice-token-0123456789")  # DAGSHUB_USERNAME=alice with her token
SERVER_START_TIMEOUT = 180  # seconds; a cold `mlflow server` takes ~25 s on 2 busy cores

# Every variable that steers tracking; each test starts without them and leaves none behind.
TRACKING_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
    "DAGSHUB_REPO",
    "DAGSHUB_USER_TOKEN",
    "DAGSHUB_USERNAME",
    "DAGSHUB_MLFLOW_URL",
    "DAGSHUB_CLIENT_HOST",
)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A basic-auth MLflow server with users `TOKEN` (password TOKEN) and alice; stopped by PID."""
    root = tmp_path_factory.mktemp("mlflow-server")
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in TRACKING_VARS},
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
    }
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so teardown stops its workers too
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or busy starting up
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {SERVER_START_TIMEOUT}s")
            time.sleep(0.5)
        for user, password in ((TOKEN, TOKEN), ALICE):
            requests.post(
                f"{url}/api/2.0/mlflow/users/create",
                json={"username": user, "password": password},
                auth=ADMIN,
                timeout=30,
            ).raise_for_status()
        # The stand-in really enforces authentication.
        assert (
            requests.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1").status_code
            == 401
        )
        yield Server(url, proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No tracking variables, cwd in tmp_path; afterwards MLflow's globals and env are restored."""
    for name in TRACKING_VARS:
        # setenv first so monkeypatch restores the variable even if our code sets it later.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def dagshub(server, clean_env):
    """DagsHub variables pointing at the stand-in server, one fresh experiment per test."""
    clean_env.setenv("DAGSHUB_REPO", "alice/imdb-sentiment")
    clean_env.setenv("DAGSHUB_USER_TOKEN", TOKEN)
    clean_env.setenv("DAGSHUB_MLFLOW_URL", server.url)
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", f"remote-{uuid.uuid4().hex[:8]}")
    return server


def admin_get(server: Server, endpoint: str, **params) -> dict:
    response = requests.get(
        f"{server.url}/api/2.0/mlflow/{endpoint}", params=params, auth=ADMIN, timeout=30
    )
    response.raise_for_status()
    return response.json()


def stage_env(**overrides: str) -> dict[str, str]:
    """The environment a freshly started stage CLI would get from a shell."""
    env = {k: v for k, v in os.environ.items() if k not in TRACKING_VARS or k.startswith("DAGSHUB")}
    env["MLFLOW_EXPERIMENT_NAME"] = os.environ["MLFLOW_EXPERIMENT_NAME"]
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(overrides)
    return env


def run_module(module: str, cwd, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` in cwd, as a shell would start it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_runs_go_to_dagshub_and_models_to_the_local_registry(dagshub, tmp_path):
    experiment_id = store.configure()
    assert mlflow.get_tracking_uri() == dagshub.url
    assert mlflow.get_registry_uri() == store.DEFAULT_TRACKING_URI

    # The model is logged as plain run artifacts (save_model + log_artifacts): MLflow 2.x servers
    # such as DagsHub's have no logged-models API, which mlflow 3's log_model needs.
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    mlflow.sklearn.save_model(model, tmp_path / "model")
    with store.stage_run("train") as run:
        mlflow.log_param("C", "0.5")
        mlflow.log_metric("val_accuracy", 0.75)
        mlflow.log_artifacts(str(tmp_path / "model"), "model")
    run_id = run.info.run_id

    on_server = admin_get(dagshub, "runs/get", run_id=run_id)["run"]
    assert on_server["info"]["experiment_id"] == experiment_id
    assert {"key": "C", "value": "0.5"} in on_server["data"]["params"]
    assert {t["key"]: t["value"] for t in on_server["data"]["tags"]}["stage"] == "train"

    version = mlflow.register_model(f"runs:/{run_id}/model", "imdb-remote")
    MlflowClient().set_registered_model_alias("imdb-remote", "champion", version.version)

    # The version is in ./mlflow.db, not on the tracking server, and its source is the remote run.
    local = MlflowClient(registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    champion = local.get_model_version_by_alias("imdb-remote", "champion")
    assert champion.run_id == run_id
    assert champion.source.startswith("mlflow-artifacts:")
    remote_models = admin_get(dagshub, "registered-models/search").get("registered_models", [])
    assert "imdb-remote" not in {m["name"] for m in remote_models}

    loaded = mlflow.pyfunc.load_model("models:/imdb-remote@champion")
    assert list(loaded.predict(pd.DataFrame({"x": [0.0, 3.0]}))) == [0, 1]


@pytest.mark.slow
def test_stage_cli_logs_there_with_username_and_token(dagshub, tmp_path):
    experiment_id = store.configure()  # token:token, in this process
    client = MlflowClient()
    for c, score in (("0.1", 0.8), ("1.0", 0.9)):
        run = client.create_run(experiment_id, run_name=f"train-{c}", tags={"stage": "train"})
        client.log_param(run.info.run_id, "C", c)
        client.log_metric(run.info.run_id, "val_accuracy", score)
        client.set_terminated(run.info.run_id)

    env = stage_env(DAGSHUB_USERNAME=ALICE[0], DAGSHUB_USER_TOKEN=ALICE[1])
    result = run_module("steps.compare", tmp_path, env, "--params", PARAMS)
    assert result.returncode == 0, result.stderr
    assert "train-1.0" in result.stdout.splitlines()[2]  # best run first
    assert ALICE[1] not in result.stdout + result.stderr  # the token never shows in logs

    search = requests.post(
        f"{dagshub.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "filter": "tags.stage = 'compare'"},
        auth=ADMIN,
        timeout=30,
    ).json()
    (compare_run,) = search["runs"]
    artifacts = admin_get(dagshub, "artifacts/list", run_id=compare_run["info"]["run_id"])
    assert {f["path"] for f in artifacts["files"]} == {"compare.md", "compare.png"}
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_children_inherit_the_remote_target(dagshub, tmp_path):
    """What `mlflow run` / chained stages get: same server, credentials and local registry."""
    experiment_id = store.configure()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = run_module("steps.models", tmp_path, env, "--params", PARAMS)
    assert child.returncode == 0, child.stderr
    assert f"tracking store {dagshub.url}, experiment id {experiment_id}" in child.stdout
    assert os.environ["MLFLOW_REGISTRY_URI"] == store.DEFAULT_TRACKING_URI


@pytest.mark.slow
def test_wrong_token_is_one_clear_error_line(dagshub, tmp_path):
    wrong = "not-the-token-0000000"
    result = run_module(
        "steps.compare", tmp_path, stage_env(DAGSHUB_USER_TOKEN=wrong), "--params", PARAMS
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: compare: tracking server {dagshub.url} rejected the credentials (HTTP 401):"
        " check DAGSHUB_USER_TOKEN (and DAGSHUB_USERNAME, if set)"
    ]
    assert "Traceback" not in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert not (tmp_path / "reports").exists()


# resolve_target: the decision table, without a server.

DAGSHUB = {"DAGSHUB_REPO": "alice/imdb-sentiment", "DAGSHUB_USER_TOKEN": "tok"}


@pytest.mark.parametrize(
    ("env", "tracking_uri", "registry_uri", "user"),
    [
        ({}, store.DEFAULT_TRACKING_URI, None, None),
        ({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "http://mlflow:5000", None, None),
        (DAGSHUB, "https://dagshub.com/alice/imdb-sentiment.mlflow", "sqlite:///mlflow.db", "tok"),
        (
            {**DAGSHUB, "DAGSHUB_USERNAME": "alice", "MLFLOW_REGISTRY_URI": "sqlite:///r.db"},
            "https://dagshub.com/alice/imdb-sentiment.mlflow",
            "sqlite:///r.db",
            "alice",
        ),
        (
            {**DAGSHUB, "DAGSHUB_CLIENT_HOST": "https://hub.example.org/"},
            "https://hub.example.org/alice/imdb-sentiment.mlflow",
            "sqlite:///mlflow.db",
            "tok",
        ),
        (
            {**DAGSHUB, "DAGSHUB_MLFLOW_URL": "http://127.0.0.1:1"},
            "http://127.0.0.1:1",
            "sqlite:///mlflow.db",
            "tok",
        ),
        # An explicit tracking URI wins over the DagsHub variables...
        ({**DAGSHUB, "MLFLOW_TRACKING_URI": "sqlite:///x.db"}, "sqlite:///x.db", None, None),
        # ...and a DagsHub URI given directly still registers models locally.
        (
            {"MLFLOW_TRACKING_URI": "https://dagshub.com/bob/repo.mlflow"},
            "https://dagshub.com/bob/repo.mlflow",
            "sqlite:///mlflow.db",
            None,
        ),
    ],
)
def test_resolve_target(env, tracking_uri, registry_uri, user):
    target = store.resolve_target(env)
    assert target.tracking_uri == tracking_uri
    assert target.registry_uri == registry_uri
    assert target.username == user
    assert target.password == (env["DAGSHUB_USER_TOKEN"] if user else None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DAGSHUB_REPO": "alice/imdb"}, "DAGSHUB_USER_TOKEN is not"),
        ({"DAGSHUB_REPO": "imdb", "DAGSHUB_USER_TOKEN": "t"}, "must be owner/name"),
        ({"DAGSHUB_REPO": "a/b/c", "DAGSHUB_USER_TOKEN": "t"}, "must be owner/name"),
    ],
)
def test_incomplete_dagshub_settings_are_one_line_errors(env, message):
    with pytest.raises(StageError, match=message) as err:
        store.resolve_target(env)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.integration
def test_without_variables_the_local_store_is_used(clean_env, tmp_path):
    # A subprocess: MLflow caches SQLite engines by URI, and this URI is relative to the cwd.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = run_module("steps.models", tmp_path, env, "--params", PARAMS)
    assert result.returncode == 0, result.stderr
    assert f"tracking store {store.DEFAULT_TRACKING_URI}," in result.stdout
    assert (tmp_path / "mlflow.db").is_file()
    target = store.resolve_target(os.environ)
    assert (target.registry_uri, target.username) == (None, None)
