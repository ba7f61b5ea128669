"""Where reviews come from: one module per source kind, chosen by the `ingest.source` string.

    <folder> | <file>              local.py: aclImdb layout, train/test CSVs, one CSV/Parquet/tgz
    https://host/path/file         https.py: download, verify and cache
    s3://bucket/key                s3.py: boto3
    odbc:<connection string>       odbc.py: pyodbc, e.g. odbc:DSN=imdb
    mssql://user@host[:port]/db    odbc.py: pyodbc with ingest.sql_driver

Every reader returns canonical frames (review, sentiment in {positive, negative}) or raises a
one-line `SourceError`; inside `labels_optional()` (monitor's batches) a table without a
sentiment column comes back with the review column only. The S3 and ODBC modules are imported only when used, so a machine without
unixODBC can still ingest local files.
"""

from __future__ import annotations

from pathlib import Path

from steps.stage.config import IngestConfig
from steps.stage.errors import SourceError
from steps.data.sources.common import Loaded
from steps.data.sources.local import load_path
from steps.data.sources.tables import labels_optional

__all__ = ["Loaded", "describe", "labels_optional", "load"]

SCHEMES = "a local path, https://, s3://, odbc: or mssql://"


def describe(source: str) -> str:
    """The source as it may be logged and recorded (passwords replaced by ***)."""
    if source.startswith(("odbc:", "mssql://")):
        from steps.data.sources.odbc import describe as describe_sql

        return describe_sql(source)
    return source


def load(cfg: IngestConfig, download_dir: Path) -> Loaded:
    """Read the reviews `cfg.source` points at."""
    source = cfg.source.strip()
    if not source:
        raise SourceError(f"ingest.source is empty: give {SCHEMES}")
    try:
        return _dispatch(source, cfg, download_dir)
    except OSError as exc:  # a file system problem the readers did not expect
        where = f" {exc.filename}" if exc.filename else ""
        raise SourceError(
            f"{describe(source)}: cannot read or write{where} ({exc.strerror or exc})"
        ) from None


def _dispatch(source: str, cfg: IngestConfig, download_dir: Path) -> Loaded:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("https", "http"):
        from steps.data.sources.https import load_url

        return load_url(source, cfg.sha256, download_dir)
    if scheme == "s3":
        from steps.data.sources.s3 import load_s3

        return load_s3(source, cfg.s3_endpoint_url)
    if scheme == "mssql" or source.startswith("odbc:"):
        from steps.data.sources.odbc import load_sql

        return load_sql(source, cfg)
    if scheme:
        raise SourceError(f"{source}: unsupported scheme {scheme!r}: give {SCHEMES}")
    return load_path(Path(source).expanduser(), where=source)
