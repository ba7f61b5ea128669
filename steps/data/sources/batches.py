"""Reviews to score, read chunk by chunk from any source ingest reads; no labels needed.

Ingest's readers load a whole labelled table and refuse one without a sentiment column; scoring
needs neither. Here a table is streamed: a Parquet file row group by row group (pyarrow), a
CSV[.gz] in chunks of rows (pandas), a folder of such files (a Parquet dataset as Spark writes
it, or ingest's train/test files) file by file in name order, an S3 object or prefix through
pyarrow's S3 filesystem, an https download from its verified cache, an ODBC query in fetches.
Only the review column (and the id column, when the table has one) is kept; every other column
is ignored, whatever it holds. The aclImdb forms (folder, .tar.gz) are read by ingest's own
reader, whole (they are 50,000 reviews at most), and have no ids.

Values are handed over as read: a null stays None, and bytes that are not UTF-8 come through as
lone surrogates (CSV: `surrogateescape`; Parquet binary columns: decoded the same way), so the
caller can tell each kind of unreadable review apart and report it instead of guessing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.data.sources import aclimdb, describe, load
from steps.data.sources.common import is_gzip, kind_of
from steps.data.sources.tables import read_csv
from steps.stage.config import IngestConfig
from steps.stage.errors import SourceError, one_line

log = logging.getLogger(__name__)

TABLE_KINDS = ("parquet", "csv")
TABLE_ENDINGS = ".parquet, .pq, .csv or .csv.gz"
WHAT_TO_GIVE = (
    f"give a {TABLE_ENDINGS} file, a folder of them (a Parquet dataset), an aclImdb folder or"
    " .tar.gz, an https:// or s3:// URL of one, or an odbc:/mssql:// source"
)


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of the input."""

    reviews: list[Any]  # str (non-UTF-8 bytes as lone surrogates) or None, one per row
    ids: pa.Array | None  # the id column's values, as typed in the source; None without one


@dataclass
class ReviewStream:
    """An opened input: what it is, and its rows chunk by chunk (read as they are consumed)."""

    where: str  # the source as it may be logged (passwords removed)
    id_name: str | None  # the id column as the source spells it; None: rows are numbered
    total: int | None  # rows, when the source says so before it is read (Parquet)
    chunks: Iterator[Chunk]
    details: dict[str, str] = field(default_factory=dict)
    # Where Spark can read the same table itself (a file or folder path, an s3:// URI) and its
    # format; None for what only these readers read (ODBC, the aclImdb forms, mixed formats).
    location: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Columns:
    """Which input columns to read (names match case-insensitively)."""

    review: str
    id: str  # "" = none: rows are numbered


@contextmanager
def open_reviews(
    source: str,
    columns: Columns,
    ingest: IngestConfig,
    download_dir: Path,
    chunk_rows: int,
    sql_setting: str = "ingest.sql_query",
) -> Iterator[ReviewStream]:
    """Open `source` for reading in chunks of at most `chunk_rows` rows.

    `ingest` carries the connection settings (S3 endpoint, ODBC driver and password variable;
    its `sql_query` is the query run); the columns are checked before this returns, so a missing
    review column is an error before any work starts. Files and connections close on exit.
    """
    source = source.strip()
    if not source:
        raise SourceError(f"no input given: {WHAT_TO_GIVE}")
    where = describe(source)
    with ExitStack() as stack:
        try:
            yield _open(source, where, columns, ingest, download_dir, chunk_rows, sql_setting, stack)
        except OSError as exc:  # a file system problem the readers did not expect
            raise SourceError(f"{where}: cannot read ({one_line(exc)})") from None


