"""Fixtures for the deploy tests: the repo's manifests, a stub API server loaded with them, real
model servers standing in for the pods, and a real SQLite registry with tiny pyfunc versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))  # kube_stub.py, deploy_support.py

from deploy_support import MODEL_CODE, PIP_REQUIREMENTS, VERSION_WORDS, kustomization_documents
from kube_stub import FakeCluster, StubApiServer
from support import free_port

from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT

TOKEN = "stub-token-for-tests"
VENV_BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 120.0  # seconds for `mlflow models serve` to answer /ping


@pytest.fixture(scope="session")
def manifests() -> list[dict]:
    return kustomization_documents()


@pytest.fixture
def deploy_cfg(monkeypatch):
    """params.yaml's deploy section with waits short enough for tests; no analysis and no
    scale-down (the tests of those turn them on), no Prometheus from the environment."""
    import dataclasses

    monkeypatch.delenv("IMDB_PROMETHEUS_URL", raising=False)
    cfg = load_params(PROJECT_ROOT / "params.yaml").deploy
    analysis = dataclasses.replace(cfg.analysis, replay=False, duration=0.0, prometheus_url="")
    return dataclasses.replace(
        cfg, rollout_timeout=5.0, poll_interval=0.01, watch_interval=0.0,
        scale_down_delay=None, analysis=analysis,
    )  # fmt: skip


@pytest.fixture(scope="session")
def model_code(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model_code") / "keyword_model.py"
    path.write_text(MODEL_CODE)
    return path


@pytest.fixture(scope="session")
def model_servers(tmp_path_factory, model_code) -> dict[int, str]:
    """A real `mlflow models serve` per tiny model version: version -> base URL."""
    root = tmp_path_factory.mktemp("served")
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    processes, urls = [], {}
    try:
        for version, words in VERSION_WORDS.items():
            path = root / f"v{version}"
            mlflow.pyfunc.save_model(
                path, python_model=str(model_code), model_config={"positive_words": words},
                pip_requirements=PIP_REQUIREMENTS,
            )  # fmt: skip
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        str(VENV_BIN / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        str(path),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "--env-manager",
                        "local",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # its uvicorn children share the group we stop
                )
            )
            urls[version] = f"http://127.0.0.1:{port}"
        for process, url in zip(processes, urls.values(), strict=True):
            _wait_for_ping(process, url)
        yield urls
    finally:
        for process in processes:
            _stop(process)


def _wait_for_ping(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"mlflow models serve at {url} did not answer /ping in time")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def registry(tracking_uri, model_code):
    """The registered model of params.yaml with versions 1 and 2 (tiny real pyfunc models)."""
    name = load_params(PROJECT_ROOT / "params.yaml").register.model_name
    mlflow.set_experiment("deploy-tests")
    for version, words in VERSION_WORDS.items():
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(model_code),
                model_config={"positive_words": words}, pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=name,
            )  # fmt: skip
        assert int(info.registered_model_version) == version
    return MlflowClient(), name


@pytest.fixture
def cluster(tmp_path, monkeypatch, manifests, deploy_cfg):
    """A stub API server holding the repo's manifests; KUBECONFIG points at it."""
    fake = FakeCluster(deploy_cfg.namespace)
    fake.load(manifests)
    with StubApiServer(fake, TOKEN) as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", deploy_cfg.namespace)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield fake
