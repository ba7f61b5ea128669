"""The ingested dataset on disk: two Parquet splits, their manifest, and the validation marker.

Layout (written by `ingest`, checked by `validate`, read by `train` and `evaluate`):

    data/ingested/train.parquet      review: str, sentiment: "positive" | "negative"[, movie: str]
    data/ingested/test.parquet
    data/ingested/unlabeled.parquet  review: str[, movie: str]; only from sources that have
                                     unlabeled reviews (the aclImdb layout's train/unsup)
    data/ingested/manifest.json      see `Manifest`
    data/validated.json              see `write_marker`: only written when validation passes

`movie` (a stable movie key, e.g. IMDb's tt0123456) is optional everywhere: only sources that
know each review's movie have it, and train groups its validation split by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steps.stage.errors import StageError
from steps.stage.files import read_json, write_json
from steps.stage.paths import (
    INGESTED_DIR,
    MANIFEST_FILE_NAME,
    TEST_FILE_NAME,
    TRAIN_FILE_NAME,
    UNLABELED_FILE_NAME,
    VALIDATED_MARKER,
)

COLUMNS = ("review", "sentiment")
MOVIE_COLUMN = "movie"  # optional: the movie a review is about, where the source says
UNLABELED = "unlabeled"  # the split of reviews without a label (optional)
LABELS = ("negative", "positive")  # index = numeric class (0/1) used by the model
NEGATIVE, POSITIVE = LABELS
SPLITS = {"train": TRAIN_FILE_NAME, "test": TEST_FILE_NAME}


@dataclass(frozen=True)
class Manifest:
    """What was ingested, from where, and a hash of the content (not of the file bytes)."""

    source: str  # the source as given, with any password removed
    content_sha256: str  # `content_hash` of train then test (then unlabeled, if any)
    rows: dict[str, int]  # split -> row count
    positives: dict[str, int]  # split -> positive rows
    test_split: str  # "source" when the source had one, else "carved (test_size=..., seed=...)"
    details: dict[str, str] = field(default_factory=dict)  # source-specific facts (sha256, etag)
    unlabeled_rows: int = 0  # rows of unlabeled.parquet (0: the source had no unlabeled reviews)

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


def read_manifest(ingested_dir: Path = INGESTED_DIR) -> Manifest:
    """Read the manifest of an ingested dataset, or say which stage to run first."""
    path = Path(ingested_dir) / MANIFEST_FILE_NAME
    raw = read_json(path, "manifest", "run the ingest stage first")
    return Manifest(**raw)


def read_split(split: str, ingested_dir: Path = INGESTED_DIR) -> pd.DataFrame:
    """One ingested split as a DataFrame with columns review, sentiment."""
    path = Path(ingested_dir) / SPLITS[split]
    if not path.is_file():
        raise StageError(f"{path} not found: run the ingest stage first")
    return pd.read_parquet(path)


def read_unlabeled(ingested_dir: Path = INGESTED_DIR) -> pd.DataFrame | None:
    """The ingested unlabeled reviews (review[, movie]), or None when the source had none."""
    path = Path(ingested_dir) / UNLABELED_FILE_NAME
    return pd.read_parquet(path) if path.is_file() else None


def marker_record(
    manifest: Manifest, suite_sha256: str, bounds: Mapping[str, Any] | None = None
) -> dict:
    """What the marker says: the content, the suite and the bounds it passed."""
    return {
        "content_sha256": manifest.content_sha256,
        "suite_sha256": suite_sha256,
        "bounds": dict(bounds or {}),
    }


def write_marker(
    manifest: Manifest,
    suite_sha256: str,
    marker: Path = VALIDATED_MARKER,
    bounds: Mapping[str, Any] | None = None,
) -> None:
    """Record that this exact content passed this exact suite with these bounds."""
    write_json(marker, marker_record(manifest, suite_sha256, bounds))


def read_marker(marker: Path = VALIDATED_MARKER) -> dict | None:
    """The marker's record, or None when there is no readable marker."""
    try:
        recorded = json.loads(Path(marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def is_validated(ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER) -> bool:
    """True when the marker matches the current ingested content."""
    try:
        recorded = json.loads(Path(marker).read_text(encoding="utf-8"))
        manifest = read_manifest(ingested_dir)
    except (OSError, ValueError, StageError):
        return False
    return recorded.get("content_sha256") == manifest.content_sha256


def require_validated(ingested_dir: Path = INGESTED_DIR, marker: Path = VALIDATED_MARKER) -> None:
    """Raise unless the ingested data passed validation (later stages call this)."""
    if not is_validated(ingested_dir, marker):
        raise StageError(
            f"{ingested_dir} has not passed validation ({marker} missing or stale):"
            " run the validate stage first"
        )
