"""What a source kind is, and what its two reads return.

A kind (one module each: local.py, aclimdb.py, https.py, s3.py, odbc.py) says which source
strings are its own (`claims`) and offers both reads every stage needs:
- `load`: the whole dataset, labelled per `Labels` (ingest requires labels, monitor takes them
  where the table has them) -> `Loaded`;
- `stream`: the reviews chunk by chunk, no labels, ids kept (score, both engines) -> `ReviewStream`.
Both are abstract, so a kind that lacks either cannot be instantiated, hence not registered in
the table of steps/data/sources/__init__.py.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa

from steps.stage.config import IngestConfig

# Where a password goes instead, for a source no kind says more about.
ENVIRONMENT_REMEDY = "give the credentials through the environment (e.g. AWS_* for s3://)"


class Labels(enum.Enum):
    """Whether a table read whole must have a sentiment column."""

    REQUIRED = "required"  # ingest: a table without labels is an error
    OPTIONAL = "optional"  # monitor: a table without a sentiment column is read as reviews only


@dataclass(frozen=True)
class Request:
    """One read of one source: the source, how it may be shown, and the settings that reach it."""

    source: str  # as given (stripped)
    where: str  # as it may be logged: credentials hidden, control characters escaped
    settings: IngestConfig  # S3 endpoint, ODBC driver, password variable, query, sha256
    download_dir: Path  # where https downloads are kept
    sql_setting: str = "ingest.sql_query"  # the query's params.yaml key, named in errors


@dataclass(frozen=True)
class Loaded:
    """Reviews read from a source: canonical frames (review, sentiment[, movie]) per split it
    provides, and the unlabeled reviews (review[, movie]) of a source that has them (aclImdb)."""

    train: pd.DataFrame
    test: pd.DataFrame | None  # None when the source has no test split
    details: dict[str, str] = field(default_factory=dict)  # facts for the manifest
    unlabeled: pd.DataFrame | None = None  # None when the source has no unlabeled reviews

    def with_details(self, **extra: str) -> Loaded:
        """The same reviews with more facts for the manifest."""
        return replace(self, details={**self.details, **extra})


@dataclass(frozen=True)
class Columns:
    """Which input columns a stream reads (names match case-insensitively)."""

    review: str
    id: str  # "" = none: rows are numbered


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


class SourceKind(ABC):
    """One kind of source. Subclasses implement every abstract method, or cannot be registered."""

    name: ClassVar[str]  # in logs and `kind_name`
    # Lower-case prefixes of the source strings this kind reads ("s3://"); () for local paths.
    prefixes: ClassVar[tuple[str, ...]] = ()

    def claims(self, source: str) -> bool:
        """Whether `source` is this kind's (the table asks each kind in turn)."""
        return source.lower().startswith(self.prefixes) if self.prefixes else False

    @abstractmethod
    def load(self, request: Request, labels: Labels) -> Loaded:
        """Every review of the source, at once, in canonical frames."""

    @abstractmethod
    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        """The review (and id) column in chunks of at most `chunk_rows` rows; files and
        connections it opens close with `stack`. Columns are checked before this returns."""

    def password_remedy(self, settings: IngestConfig) -> str:
        """Where a password found in the source string should go instead."""
        return ENVIRONMENT_REMEDY
