"""`make ui` opens the MLflow UI on the project's store and prints the link to the classic runs
view; the link is built from the routes of the installed MLflow UI (steps/tracking/runs.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from support import REPO_ROOT, free_port, stage_env

from steps.tracking import runs

UI_BUILD = Path(mlflow.__file__).parent / "server" / "js" / "build"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlflow.db", "http://127.0.0.1:5001/#/experiments/7/runs?workflowType=machine_learning"),
        ("https://dagshub.com/a/b.mlflow/", "https://dagshub.com/a/b.mlflow/#/experiments/7/runs?workflowType=machine_learning"),
    ],
)  # fmt: skip
def test_the_link_opens_the_runs_view(uri, expected):
    assert runs.ui_link(uri, "7", 5001) == expected


def test_the_installed_ui_has_the_route_and_the_view_the_link_names():
    """An MLflow upgrade that renames the tab or the view parameter fails here, not in a browser."""
    bundle = "".join(
        p.read_text(errors="ignore") for p in (UI_BUILD / "static" / "js").glob("*.js")
    )
    route = re.search(r'"/experiments/:experimentId/:tabName"', bundle)
    assert route, "the UI has no /experiments/:experimentId/:tabName route"
    assert 'Runs="runs"' in bundle  # the tab name
    assert 'MACHINE_LEARNING="machine_learning"' in bundle and 'get("workflowType")' in bundle


@pytest.mark.slow
def test_make_ui_serves_the_project_store_and_prints_the_link(tmp_path):
    port = free_port()
    env = stage_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = {k: v for k, v in env.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    ui = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = ui.stdout.readline().strip()
        match = re.fullmatch(
            rf"runs: http://127\.0\.0\.1:{port}/#/experiments/(\d+)/runs\?workflowType=machine_learning",
            line,
        )
        assert match, line
        api = (
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get?experiment_id={match[1]}"
        )
        for _ in range(120):  # bounded: the UI starts in seconds
            try:
                with urllib.request.urlopen(api, timeout=5) as answer:
                    experiment = json.load(answer)["experiment"]
                break
            except OSError:
                assert ui.poll() is None, "make ui exited"
                time.sleep(0.5)
        else:
            pytest.fail("the UI did not answer")
        assert experiment["name"] == "imdb-sentiment"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
