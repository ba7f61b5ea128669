"""Tables of reviews (CSV, CSV.gz, Parquet, SQL results) read whole -> the canonical frame.

The canonical frame has exactly two columns: `review` (str) and `sentiment` ("positive" or
"negative"). Labels written as pos/neg, 1/0 or positive/negative (any case, stray spaces) are
normalised; anything else is reported with its values, counts and rows, never guessed. With
`Labels.OPTIONAL` (monitor's batches) a table with no sentiment column at all comes back with
the review column only; a sentiment column that is there is checked all the same.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.data.dataset import COLUMNS, LABELS
from steps.data.sources.common import is_gzip
from steps.data.sources.kind import Labels
from steps.stage.errors import SourceError, one_line

# Spellings accepted for each label: "positive", "pos", "1" (the numeric class in LABELS' order).
LABEL_ALIASES = {
    spelling: label
    for index, label in enumerate(LABELS)
    for spelling in (label, label[:3], str(index))
}
ACCEPTED_LABELS = "positive/negative, pos/neg or 1/0"
_SHOWN_VALUES = 5  # distinct bad values named in an error line


def tidy(frame: pd.DataFrame, where: str, labels: Labels) -> pd.DataFrame:
    """Pick and check the review/sentiment columns of a raw table, normalising the labels.

    `where` names the table in error messages (file, object, query). Column names match
    case-insensitively; other columns are ignored. Rows are numbered from 1 (after the header).
    """
    by_name = {str(name).strip().lower(): name for name in frame.columns}
    labelled = "sentiment" in by_name or labels is Labels.REQUIRED
    needed = COLUMNS if labelled else ("review",)
    missing = [column for column in needed if column not in by_name]
    if missing:
        found = ", ".join(str(name) for name in frame.columns) or "none"
        raise SourceError(
            f"{where}: missing column {' and '.join(missing)} (found: {found});"
            f" the table needs columns {','.join(needed)}"
        )
    if frame.empty:
        raise SourceError(f"{where}: no rows")
    reviews = _check_reviews(frame[by_name["review"]], where)
    if not labelled:
        return pd.DataFrame({"review": reviews}).reset_index(drop=True)
    sentiments = normalise_labels(frame[by_name["sentiment"]], where)
    return pd.DataFrame({"review": reviews, "sentiment": sentiments}).reset_index(drop=True)


def normalise_labels(raw: pd.Series, where: str) -> pd.Series:
    """Map accepted label spellings to positive/negative; raise naming every other value."""
    keys = raw.astype(str).str.strip().str.lower().where(raw.notna())
    labels = keys.map(LABEL_ALIASES)
    unknown = labels.isna()
    if unknown.any():
        raise SourceError(
            f"{where}: {int(unknown.sum()):,} of {len(raw):,} rows have a sentiment other than"
            f" {ACCEPTED_LABELS}: {_describe_values(raw, unknown)}; fix or remove those rows"
        )
    return labels.astype(str)


def _check_reviews(reviews: pd.Series, where: str) -> pd.Series:
    missing = reviews.isna()
    if missing.any():
        rows = _row_numbers(missing)
        raise SourceError(
            f"{where}: {int(missing.sum()):,} rows have no review text (null), first at {rows};"
            " fill or remove them"
        )
    if not pd.api.types.is_string_dtype(reviews):
        not_text = ~reviews.map(lambda value: isinstance(value, str)).astype(bool)
        if not_text.any():
            example = reviews[not_text].iloc[0]
            raise SourceError(
                f"{where}: column review must hold text, found {type(example).__name__}"
                f" {example!r} at {_row_numbers(not_text)}"
            )
    return reviews.astype(str)


def _describe_values(raw: pd.Series, mask: pd.Series) -> str:
    """ "'neutral' x2 (rows 4, 9), <empty> x1 (row 7)" for the first few distinct values."""
    shown = raw[mask].map(lambda value: "<empty>" if pd.isna(value) else repr(value))
    parts = []
    for value, count in shown.value_counts(sort=True).head(_SHOWN_VALUES).items():
        parts.append(f"{value} x{count} ({_row_numbers(mask & (shown == value))})")
    others = shown.nunique() - _SHOWN_VALUES
    if others > 0:
        parts.append(f"and {others} more distinct values")
    return ", ".join(parts)


def _row_numbers(mask: pd.Series, limit: int = 3) -> str:
    positions = [int(i) + 1 for i in mask.to_numpy().nonzero()[0][:limit]]
    more = ", ..." if int(mask.sum()) > limit else ""
    word = "row" if len(positions) == 1 else "rows"
    return f"{word} {', '.join(map(str, positions))}{more}"


def read_table(
    source: Path | BinaryIO, kind: str, name: str, where: str, labels: Labels
) -> pd.DataFrame:
    """Read a CSV/CSV.gz or Parquet file (path or binary stream) into the canonical frame.

    `name` is the file or object name (its ending says whether it is gzipped).
    """
    if kind == "csv":
        raw = read_csv(source, gzipped=is_gzip(name), where=where)
    elif kind == "parquet":
        raw = read_parquet(source, where=where)
    else:
        raise ValueError(f"not a table kind: {kind}")
    return tidy(raw, where, labels)


def read_csv(
    source: Path | BinaryIO | str,
    *,
    gzipped: bool,
    where: str,
    chunksize: int | None = None,
    encoding_errors: str = "strict",
) -> pd.DataFrame | Any:
    """Every column as text, exactly as written: strict UTF-8, no NA guessing ("" stays "").

    With `chunksize`, a reader of DataFrames of that many rows (pandas' TextFileReader, header
    already read). With encoding_errors="surrogateescape", bytes that are not UTF-8 are kept as
    lone surrogates (in plain Python strings: pandas' Arrow-backed strings cannot hold them).
    """
    try:
        return pd.read_csv(
            source,
            dtype=str if encoding_errors == "strict" else object,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
            encoding_errors=encoding_errors,
            compression="gzip" if gzipped else None,
            chunksize=chunksize,
        )
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise SourceError(
            f"{where}: not UTF-8 text ({exc.reason}, byte 0x{byte}): re-save the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{where}: the file is empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{where}: not a readable CSV ({one_line(exc)})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise SourceError(f"{where}: not a readable gzip file ({one_line(exc)})") from None
    except OSError as exc:
        raise SourceError(f"{where}: cannot read ({one_line(exc)})") from None


def read_parquet(source: Path | BinaryIO, *, where: str) -> pd.DataFrame:
    """A Parquet file or buffer as a DataFrame (strings stay strings)."""
    try:
        if not isinstance(source, Path):
            source = io.BytesIO(source.read())  # Parquet needs to seek; the stream may not
        return pq.read_table(source).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{where}: not a readable Parquet file ({one_line(exc)})") from None
