"""SQL sources through pyodbc: `odbc:<connection string or DSN=...>` and `mssql://user@host[:port]/db`.

Every ODBC driver runs the same code: connect, run the query, fetch in chunks. load (ingest,
monitor) runs `ingest.sql_query` and checks the review/sentiment columns of all the rows; stream
(score) runs `score.sql_query` and hands over the review (and id) column fetch by fetch.
`mssql://` is turned into a SQL Server connection string with `ingest.sql_driver`; its query
parameters are passed on as attributes
(`mssql://me@db.example.com/imdb?Encrypt=yes&TrustServerCertificate=no`).
The password comes only from the environment variable named by `ingest.sql_password_env`: a
password written into the source (`PWD=`, `Pwd = {...}`, `user:pw@`, `?PWD=`) is refused, and the
password never appears in logs, the manifest or error messages (steps/stage/secrets.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from types import ModuleType
from urllib.parse import parse_qsl, unquote, urlsplit

import pandas as pd
from tqdm import tqdm

from steps.data.sources.kind import Columns, Labels, Loaded, Request, ReviewStream, SourceKind
from steps.data.sources.streams import stream_frames
from steps.data.sources.tables import tidy
from steps.stage.config import IngestConfig
from steps.stage.errors import SourceError, one_line
from steps.stage.secrets import find_password, shown

log = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
LOGIN_TIMEOUT_SECONDS = 15
# A password attribute, even an empty one: the password is only ever added from the environment.
_PASSWORD_KEY = re.compile(r"(?:^|;)\s*(?:pwd|password)\s*=", re.IGNORECASE)
_PASSWORD_NAMES = ("pwd", "password")


class Odbc(SourceKind):
    """An ODBC connection string or DSN (`odbc:`), or SQL Server (`mssql://`)."""

    name = "odbc"
    prefixes = ("odbc:", "mssql://")

    def load(self, request: Request, labels: Labels) -> Loaded:
        return load_sql(request.source, request.settings, labels)

    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        query = request.settings.sql_query
        frames = query_chunks(
            request.source, request.settings, chunk_rows=chunk_rows, setting=request.sql_setting
        )
        # The first fetch connects and runs the query: a bad one fails before any work.
        label = f"{request.where} (query {query!r})"
        stream = stream_frames(frames, request.where, label, columns, stack)
        stream.details.update(format="sql", query=query)
        return stream

    def password_remedy(self, settings: IngestConfig) -> str:
        return f"set the environment variable {settings.sql_password_env} (ingest.sql_password_env)"


def connection_string(source: str, cfg: IngestConfig, environ: Mapping[str, str]) -> str:
    """The ODBC connection string for a source, with the password from the environment."""
    where = shown(source)
    password = environ.get(cfg.sql_password_env) or ""
    refuse = (
        f"{where}: a password in the source is refused (it would end up in params, logs and"
        f" run history): remove it and set the environment variable {cfg.sql_password_env}"
    )
    if source.startswith("odbc:"):
        text = source.removeprefix("odbc:").strip()
        if not text:
            raise SourceError(f"{where}: empty connection string (e.g. odbc:DSN=imdb)")
        if find_password(source) or _PASSWORD_KEY.search(text):
            raise SourceError(refuse)
        text = text if text.endswith(";") else text + ";"
        return text + (f"PWD={quote(password)};" if password else "")
    parts = urlsplit(source)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if (
        find_password(source)
        or parts.password is not None
        or any(key.strip().lower() in _PASSWORD_NAMES for key, _ in query)
    ):
        raise SourceError(refuse)
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not parts.hostname or not database:
        raise SourceError(f"{where}: expected mssql://user@host[:port]/database")
    server = f"{parts.hostname},{parts.port}" if parts.port else parts.hostname
    attributes = {"DRIVER": cfg.sql_driver, "SERVER": server, "DATABASE": database}
    if parts.username:
        if not password:
            raise SourceError(
                f"{where}: no password: set the environment variable {cfg.sql_password_env}"
                " (ingest.sql_password_env)"
            )
        attributes.update(UID=unquote(parts.username), PWD=password)
    attributes.update(query)
    return "".join(f"{key}={quote(value)};" for key, value in attributes.items())


def quote(value: str) -> str:
    """An ODBC attribute value, braced when it holds characters that would end or split it."""
    if value and not re.search(r"[;{}\s=]", value) and value == value.strip():
        return value
    return "{" + value.replace("}", "}}") + "}"


def load_sql(
    source: str,
    cfg: IngestConfig,
    labels: Labels,
    environ: Mapping[str, str] = os.environ,
    chunk_rows: int = CHUNK_ROWS,
) -> Loaded:
    """Reviews from the rows `cfg.sql_query` returns over ODBC."""
    where = shown(source)
    with tqdm(desc="rows", unit=" rows", disable=None) as bar:
        chunks = []
        for chunk in query_chunks(source, cfg, environ, chunk_rows):
            chunks.append(chunk)
            bar.update(len(chunk))
    frame = pd.concat(chunks, ignore_index=True)
    log.info("read %s rows from %s", f"{len(frame):,}", where)
    loaded = tidy(frame, f"{where} (query {cfg.sql_query!r})", labels)
    return Loaded(train=loaded, test=None, details={"format": "sql", "query": cfg.sql_query})


def _pyodbc(where: str) -> ModuleType:
    """pyodbc, imported only by the sources that use it: its wheel installs anywhere, but it
    loads the system's unixODBC (libodbc), so a machine without it gets one line, not a trace."""
    try:
        import pyodbc
    except ImportError as exc:
        raise SourceError(
            f"{where}: cannot load pyodbc ({one_line(exc)}): install unixODBC"
            " (apt install unixodbc) and the ODBC driver of your database"
        ) from None
    return pyodbc