def _open(
    source: str,
    where: str,
    columns: Columns,
    ingest: IngestConfig,
    download_dir: Path,
    chunk_rows: int,
    sql_setting: str,
    stack: ExitStack,
) -> ReviewStream:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("https", "http"):
        from steps.data.sources.https import downloaded

        if kind_of(urlsplit(source).path) not in TABLE_KINDS:
            return _whole(source, where, ingest, download_dir, chunk_rows)
        # ingest.sha256 pins ingest's own download; this is another file.
        with downloaded(source, "", download_dir) as (path, facts):
            stream = _files([_LocalFile(path)], where, columns, chunk_rows, stack, str(path))
        stream.details.update(sha256=facts["sha256"], cache=facts["cache"])
        return stream
    if scheme == "s3":
        return _s3(source, where, columns, ingest, download_dir, chunk_rows, stack)
    if scheme == "mssql" or source.startswith("odbc:"):
        return _sql(source, where, columns, ingest, chunk_rows, sql_setting, stack)
    if scheme:
        raise SourceError(f"{where}: unsupported scheme {scheme!r}: {WHAT_TO_GIVE}")
    path = Path(source).expanduser()
    if path.is_dir():
        if aclimdb.find_root(path) is not None:
            return _whole(source, where, ingest, download_dir, chunk_rows)
        files = [_LocalFile(p) for p in _folder_files(path, where)]
        return _files(files, where, columns, chunk_rows, stack, str(path))
    if path.is_file():
        kind = kind_of(path.name)
        if kind == "tar":
            return _whole(source, where, ingest, download_dir, chunk_rows)
        if kind is None:
            raise SourceError(f"{where}: unknown file type {path.name!r}: {WHAT_TO_GIVE}")
        return _files([_LocalFile(path)], where, columns, chunk_rows, stack, str(path))
    resolved = "" if path.is_absolute() else f" (looked for {path.resolve()})"
    raise SourceError(f"{where}: no such file or folder{resolved}: {WHAT_TO_GIVE}")


# --- tables: Parquet and CSV files, one after another -------------------------------------------


@dataclass(frozen=True)
class _LocalFile:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def open(self, stack: ExitStack) -> BinaryIO | str:
        return str(self.path)


@dataclass(frozen=True)
class _RemoteFile:
    """An object on a pyarrow filesystem (S3)."""

    filesystem: Any
    path: str  # bucket/key

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def open(self, stack: ExitStack) -> Any:
        if kind_of(self.name) == "parquet":
            return stack.enter_context(self.filesystem.open_input_file(self.path))
        # Decompressed by pandas from the name's ending, as a local file would be.
        return stack.enter_context(self.filesystem.open_input_stream(self.path, compression=None))


def _folder_files(folder: Path, where: str) -> list[Path]:
    """The table files under a folder, in name order; hidden and `_` files (Spark's _SUCCESS,
    .crc checksums, _temporary) are not data."""
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and kind_of(p.name) in TABLE_KINDS
        and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )
    if not found:
        seen = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise SourceError(f"{where}: no {TABLE_ENDINGS} files in this folder (found: {seen})")
    return found


def _files(
    files: list[Any],
    where: str,
    columns: Columns,
    chunk_rows: int,
    stack: ExitStack,
    location: str,
) -> ReviewStream:
    """The files' rows in order; the first file's columns decide whether there are ids.
    `location` is the path or URI they were found at."""
    opened = [_table(f, _file_where(where, f, len(files)), columns, chunk_rows, stack) for f in files]
    id_name = opened[0].id_name
    for table in opened[1:]:
        if (table.id_name is None) != (id_name is None):
            has = "has" if table.id_name is not None else "has no"
            raise SourceError(
                f"{table.where}: {has} id column {columns.id!r}, unlike {opened[0].where}:"
                " give every file the same columns"
            )
    totals = [t.total for t in opened]
    kinds = sorted({kind_of(f.name) for f in files})
    return ReviewStream(
        where=where,
        id_name=id_name,
        total=None if None in totals else sum(totals),
        chunks=(chunk for table in opened for chunk in table.chunks),
        details={"format": "+".join(kinds), "files": str(len(files))},
        location=location if len(kinds) == 1 else None,
        kind=kinds[0] if len(kinds) == 1 else None,
    )


def _file_where(where: str, file: Any, count: int) -> str:
    return where if count == 1 else f"{where.rstrip('/')}/{file.name}"


def _table(
    file: Any, where: str, columns: Columns, chunk_rows: int, stack: ExitStack
) -> ReviewStream:
    if kind_of(file.name) == "parquet":
        return _parquet(file, where, columns, chunk_rows, stack)
    return _csv(file, where, columns, chunk_rows, stack)


