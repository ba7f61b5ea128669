"""Local sources: an aclImdb folder, a folder of split files, or one CSV/Parquet/.tar.gz file.

Inside a folder only regular files of that folder are read: aclImdb reviews that are symlinks
or resolve elsewhere are skipped and counted (aclimdb.py); a split file (`train.csv`...) that is
a symlink or resolves outside the folder is refused. A file named as the source itself may be a
symlink: that is the user's own choice of file.
"""

from __future__ import annotations

from pathlib import Path

from steps.stage.errors import SourceError
from steps.stage.secrets import shown
from steps.data.sources import aclimdb
from steps.data.sources.common import KNOWN_ENDINGS, Loaded, ProgressReader, kind_of
from steps.data.sources.tables import read_table

SPLIT_FILE_ENDINGS = (".csv", ".csv.gz", ".parquet")  # train<ending>, test<ending>
WHAT_TO_GIVE = (
    "give an aclImdb folder (or its parent), a folder with train.csv[.gz] (and test.csv[.gz]),"
    f" or one {KNOWN_ENDINGS} file"
)


def load_path(path: Path, where: str | None = None) -> Loaded:
    """Reviews from a local folder or file; `where` names it in errors (default: the path)."""
    where = where or str(path)
    if path.is_dir():
        return _load_folder(path, where)
    if path.is_file():
        return load_file(path, where)
    if path.exists():
        raise SourceError(f"{where}: neither a file nor a folder: {WHAT_TO_GIVE}")
    resolved = "" if path.is_absolute() else f" (looked for {shown(str(path.resolve()))})"
    raise SourceError(f"{where}: no such file or folder{resolved}: {WHAT_TO_GIVE}")


def load_file(path: Path, where: str) -> Loaded:
    """Reviews from one CSV/CSV.gz/Parquet file (no test split) or an aclImdb .tar.gz."""
    kind = kind_of(path.name)
    if kind is None:
        raise SourceError(f"{where}: unknown file type {path.name!r}: {WHAT_TO_GIVE}")
    if kind == "tar":
        try:
            with open(path, "rb") as raw, ProgressReader(raw, path.stat().st_size, path.name) as f:
                loaded = aclimdb.read_tar(f, where)
        except OSError as exc:
            raise SourceError(f"{where}: cannot read ({exc.strerror or exc})") from None
        return loaded.with_details(file=path.name)
    frame = read_table(path, kind, path.name, where)
    return Loaded(train=frame, test=None, details={"format": kind, "file": path.name})


def _load_folder(folder: Path, where: str) -> Loaded:
    root = aclimdb.find_root(folder)
    if root is not None:
        return aclimdb.read_folder(root, where)
    files = {split: _split_file(folder, split, where) for split in ("train", "test")}
    if files["train"] is None:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise SourceError(
            f"{where}: no train file or aclImdb layout here (found: {found}): {WHAT_TO_GIVE}"
        )
    frames = {
        split: read_table(path, kind_of(path.name), path.name, f"{where}/{path.name}")
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

