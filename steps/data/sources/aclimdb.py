"""The official dataset layout: `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`.

As a source kind: a local folder holding the layout (or its parent) or a local `.tar.gz`; an
https or s3 archive is fetched by its own kind and read here (`read_tar`). Read from an extracted
folder or straight from the `.tar.gz` stream (nothing is extracted to disk); score's stream is
the whole read cut into chunks, without ids (50,000 labelled reviews at most). Besides the
labelled reviews it keeps what the dataset gives for learning and grouping:
- `train/unsup/<id>_0.txt`: the 50,000 unlabeled reviews -> `Loaded.unlabeled`;
- `<split>/urls_{pos,neg,unsup}.txt`: line i is the IMDb page of the movie of review id i ->
  a `movie` column (the title id `tt0123456`, or the whole URL when it has none). A split gets the
  column only when each of its folders has its URL file; reviews of one movie share n-grams, so
  validation splits are grouped by it (steps/train.py).
`*.feat`, `imdb.vocab` and anything else is ignored. Files are decoded as strict UTF-8 and kept
exactly as written. Rows come out in one canonical order (split, then pos before neg, then review
id) whichever form was read, so a folder and its archive give the same content hash. In an archive
the URL files may come before or after the reviews, so ids are mapped to movies after reading.

Only regular files inside the dataset are read: in a folder, a review or URL file that is a
symlink, that resolves outside the folder (`train/pos/1_9.txt -> /etc/passwd`, a linked `pos/`
folder) or that is a hard link with a name outside it (a link count above its names here) is
skipped; in an archive, symlink and hardlink members and names that climb out (`../`,
`/abs`) are skipped. Skipped entries are counted in the log and the manifest (`details.skipped`).
"""

from __future__ import annotations

import gzip
import logging
import re
import tarfile
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from steps.data.dataset import MOVIE_COLUMN
from steps.data.sources.common import kind_of, local_path, progress
from steps.data.sources.kind import Columns, Labels, Loaded, Request, ReviewStream, SourceKind
from steps.data.sources.streams import chunked
from steps.data.sources.tables import LABEL_ALIASES
from steps.stage.errors import SourceError, one_line

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
LABEL_DIRS = ("pos", "neg")  # in output order
UNLABELED_DIR = "unsup"  # only under train/, as in the official archive
ROOT_NAME = "aclImdb"
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg|unsup)/([^/]+)\.txt$")
_URLS = re.compile(r"(?:^|/)(train|test)/urls_(pos|neg|unsup)\.txt$")
_TITLE = re.compile(r"tt\d+")

# (split, folder, sort key, text)
_Row = tuple[str, str, tuple, str]
# (split, folder) -> the URL file's lines
_Urls = dict[tuple[str, str], list[str]]


class AclImdb(SourceKind):
    """An aclImdb folder (or its parent) or archive on this machine."""

    name = "aclimdb"

    def claims(self, source: str) -> bool:
        if "://" in source:
            return False
        path = local_path(source)
        try:
            if path.is_dir():
                return find_root(path) is not None
            return path.is_file() and kind_of(path.name) == "tar"
        except OSError:  # a name too long, a link loop: not this kind's (the reader says why)
            return False

    def load(self, request: Request, labels: Labels) -> Loaded:
        """Labelled whatever `labels` says: the layout's folders are the labels."""
        path = local_path(request.source)
        if path.is_dir():
            return read_folder(find_root(path), request.where)
        return read_archive(path, request.where)

    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        return chunked(self.load(request, Labels.REQUIRED), request.where, chunk_rows)


def find_root(folder: Path) -> Path | None:
    """The aclImdb root at or directly inside `folder`, or None if it has no such layout."""
    for candidate in (folder / ROOT_NAME, folder):
        if any((candidate / "train" / label).is_dir() for label in LABEL_DIRS):
            return candidate
    return None


