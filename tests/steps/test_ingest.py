"""ingest.run(): splits, output layout, the unchanged-content shortcut, nothing half-written."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pytest
from support import (
    REVIEWS_PER_MOVIE,
    SAME_TO_THE_MODEL,
    free_port,
    make_reviews,
    make_unlabeled,
    movie_of,
    write_aclimdb,
)

from steps import ingest as stage
from steps.data.dataset import content_hash, read_manifest, read_split, read_unlabeled
from steps.stage.config import IngestConfig, load_params
from steps.stage.errors import ConfigError, SourceError
from steps.stage.paths import PROJECT_ROOT

DEFAULTS = load_params(PROJECT_ROOT / "params.yaml").ingest


def _cfg(source, **changes) -> IngestConfig:
    return dataclasses.replace(DEFAULTS, source=str(source), sha256="", **changes)


@dataclasses.dataclass
class Dirs:
    out: Path
    downloads: Path

    def run(self, cfg: IngestConfig) -> stage.Outcome:
        return stage.run(cfg, out_dir=self.out, download_dir=self.downloads)

    def files(self) -> list[Path]:
        """Every file under data/ (outputs, downloads, stray temp folders)."""
        root = self.out.parent
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def dirs(tmp_path) -> Dirs:
    return Dirs(tmp_path / "data" / "ingested", tmp_path / "data" / "downloads")


@pytest.fixture
def reviews() -> pd.DataFrame:
    return make_reviews(200, seed=41, positive_share=0.6)


def _rows(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(frame.itertuples(index=False, name=None))


def test_source_without_test_split_gets_a_stratified_seeded_one(tmp_path, dirs, reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    outcome = dirs.run(_cfg(tmp_path / "reviews.csv", test_size=0.25, seed=7))
    train, test = read_split("train", dirs.out), read_split("test", dirs.out)
    assert (len(train), len(test)) == (150, 50)
    # stratified: 60% positive on both sides
    assert (train["sentiment"] == "positive").sum() == 90
    assert (test["sentiment"] == "positive").sum() == 30
    assert _rows(pd.concat([train, test])) == _rows(reviews)  # nothing lost or repeated
    assert outcome.written
    manifest = read_manifest(dirs.out)
    assert manifest == outcome.manifest
    assert manifest.rows == {"train": 150, "test": 50}
    assert manifest.positives == {"train": 90, "test": 30}
    assert manifest.test_split == "carved (stratified, test_size=0.25, seed=7)"
    assert manifest.content_sha256 == content_hash([train, test])
    assert manifest.source == str(tmp_path / "reviews.csv")
    assert list(train.columns) == ["review", "sentiment"]
    assert pd.api.types.is_string_dtype(train["review"])


def test_carved_split_depends_on_the_seed_only():
    frame = make_reviews(100, seed=42)
    first = stage.carve_test_split(frame, 0.2, seed=3, where="x")
    again = stage.carve_test_split(frame, 0.2, seed=3, where="x")
    other = stage.carve_test_split(frame, 0.2, seed=4, where="x")
    pd.testing.assert_frame_equal(first[1], again[1])
    assert set(first[1]["review"]) != set(other[1]["review"])


def test_odd_counts_are_shared_out_in_proportion():
    frame = make_reviews(13, seed=43, positive_share=7 / 13)  # 7 positive, 6 negative
    train, test = stage.carve_test_split(frame, 0.3, seed=0, where="x")
    assert len(test) == 4  # ceil(0.3 * 13), then 2.15 : 1.85 rounded by largest remainder
    assert sorted(test["sentiment"]) == ["negative", "negative", "positive", "positive"]
    assert train["sentiment"].value_counts().to_dict() == {"positive": 5, "negative": 4}


def test_too_few_rows_to_carve(tmp_path, dirs):
    make_reviews(1, seed=44).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(SourceError, match=r"1 rows are too few to carve a test split of 0.2"):
        dirs.run(_cfg(tmp_path / "one.csv"))
    assert dirs.files() == []


def test_source_test_split_is_kept(tmp_path, dirs):
    splits = {"train": make_reviews(30, seed=45), "test": make_reviews(10, seed=46)}
    write_aclimdb(tmp_path / "src", splits)
    outcome = dirs.run(_cfg(tmp_path / "src"))
    assert outcome.manifest.test_split == "source"
    assert outcome.manifest.rows == {"train": 30, "test": 10}
    assert outcome.manifest.details["format"] == "aclImdb folder"


def test_aclimdb_unlabeled_reviews_and_movies_are_ingested(tmp_path, dirs):
    splits = {"train": make_reviews(30, seed=45), "test": make_reviews(12, seed=46)}
    unlabeled = make_unlabeled(20)
    unlabeled[3] = splits["test"]["review"].iloc[0]  # a copy of a test review: left out
    unlabeled[4] = splits["train"]["review"].iloc[0]  # a copy of a train review: kept
    write_aclimdb(tmp_path / "src", splits, unlabeled=unlabeled)
    outcome = dirs.run(_cfg(tmp_path / "src"))
    stored = read_unlabeled(dirs.out)
    assert stored["review"].tolist() == unlabeled[:3] + unlabeled[4:]
    assert stored["movie"].tolist() == [movie_of("unsup", i) for i in range(20) if i != 3]
    manifest = read_manifest(dirs.out)
    assert manifest.unlabeled_rows == 19
    assert manifest.details["unlabeled_dropped"] == "1 copies of test reviews (once cleaned)"
    train, test = read_split("train", dirs.out), read_split("test", dirs.out)
    assert list(train.columns) == list(test.columns) == ["review", "sentiment", "movie"]
    assert manifest.content_sha256 == content_hash([train, test], stored)
    assert manifest.content_sha256 != content_hash([train, test])  # unlabeled reviews count
    assert outcome.manifest == manifest


@pytest.mark.parametrize("spell", SAME_TO_THE_MODEL.values(), ids=SAME_TO_THE_MODEL.keys())
def test_unlabeled_reviews_the_model_reads_as_a_test_review_are_left_out(spell):
    test = make_reviews(12, seed=46)
    unlabeled = pd.DataFrame({"review": make_unlabeled(6)})
    first, second = test["review"].iloc[0], test["review"].iloc[1]
    unlabeled.loc[2, "review"] = spell(first)
    unlabeled.loc[4, "review"] = spell(second) + " and one more word"  # another review: kept
    kept, dropped = stage.drop_test_copies(unlabeled, test)
    assert dropped == 1
    assert kept["review"].tolist() == unlabeled["review"].drop(index=2).tolist()


def test_other_sources_have_no_unlabeled_split_or_movies(tmp_path, dirs, reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    outcome = dirs.run(_cfg(tmp_path / "reviews.csv"))
    assert read_unlabeled(dirs.out) is None
    assert not (dirs.out / "unlabeled.parquet").exists()
    assert outcome.manifest.unlabeled_rows == 0
    assert "movie" not in read_split("train", dirs.out).columns


def test_a_source_without_test_split_is_carved_by_whole_movies(tmp_path, dirs):
    write_aclimdb(tmp_path / "src", {"train": make_reviews(300, seed=47)})
    outcome = dirs.run(_cfg(tmp_path / "src", test_size=0.2, seed=3))
    train, test = read_split("train", dirs.out), read_split("test", dirs.out)
    assert not set(train["movie"]) & set(test["movie"])  # no movie on both sides
    assert 60 <= len(test) < 60 + 2 * REVIEWS_PER_MOVIE  # whole movies until 20% is reached
    assert len(train) + len(test) == 300
    assert outcome.manifest.test_split == "carved (grouped by movie, test_size=0.2, seed=3)"
    again = stage.carve_test_split(pd.concat([train, test]), 0.2, seed=3, where="x")[1]
    other = stage.carve_test_split(pd.concat([train, test]), 0.2, seed=4, where="x")[1]
    assert set(again["movie"]) != set(other["movie"])  # the seed chooses the movies


def test_too_few_movies_to_carve_whole_movies(tmp_path, dirs):
    frame = make_reviews(10, seed=48).assign(movie="tt0000001")
    with pytest.raises(SourceError, match=r"about 1 movies, too few to carve a test split"):
        stage.carve_test_split(frame, 0.2, seed=0, where="x")


def test_unchanged_content_leaves_the_folder_untouched(tmp_path, dirs, reviews, caplog):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    dirs.run(_cfg(tmp_path / "reviews.csv"))
    before = {p: p.stat().st_mtime_ns for p in dirs.out.iterdir()}
    reviews.to_csv(tmp_path / "reviews.csv.gz", index=False)  # same content, other form
    with caplog.at_level(logging.INFO, logger="steps.ingest"):
        outcome = dirs.run(_cfg(tmp_path / "reviews.csv.gz"))
    assert not outcome.written
    assert {p: p.stat().st_mtime_ns for p in dirs.out.iterdir()} == before
    assert "already holds this content" in caplog.text


def test_changed_content_replaces_the_folder(tmp_path, dirs, reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    first = dirs.run(_cfg(tmp_path / "reviews.csv"))
    second = dirs.run(_cfg(tmp_path / "reviews.csv", seed=1))  # another carve: other content
    assert second.written
    assert second.manifest.content_sha256 != first.manifest.content_sha256
    assert read_manifest(dirs.out) == second.manifest
    assert sorted(p.name for p in dirs.out.parent.iterdir()) == ["ingested"]  # no temp folders


def test_a_deleted_split_is_written_again(tmp_path, dirs, reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    dirs.run(_cfg(tmp_path / "reviews.csv"))
    (dirs.out / "test.parquet").unlink()
    assert dirs.run(_cfg(tmp_path / "reviews.csv")).written
    assert len(read_split("test", dirs.out)) == 40


def test_bad_input_keeps_the_previous_output_intact(tmp_path, dirs, reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    dirs.run(_cfg(tmp_path / "reviews.csv"))
    before = {p: p.read_bytes() for p in dirs.files()}
    (tmp_path / "bad.csv").write_bytes("review,sentiment\nolé,pos\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8"):
        dirs.run(_cfg(tmp_path / "bad.csv"))
    assert {p: p.read_bytes() for p in dirs.files()} == before


@pytest.mark.parametrize(
    "source",
    [
        "missing/reviews.csv",
        # a port nobody listens on, found when the test runs (never at collection)
        pytest.param("http://127.0.0.1:{port}/aclImdb_v1.tar.gz", marks=pytest.mark.integration),
    ],
)
def test_bad_input_leaves_no_files(dirs, source):
    with pytest.raises(SourceError):
        dirs.run(_cfg(source.format(port=free_port()) if "{port}" in source else source))
    assert dirs.files() == []


@pytest.mark.parametrize("test_size", [0.0, 1.0, 1.5])
def test_test_size_must_be_a_fraction(dirs, test_size):
    with pytest.raises(
        ConfigError, match=rf"test_size must be over 0 and under 1, got {test_size}"
    ):
        dirs.run(_cfg("unused", test_size=test_size))


def test_params_checksum_applies_only_to_the_params_source():
    file_cfg = dataclasses.replace(DEFAULTS, sha256="a" * 64)
    assert stage.checksum_for(file_cfg, file_cfg).sha256 == "a" * 64
    mirror = dataclasses.replace(file_cfg, source="https://mirror.example/aclImdb_v1.tar.gz")
    assert stage.checksum_for(file_cfg, mirror).sha256 == ""
    given = dataclasses.replace(mirror, sha256="b" * 64)
    assert stage.checksum_for(file_cfg, given).sha256 == "b" * 64