def query_chunks(
    source: str,
    cfg: IngestConfig,
    environ: Mapping[str, str] = os.environ,
    chunk_rows: int = CHUNK_ROWS,
    setting: str = "ingest.sql_query",
) -> Iterator[pd.DataFrame]:
    """The rows `cfg.sql_query` returns, `chunk_rows` at a time, every column as returned.

    The connection stays open while the caller works through the chunks; a query that returns
    no rows is a SourceError. `setting` names the query's params.yaml key in errors.
    """
    where = shown(source)
    text = connection_string(source, cfg, environ)
    pyodbc = _pyodbc(where)
    secrets = [s for s in (environ.get(cfg.sql_password_env),) if s]
    step = "connect"
    rows = 0
    try:
        connection = pyodbc.connect(text, autocommit=True, timeout=LOGIN_TIMEOUT_SECONDS)
        try:
            step = "query"
            cursor = connection.cursor()
            cursor.execute(cfg.sql_query)
            if cursor.description is None:
                raise SourceError(f"{where}: the query returned no rows: check {setting}")
            columns = [column[0] for column in cursor.description]
            while batch := cursor.fetchmany(chunk_rows):
                rows += len(batch)
                yield pd.DataFrame.from_records(map(tuple, batch), columns=columns)
        finally:
            connection.close()
    except pyodbc.Error as exc:
        raise SourceError(_explain(where, step, exc, cfg, secrets, setting)) from None
    if not rows:
        raise SourceError(f"{where}: the query {cfg.sql_query!r} returned no rows")


def _explain(
    where: str,
    step: str,
    exc: Exception,
    cfg: IngestConfig,
    secrets: list[str],
    setting: str = "ingest.sql_query",
) -> str:
    """One line for a pyodbc error: what failed, the driver's words (no password), what to do."""
    state = str(exc.args[0]) if exc.args else "?"
    words = one_line(exc.args[1] if len(exc.args) > 1 else exc)
    words = re.sub(r"^(\[[^\]]*\]\s*)+", "", words.replace(f"[{state}] ", ""))
    for secret in secrets:
        words = words.replace(secret, "***")
    if "can't open lib" in words.lower() or state == "IM002":
        import pyodbc

        installed = ", ".join(pyodbc.drivers()) or "none"
        hint = (
            f"the ODBC driver or DSN is not installed ({words}); installed drivers: {installed}"
            " (set ingest.sql_driver for mssql://, or the Driver=/DSN= of the odbc: string)"
        )
    elif state == "28000":
        hint = f"login failed ({words}): check the user and ${cfg.sql_password_env}"
    elif step == "query":
        hint = f"the query {cfg.sql_query!r} failed ({words}): check {setting} and the table"
    else:
        hint = f"cannot connect ({words}): check the server, database and network"
    return f"{where}: {hint}"