def _parquet(
    file: Any, where: str, columns: Columns, chunk_rows: int, stack: ExitStack
) -> ReviewStream:
    try:
        # No pre-buffering and a buffered stream: pages are read as the batches need them, so
        # memory stays at about one batch whatever the row groups' size (pyarrow reads a whole
        # row group, or more, ahead otherwise).
        parquet = pq.ParquetFile(file.open(stack), pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{where}: not a readable Parquet file ({one_line(exc)})") from None
    stack.callback(parquet.close)
    names = parquet.schema_arrow.names
    review = pick_column(names, columns.review, where, required=True)
    ident = pick_column(names, columns.id, where, required=False)

    def chunks() -> Iterator[Chunk]:
        wanted = [review] + ([ident] if ident else [])
        try:
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
                ids = batch.column(ident) if ident else None
                yield Chunk(_texts(batch.column(review), where, columns.review), ids)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{where}: reading the Parquet file failed ({one_line(exc)})") from None

    return ReviewStream(where, ident, parquet.metadata.num_rows, chunks())


def _texts(column: pa.Array, where: str, name: str) -> list[Any]:
    """The review column as Python values: str or None; binary as UTF-8 with lone surrogates
    where the bytes are not UTF-8."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return column.to_pylist()
        except UnicodeDecodeError:  # a writer that did not check its "UTF-8" strings
            column = column.view(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary())
            kind = column.type
    if pa.types.is_string_view(kind):
        return column.to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return [None if v is None else v.decode("utf-8", "surrogateescape") for v in column.to_pylist()]
    if pa.types.is_null(kind):
        return [None] * len(column)
    raise SourceError(f"{where}: column {name!r} must hold text, found {kind}")


def _csv(file: Any, where: str, columns: Columns, chunk_rows: int, stack: ExitStack) -> ReviewStream:
    reader = read_csv(
        file.open(stack),
        gzipped=is_gzip(file.name),
        where=where,
        chunksize=chunk_rows,
        encoding_errors="surrogateescape",
    )
    stack.callback(reader.close)
    frames = _csv_frames(reader, where)
    first = next(frames)  # the header (and the first rows): the columns are checked now
    names = list(first.columns)
    review = pick_column(names, columns.review, where, required=True)
    ident = pick_column(names, columns.id, where, required=False)

    def chunks() -> Iterator[Chunk]:
        for frame in _prepend(first, frames):
            if len(frame):
                ids = _text_array(frame[ident].tolist()) if ident else None
                yield Chunk(frame[review].tolist(), ids)

    return ReviewStream(where, ident, None, chunks())


def _csv_frames(reader: Any, where: str) -> Iterator[pd.DataFrame]:
    iterator = iter(reader)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except (pd.errors.ParserError, ValueError, EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"{where}: not a readable CSV ({one_line(exc)})") from None
        yield frame


def _text_array(values: list[Any]) -> pa.Array:
    """Ids read as text; bytes that were not UTF-8 become U+FFFD (an id is kept, not judged)."""
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:
        return pa.array(
            [v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for v in values],
            type=pa.string(),
        )


def pick_column(names: list[str], wanted: str, where: str, *, required: bool) -> str | None:
    """The column called `wanted` (exactly, else in any case and spacing), or None / an error."""
    if not wanted:
        return None
    if wanted in names:
        return wanted
    matches = [n for n in names if str(n).strip().lower() == wanted.strip().lower()]
    if len(matches) == 1:
        return matches[0]
    if not required:
        return None
    found = ", ".join(map(str, names)) or "none"
    which = f"several columns named {wanted!r}" if matches else f"no column {wanted!r}"
    raise SourceError(
        f"{where}: {which} (found: {found}): name the review column with -P review_column=..."
    )


# --- S3: an object or every table object under a prefix -----------------------------------------


def _s3(
    uri: str,
    where: str,
    columns: Columns,
    ingest: IngestConfig,
    download_dir: Path,
    chunk_rows: int,
    stack: ExitStack,
) -> ReviewStream:
    from pyarrow import fs

    path = s3_path(uri)
    if kind_of(path) == "tar":  # an aclImdb archive: ingest's boto3 reader
        return _whole(uri, where, ingest, download_dir, chunk_rows)
    filesystem = s3_filesystem(ingest.s3_endpoint_url)
    info = s3_call(uri, lambda: filesystem.get_file_info(path))
    if info.type == fs.FileType.File:
        if kind_of(path) not in TABLE_KINDS:
            raise SourceError(f"{uri}: unknown object type: {WHAT_TO_GIVE}")
        return _files([_RemoteFile(filesystem, path)], where, columns, chunk_rows, stack, uri)
    if info.type == fs.FileType.Directory:
        selector = fs.FileSelector(path.rstrip("/"), recursive=True)
        infos = s3_call(uri, lambda: filesystem.get_file_info(selector))
        prefix = path.rstrip("/") + "/"
        keys = sorted(
            i.path
            for i in infos
            if i.type == fs.FileType.File
            and kind_of(i.path) in TABLE_KINDS
            and not any(p.startswith((".", "_")) for p in i.path[len(prefix) :].split("/"))
        )
        if not keys:
            raise SourceError(f"{uri}: no {TABLE_ENDINGS} objects under this prefix")
        files = [_RemoteFile(filesystem, k) for k in keys]
        return _files(files, where, columns, chunk_rows, stack, uri)
    bucket = path.split("/", 1)[0]
    if s3_call(uri, lambda: filesystem.get_file_info(bucket)).type == fs.FileType.NotFound:
        raise SourceError(f"{uri}: bucket {bucket!r} does not exist: check the name")
    raise SourceError(f"{uri}: no object or prefix {path[len(bucket) + 1 :]!r}: check the key")


def s3_path(uri: str) -> str:
    """`bucket/key` of an s3:// URI (pyarrow's S3 paths)."""
    parts = urlsplit(uri)
    if not parts.netloc:
        raise SourceError(f"{uri}: expected s3://bucket/key")
    return f"{parts.netloc}/{parts.path.lstrip('/')}".rstrip("/") if parts.path else parts.netloc


def s3_filesystem(endpoint_url: str) -> Any:
    """pyarrow's S3 filesystem with boto3's settings: credentials from the usual AWS chain, the
    endpoint from `endpoint_url` (ingest.s3_endpoint_url) or AWS_ENDPOINT_URL[_S3]."""
    from pyarrow import fs

    endpoint = (
        endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or ""
    )
    options: dict[str, Any] = {"connect_timeout": 10, "request_timeout": 60}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
        # An S3-compatible store has no regions to look buckets up in.
        options["region"] = os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION", "us-east-1"
        )
    return fs.S3FileSystem(**options)


