"""What every source reader shares: the result type, file kinds, and a progress-reporting stream."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import BinaryIO

import pandas as pd
from tqdm import tqdm

# File name endings each reader understands; longest first so ".csv.gz" wins over ".gz".
FILE_KINDS = {
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".csv.gz": "csv",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
KNOWN_ENDINGS = ".csv, .csv.gz, .parquet or .tar.gz"


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


def kind_of(name: str) -> str | None:
    """'csv', 'parquet' or 'tar' from a file or object name, or None when unknown."""
    lowered = name.lower()
    for ending, kind in FILE_KINDS.items():
        if lowered.endswith(ending):
            return kind
    return None


def is_gzip(name: str) -> bool:
    return name.lower().endswith(".gz")


class ProgressReader:
    """A read-only binary stream that advances a tqdm bar (bytes) as it is read.

    Wraps a file or an HTTP/S3 body so tarfile, gzip and pandas can read it as they go.
    """

    def __init__(self, raw: BinaryIO, total: int | None, desc: str) -> None:
        self._raw = raw
        self._bar = tqdm(
            total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None
        )

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._bar.update(len(data))
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
