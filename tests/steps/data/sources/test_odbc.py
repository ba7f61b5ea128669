"""ODBC sources through pyodbc and the real SQLite ODBC driver (unixODBC + libsqliteodbc).

The same query code serves SQL Server in production: only the connection string differs, and
`mssql://` is exercised for real here by pointing `ingest.sql_driver` at the SQLite driver.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from support import make_reviews

from steps.data.sources import Labels, describe, load
from steps.data.sources.odbc import connection_string, load_sql
from steps.stage.config import load_params
from steps.stage.errors import SourceError
from steps.stage.paths import PROJECT_ROOT

# Skipped naming the apt packages where unixODBC or the driver is missing (required in CI).
pytestmark = [pytest.mark.odbc, pytest.mark.usefixtures("sqlite_odbc_driver")]

SECRET = "s3cr;t}pw"  # needs ODBC brace quoting


def _cfg(source: str, **changes):
    ingest = load_params(PROJECT_ROOT / "params.yaml").ingest
    return dataclasses.replace(ingest, source=source, **changes)


def write_db(path: Path, frame: pd.DataFrame, table: str = "reviews") -> Path:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, review TEXT, sentiment)")
        db.executemany(
            f"INSERT INTO {table} (review, sentiment) VALUES (?, ?)",
            frame.itertuples(index=False),
        )
    return path


@pytest.fixture
def reviews() -> pd.DataFrame:
    frame = make_reviews(23, seed=31)
    frame.loc[0, "review"] = "Ünïcode survives the driver: café, naïve, \u0085."
    return frame


@pytest.fixture
def no_password(monkeypatch):
    monkeypatch.delenv("IMDB_SQL_PASSWORD", raising=False)


def test_odbc_connection_string_in_chunks(tmp_path, reviews, no_password):
    db = write_db(tmp_path / "reviews.db", reviews)
    source = f"odbc:Driver=SQLite3;Database={db}"
    loaded = load_sql(source, _cfg(source), Labels.REQUIRED, chunk_rows=5)  # 23 rows: five fetches
    assert loaded.test is None
    pd.testing.assert_frame_equal(loaded.train, reviews)
    assert loaded.details == {"format": "sql", "query": "SELECT review, sentiment FROM reviews"}


def test_numeric_labels_and_a_custom_query(tmp_path, reviews, no_password):
    numeric = reviews.assign(sentiment=(reviews["sentiment"] == "positive").astype(int))
    db = write_db(tmp_path / "reviews.db", numeric, table="imdb")
    source = f"odbc:Driver=SQLite3;Database={db};"
    query = "SELECT sentiment AS Sentiment, review AS Review FROM imdb ORDER BY id"
    loaded = load(_cfg(source, sql_query=query), tmp_path, labels=Labels.REQUIRED)
    pd.testing.assert_frame_equal(loaded.train, reviews)


def test_password_comes_from_the_environment(tmp_path, reviews, monkeypatch):
    db = write_db(tmp_path / "reviews.db", reviews)
    source = f"odbc:Driver=SQLite3;Database={db}"
    cfg = _cfg(source)
    environ = {"IMDB_SQL_PASSWORD": SECRET}
    assert connection_string(source, cfg, environ) == (
        f"Driver=SQLite3;Database={db};PWD={{s3cr;t}}}}pw}};"
    )
    assert connection_string(source, cfg, {}) == f"Driver=SQLite3;Database={db};"
    monkeypatch.setenv("IMDB_SQL_PASSWORD", SECRET)
    # The SQLite driver ignores PWD, but the connection string carrying it must still be valid.
    assert len(load(cfg, tmp_path, labels=Labels.REQUIRED).train) == len(reviews)


def test_mssql_url_builds_a_sql_server_connection_string(tmp_path):
    cfg = _cfg("", sql_driver="ODBC Driver 18 for SQL Server", sql_password_env="DB_PW")
    text = connection_string(
        "mssql://reader@db.example.com:1433/imdb?Encrypt=yes&TrustServerCertificate=no",
        cfg,
        {"DB_PW": SECRET},
    )
    assert text == (
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example.com,1433;DATABASE=imdb;"
        "UID=reader;PWD={s3cr;t}}pw};Encrypt=yes;TrustServerCertificate=no;"
    )


def test_mssql_url_through_a_real_driver(tmp_path, reviews, monkeypatch):
    # Same code path as SQL Server, with the SQLite driver standing in (it reads DATABASE).
    db = write_db(tmp_path / "reviews.db", reviews)
    monkeypatch.setenv("IMDB_SQL_PASSWORD", SECRET)
    source = f"mssql://reader@localhost:1433/{db}"
    loaded = load(_cfg(source, sql_driver="SQLite3"), tmp_path, labels=Labels.REQUIRED)
    pd.testing.assert_frame_equal(loaded.train, reviews)


def test_mssql_user_without_password_variable(tmp_path, no_password):
    with pytest.raises(
        SourceError, match=r"no password: set the environment variable IMDB_SQL_PASSWORD"
    ):
        load(_cfg("mssql://reader@db.example.com/imdb"), tmp_path, labels=Labels.REQUIRED)


@pytest.mark.parametrize(
    "source",
    [
        f"odbc:DSN=imdb;UID=reader;PWD={SECRET}",
        f"odbc:Driver=SQLite3;password={SECRET}",
        "mssql://reader:pa55@host/imdb",
    ],
)
def test_password_in_the_source_is_refused_and_never_shown(tmp_path, source):
    with pytest.raises(SourceError) as err:
        load(_cfg(source), tmp_path, labels=Labels.REQUIRED)
    message = str(err.value)
    assert "a password in the source is refused" in message
    assert "set the environment variable IMDB_SQL_PASSWORD" in message
    assert SECRET not in message and "pa55" not in message
    assert (
        "***" in describe(source)
        and SECRET not in describe(source)
        and "pa55" not in describe(source)
    )


def test_missing_table(tmp_path, reviews, no_password):
    db = write_db(tmp_path / "reviews.db", reviews, table="other")
    source = f"odbc:Driver=SQLite3;Database={db}"
    with pytest.raises(SourceError) as err:
        load(_cfg(source), tmp_path, labels=Labels.REQUIRED)
    assert str(err.value) == (
        f"{source}: the query 'SELECT review, sentiment FROM reviews' failed"
        " (no such table: reviews (1) (1) (SQLExecDirectW)): check ingest.sql_query and the table"
    )


@pytest.mark.parametrize(
    ("source", "driver"),
    [
        ("odbc:Driver={No Such Driver};Server=x;Database=y", "SQLite3"),
        ("mssql://reader@db.example.com/imdb", "ODBC Driver 99 for SQL Server"),
        ("odbc:DSN=no-such-dsn", "SQLite3"),
    ],
)
def test_unknown_driver_or_dsn(tmp_path, monkeypatch, source, driver):
    monkeypatch.setenv("IMDB_SQL_PASSWORD", SECRET)
    with pytest.raises(SourceError) as err:
        load(_cfg(source, sql_driver=driver), tmp_path, labels=Labels.REQUIRED)
    message = str(err.value)
    assert message.startswith(f"{source}: the ODBC driver or DSN is not installed (")
    assert "installed drivers: " in message and "SQLite3" in message
    assert SECRET not in message


def test_query_without_the_needed_columns(tmp_path, reviews, no_password):
    db = write_db(tmp_path / "reviews.db", reviews)
    source = f"odbc:Driver=SQLite3;Database={db}"
    with pytest.raises(SourceError, match=r"missing column sentiment \(found: id, review\)"):
        load(
            _cfg(source, sql_query="SELECT id, review FROM reviews"),
            tmp_path,
            labels=Labels.REQUIRED,
        )


def test_query_with_no_rows(tmp_path, reviews, no_password):
    db = write_db(tmp_path / "reviews.db", reviews)
    source = f"odbc:Driver=SQLite3;Database={db}"
    with pytest.raises(SourceError, match=r"returned no rows"):
        load(
            _cfg(source, sql_query="SELECT review, sentiment FROM reviews WHERE 0"),
            tmp_path,
            labels=Labels.REQUIRED,
        )
