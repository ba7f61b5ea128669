"""The ingest CLI and MLflow entry point end to end, in a copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from support import free_port, make_reviews

from steps.tracking.store import EXPERIMENT_NAME


def run_cli(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.ingest", *args],
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def ingest_runs(tracking_uri: str) -> list[mlflow.entities.Run]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    return client.search_runs(
        [experiment.experiment_id], "tags.stage = 'ingest'", order_by=["attributes.start_time ASC"]
    )


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.slow
@pytest.mark.integration
def test_cli_ingests_logs_and_then_reuses(project_copy, tracking_uri, tmp_path):
    make_reviews(120, seed=51).to_csv(tmp_path / "reviews.csv.gz", index=False)
    first = run_cli(project_copy, "--source", str(tmp_path / "reviews.csv.gz"), "--seed", "3")
    assert first.returncode == 0, first.stderr
    ingested = project_copy / "data" / "ingested"
    manifest = json.loads((ingested / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 96, "test": 24}
    stamps = {p: p.stat().st_mtime_ns for p in ingested.iterdir()}

    second = run_cli(project_copy, "--source", str(tmp_path / "reviews.csv.gz"), "--seed", "3")
    assert second.returncode == 0, second.stderr
    assert "already holds this content" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in ingested.iterdir()} == stamps

    runs = ingest_runs(tracking_uri)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.tags["ingest.output"] for r in runs] == ["written", "unchanged"]
    run = runs[0]
    assert run.data.params["source"] == str(tmp_path / "reviews.csv.gz")
    assert run.data.params["seed"] == "3"
    assert run.data.params["test_size"] == "0.2"
    assert run.data.params["sha256"] == ""  # the params.yaml checksum is for its own URL
    metrics = run.data.metrics
    assert (metrics["train_rows"], metrics["test_rows"]) == (96, 24)
    assert (metrics["train_positive"], metrics["train_negative"]) == (48, 48)
    assert (metrics["test_positive"], metrics["test_negative"]) == (12, 12)
    assert run.data.tags["ingest.content_sha256"] == manifest["content_sha256"]
    logged = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="ingest/manifest.json", dst_path=str(tmp_path / "a")
    )
    assert json.loads(Path(logged).read_text()) == manifest


@pytest.mark.slow
@pytest.mark.integration
def test_cli_bad_input_is_one_error_line_and_no_output(project_copy, tracking_uri, tmp_path):
    # Each run costs an MLflow start-up, so three kinds here; the rest are checked in-process.
    (tmp_path / "latin1.csv").write_bytes("review,sentiment\nolé,pos\n".encode("latin-1"))
    cases = {
        str(tmp_path / "nowhere"): "no such file or folder",
        str(tmp_path / "latin1.csv"): "not UTF-8 text",
        f"http://127.0.0.1:{free_port()}/aclImdb_v1.tar.gz": "cannot connect (Connection refused)",
    }
    for source, cause in cases.items():
        result = run_cli(project_copy, "--source", source)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1, (source, result.stderr)
        assert len(errors) == 1, (source, result.stderr)
        assert errors[0].startswith(f"error: ingest: {source}: "), errors[0]
        assert cause in errors[0]
        assert "Traceback" not in result.stderr
    assert files_under(project_copy / "data") == []  # no output, no download left behind
    runs = ingest_runs(tracking_uri)
    assert [r.info.status for r in runs] == ["FAILED"] * len(cases)


@pytest.mark.slow
@pytest.mark.odbc
def test_cli_sql_password_from_environment_never_recorded(
    project_copy, tracking_uri, tmp_path, sqlite_odbc_driver
):
    secret = "Tr0ub4dor&3"
    # unixODBC's trace shows what reached the driver manager (it masks the PWD value itself).
    # It ignores a long TraceFile path and cuts logged strings at 128 characters, so the trace
    # and the database live in a short folder under /tmp.
    odbc_ini = tmp_path / "odbc"
    odbc_ini.mkdir()
    trace_dir = Path(tempfile.mkdtemp(prefix="odbc", dir="/tmp"))
    trace = trace_dir / "trace"
    db = trace_dir / "r.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE reviews (review TEXT, sentiment TEXT)")
        rows = make_reviews(40, seed=52).itertuples(index=False)
        conn.executemany("INSERT INTO reviews VALUES (?, ?)", rows)
    (odbc_ini / "odbcinst.ini").write_text(
        f"[ODBC]\nTrace=Yes\nTraceFile={trace}\n\n[{sqlite_odbc_driver}]\nDriver=libsqlite3odbc.so\n"
    )
    source = f"mssql://reader@localhost/{db}"
    try:
        result = run_cli(
            project_copy,
            "--source",
            source,
            "--sql_driver",
            sqlite_odbc_driver,
            env={"IMDB_SQL_PASSWORD": secret, "ODBCSYSINI": str(odbc_ini)},
        )
        assert result.returncode == 0, result.stderr
        # Masked as one * per character: the variable's value reached the driver manager.
        assert f";UID=reader;PWD={'*' * len(secret)};]" in trace.read_text()
    finally:
        shutil.rmtree(trace_dir)
    (run,) = ingest_runs(tracking_uri)
    recorded = [
        result.stdout,
        result.stderr,
        json.dumps(run.data.params),
        json.dumps(run.data.tags),
        (project_copy / "data" / "ingested" / "manifest.json").read_text(),
    ]
    assert all(secret not in text for text in recorded)
    assert run.data.params["source"] == source
