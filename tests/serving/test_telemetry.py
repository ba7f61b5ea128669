"""Monitoring switched on or off around a real `mlflow models serve` (pyfunc/telemetry.py).

- Off (no IMDB_* variable), the model behaves as before: the shared server of
  tests/serving/test_serve.py runs that way, and a fresh process loading the model imports no
  prometheus_client, opens no port and writes no file.
- A metrics port another program holds: the model still serves, with one warning.
- The worker that serves the metrics dies: a sibling worker takes the port over, and what the
  dead worker counted is still in the next scrape.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import model_server
import psutil
import pytest
import requests
from support import free_port

from pyfunc import contract
from steps.tracking import registry

pytestmark = pytest.mark.slow

MODEL_NAME = "imdb-sentiment"
READY_TIMEOUT = 180.0
REVIEWS = ["A great, wonderful film.", "An awful, boring film."]


def serve(champion_store, folder: Path, workers: int, **variables: str) -> model_server.Server:
    uri, _ = champion_store
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
    env.pop(contract.MULTIPROC_DIR_ENV, None)
    env.update(MLFLOW_TRACKING_URI=uri, **variables)
    server = model_server.start(
        registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS), free_port(),
        folder / "serve.log", workers=workers, env=env,
    )  # fmt: skip
    model_server.wait_ready(server, timeout=READY_TIMEOUT)
    return server


def predict(server) -> list[str]:
    answer = requests.post(f"{server.url}/invocations", json={"inputs": REVIEWS}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    return [p["label"] for p in answer.json()["predictions"]]


def scraped_calls(port: int) -> float | None:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("imdb_sentiment_calls_total{")
    )


def test_a_metrics_port_already_taken_leaves_the_model_serving_with_one_warning(
    champion_store, tmp_path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(
            champion_store, tmp_path, workers=2,
            **{contract.METRICS_PORT_ENV: f"127.0.0.1:{port}",
               contract.MULTIPROC_DIR_ENV: str(tmp_path / "multiproc")},
        )  # fmt: skip
        try:
            assert predict(server) == ["positive", "negative"]
            time.sleep(1)  # the standby worker has had its chance to (wrongly) warn too
            log = server.log_path.read_text()
            warnings = [line for line in log.splitlines() if "is not available" in line]
            assert len(warnings) == 1, log[-2000:]
            assert f"metrics port 127.0.0.1:{port}" in warnings[0]
            assert contract.METRICS_PORT_ENV in warnings[0]
            assert predict(server) == ["positive", "negative"]
        finally:
            model_server.stop(server)


def test_a_sibling_worker_takes_the_metrics_over_when_the_exporting_one_dies(
    champion_store, tmp_path
):
    port = free_port()
    server = serve(
        champion_store, tmp_path, workers=2,
        **{contract.METRICS_PORT_ENV: f"127.0.0.1:{port}",
           contract.MULTIPROC_DIR_ENV: str(tmp_path / "multiproc")},
    )  # fmt: skip
    try:
        for _ in range(6):
            predict(server)
        assert scraped_calls(port) == 6
        (holder,) = [
            c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]  # fmt: skip
        workers = {p.pid for p in psutil.Process(server.process.pid).children(recursive=True)}
        assert holder in workers
        os.kill(holder, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and scraped_calls(port) != 6:
            time.sleep(0.5)
        assert scraped_calls(port) == 6  # the dead worker's counts are still summed
        (new_holder,) = [
            c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]  # fmt: skip
        assert new_holder != holder and new_holder in workers
    finally:
        model_server.stop(server)


OFF_CHILD = textwrap.dedent(
    """
    import json, sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    answer = model.predict(pd.DataFrame({"review": ["A great, wonderful film."]}))
    print(json.dumps({
        "label": answer["label"].tolist(),
        "prometheus_imported": any(m.startswith("prometheus_client") for m in sys.modules),
        "telemetry": repr(model.unwrap_python_model().telemetry),
    }))
    """
)


def test_with_monitoring_off_nothing_is_imported_opened_or_written(
    champion_store, tmp_path, monkeypatch
):
    import mlflow

    uri, _ = champion_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS),
        dst_path=str(tmp_path / "model"),
    )
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
    env.pop(contract.MULTIPROC_DIR_ENV, None)
    env["TMPDIR"] = str(scratch)
    result = subprocess.run(
        [sys.executable, "-c", OFF_CHILD, local], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.stdout.splitlines()  # no JSON log line either
    found = json.loads(line)
    assert found == {"label": ["positive"], "prometheus_imported": False, "telemetry": "None"}
    assert not list(scratch.glob("imdb-sentiment-metrics*"))
