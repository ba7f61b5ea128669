"""Where reviews come from: one module per source kind, chosen by the `ingest.source` string.

    <folder> | <file>              local.py: aclImdb layout, train/test CSVs, one CSV/Parquet/tgz
    https://host/path/file         https.py: download, verify and cache
    s3://bucket/key                s3.py: boto3
    odbc:<connection string>       odbc.py: pyodbc, e.g. odbc:DSN=imdb
    mssql://user@host[:port]/db    odbc.py: pyodbc with ingest.sql_driver

Every reader returns canonical frames (review, sentiment in {positive, negative}) or raises a
one-line `SourceError`; inside `labels_optional()` (monitor's batches) a table without a
sentiment column comes back with the review column only. A source carrying a password (`PWD=`,
`user:password@`, `?password=`) is refused before anything reads it: `mlflow run -P source=...`
would log it. The S3 and ODBC modules are imported only when used, so a machine without unixODBC
can still ingest local files.
"""

from __future__ import annotations

from pathlib import Path

from steps.data.sources.common import Loaded
from steps.data.sources.local import load_path
from steps.data.sources.tables import labels_optional
from steps.stage import secrets
from steps.stage.config import IngestConfig
from steps.stage.errors import CredentialRefused, SourceError, one_line

__all__ = ["Loaded", "check", "describe", "labels_optional", "load"]

SCHEMES = "a local path, https://, s3://, odbc: or mssql://"


def describe(source: str) -> str:
    """The source as it may be logged and recorded: credentials replaced by ***, control
    characters escaped."""
    return secrets.shown(source)


def check(source: str, cfg: IngestConfig) -> None:
    """Refuse, before anything reads or logs it, a source with control characters (NUL,
    newlines, terminal escapes) or a password in it (saying where a password goes instead)."""
    if secrets.printable(source) != source:
        raise SourceError(
            f"{describe(source)}: the source contains control characters (NUL, newline, escape"
            " ...): refused; give the path or URL as plain text"
        )
    found = secrets.find_password(source)
    if found is None:
        return
    if _is_sql(source):
        remedy = f"set the environment variable {cfg.sql_password_env} (ingest.sql_password_env)"
    elif source.lower().startswith(("https://", "http://")):
        remedy = "put the credentials in ~/.netrc (the download reads it)"
    else:
        remedy = "give the credentials through the environment (e.g. AWS_* for s3://)"
    raise CredentialRefused(
        f"{describe(source)}: a password in the source is refused ({found}): it would end up in"
        f" run params, logs and history; remove it and {remedy}"
    )


def load(cfg: IngestConfig, download_dir: Path) -> Loaded:
    """Read the reviews `cfg.source` points at."""
    source = cfg.source.strip()
    if not source:
        raise SourceError(f"ingest.source is empty: give {SCHEMES}")
    check(source, cfg)
    try:
        return _dispatch(source, cfg, download_dir)
    except OSError as exc:  # a file system problem the readers did not expect
        where = f" {describe(exc.filename)}" if isinstance(exc.filename, str) else ""
        raise SourceError(
            f"{describe(source)}: cannot read or write{where} ({exc.strerror or exc})"
        ) from None
    except ValueError as exc:  # a malformed URL part (port, IPv6 host) no reader expected
        raise SourceError(
            f"{describe(source)}: not a usable source ({describe(one_line(exc))}): give {SCHEMES}"
        ) from None


def _is_sql(source: str) -> bool:
    return source.lower().startswith(("odbc:", "mssql://"))


def _dispatch(source: str, cfg: IngestConfig, download_dir: Path) -> Loaded:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("https", "http"):
        from steps.data.sources.https import load_url

        return load_url(source, cfg.sha256, download_dir)
    if scheme == "s3":
        from steps.data.sources.s3 import load_s3

        return load_s3(source, cfg.s3_endpoint_url)
    if _is_sql(source):
        from steps.data.sources.odbc import load_sql

        return load_sql(source, cfg)
    if scheme:
        raise SourceError(f"{describe(source)}: unsupported scheme {scheme!r}: give {SCHEMES}")
    return load_path(Path(source).expanduser(), where=describe(source))