def read_folder(root: Path, where: str) -> Loaded:
    """Reviews (and unlabeled reviews, movie URLs) from an extracted aclImdb folder: regular
    files inside it only."""
    rows: list[_Row] = []
    urls: _Urls = {}
    skipped: list[str] = []
    inside = root.resolve()
    found: list[tuple[str, str, Path]] = []  # (split, folder, path): reviews, then the URL file
    for split in SPLITS:
        for folder_name in (*LABEL_DIRS, UNLABELED_DIR):
            if not _wanted(split, folder_name):
                continue
            folder = root / split / folder_name
            found += [
                (split, folder_name, p) for p in (folder.glob("*.txt") if folder.is_dir() else ())
            ]
            url_file = root / split / f"urls_{folder_name}.txt"
            if url_file.is_file() or url_file.is_symlink():
                found.append((split, f"urls_{folder_name}", url_file))
    links = _links_here([path for _, _, path in found])
    for split, folder_name, path in found:
        shown = str(path.relative_to(root))
        if not _readable_inside(path, inside, shown, where, links):
            skipped.append(shown)
            continue
        text = _decode(path.read_bytes(), f"{where}: {shown}")
        if folder_name.startswith("urls_"):
            urls[split, folder_name.removeprefix("urls_")] = _url_lines(text)
        else:
            rows.append((split, folder_name, _review_order(path.stem), text))
    details = {"format": "aclImdb folder", "path": str(root)}
    return _to_loaded(rows, urls, where, _note_skipped(details, skipped, where, "links or outside"))


def _links_here(paths: list[Path]) -> dict[tuple[int, int], int]:
    """How many of `paths` are each file (device, inode): a hard link's other names among them."""
    counts: dict[tuple[int, int], int] = {}
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        key = (info.st_dev, info.st_ino)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _readable_inside(
    path: Path, inside: Path, shown: str, where: str, links: dict[tuple[int, int], int]
) -> bool:
    """False (to skip) for a symlink, a path resolving outside the dataset, or a hard link with
    a name outside it (its link count is above the names it has here: the file is shared with
    something else, which could be anything); raises for what is not a regular file (a FIFO
    would block the read forever, a device reads whatever it is)."""
    if path.is_symlink() or not path.resolve().is_relative_to(inside):
        return False
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise SourceError(f"{where}: {shown} is not a regular file: refused")
    if not path.is_file():  # a folder named *.txt: reading it says so
        return True
    info = path.stat()
    return info.st_nlink <= links.get((info.st_dev, info.st_ino), 0)


def read_archive(path: Path, where: str) -> Loaded:
    """Reviews from an aclImdb .tar.gz file, with a progress bar."""
    try:
        with open(path, "rb") as raw, progress(raw, path.stat().st_size, path.name) as stream:
            loaded = read_tar(stream, where)
    except OSError as exc:
        raise SourceError(f"{where}: cannot read ({exc.strerror or exc})") from None
    return loaded.with_details(file=path.name)


def read_tar(stream: BinaryIO, where: str) -> Loaded:
    """Reviews from an aclImdb .tar.gz, read member by member from a forward-only stream."""
    rows: list[_Row] = []
    urls: _Urls = {}
    skipped: list[str] = []
    not_text: SourceError | None = None  # raised once the archive is known to be whole
    try:
        # gzip checks its trailer (length, CRC) only at the end: the stream is read to its end
        # below, so an archive cut anywhere, even between two tar headers, is refused.
        with (
            gzip.GzipFile(fileobj=stream, mode="rb") as unzipped,
            tarfile.open(fileobj=unzipped, mode="r|") as archive,
        ):
            for member in archive:
                wanted = _URLS.search(member.name) or _MEMBER.search(member.name)
                if wanted and (member.issym() or member.islnk() or _climbs_out(member.name)):
                    skipped.append(member.name)
                    continue
                if not member.isfile():
                    continue
                found = _URLS.search(member.name)
                match = found or _MEMBER.search(member.name)
                if not (match and (found or _wanted(*match.groups()[:2]))):
                    continue
                try:
                    text = _decode(
                        archive.extractfile(member).read(), f"{where}: member {member.name}"
                    )
                except SourceError as exc:
                    not_text = not_text or exc
                    continue
                if found:
                    urls[found.groups()] = _url_lines(text)
                else:
                    split, folder, stem = match.groups()
                    rows.append((split, folder, _review_order(stem), text))
            while unzipped.read(1 << 20):
                pass
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        reason = one_line(exc)
        raise SourceError(
            f"{where}: not a readable .tar.gz archive ({reason}): the file is damaged or"
            " incomplete; fetch it again"
        ) from None
    if not_text:  # bytes that are not UTF-8 in a whole archive: not a flipped bit in transit
        raise not_text
    details = {"format": "aclImdb archive"}
    return _to_loaded(rows, urls, where, _note_skipped(details, skipped, where, "links or outside"))


