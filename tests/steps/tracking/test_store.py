"""The environment `make` hands to MLflow's own CLI agrees with what the stages decide, and a
tracking server that does not answer fails in seconds with one line (issue 11, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import REPO_ROOT, free_port, review_server, stage_env

from steps.tracking import store
from steps.tracking.store import DEFAULT_TRACKING_URI, EXPERIMENT_NAME, RETRY_BUDGET, shell_exports


def evaluated(exports: str, env: dict[str, str]) -> dict[str, str]:
    """Run the export lines in bash, as the Makefile does, and read the MLflow variables back."""
    script = f'{exports}\nenv | grep "^MLFLOW_" | sort'
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.integration
def test_default_is_the_local_store_and_our_experiment():
    env = {"PATH": "/usr/bin:/bin"}
    assert evaluated(shell_exports(env), env) == {
        "MLFLOW_TRACKING_URI": DEFAULT_TRACKING_URI,
        "MLFLOW_REGISTRY_URI": DEFAULT_TRACKING_URI,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
        **RETRY_BUDGET,
    }


@pytest.mark.integration
def test_dagshub_credentials_are_referenced_never_printed():
    env = {"PATH": "/usr/bin:/bin", "DAGSHUB_REPO": "alice/imdb", "DAGSHUB_USER_TOKEN": "s3cr3t$x"}
    exports = shell_exports(env)
    assert "s3cr3t" not in exports
    assert evaluated(exports, env) == {
        "MLFLOW_TRACKING_URI": "https://dagshub.com/alice/imdb.mlflow",
        "MLFLOW_REGISTRY_URI": DEFAULT_TRACKING_URI,  # DagsHub's MLflow has no Model Registry
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
        "MLFLOW_TRACKING_USERNAME": "s3cr3t$x",
        "MLFLOW_TRACKING_PASSWORD": "s3cr3t$x",
        **RETRY_BUDGET,
    }
    named = {**env, "DAGSHUB_USERNAME": "alice"}
    assert evaluated(shell_exports(named), named)["MLFLOW_TRACKING_USERNAME"] == "alice"


@pytest.mark.integration
def test_an_explicit_tracking_uri_wins_and_odd_values_survive_quoting():
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": "sqlite:////tmp/my store/x.db"}
    env["MLFLOW_EXPERIMENT_NAME"] = "it's mine"
    got = evaluated(shell_exports(env), env)
    assert got["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/my store/x.db"
    assert got["MLFLOW_EXPERIMENT_NAME"] == "it's mine"


def stage(tmp_path, *args: str, env: dict[str, str], timeout: float = 90):
    """`python -m steps.<args>` in an empty folder holding params.yaml."""
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=tmp_path,
        env=stage_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,  # MLflow's own retries took about 250 s here
    )


@pytest.mark.slow
@pytest.mark.integration
def test_a_dead_tracking_server_fails_in_seconds_with_one_line_and_no_password(tmp_path):
    port = free_port()
    uri = f"http://alice:s3cret@127.0.0.1:{port}"
    done = stage(tmp_path, "steps.ingest", env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: ingest: tracking server http://alice:***@127.0.0.1:{port} (MLFLOW_TRACKING_URI)"
        " is unreachable (Connection refused) after 3 attempts"
        " (MLFLOW_HTTP_REQUEST_MAX_RETRIES=2): check the URI and that the server is running"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("retries", "attempts"), [(None, 3), ("0", 1)])
@pytest.mark.integration
def test_the_retry_budget_is_settable_with_mlflows_variables(tmp_path, retries, attempts):
    budget = {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
    if retries is not None:
        budget["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = retries
    with review_server() as server:
        server.status = 503  # answers, but never usefully
        done = stage(
            tmp_path, "steps.models", env={"MLFLOW_TRACKING_URI": server.url(""), **budget}
        )
        assert len(server.requests) == attempts
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"keeps failing (HTTP 503 on every attempt) after {attempts} attempts"
            f" (MLFLOW_HTTP_REQUEST_MAX_RETRIES={attempts - 1}): check the URI and that the server"
            " is running"
        )
    )


def test_configure_sets_the_budget_for_child_runs_unless_it_is_set(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    for name in set(RETRY_BUDGET) - {"MLFLOW_HTTP_REQUEST_TIMEOUT"}:
        monkeypatch.delenv(name, raising=False)
    store.configure()
    assert {name: os.environ[name] for name in RETRY_BUDGET} == {
        **RETRY_BUDGET,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "7",
    }
