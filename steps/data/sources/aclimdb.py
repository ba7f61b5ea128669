"""The official dataset layout: `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`.

Read from an extracted folder or straight from the `.tar.gz` stream (nothing is extracted to
disk). `unsup/`, `*.feat`, `urls_*.txt` and anything else outside `{train,test}/{pos,neg}/*.txt`
is ignored. Files are decoded as strict UTF-8 and kept exactly as written. Rows come out in one
canonical order (split, then pos before neg, then review id) whichever form was read, so a folder
and its archive give the same content hash.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from steps.stage.errors import SourceError, one_line
from steps.data.sources.common import Loaded
from steps.data.sources.tables import LABEL_ALIASES

SPLITS = ("train", "test")
LABEL_DIRS = ("pos", "neg")  # in output order
ROOT_NAME = "aclImdb"
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+)\.txt$")

# (split, label dir, sort key, text)
_Row = tuple[str, str, tuple, str]


def find_root(folder: Path) -> Path | None:
    """The aclImdb root at or directly inside `folder`, or None if it has no such layout."""
    for candidate in (folder / ROOT_NAME, folder):
        if any((candidate / "train" / label).is_dir() for label in LABEL_DIRS):
            return candidate
    return None


def read_folder(root: Path, where: str) -> Loaded:
    """Reviews from an extracted aclImdb folder."""
    rows: list[_Row] = []
    for split in SPLITS:
        for label in LABEL_DIRS:
            folder = root / split / label
            if not folder.is_dir():
                continue
            for path in folder.glob("*.txt"):
                text = _decode(path.read_bytes(), f"{where}: {path.relative_to(root)}")
                rows.append((split, label, _review_order(path.stem), text))
    return _to_loaded(rows, where, {"format": "aclImdb folder", "path": str(root)})


def read_tar(stream: BinaryIO, where: str) -> Loaded:
    """Reviews from an aclImdb .tar.gz, read member by member from a forward-only stream."""
    rows: list[_Row] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            for member in archive:
                match = _MEMBER.search(member.name)
                if not (match and member.isfile()):
                    continue
                split, label, stem = match.groups()
                handle = archive.extractfile(member)
                text = _decode(handle.read(), f"{where}: member {member.name}")
                rows.append((split, label, _review_order(stem), text))
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        reason = one_line(exc)
        raise SourceError(
            f"{where}: not a readable .tar.gz archive ({reason}): the file is damaged or"
            " incomplete; fetch it again"
        ) from None
    return _to_loaded(rows, where, {"format": "aclImdb archive"})


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}, 0x{data[exc.start]:02x});"
            " the aclImdb reviews are UTF-8: replace the file with the original"
        ) from None


def _review_order(stem: str) -> tuple:
    """`123_8` sorts by review id 123; other names after the numbered ones, by name."""
    head = stem.split("_", 1)[0]
    return (0, int(head), stem) if head.isdigit() else (1, 0, stem)


def _to_loaded(rows: list[_Row], where: str, details: dict[str, str]) -> Loaded:
    rows.sort(key=lambda row: (SPLITS.index(row[0]), LABEL_DIRS.index(row[1]), row[2]))
    frames = {}
    for split in SPLITS:
        picked = [(text, LABEL_ALIASES[label]) for s, label, _, text in rows if s == split]
        if picked:
            frames[split] = pd.DataFrame(picked, columns=["review", "sentiment"], dtype=str)
    if "train" not in frames:
        raise SourceError(
            f"{where}: no reviews in {ROOT_NAME}/train/pos/*.txt or {ROOT_NAME}/train/neg/*.txt:"
            " give the aclImdb folder (or its parent) or the aclImdb_v1.tar.gz archive"
        )
    return Loaded(train=frames["train"], test=frames.get("test"), details=details)
