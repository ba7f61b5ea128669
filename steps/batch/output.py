"""Where scores go, and how they get there without a half-written output ever looking complete.

The output's format is its ending: `.parquet`/`.pq` or `.csv`/`.csv.gz`. A local output is
written to a temp file beside it and renamed into place at the end (atomic on POSIX: readers see
the old output or the new one, never a part). An `s3://` output is written to a local temp file
and then uploaded with the S3 client the sources use (steps/data/sources/s3.py): S3 makes an
object visible only once its (multipart) upload completes, so a failed run leaves no object, and
an overwritten one is replaced whole. Spark's folder outputs are
committed by steps/batch/spark.py the same way, with the Hadoop filesystem API.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pyfunc.contract import LABEL_FIELD, OUTPUT_FIELDS, SCORE_FIELD
from steps.data.sources import kind_name, s3
from steps.data.sources.common import is_gzip, kind_of, local_path
from steps.stage import hints
from steps.stage.errors import StageError, one_line
from steps.stage.files import atomic_path, spreadsheet_safe
from steps.stage.secrets import shown

log = logging.getLogger(__name__)

ENDINGS = ".parquet, .pq, .csv or .csv.gz"
# Besides the id (or row number), every output has these columns.
COLUMNS = (*OUTPUT_FIELDS, "model_name", "model_version")
ROW_COLUMN = "row"  # the row number (from 1) when the input has no id column


@dataclass(frozen=True)
class Target:
    """An output location and its format."""

    uri: str  # as given
    kind: str  # "parquet" or "csv"
    gzip: bool
    scheme: str  # "" for a local path, "s3", or another scheme Spark's filesystems know

    @property
    def path(self) -> Path:
        return Path(self.uri).expanduser()

    @property
    def on_s3(self) -> bool:
        """Written with the sources' S3 client (else a local path, or a URI only Spark writes)."""
        return kind_name(self.uri) == "s3"


def target_of(text: str) -> Target:
    """The output named by `score.output`, or a StageError saying what to give."""
    uri = text.strip()
    if not uri:
        raise StageError(
            f"no output given: {hints.setting('output', 'scores.parquet')} (the format is the"
            f" ending: {ENDINGS};"
            " s3://bucket/key works too)"
        )
    kind = kind_of(uri.rstrip("/"))
    if kind not in ("parquet", "csv"):
        raise StageError(f"{uri}: unknown output format: end the name in {ENDINGS}")
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    return Target(uri=uri, kind=kind, gzip=is_gzip(uri.rstrip("/")), scheme=scheme)


def check_free(target: Target, overwrite: bool, s3_endpoint_url: str) -> None:
    """Refuse an output that exists (unless `overwrite`) or cannot be written, before any work."""
    if target.on_s3:
        if s3.exists(target.uri, s3_endpoint_url) and not overwrite:
            raise _exists(target)
        return
    if target.scheme:  # hdfs://, s3a://...: only Spark's filesystems can look (spark.py does)
        return
    path = target.path
    try:
        if path.exists() and not overwrite:
            raise _exists(target)
        parent = path.resolve().parent
        while not parent.exists():
            parent = parent.parent
    except (OSError, RuntimeError) as exc:  # a name too long, a loop of links (RuntimeError)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
        raise StageError(f"{target.uri}: cannot write the output ({why})") from None
    if not parent.is_dir():
        raise StageError(f"{target.uri}: {parent} is not a folder")


def check_not_input(target: Target, source: str) -> None:
    """Refuse an output that is the input, resolves to it (a link, `..`), lies inside an input
    folder or holds the input: overwrite=true replaces an older output, never the reviews being
    scored (Spark replaces a folder output whole)."""
    source = source.strip()
    if not source:  # no input: the read says so
        return
    kind = kind_name(source)
    if target.on_s3 and kind == "s3":
        out, given = target.uri.rstrip("/"), source.rstrip("/")
        clash = out == given or out.startswith(given + "/") or given.startswith(out + "/")
    elif not target.scheme and kind in ("local", "aclimdb"):
        clash = _overlap(target.path, local_path(source))
    else:
        return
    if clash:
        raise StageError(
            f"{target.uri}: the output is the input {shown(source)}, inside it or holding it:"
            " refused even with overwrite=true (it would replace the reviews): give an output"
            " outside the input"
        )


def _overlap(output: Path, given: Path) -> bool:
    try:
        out, source = output.resolve(), given.resolve()
        if out == source or out.is_relative_to(source) or source.is_relative_to(out):
            return True
        return output.samefile(given)  # another name for the same file: a hard link
    except (OSError, RuntimeError):  # missing, unreadable, a link loop: the read or write says so
        return False


def _exists(target: Target) -> StageError:
    return StageError(
        f"{target.uri}: the output exists: give another output, or"
        f" {hints.setting('overwrite', True)} to replace it (once the new one is complete)"
    )


@contextmanager
def committed(target: Target, s3_endpoint_url: str) -> Iterator[Path]:
    """A local temp file to write the output to; when the block ends without an error it becomes
    the target (a rename beside it, or an upload for s3://). On an error nothing is left."""
    if target.on_s3:
        with tempfile.TemporaryDirectory(prefix="imdb-score-") as tmp:
            local = Path(tmp) / target.uri.rsplit("/", 1)[-1]
            yield local
            s3.upload(local, target.uri, s3_endpoint_url)
        return
    if target.scheme:
        raise StageError(f"{target.uri}: engine=local writes local paths and s3:// only")
    with atomic_path(target.path) as tmp:
        yield tmp
    log.info("wrote %s", target.uri)


class TableWriter:
    """Appends tables to a Parquet or CSV[.gz] file: one row group (or CSV block) per call,
    so memory holds one chunk at a time. The schema is the first table's."""

    def __init__(self, path: Path, target: Target) -> None:
        self.path, self.target = path, target
        self._writer: Any = None
        self._sink: Any = None
        self.rows = 0
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self.target.kind == "csv":
            table = _spreadsheet_safe(table)
        if self._writer is None:
            self.schema = table.schema
            if self.target.kind == "parquet":
                self._writer = pq.ParquetWriter(str(self.path), table.schema)
            else:
                codec = "gzip" if self.target.gzip else None
                self._sink = pa.output_stream(str(self.path), compression=codec)
                self._writer = pacsv.CSVWriter(self._sink, table.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scores_table(
    key: str, keys: pa.Array, labels: Any, scores: Any, model_name: str, model_version: str
) -> pa.Table:
    """One chunk of output: the id (or row number) column, label, score, model name and version."""
    rows = len(keys)
    return pa.table(
        {
            key: keys,
            LABEL_FIELD: pa.array(labels, type=pa.string()),
            SCORE_FIELD: pa.array(scores, type=pa.float64()),
            "model_name": pa.array([model_name] * rows, type=pa.string()),
            "model_version": pa.array([model_version] * rows, type=pa.string()),
        }
    )


def _spreadsheet_safe(table: pa.Table) -> pa.Table:
    """The text columns with cells a spreadsheet would run as formulas neutralised, as the
    reports' CSVs are (steps/stage/files.py): an id is input, and a CSV output is opened in one."""
    for i, column in enumerate(table.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            safe = pa.array([spreadsheet_safe(v) for v in column.to_pylist()], type=column.type)
            table = table.set_column(i, table.field(i), safe)
    return table
