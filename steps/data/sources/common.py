"""What the source kinds share: the file kinds they tell apart by name, and a progress bar over
a byte stream (tqdm's own wrapper)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

# File name endings the readers understand; longest first so ".csv.gz" wins over ".gz".
FILE_KINDS = {
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".csv.gz": "csv",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
KNOWN_ENDINGS = ".csv, .csv.gz, .parquet or .tar.gz"
TABLE_KINDS = ("parquet", "csv")  # what is streamed chunk by chunk (a tar is read whole)
TABLE_ENDINGS = ".parquet, .pq, .csv or .csv.gz"


def kind_of(name: str) -> str | None:
    """'csv', 'parquet' or 'tar' from a file or object name, or None when unknown."""
    lowered = name.lower()
    for ending, kind in FILE_KINDS.items():
        if lowered.endswith(ending):
            return kind
    return None


def is_gzip(name: str) -> bool:
    return name.lower().endswith(".gz")


def local_path(source: str) -> Path:
    """A local source as a path, `~` expanded (kept as written for a user there is none of, so
    it is reported as a missing path rather than a traceback)."""
    try:
        return Path(source).expanduser()
    except RuntimeError:
        return Path(source)


def is_data(relative: str) -> bool:
    """Whether a file under a dataset folder or prefix is data: hidden and `_` files and
    folders (Spark's _SUCCESS, .crc checksums, _temporary) are not."""
    return not any(part.startswith((".", "_")) for part in relative.split("/"))


@contextmanager
def progress(stream: Any, total: int | None, desc: str, method: str = "read") -> Iterator[Any]:
    """`stream` with a bytes progress bar advanced by each read (or write); silent when stderr
    is not a terminal."""
    with tqdm.wrapattr(stream, method, total=total, desc=desc, disable=None) as wrapped:
        yield wrapped
