"""Where reviews come from: the one table of source kinds, and the two doors every reader uses.

    https://host/path/file         https.py: download, verify and cache
    s3://bucket/key[/]             s3.py: boto3
    odbc:<connection string>       odbc.py: pyodbc, e.g. odbc:DSN=imdb
    mssql://user@host[:port]/db    odbc.py: pyodbc with ingest.sql_driver
    <aclImdb folder> | <.tar.gz>   aclimdb.py: the official layout
    <folder> | <file>              local.py: train/test files, a CSV/Parquet file, a dataset

`KINDS` is the table: the first kind that claims a source string reads it. Each kind offers both
reads (kind.py): `load` (ingest; monitor with `Labels.OPTIONAL`) returns every review at once,
`stream` (score, either engine) returns them chunk by chunk with their ids. A source carrying a
password (`PWD=`, `user:password@`, `?password=`) or control characters is refused at both doors
before anything reads or logs it: `mlflow run -P source=...` would log it. boto3 and pyodbc are
imported only when an S3 or ODBC source is read. Adding a kind: steps/data/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from steps.data.sources.aclimdb import AclImdb
from steps.data.sources.https import Https
from steps.data.sources.kind import (
    ENVIRONMENT_REMEDY,
    Chunk,
    Columns,
    Labels,
    Loaded,
    Request,
    ReviewStream,
    SourceKind,
)
from steps.data.sources.local import STREAM_WHAT_TO_GIVE, LocalPath
from steps.data.sources.odbc import Odbc
from steps.data.sources.s3 import S3
from steps.stage import secrets
from steps.stage.config import IngestConfig
from steps.stage.errors import CredentialRefused, SourceError, one_line

__all__ = [
    "KINDS",
    "Columns",
    "Labels",
    "Loaded",
    "ReviewStream",
    "check",
    "describe",
    "kind_for",
    "kind_name",
    "load",
    "open_stream",
]

# Asked in this order: kinds named by a prefix first, then the aclImdb layout, then any path.
KINDS: tuple[SourceKind, ...] = (Https(), S3(), Odbc(), AclImdb(), LocalPath())
_PREFIXES = [prefix for kind in KINDS for prefix in kind.prefixes]
SCHEMES = f"a local path, {', '.join(_PREFIXES[:-1])} or {_PREFIXES[-1]}"


def describe(source: str) -> str:
    """The source as it may be logged and recorded: credentials replaced by ***, control
    characters escaped."""
    return secrets.shown(source)


def kind_for(source: str) -> SourceKind:
    """The registered kind that reads `source`, or a SourceError naming its unknown scheme."""
    for kind in KINDS:
        if kind.claims(source):
            return kind
    scheme = source.split("://", 1)[0].lower()
    raise SourceError(f"{describe(source)}: unsupported scheme {scheme!r}: give {SCHEMES}")


def kind_name(source: str) -> str | None:
    """The name of the kind that reads `source` ("https", "s3", ...), or None when none does."""
    return next((kind.name for kind in KINDS if kind.claims(source)), None)


def check(source: str, settings: IngestConfig) -> None:
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
    kind = next((k for k in KINDS if k.claims(source)), None)
    remedy = kind.password_remedy(settings) if kind else ENVIRONMENT_REMEDY
    raise CredentialRefused(
        f"{describe(source)}: a password in the source is refused ({found}): it would end up in"
        f" run params, logs and history; remove it and {remedy}"
    )


def load(cfg: IngestConfig, download_dir: Path, *, labels: Labels) -> Loaded:
    """Every review `cfg.source` points at; a table must have labels unless `labels` is
    `Labels.OPTIONAL`."""
    source = cfg.source.strip()
    if not source:
        raise SourceError(f"ingest.source is empty: give {SCHEMES}")
    check(source, cfg)
    request = Request(source, describe(source), cfg, Path(download_dir))
    try:
        return kind_for(source).load(request, labels)
    except OSError as exc:  # a file system problem the readers did not expect
        where = f" {describe(exc.filename)}" if isinstance(exc.filename, str) else ""
        raise SourceError(
            f"{request.where}: cannot read or write{where} ({exc.strerror or exc})"
        ) from None
    except ValueError as exc:
        raise _unusable(request.where, exc) from None


@contextmanager
def open_stream(
    source: str,
    columns: Columns,
    settings: IngestConfig,
    download_dir: Path,
    chunk_rows: int,
    sql_setting: str = "ingest.sql_query",
) -> Iterator[ReviewStream]:
    """`source` opened for reading in chunks of at most `chunk_rows` rows, no labels needed.

    `settings` carries the connection settings (S3 endpoint, ODBC driver and password variable;
    its `sql_query` is the query run, named `sql_setting` in errors); the columns are checked
    before this yields, so a missing review column is an error before any work starts. Files and
    connections close on exit.
    """
    source = source.strip()
    if not source:
        raise SourceError(f"no input given: {STREAM_WHAT_TO_GIVE}")
    check(source, settings)
    request = Request(source, describe(source), settings, Path(download_dir), sql_setting)
    with ExitStack() as stack:
        try:
            stream = kind_for(source).stream(request, columns, chunk_rows, stack)
        except ValueError as exc:
            raise _unusable(request.where, exc) from None
        except OSError as exc:  # a file system problem the readers did not expect
            raise SourceError(f"{request.where}: cannot read ({one_line(exc)})") from None
        # Only the reads are the input's: an OSError of the caller's own work (the output, the
        # model) passes through the `yield` as what it is.
        stream.chunks = _read(stream.chunks, request.where)
        yield stream


def _read(chunks: Iterator[Chunk], where: str) -> Iterator[Chunk]:
    try:
        yield from chunks
    except OSError as exc:  # a file system problem the readers did not expect
        raise SourceError(f"{where}: cannot read ({one_line(exc)})") from None


def _unusable(where: str, exc: ValueError) -> SourceError:
    """A malformed URL part (port, IPv6 host) that no reader expected."""
    return SourceError(f"{where}: not a usable source ({describe(one_line(exc))}): give {SCHEMES}")
