"""Credentials by class, not by list: any query or fragment parameter and any connection-string
attribute whose name contains a credential word (steps/stage/secrets.py CREDENTIAL_WORDS) is
hidden wherever it is shown; one naming a password refuses the source. End to end: an https
source carrying such parameters leaves them in no error line, log line, MLflow param or file,
and a bare `mlflow run -P` that MLflow logged them with is purged from the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import make_reviews, write_aclimdb_tar

from steps import ingest
from steps.stage import secrets
from steps.stage.paths import PROJECT_ROOT
from steps.tracking.store import EXPERIMENT_NAME

SECRET = "S3cr3tV4lue"


def runs(tracking_uri: str) -> list:
    """Every run of the store, deleted ones too."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments(view_type=3)
    return client.search_runs([e.experiment_id for e in experiments], run_view_type=3)


# Names seen in the wild (the and more), in the spellings and cases people use.
TOKEN_NAMES = [
    "api-key", "apikey", "API_KEY", "access_key", "AccessToken", "Auth_AccessToken",
    "X-Goog-Signature", "x-amz-signature", "sig", "SIG", "token", "id_token", "client-secret",
    "Authorization", "X-Goog-Credential", "sessionKey", "subscription-key",
]  # fmt: skip
PASSWORD_NAMES = ["PWD", "pwd", "Password", "pass", "db_pass", "Pass-Word", "passwd", "PassPhrase"]
CARRIERS = {
    "query": "https://data.example.com/r.csv?page=2&{name}={secret}&x=1",
    "first query": "https://data.example.com/r.csv?{name}={secret}",
    "fragment": "https://data.example.com/r.csv#{name}={secret}",
    "fragment after query": "https://data.example.com/r.csv?a=1#b=2&{name}={secret}",
    "odbc attribute": "odbc:DSN=imdb;UID=reader;{name}={secret};Encrypt=yes",
    "odbc first": "odbc:{name} = {{{secret};x}};DSN=imdb",
    # Only its decoded form shows the parameter.
    "percent-encoded": "https://data.example.com/r.csv?{name}%3D{secret}",
}


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("name", TOKEN_NAMES + PASSWORD_NAMES)
def test_a_credential_named_parameter_is_hidden_in_any_spelling(name, carrier):
    text = CARRIERS[carrier].format(name=name, secret=SECRET)
    shown = secrets.shown(text)
    assert SECRET not in shown and secrets.HIDDEN in shown, shown
    assert secrets.find_credential(text)
    is_password = name in PASSWORD_NAMES
    assert bool(secrets.find_password(text)) == is_password


@pytest.mark.parametrize(
    "text",
    [
        "https://data.example.com/r.csv?page=2&lang=en#section=3",
        "odbc:DSN=imdb;UID=reader;Encrypt=yes;Database=/data/r.db",
        "ingest.sql_password_env=IMDB_SQL_PASSWORD",  # names the variable, not the password
        "score parameters: spark.conf must be a list of key=value, got ('!',)",
    ],
)
def test_what_names_no_credential_is_shown_as_it_is(text):
    assert secrets.shown(text) == text
    assert secrets.find_credential(text) is None


QUERY = f"?api-key={SECRET}a&X-Goog-Signature={SECRET}b&sig={SECRET}c#access_token={SECRET}d"


def everything_under(folder: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def test_an_https_source_leaves_its_tokens_nowhere(
    server, tmp_path, tracking_uri, monkeypatch, capsys
):
    """The params, the tags, the log and error lines, data/downloads/*.verified.json, the store's
    database file: none holds any of the four values."""
    monkeypatch.chdir(tmp_path)
    splits = {"train": make_reviews(30, seed=11), "test": make_reviews(16, seed=12)}
    archive = write_aclimdb_tar(tmp_path / "served" / "aclImdb_v1.tar.gz", splits)
    path = "/data/aclImdb_v1.tar.gz" + QUERY.split("#")[0]  # a fragment is never sent
    server.bodies[path] = archive.read_bytes()
    params = ["--params", str(PROJECT_ROOT / "params.yaml"), "--sha256", ""]

    assert ingest.main([*params, "--source", server.url("/data/aclImdb_v1.tar.gz" + QUERY)]) == 0
    assert server.requests == [path]
    # A failing one too: its error line names the URL.
    assert ingest.main([*params, "--source", server.url("/data/missing.tar.gz" + QUERY)]) == 1

    out, err = capsys.readouterr()
    assert "error: ingest: " in err and "missing.tar.gz?api-key=***" in err
    assert SECRET not in out + err
    leaks = [name for name, data in everything_under(tmp_path) if SECRET.encode() in data]
    assert leaks == [], leaks  # the database, the verified record, the ingested data
    records = list((tmp_path / "data" / "downloads").glob("*.verified.json"))
    assert len(records) == 1 and "api-key=***" in records[0].read_text()
    logged = [r.data.params.get("source", "") for r in runs(tracking_uri)]
    assert any("X-Goog-Signature=***" in source for source in logged), logged


@pytest.mark.slow
def test_a_bare_mlflow_run_with_a_token_is_refused_and_purged(project_copy, tracking_uri):
    """MLflow logs `-P` values before any project code runs: the stage refuses the run and purges
    it from the store, as `mlflow gc --run-ids` would, so the token is nowhere in it."""
    source = f"https://127.0.0.1:9/aclImdb_v1.tar.gz?api-key={SECRET}"
    venv = Path(sys.executable).parent
    done = subprocess.run(
        [str(venv / "mlflow"), "run", str(project_copy), "-e", "ingest", "-P", f"source={source}",
         "--env-manager", "local", "--experiment-name", EXPERIMENT_NAME],
        cwd=project_copy, env={**os.environ, "PATH": f"{venv}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode != 0
    last = [line for line in done.stderr.splitlines() if line.startswith("error: ingest:")][-1]
    assert SECRET not in last
    assert "a credential in a parameter is refused (api-key=)" in last
    assert "now purged from the tracking store" in last
    assert runs(tracking_uri) == []
    store_file = Path(tracking_uri.removeprefix("sqlite:///"))
    assert SECRET.encode() not in store_file.read_bytes()
    downloads = project_copy / "data" / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir())
