"""The ingested dataset on disk: two Parquet splits, their manifest, and the validation marker.

Layout (written by `ingest`, checked by `validate`, read by `train` and `evaluate`):

    data/ingested/train.parquet      review: str, sentiment: "positive" | "negative"[, movie: str]
    data/ingested/test.parquet
    data/ingested/unlabeled.parquet  review: str[, movie: str]; only from sources that have
                                     unlabeled reviews (the aclImdb layout's train/unsup)
    data/ingested/manifest.json      see `Manifest`
    data/validated.json              see `marker_record`: only written when validation passes

`movie` (a stable movie key, e.g. IMDb's tt0123456) is optional everywhere: only sources that
know each review's movie have it, and train groups its validation split by it.

Integrity: the manifest and the marker both record the sha256 of each Parquet file's bytes
(`hashlib.file_digest`; bench/bench_data.py measures it), so "validated" means these exact
files. `require_validated` checks the files against the marker; `read_validated_split` hashes
the very bytes it parses, so nothing changed after the check can be read unnoticed. A file that
is not readable Parquet is one line naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow.data
import pandas as pd
import pyarrow as pa
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException

from pyfunc.contract import LABELS, TEXT_COLUMN
from steps.stage import chain
from steps.stage.errors import StageError, one_line
from steps.stage.files import read_json, write_json
from steps.stage.paths import (
    INGESTED_DIR,
    MANIFEST_FILE_NAME,
    TEST_FILE_NAME,
    TRAIN_FILE_NAME,
    UNLABELED_FILE_NAME,
    VALIDATED_MARKER,
)

log = logging.getLogger(__name__)

COLUMNS = (TEXT_COLUMN, "sentiment")  # the review column is the model's input column
MOVIE_COLUMN = "movie"  # optional: the movie a review is about, where the source says
# Duplicates and overlaps are judged on the review as the model sees it (see model_text).
MODEL_TEXT_COLUMN = "review as the model sees it"
UNLABELED = "unlabeled"  # the split of reviews without a label (optional)
NEGATIVE, POSITIVE = LABELS  # the model's labels; index = the numeric class (0/1)
SPLITS = {"train": TRAIN_FILE_NAME, "test": TEST_FILE_NAME}
FILES = {**SPLITS, UNLABELED: UNLABELED_FILE_NAME}  # every file ingest may write, by split


@dataclass(frozen=True)
class Manifest:
    """What was ingested, from where, a hash of the content, and of each file's bytes."""

    source: str  # the source as given, with any credential hidden
    content_sha256: str  # `content_hash` of train then test (then unlabeled, if any)
    rows: dict[str, int]  # split -> row count
    positives: dict[str, int]  # split -> positive rows
    test_split: str  # "source" when the source had one, else "carved (test_size=..., seed=...)"
    details: dict[str, str] = field(default_factory=dict)  # source-specific facts (sha256, etag)
    unlabeled_rows: int = 0  # rows of unlabeled.parquet (0: the source had no unlabeled reviews)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of its bytes

    def to_dict(self) -> dict:
        return asdict(self)


def content_hash(frames: list[pd.DataFrame], unlabeled: pd.DataFrame | None = None) -> str:
    """sha256 over the reviews and labels in order (and movies, and the unlabeled reviews, where
    there are any); stable across Parquet writer versions. Data without movies or unlabeled
    reviews hashes as it always did."""
    digest = hashlib.sha256()
    for frame in frames:
        _digest_columns(digest, frame, COLUMNS)
    if unlabeled is not None:
        digest.update(f"{UNLABELED}\x01".encode())
        _digest_columns(digest, unlabeled, ("review",))
    return digest.hexdigest()


