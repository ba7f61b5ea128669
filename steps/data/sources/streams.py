"""Reviews read chunk by chunk, for the kinds' `stream` reads: no labels needed, ids kept.

A table is streamed: a Parquet file row group by row group (pyarrow), a CSV[.gz] in chunks of
rows (pandas), several files one after another in the order given. Only the review column (and
the id column, when the table has one) is kept; every other column is ignored, whatever it
holds. Rows of a query arrive as frames (`stream_frames`); what a kind can only read whole (the
aclImdb forms: 50,000 reviews at most) is cut into chunks after reading (`chunked`), without ids.

Values are handed over as read: a null stays None, and bytes that are not UTF-8 come through as
lone surrogates (CSV: `surrogateescape`; Parquet binary columns: decoded the same way), so the
caller can tell each kind of unreadable review apart and report it instead of guessing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, BinaryIO, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.data.sources.common import is_gzip, kind_of
from steps.data.sources.kind import Chunk, Columns, Loaded, ReviewStream
from steps.data.sources.tables import read_csv
from steps.stage import hints
from steps.stage.errors import SourceError, one_line


class TableFile(Protocol):
    """A CSV or Parquet file a kind found: its name (the ending says its format), how to open
    it (a local path, or a binary file: seekable for Parquet), and how many bytes a Parquet read
    asks for at a time (more where each read is a request)."""

    @property
    def name(self) -> str: ...

    @property
    def read_bytes(self) -> int: ...

    def open(self, stack: ExitStack) -> str | BinaryIO: ...


def stream_files(
    files: list[TableFile],
    where: str,
    columns: Columns,
    chunk_rows: int,
    stack: ExitStack,
    location: str,
) -> ReviewStream:
    """The files' rows in order; the first file's columns decide whether there are ids.
    `location` is the path or URI they were found at (for Spark, when they share a format)."""
    opened = [
        _table(f, _file_where(where, f, len(files)), columns, chunk_rows, stack) for f in files
    ]
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
    chunks = (chunk for table in opened for chunk in table.chunks)
    if len(kinds) > 1 and id_name is not None:
        # CSV has no types: its ids are text, so mixed with Parquet every id is read as text.
        chunks = (_ids_as_text(chunk, where) for chunk in chunks)
    return ReviewStream(
        where=where,
        id_name=id_name,
        total=None if None in totals else sum(totals),
        chunks=chunks,
        details={"format": "+".join(kinds), "files": str(len(files))},
        location=location if len(kinds) == 1 else None,
        kind=kinds[0] if len(kinds) == 1 else None,
    )


def _ids_as_text(chunk: Chunk, where: str) -> Chunk:
    if chunk.ids is None or pa.types.is_string(chunk.ids.type):
        return chunk
    try:
        return Chunk(chunk.reviews, chunk.ids.cast(pa.string()))
    except pa.ArrowException as exc:
        raise SourceError(
            f"{where}: ids of type {chunk.ids.type} cannot be read as text ({one_line(exc)})"
        ) from None


def _file_where(where: str, file: TableFile, count: int) -> str:
    return where if count == 1 else f"{where.rstrip('/')}/{file.name}"


def _table(
    file: TableFile, where: str, columns: Columns, chunk_rows: int, stack: ExitStack
) -> ReviewStream:
    if kind_of(file.name) == "parquet":
        return _parquet(file, where, columns, chunk_rows, stack)
    return _csv(file, where, columns, chunk_rows, stack)


def _parquet(
    file: TableFile, where: str, columns: Columns, chunk_rows: int, stack: ExitStack
) -> ReviewStream:
    try:
        # No pre-buffering and a buffered stream: pages are read as the batches need them, so
        # memory stays at about one batch whatever the row groups' size (pyarrow reads a whole
        # row group, or more, ahead otherwise).
        parquet = pq.ParquetFile(file.open(stack), pre_buffer=False, buffer_size=file.read_bytes)
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
            raise SourceError(
                f"{where}: reading the Parquet file failed ({one_line(exc)})"
            ) from None

    return ReviewStream(where, ident, parquet.metadata.num_rows, chunks())


def _texts(column: pa.Array, where: str, name: str) -> list[Any]:
    """The review column as Python values: str or None; binary as UTF-8 with lone surrogates
    where the bytes are not UTF-8."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return column.to_pylist()
        except UnicodeDecodeError:  # a writer that did not check its "UTF-8" strings
            column = column.view(
                pa.large_binary() if pa.types.is_large_string(kind) else pa.binary()
            )
            kind = column.type
    if pa.types.is_string_view(kind):
        return column.to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return [
            None if v is None else v.decode("utf-8", "surrogateescape") for v in column.to_pylist()
        ]
    if pa.types.is_null(kind):
        return [None] * len(column)
    raise SourceError(f"{where}: column {name!r} must hold text, found {kind}")


def _csv(
    file: TableFile, where: str, columns: Columns, chunk_rows: int, stack: ExitStack
) -> ReviewStream:
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
        f"{where}: {which} (found: {found}): name the review column with"
        f" {hints.setting('review_column', '...')}"
    )


def stream_frames(
    frames: Iterator[pd.DataFrame], where: str, label: str, columns: Columns, stack: ExitStack
) -> ReviewStream:
    """Rows that arrive as frames (a query's fetches); the first is read now, so the columns
    are checked before this returns. `label` names the table in column errors."""
    stack.callback(frames.close)
    first = next(frames)
    review = pick_column(list(first.columns), columns.review, label, required=True)
    ident = pick_column(list(first.columns), columns.id, label, required=False)

    def chunks() -> Iterator[Chunk]:
        for frame in _prepend(first, frames):
            ids = pa.array(frame[ident].tolist()) if ident else None
            yield Chunk(frame[review].tolist(), ids)

    return ReviewStream(where, ident, None, chunks())


def _prepend(first: pd.DataFrame, rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield first
    yield from rest


def chunked(loaded: Loaded, where: str, chunk_rows: int) -> ReviewStream:
    """A source read whole (the aclImdb forms), its labelled splits cut into chunks, no ids."""
    splits = [loaded.train] + ([loaded.test] if loaded.test is not None else [])
    reviews = pd.concat(splits, ignore_index=True)["review"].tolist()
    chunks = (
        Chunk(reviews[start : start + chunk_rows], None)
        for start in range(0, len(reviews), chunk_rows)
    )
    return ReviewStream(where, None, len(reviews), chunks, dict(loaded.details))
