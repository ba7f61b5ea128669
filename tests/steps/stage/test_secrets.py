"""Nothing secret gets stored (issue 11, item 9): a password in a source, in any spelling, is
refused before anything runs or is logged; credentials are hidden wherever values reach params,
tags, logs or errors (steps/stage/secrets.py is the one place that decides what they look like)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import REPO_ROOT

from steps.data import sources
from steps.data.sources.odbc import connection_string
from steps.stage import chain, secrets
from steps.stage.config import load_params
from steps.stage.errors import CredentialRefused, SourceError
from steps.tracking.store import EXPERIMENT_NAME

SECRET = "Tr0ub4dor&3"
CFG = dataclasses.replace(load_params(REPO_ROOT / "params.yaml").ingest, sha256="")
PASSWORD_SOURCES = [
    f"odbc:DSN=imdb;UID=reader;PWD={SECRET}",
    f"odbc:Driver=SQLite3;Database=/data/r.db;Pwd = {{{SECRET};x}}",
    f"odbc:Driver=SQLite3;password={SECRET};Database=/data/r.db",
    f"odbc:Driver=SQLite3; PASSWORD ={SECRET}",
    f"mssql://reader:{SECRET}@db.example.com/imdb",
    f"mssql://reader@db.example.com/imdb?PWD={SECRET}",
    f"mssql://reader@db.example.com/imdb?Encrypt=yes&password={SECRET}",
    f"mssql://reader@db.example.com/imdb?P%57D={SECRET}",
    f"https://reader:{SECRET}@data.example.com/reviews.csv",
]


@pytest.mark.parametrize("source", PASSWORD_SOURCES)
def test_a_password_in_any_spelling_is_refused_and_never_shown(source, tmp_path):
    assert secrets.find_password(source)
    with pytest.raises(CredentialRefused) as error:
        sources.load(
            dataclasses.replace(CFG, source=source), tmp_path, labels=sources.Labels.REQUIRED
        )
    assert "a password in the source is refused" in str(error.value)
    assert SECRET not in str(error.value)
    assert SECRET not in sources.describe(source) and "***" in sources.describe(source)


def test_a_password_in_the_mssql_query_string_never_reaches_the_connection_string():
    with pytest.raises(SourceError, match="a password in the source is refused"):
        connection_string(
            f"mssql://reader@db.example.com/imdb?PWD={SECRET}", CFG, {"IMDB_SQL_PASSWORD": "x"}
        )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        ("see https://u:p@ss@host/x and more", "see https://u:***@host/x and more"),
        (
            "https://b.s3.amazonaws.com/r.csv?X-Amz-Signature=abc&X-Amz-Date=1",
            "https://b.s3.amazonaws.com/r.csv?X-Amz-Signature=***&X-Amz-Date=1",
        ),
        ("Authorization: Bearer eyJhbGciOi.x", "Authorization: Bearer ***"),
        ("odbc:DSN=x;Pwd = {a;b}}c};UID=r", "odbc:DSN=x;Pwd = ***;UID=r"),
        ("a\x00b\nc\x1b[0m", "a\\x00b\\x0ac\\x1b[0m"),
        ("ingest.sql_password_env=IMDB_SQL_PASSWORD", "ingest.sql_password_env=IMDB_SQL_PASSWORD"),
        ("mssql://reader@host/imdb", "mssql://reader@host/imdb"),
    ],
)
def test_what_is_shown(text, shown):
    assert secrets.shown(text) == shown


def test_chain_refuses_a_credential_before_mlflow_can_log_it(monkeypatch):
    launched = []
    monkeypatch.setattr(chain.mlflow.projects, "run", lambda **kw: launched.append(kw))
    for value in (f"odbc:DSN=x;PWD={SECRET}", f"https://h/r.csv?token={SECRET}"):
        with pytest.raises(CredentialRefused) as error:
            chain.run_entry_point("ingest", {"source": value})
        assert SECRET not in str(error.value) and "MLflow would log it" in str(error.value)
    assert launched == []


@pytest.mark.integration
def test_log_lines_of_any_library_are_redacted():
    script = (
        "import logging, sys\n"
        "import mlflow  # configures its own logger and handler\n"
        "from steps.entry import cli\n"
        "cli.setup_logging()\n"
        "logging.getLogger('some.library').warning('connecting to %s', sys.argv[1])\n"
        "logging.getLogger('mlflow.projects').warning('=== Running command %s ===', sys.argv[2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"mssql://u:{SECRET}@h/db", f"'DSN=x;PWD={SECRET}'"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stderr
    assert "connecting to mssql://u:***@h/db" in done.stderr
    assert "=== Running command 'DSN=x;PWD=***" in done.stderr


def runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    return client.search_runs([e.experiment_id for e in experiments], run_view_type=3)


def mlflow_run(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent
    return subprocess.run(
        [str(venv / "mlflow"), "run", str(project), *args, "--env-manager", "local",
         "--experiment-name", EXPERIMENT_NAME],
        cwd=project, env={**os.environ, "PATH": f"{venv}:{os.environ['PATH']}", **env},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_main_refuses_before_any_run_when_started_by_hand_or_make(
    project_copy, tracking_uri, capsys
):
    source = f"odbc:Driver=SQLite3;Database=/tmp/r.db;PWD={SECRET}"
    done = subprocess.run(
        [sys.executable, "-m", "steps.main", "--check", "--source", source],
        cwd=project_copy, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and SECRET not in done.stdout + done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: main: ingest parameter source=odbc:Driver=SQLite3;Database=/tmp/r.db;PWD=***:"
            " a credential in a parameter is refused (PWD=)"
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "steps.main", "--source", source],
        cwd=project_copy, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and SECRET not in done.stdout + done.stderr
    assert runs(tracking_uri) == []  # nothing was logged anywhere


@pytest.mark.slow
def test_mlflow_run_main_with_a_password_logs_no_child_run_and_purges_its_own(
    project_copy, tracking_uri
):
    """`mlflow run . -e main -P source=...PWD=...`: MLflow's CLI logs -P values with the main run
    before any project code runs (it has no secret parameters); main then refuses before any
    child run exists and purges that run from the store, as `mlflow gc --run-ids` would."""
    source = f"odbc:Driver=SQLite3;Database=/tmp/r.db;PWD={SECRET}"
    done = mlflow_run(project_copy, "-e", "main", "-P", f"source={source}", env={})
    assert done.returncode != 0
    last = [line for line in done.stderr.splitlines() if line.startswith("error: main:")][-1]
    assert SECRET not in last and "now purged from the tracking store" in last
    assert runs(tracking_uri) == []  # not even a deleted run is left
    # Nowhere in the store's file either (not in a freed page of the database).
    store_file = Path(tracking_uri.removeprefix("sqlite:///"))
    assert SECRET.encode() not in store_file.read_bytes()
