"""Local paths: one CSV/CSV.gz/Parquet file, or a folder of them (the aclImdb layout is
aclimdb.py's, asked first).

- load (ingest, monitor): one file (no test split), or a folder with `train.<ending>` and
  optionally `test.<ending>`, ending .csv, .csv.gz or .parquet;
- stream (score): one file, or every table file under a folder in path order: a Parquet dataset
  as Spark writes it (hidden and `_` files skipped), or ingest's own train/test files.

Inside a folder only regular files of that folder are read: a split file (`train.csv`...) that
is a symlink or resolves outside the folder is refused. A file named as the source itself may be
a symlink: that is the user's own choice of file.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from steps.data.sources import aclimdb
from steps.data.sources.common import (
    KNOWN_ENDINGS,
    TABLE_ENDINGS,
    TABLE_KINDS,
    is_data,
    kind_of,
    local_path,
)
from steps.data.sources.kind import Columns, Labels, Loaded, Request, ReviewStream, SourceKind
from steps.data.sources.streams import stream_files
from steps.data.sources.tables import read_table
from steps.stage.errors import SourceError
from steps.stage.secrets import shown

SPLIT_FILE_ENDINGS = (".csv", ".csv.gz", ".parquet")  # train<ending>, test<ending>
WHAT_TO_GIVE = (
    "give an aclImdb folder (or its parent), a folder with train.csv[.gz] (and test.csv[.gz]),"
    f" or one {KNOWN_ENDINGS} file"
)
# What score reads (any kind), said where its input is missing or unreadable.
STREAM_WHAT_TO_GIVE = (
    f"give a {TABLE_ENDINGS} file, a folder of them (a Parquet dataset), an aclImdb folder or"
    " .tar.gz, an https:// or s3:// URL of one, or an odbc:/mssql:// source"
)


class LocalPath(SourceKind):
    """A file or folder on this machine (the table asks it last: it claims every plain path)."""

    name = "local"

    def claims(self, source: str) -> bool:
        return "://" not in source

    def load(self, request: Request, labels: Labels) -> Loaded:
        path, where = _existing(request, WHAT_TO_GIVE)
        if path.is_dir():
            return _load_folder(path, where, labels)
        return read_file(path, where, labels)

    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        path, where = _existing(request, STREAM_WHAT_TO_GIVE)
        if path.is_dir():
            files = [LocalFile(p) for p in _folder_files(path, where)]
        elif kind_of(path.name) in TABLE_KINDS:
            files = [LocalFile(path)]
        else:
            raise SourceError(f"{where}: unknown file type {path.name!r}: {STREAM_WHAT_TO_GIVE}")
        return stream_files(files, where, columns, chunk_rows, stack, str(path))


@dataclass(frozen=True)
class LocalFile:
    """A table file on this machine, for streams.stream_files."""

    path: Path
    read_bytes: int = 1 << 20

    @property
    def name(self) -> str:
        return self.path.name

    def open(self, stack: ExitStack) -> str:
        return str(self.path)


def _existing(request: Request, what_to_give: str) -> tuple[Path, str]:
    """The source as a path that is a file or a folder, and how to name it."""
    path, where = local_path(request.source), request.where
    if path.is_dir() or path.is_file():
        return path, where
    if path.exists():
        raise SourceError(f"{where}: neither a file nor a folder: {what_to_give}")
    resolved = "" if path.is_absolute() else f" (looked for {shown(str(path.resolve()))})"
    raise SourceError(f"{where}: no such file or folder{resolved}: {what_to_give}")


def read_file(path: Path, where: str, labels: Labels) -> Loaded:
    """Reviews from one CSV/CSV.gz/Parquet file (no test split) or an aclImdb .tar.gz."""
    kind = kind_of(path.name)
    if kind is None:
        raise SourceError(f"{where}: unknown file type {path.name!r}: {WHAT_TO_GIVE}")
    if kind == "tar":
        return aclimdb.read_archive(path, where)
    frame = read_table(path, kind, path.name, where, labels)
    return Loaded(train=frame, test=None, details={"format": kind, "file": path.name})


def _load_folder(folder: Path, where: str, labels: Labels) -> Loaded:
    files = {split: _split_file(folder, split, where) for split in ("train", "test")}
    if files["train"] is None:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise SourceError(
            f"{where}: no train file or aclImdb layout here (found: {found}): {WHAT_TO_GIVE}"
        )
    frames = {
        split: read_table(path, kind_of(path.name), path.name, f"{where}/{path.name}", labels)
        for split, path in files.items()
        if path is not None
    }
    details = {"format": "split files", "files": ", ".join(p.name for p in files.values() if p)}
    return Loaded(train=frames["train"], test=frames.get("test"), details=details)


def _split_file(folder: Path, split: str, where: str) -> Path | None:
    candidates = [folder / f"{split}{e}" for e in SPLIT_FILE_ENDINGS]
    present = [p for p in candidates if p.is_file() or p.is_symlink()]
    if len(present) > 1:
        names = " and ".join(p.name for p in present)
        raise SourceError(f"{where}: both {names} are present: keep only one {split} file")
    if not present:
        return None
    path = present[0]
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise SourceError(
            f"{where}: {path.name} is a symlink or resolves outside the folder: refused (copy"
            " the file into the folder, or give the file itself as the source)"
        )
    return path


def _folder_files(folder: Path, where: str) -> list[Path]:
    """The table files under a folder that are data, in path order."""
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and kind_of(p.name) in TABLE_KINDS
        and is_data(p.relative_to(folder).as_posix())
    )
    if not found:
        seen = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise SourceError(f"{where}: no {TABLE_ENDINGS} files in this folder (found: {seen})")
    return found