def _digest_columns(digest, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    movies = (MOVIE_COLUMN,) if MOVIE_COLUMN in frame.columns else ()
    for column in (*columns, *movies):
        if column == MOVIE_COLUMN:
            digest.update(b"\x02")  # a movie column changes the hash even if it were empty
        for value in frame[column].tolist():
            digest.update(value.encode("utf-8"))
            digest.update(b"\x00")
    digest.update(b"\x01")


def model_text(reviews: pd.Series) -> pd.Series:
    """Each review in the served cleaner's normal form (pyfunc/cleaning.py: case, whitespace,
    accents, HTML, punctuation), None where it is not text. Two reviews equal here are one
    review to the model: a test review's case or spacing variant in train or in the unlabeled
    split is a leak, so duplicates and overlaps are found on this. Negation marking is left
    out, which can only join more reviews (fails closed)."""
    from pyfunc.cleaning import clean  # imports sklearn: only when there is text to clean

    return pd.Series(
        [clean(text) if isinstance(text, str) else None for text in reviews],
        index=reviews.index,
        dtype=object,
    )


def read_manifest(ingested_dir: Path = INGESTED_DIR) -> Manifest:
    """Read the manifest of an ingested dataset, or say which stage to run first."""
    path = Path(ingested_dir) / MANIFEST_FILE_NAME
    raw = read_json(path, "manifest", "run the ingest stage first")
    return Manifest(**raw)


@dataclass(frozen=True)
class Split:
    """One ingested split as read: its rows and the sha256 of the file bytes they came from."""

    frame: pd.DataFrame
    sha256: str


def load_split(split: str, ingested_dir: Path = INGESTED_DIR) -> Split:
    """Read one split's file once (train, test or unlabeled): hash its bytes and parse them (one
    line naming the file if it is not readable Parquet)."""
    path = Path(ingested_dir) / FILES[split]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StageError(f"{path} not found: run the ingest stage first") from None
    except OSError as exc:
        raise StageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StageError(
            f"{path}: not a readable Parquet file ({one_line(exc, 200)}): run the ingest stage"
            " again (it rewrites files that no longer match its manifest)"
        ) from None
    return Split(frame, hashlib.sha256(data).hexdigest())


_AMBIGUOUS_SOURCE = "The specified dataset source can be interpreted in multiple ways"


def as_mlflow_dataset(
    frame: pd.DataFrame, manifest: Manifest, split: str, ingested_dir: Path = INGESTED_DIR
) -> PandasDataset:
    """The reviews as an MLflow dataset, to log as a run input (the UI's Dataset column): named
    after the split, digested by MLflow, with the source they were ingested from (or the ingested
    file, for sources MLflow has no resolver for, such as ODBC)."""
    name = f"imdb-reviews-{split}"
    targets = "sentiment" if "sentiment" in frame.columns else None  # the unlabeled have none
    try:
        source = _dataset_source(manifest.source)
    except MlflowException:
        # The validation split is carved from the train file.
        files = {**SPLITS, "unlabeled": UNLABELED_FILE_NAME, "validation": TRAIN_FILE_NAME}
        source = _dataset_source(str((Path(ingested_dir) / files[split]).resolve()))
    return mlflow.data.from_pandas(frame, source=source, name=name, targets=targets)


def _dataset_source(raw: str) -> DatasetSource:
    """MLflow's own resolution of a source, without the warning it gives for every local path
    (a local file is both a LocalArtifact and a FileSystem source: it takes the last registered,
    as it says; three times per run, it says nothing the reader can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_AMBIGUOUS_SOURCE)
        return resolve_dataset_source(raw)


def read_split(split: str, ingested_dir: Path = INGESTED_DIR) -> pd.DataFrame:
    """One ingested split as a DataFrame with columns review, sentiment (unchecked: stages that
    use the data read it with `read_validated_split`)."""
    return load_split(split, ingested_dir).frame


def read_unlabeled(ingested_dir: Path = INGESTED_DIR) -> pd.DataFrame | None:
    """The ingested unlabeled reviews (review[, movie]), or None when the source had none."""
    path = Path(ingested_dir) / UNLABELED_FILE_NAME
    return load_split(UNLABELED, ingested_dir).frame if path.is_file() else None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digests(ingested_dir: Path = INGESTED_DIR) -> dict[str, str]:
    """File name -> sha256 of each data file there is (a missing file is left out)."""
    folder = Path(ingested_dir)
    return {
        name: file_sha256(folder / name) for name in FILES.values() if (folder / name).is_file()
    }


def changed_files(manifest: Manifest, ingested_dir: Path = INGESTED_DIR) -> list[str]:
    """The data files that are missing, extra, or whose bytes are not those `manifest`
    recorded."""
    current = file_digests(ingested_dir)
    return [name for name in FILES.values() if current.get(name) != manifest.files.get(name)]


def marker_record(
    manifest: Manifest,
    files: Mapping[str, str],
    suite_sha256: str,
    bounds: Mapping[str, Any] | None = None,
) -> dict:
    """What the marker says: the content and the exact files that passed, the suite and the
    bounds they passed."""
    return {
        "content_sha256": manifest.content_sha256,
        "files": dict(files),
        "suite_sha256": suite_sha256,
        "bounds": dict(bounds or {}),
    }


def write_marker(record: Mapping[str, Any], marker: Path = VALIDATED_MARKER) -> None:
    """Record that these exact files passed (a `marker_record`)."""
    write_json(marker, dict(record))


def read_marker(marker: Path = VALIDATED_MARKER) -> dict | None:
    """The marker's record, or None when there is no readable marker."""
    try:
        recorded = json.loads(Path(marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def is_validated(ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER) -> bool:
    """True when the marker matches the manifest and the Parquet files byte for byte."""
    try:
        require_validated(ingested_dir, marker)
    except StageError:
        return False
    return True


def require_validated(ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER) -> dict:
    """The marker's record, if the ingested files are exactly those that passed validation;
    else a StageError saying what differs (later stages call this before reading)."""
    ingested_dir, marker = Path(ingested_dir), Path(marker)
    record = read_marker(marker)
    if record is None:
        raise StageError(
            f"{ingested_dir} has not passed validation ({marker} missing): run the validate"
            " stage first"
        )
    manifest = read_manifest(ingested_dir)
    if record.get("content_sha256") != manifest.content_sha256:
        raise StageError(
            f"{marker} was written for other content than {ingested_dir}/{MANIFEST_FILE_NAME}"
            " describes: run the validate stage again"
        )
    recorded = _recorded_files(record)
    current = file_digests(ingested_dir)
    for name in FILES.values():
        if name in SPLITS.values() and name not in current:
            raise StageError(f"{ingested_dir / name} not found: run the ingest stage first")
        if recorded.get(name) != current.get(name):
            now = (current.get(name) or "no file")[:12]
            was = (recorded.get(name) or "no file")[:12]
            raise StageError(
                f"{ingested_dir / name} has changed since it was validated (sha256 {now},"
                f" {marker} says {was}): run the ingest and validate stages again"
            )
    return record


def read_validated_split(
    split: str, ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER
) -> pd.DataFrame:
    """A split (train, test or unlabeled) whose file is byte for byte the one the marker says
    passed validation."""
    loaded = load_split(split, ingested_dir)
    expected = _recorded_files(read_marker(marker) or {}).get(FILES[split])
    path = Path(ingested_dir) / FILES[split]
    if not expected:
        raise StageError(
            f"{path} has not passed validation ({marker} missing or without its digest): run"
            " the validate stage first"
        )
    if loaded.sha256 != expected:
        raise StageError(
            f"{path} has changed since it was validated (sha256 {loaded.sha256[:12]}, validated"
            f" {expected[:12]}): run the ingest and validate stages again"
        )
    return loaded.frame


def read_validated_unlabeled(
    ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER
) -> pd.DataFrame | None:
    """The validated unlabeled reviews, or None when validation passed without any (and there
    still are none)."""
    recorded = _recorded_files(read_marker(marker) or {})
    if (
        UNLABELED_FILE_NAME not in recorded
        and not (Path(ingested_dir) / UNLABELED_FILE_NAME).exists()
    ):
        return None
    return read_validated_split(UNLABELED, ingested_dir, marker)


def _recorded_files(record: Mapping[str, Any]) -> dict[str, str]:
    files = record.get("files")
    return files if isinstance(files, dict) else {}


def ensure_validated(params_file: str) -> None:
    """Run ingest and validate (as child runs) unless the files there are validated ones."""
    try:
        require_validated(INGESTED_DIR, VALIDATED_MARKER)
        return
    except StageError as exc:
        log.info("%s: running ingest and validate first", exc)
    for stage in chain.DATA_STAGES:
        chain.run_entry_point(stage, {"params": params_file})