def s3_call(uri: str, call: Callable[[], Any]) -> Any:
    """Run one pyarrow S3 call; its errors as one SourceError line saying what to check."""
    try:
        return call()
    except OSError as exc:
        text = one_line(exc)
        if any(word in text for word in ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId")):
            hint = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and permissions"
            raise SourceError(f"{uri}: access denied ({text}): {hint}") from None
        if "NETWORK_CONNECTION" in text or "Could not connect" in text:
            raise SourceError(
                f"{uri}: cannot reach the S3 endpoint ({text}): check ingest.s3_endpoint_url"
                " (or AWS_ENDPOINT_URL) and the network"
            ) from None
        raise SourceError(f"{uri}: S3 request failed ({text})") from None


# --- ODBC: the query's rows, fetch by fetch -----------------------------------------------------


def _sql(
    source: str,
    where: str,
    columns: Columns,
    ingest: IngestConfig,
    chunk_rows: int,
    setting: str,
    stack: ExitStack,
) -> ReviewStream:
    from steps.data.sources.odbc import query_chunks

    frames = query_chunks(source, ingest, chunk_rows=chunk_rows, setting=setting)
    stack.callback(frames.close)
    first = next(frames)  # connects and runs the query now: a bad one fails before any work
    label = f"{where} (query {ingest.sql_query!r})"
    review = pick_column(list(first.columns), columns.review, label, required=True)
    ident = pick_column(list(first.columns), columns.id, label, required=False)

    def chunks() -> Iterator[Chunk]:
        for frame in _prepend(first, frames):
            ids = pa.array(frame[ident].tolist()) if ident else None
            yield Chunk(frame[review].tolist(), ids)

    return ReviewStream(where, ident, None, chunks(), {"format": "sql", "query": ingest.sql_query})


def _prepend(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


# --- the aclImdb forms: ingest's reader, whole ---------------------------------------------------


def _whole(
    source: str, where: str, ingest: IngestConfig, download_dir: Path, chunk_rows: int
) -> ReviewStream:
    loaded = load(dataclasses.replace(ingest, source=source, sha256=""), download_dir)
    splits = [loaded.train] + ([loaded.test] if loaded.test is not None else [])
    reviews = pd.concat(splits, ignore_index=True)["review"].tolist()
    chunks = (
        Chunk(reviews[start : start + chunk_rows], None)
        for start in range(0, len(reviews), chunk_rows)
    )
    return ReviewStream(where, None, len(reviews), chunks, dict(loaded.details))