def _climbs_out(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


def _note_skipped(
    details: dict[str, str], skipped: list[str], where: str, what: str
) -> dict[str, str]:
    """Log and record the entries that were not read because they are not regular files of
    the dataset."""
    if not skipped:
        return details
    shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    log.warning(
        "%s: skipped %d review file(s) that are %s the dataset: %s",
        where, len(skipped), what, shown,
    )  # fmt: skip
    return {**details, "skipped": f"{len(skipped)} ({what} the dataset): {shown}"}


def movie_key(url: str) -> str:
    """A stable movie key from an IMDb URL: its title id (tt0123456), else the URL itself."""
    found = _TITLE.search(url)
    return found.group(0) if found else url.strip()


def _wanted(split: str, folder: str) -> bool:
    return folder != UNLABELED_DIR or split == "train"


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}, 0x{data[exc.start]:02x});"
            " the aclImdb reviews are UTF-8: replace the file with the original"
        ) from None


def _url_lines(text: str) -> list[str]:
    """The lines of a URL file as the official files are written: split on "\n" only, so a form
    feed, U+2028 or "\r" inside a line cannot shift the movie of every later review."""
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def _review_order(stem: str) -> tuple:
    """`123_8` sorts by review id 123; other names after the numbered ones, by name."""
    head = stem.split("_", 1)[0]
    return (0, int(head), stem) if head.isdigit() else (1, 0, stem)


def _to_loaded(rows: list[_Row], urls: _Urls, where: str, details: dict[str, str]) -> Loaded:
    folders = (*LABEL_DIRS, UNLABELED_DIR)
    rows.sort(key=lambda row: (SPLITS.index(row[0]), folders.index(row[1]), row[2]))
    frames = {}
    for split in SPLITS:
        picked = [row for row in rows if row[0] == split and row[1] in LABEL_DIRS]
        if not picked:
            continue
        frame = pd.DataFrame(
            [(text, LABEL_ALIASES[folder]) for _, folder, _, text in picked],
            columns=["review", "sentiment"],
            dtype=str,
        )
        frames[split] = _with_movies(frame, picked, urls, where)
    if "train" not in frames:
        raise SourceError(
            f"{where}: no reviews in {ROOT_NAME}/train/pos/*.txt or {ROOT_NAME}/train/neg/*.txt:"
            " give the aclImdb folder (or its parent) or the aclImdb_v1.tar.gz archive"
        )
    unlabeled_rows = [row for row in rows if row[1] == UNLABELED_DIR]
    unlabeled = None
    if unlabeled_rows:
        unlabeled = pd.DataFrame({"review": [row[3] for row in unlabeled_rows]}, dtype=str)
        unlabeled = _with_movies(unlabeled, unlabeled_rows, urls, where)
    return Loaded(
        train=frames["train"], test=frames.get("test"), details=details, unlabeled=unlabeled
    )


def _with_movies(frame: pd.DataFrame, rows: list[_Row], urls: _Urls, where: str) -> pd.DataFrame:
    """`frame` plus a movie column, when every folder its rows came from has a URL file."""
    folders = {(split, folder) for split, folder, _, _ in rows}
    if not folders <= urls.keys():
        return frame
    for split, folder in sorted(folders):
        count = sum(1 for row in rows if row[:2] == (split, folder))
        if len(urls[split, folder]) != count:
            raise SourceError(
                f"{where}: {split}/urls_{folder}.txt has {len(urls[split, folder]):,} lines for"
                f" {count:,} reviews in {split}/{folder}/ (line i is the movie of review id i, so"
                " the counts must be equal): the dataset is damaged or altered; fetch it again"
            )
    movies = []
    for split, folder, (unnumbered, review_id, stem), _ in rows:
        lines = urls[split, folder]
        if unnumbered or review_id >= len(lines):
            raise SourceError(
                f"{where}: {split}/{folder}/{stem}.txt has no line in {split}/urls_{folder}.txt"
                f" ({len(lines):,} lines; line i is the movie of review id i): the archive is"
                " incomplete; fetch it again"
            )
        movies.append(movie_key(lines[review_id]))
    return frame.assign(**{MOVIE_COLUMN: pd.Series(movies, dtype=str, index=frame.index)})
