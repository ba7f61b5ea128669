"""Local sources for real: aclImdb folders and archives, split-file folders, single files."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from support import (
    aclimdb_order,
    make_reviews,
    make_unlabeled,
    movie_of,
    write_aclimdb,
    write_aclimdb_tar,
)

from steps.data.sources import Labels, aclimdb, load
from steps.stage.config import load_params
from steps.stage.errors import SourceError
from steps.stage.paths import PROJECT_ROOT

# Texts a reader must keep byte for byte: non-ASCII, C1 controls (as in the real data), CRLF.
ODD_REVIEWS = pd.DataFrame(
    {
        "review": [
            "Amélie, naïve café scenes \u0085 and \u0096 dashes.<br /><br />Loved it.",
            "Line one\r\nline two, with a trailing space ",
            '"Quoted", commas, and\nnewlines in a CSV field',
        ],
        "sentiment": ["positive", "negative", "negative"],
    }
)


def _cfg(source: str):
    import dataclasses

    return dataclasses.replace(load_params(PROJECT_ROOT / "params.yaml").ingest, source=source)


def read_path(path: Path):
    """A local path read as ingest reads it: through the table of source kinds."""
    return load(_cfg(str(path)), Path("unused"), labels=Labels.REQUIRED)


def _reviews(n: int, seed: int) -> pd.DataFrame:
    return pd.concat([make_reviews(n, seed=seed), ODD_REVIEWS], ignore_index=True)


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return {"train": _reviews(40, seed=1), "test": _reviews(20, seed=2).iloc[3:]}


def test_aclimdb_folder_reads_both_splits_exactly(tmp_path, splits):
    acl = write_aclimdb(tmp_path, splits)
    loaded = read_path(acl)
    pd.testing.assert_frame_equal(loaded.train, aclimdb_order(splits["train"]))
    pd.testing.assert_frame_equal(loaded.test, aclimdb_order(splits["test"], "test"))
    assert loaded.details["format"] == "aclImdb folder"


def test_folder_that_contains_aclimdb_is_accepted(tmp_path, splits):
    write_aclimdb(tmp_path, splits)
    loaded = load(_cfg(str(tmp_path)), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert len(loaded.train) == len(splits["train"])  # *.feat and imdb.vocab ignored
    assert len(loaded.test) == len(splits["test"])


def test_aclimdb_unlabeled_reviews_and_movies_are_kept(tmp_path, splits):
    unlabeled = [*make_unlabeled(7), "Ünïcode\r\nand a trailing space "]
    loaded = read_path(write_aclimdb(tmp_path, splits, unlabeled=unlabeled))
    expected = pd.DataFrame(
        {"review": unlabeled, "movie": [movie_of("unsup", i) for i in range(len(unlabeled))]},
        dtype="str",
    )
    pd.testing.assert_frame_equal(loaded.unlabeled, expected)
    # pos and neg reviews with the same id are about the same movie, as in the official files
    train = loaded.train
    assert train.loc[0, "movie"] == movie_of("train", 0) == train.loc[21, "movie"]
    assert train["movie"].nunique() < len(train)


def test_without_url_files_there_is_no_movie_column(tmp_path, splits):
    loaded = read_path(write_aclimdb(tmp_path, splits, urls=False))
    pd.testing.assert_frame_equal(loaded.train, aclimdb_order(splits["train"], None))
    assert list(loaded.unlabeled.columns) == ["review"]


def test_without_unsup_folder_there_are_no_unlabeled_reviews(tmp_path, splits):
    assert read_path(write_aclimdb(tmp_path, splits, unlabeled=[])).unlabeled is None


@pytest.mark.parametrize("urls_first", [True, False])
def test_archive_maps_movies_whether_url_files_come_first_or_last(tmp_path, splits, urls_first):
    import tarfile

    acl = write_aclimdb(tmp_path / "tree", splits)
    files = sorted(p for p in acl.rglob("*") if p.is_file())
    urls = [p for p in files if p.name.startswith("urls_")]
    rest = [p for p in files if p not in urls]
    archive = tmp_path / "ordered.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in urls + rest if urls_first else rest + urls:
            tar.add(path, arcname=f"aclImdb/{path.relative_to(acl)}")
    from_archive, from_folder = read_path(archive), read_path(acl)
    pd.testing.assert_frame_equal(from_archive.train, from_folder.train)
    pd.testing.assert_frame_equal(from_archive.unlabeled, from_folder.unlabeled)
    assert from_archive.train["movie"].notna().all()


def test_url_file_shorter_than_the_reviews_names_both(tmp_path, splits):
    acl = write_aclimdb(tmp_path, splits)
    urls = acl / "train" / "urls_neg.txt"
    urls.write_text("".join(urls.read_text().splitlines(keepends=True)[:5]))
    with pytest.raises(SourceError) as err:
        read_path(acl)
    assert "train/urls_neg.txt has 5 lines for 22 reviews in train/neg/" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_review_id_past_the_url_lines_names_both(tmp_path, splits):
    """As many lines as reviews, but one id beyond them (a file renamed): no line is its."""
    acl = write_aclimdb(tmp_path, splits)
    (acl / "train" / "neg" / "5_3.txt").rename(acl / "train" / "neg" / "90_3.txt")
    with pytest.raises(SourceError) as err:
        read_path(acl)
    assert "train/neg/90_3.txt has no line in train/urls_neg.txt (22 lines" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://www.imdb.com/title/tt0453418/usercomments", "tt0453418"),
        ("https://imdb.com/title/tt0000001/", "tt0000001"),
        ("http://example.org/some-movie\n", "http://example.org/some-movie"),
    ],
)
def test_movie_key_is_the_imdb_title_id(url, key):
    assert aclimdb.movie_key(url) == key


def test_aclimdb_train_only_has_no_test_split(tmp_path, splits):
    acl = write_aclimdb(tmp_path, {"train": splits["train"]})
    loaded = read_path(acl)
    assert loaded.test is None
    assert len(loaded.train) == len(splits["train"])


def test_archive_gives_the_same_frames_as_the_folder(tmp_path, splits):
    archive = write_aclimdb_tar(tmp_path / "aclImdb_v1.tar.gz", splits)
    folder = write_aclimdb(tmp_path / "extracted", splits)
    from_archive, from_folder = read_path(archive), read_path(folder)
    pd.testing.assert_frame_equal(from_archive.train, from_folder.train)
    pd.testing.assert_frame_equal(from_archive.test, from_folder.test)
    pd.testing.assert_frame_equal(from_archive.unlabeled, from_folder.unlabeled)
    assert from_archive.details["format"] == "aclImdb archive"


def test_review_files_are_ordered_by_numeric_id(tmp_path):
    pos = tmp_path / "aclImdb" / "train" / "pos"
    pos.mkdir(parents=True)
    for review_id in (10, 2, 1):
        (pos / f"{review_id}_9.txt").write_text(f"review {review_id}", encoding="utf-8")
    assert read_path(tmp_path).train["review"].tolist() == ["review 1", "review 2", "review 10"]


def test_non_utf8_review_file_names_the_file(tmp_path, splits):
    acl = write_aclimdb(tmp_path, splits)
    (acl / "train" / "neg" / "7_1.txt").write_bytes("caf\xe9 latin-1".encode("latin-1"))
    with pytest.raises(SourceError, match=r"train/neg/7_1\.txt: not UTF-8 text .*0xe9"):
        read_path(acl)


def test_unreadable_review_file_is_one_line(tmp_path, splits):
    acl = write_aclimdb(tmp_path, splits)
    (acl / "train" / "pos" / "99_9.txt").mkdir()  # unreadable as a file, even for root
    with pytest.raises(SourceError) as err:
        load(_cfg(str(acl)), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert str(err.value) == (
        f"{acl}: cannot read or write {acl}/train/pos/99_9.txt (Is a directory)"
    )


def _cut_at(fraction):
    return lambda data: data[: int(len(data) * fraction)]


def _flip_at(fraction):
    def flip(data):
        at = int(len(data) * fraction)
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]

    return flip


# Cut anywhere (a tar header boundary included: tar alone would read that as the end) or
# corrupted in the middle: gzip's trailer (length, CRC) catches what tar cannot.
DAMAGES = {
    **{f"cut at {f:.0%}": _cut_at(f) for f in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)},
    "cut before the trailer": lambda data: data[:-8],
    **{f"byte flipped at {f:.0%}": _flip_at(f) for f in (0.5, 0.95)},
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_archive_is_reported(tmp_path, splits, damage):
    archive = write_aclimdb_tar(tmp_path / "aclImdb_v1.tar.gz", splits)
    archive.write_bytes(damage(archive.read_bytes()))
    with pytest.raises(SourceError, match=r"aclImdb_v1\.tar\.gz: not a readable \.tar\.gz archive"):
        read_path(archive)


def test_an_archive_damaged_inside_a_review_is_reported_as_damaged(tmp_path, splits):
    """Bytes a flipped bit made invalid UTF-8 come before gzip's check at the end: the archive
    is called damaged (fetch it again), not the review replaced (as a whole archive would be)."""
    acl = write_aclimdb(tmp_path / "src", splits)
    (acl / "train" / "neg" / "3_3.txt").write_bytes(b"caf\xe9 as a bit flip leaves it")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(acl, arcname="aclImdb")
    whole = archive.read_bytes()
    with pytest.raises(SourceError, match=r"member aclImdb/train/neg/3_3\.txt: not UTF-8 text"):
        read_path(archive)  # whole: the review itself is named
    archive.write_bytes(whole[:-8] + bytes(b ^ 0xFF for b in whole[-8:-4]) + whole[-4:])
    with pytest.raises(SourceError, match=r"aclImdb_v1\.tar\.gz: not a readable \.tar\.gz archive"):
        read_path(archive)  # its CRC no longer matches: damaged


def test_archive_without_reviews_is_reported(tmp_path):
    import tarfile

    (tmp_path / "notes.txt").write_text("nothing here")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "notes.txt", arcname="notes.txt")
    with pytest.raises(SourceError, match=r"no reviews in aclImdb/train/pos"):
        read_path(tmp_path / "other.tar.gz")


@pytest.mark.parametrize("ending", [".csv", ".csv.gz", ".parquet"])
def test_folder_with_train_and_test_files(tmp_path, splits, ending):
    for split, frame in splits.items():
        path = tmp_path / f"{split}{ending}"
        if ending == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    loaded = load(_cfg(str(tmp_path)), tmp_path / "downloads", labels=Labels.REQUIRED)
    pd.testing.assert_frame_equal(loaded.train, splits["train"].reset_index(drop=True))
    pd.testing.assert_frame_equal(loaded.test, splits["test"].reset_index(drop=True))


def test_folder_with_train_csv_gz_only_has_no_test_split(tmp_path, splits):
    splits["train"].to_csv(tmp_path / "train.csv.gz", index=False)
    loaded = read_path(tmp_path)
    assert loaded.test is None
    pd.testing.assert_frame_equal(loaded.train, splits["train"])


def test_folder_with_two_train_files_is_ambiguous(tmp_path, splits):
    splits["train"].to_csv(tmp_path / "train.csv", index=False)
    splits["train"].to_csv(tmp_path / "train.csv.gz", index=False)
    with pytest.raises(SourceError, match=r"both train\.csv and train\.csv\.gz are present"):
        read_path(tmp_path)


def test_folder_without_reviews_says_what_it_found(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(
        SourceError, match=r"no train file or aclImdb layout here \(found: notes\.md\)"
    ):
        read_path(tmp_path)


def test_kaggle_style_single_csv_with_mixed_label_spellings(tmp_path):
    # The 50k "IMDB Dataset.csv" has a space in its name and labels positive/negative; other
    # exports use pos/neg or 1/0, in any case and with stray spaces.
    frame = make_reviews(12, seed=3)
    spellings = {
        "positive": ["positive", " POS", "1", "Positive "],
        "negative": ["neg", "0", "NEGATIVE"],
    }
    raw = frame.copy()
    raw["sentiment"] = [
        spellings[label][i % len(spellings[label])] for i, label in enumerate(frame["sentiment"])
    ]
    path = tmp_path / "IMDB Dataset.csv"
    raw.to_csv(path, index=False)
    loaded = load(_cfg(str(path)), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert loaded.test is None
    pd.testing.assert_frame_equal(loaded.train, frame)


def test_parquet_with_integer_labels_and_extra_columns(tmp_path):
    frame = make_reviews(10, seed=4)
    raw = pd.DataFrame(
        {
            "id": range(10),
            "Review": frame["review"],
            "SENTIMENT": (frame["sentiment"] == "positive").astype("int64"),
        }
    )
    raw.to_parquet(tmp_path / "reviews.parquet", index=False)
    pd.testing.assert_frame_equal(read_path(tmp_path / "reviews.parquet").train, frame)


def test_csv_keeps_na_like_and_blank_reviews_as_text(tmp_path):
    # "NA"/"null" are words here, and a blank review is for validation to flag, not for a reader
    # to turn into a missing value.
    path = tmp_path / "reviews.csv"
    path.write_text('review,sentiment\nNA,pos\nnull,neg\n"",neg\n', encoding="utf-8")
    assert read_path(path).train["review"].tolist() == ["NA", "null", ""]


def test_unknown_labels_are_reported_with_values_counts_and_rows(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        "review,sentiment\na,pos\nb,neutral\nc,neg\nd,neutral\ne,\nf,2\n", encoding="utf-8"
    )
    with pytest.raises(SourceError) as err:
        read_path(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert "4 of 6 rows have a sentiment other than positive/negative, pos/neg or 1/0" in message
    assert "'neutral' x2 (rows 2, 4)" in message
    assert "'' x1 (row 5)" in message
    assert "'2' x1 (row 6)" in message


def test_null_labels_and_reviews_in_parquet_are_reported(tmp_path):
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"review": ["a", "b"], "sentiment": ["pos", None]}).to_parquet(path)
    with pytest.raises(SourceError, match=r"1 of 2 rows .*<empty> x1 \(row 2\)"):
        read_path(path)
    pd.DataFrame({"review": ["a", None], "sentiment": ["pos", "neg"]}).to_parquet(path)
    with pytest.raises(SourceError, match=r"1 rows have no review text \(null\), first at row 2"):
        read_path(path)


def test_missing_column_lists_what_was_found(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\nfine,pos\n", encoding="utf-8")
    with pytest.raises(
        SourceError, match=r"missing column review and sentiment \(found: text, label\)"
    ):
        read_path(path)


def test_non_utf8_csv_is_reported(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes("review,sentiment\ncafé crème,pos\n".encode("cp1252"))
    with pytest.raises(
        SourceError, match=r"reviews\.csv: not UTF-8 text .*0xe9.*re-save the file as UTF-8"
    ):
        read_path(path)


@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("reviews.csv.gz", b"review,sentiment\nplain text, not gzip\n", "not a readable gzip file"),
        ("reviews.csv", b'review,sentiment\n"never closed,pos\n', "not a readable CSV"),
        ("reviews.csv", b"", "the file is empty"),
        ("reviews.parquet", b"PAR1 not really parquet", "not a readable Parquet file"),
        ("reviews.txt", b"review,sentiment\n", "unknown file type 'reviews.txt'"),
    ],
)
def test_unreadable_files_are_reported(tmp_path, name, content, cause):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError, match=rf"{path}: {cause}"):
        read_path(path)


def test_truncated_gzip_csv_is_reported(tmp_path):
    path = tmp_path / "train.csv.gz"
    data = gzip.compress(make_reviews(200, seed=5).to_csv(index=False).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"train\.csv\.gz: not a readable gzip file"):
        read_path(path)


def test_missing_path_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as err:
        load(_cfg("no/such/data"), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert str(err.value).startswith("no/such/data: no such file or folder")
    assert str(tmp_path / "no/such/data") in str(err.value)


@pytest.mark.parametrize(
    ("source", "cause"),
    [("", "ingest.source is empty"), ("ftp://host/x.csv", "unsupported scheme 'ftp'")],
)
def test_unusable_source_strings(tmp_path, source, cause):
    with pytest.raises(SourceError, match=cause):
        load(_cfg(source), tmp_path, labels=Labels.REQUIRED)


def test_source_given_relative_to_home_is_expanded(tmp_path, monkeypatch, splits):
    monkeypatch.setenv("HOME", str(tmp_path))
    splits["train"].to_csv(tmp_path / "reviews.csv", index=False)
    assert len(load(_cfg("~/reviews.csv"), Path("unused"), labels=Labels.REQUIRED).train) == len(
        splits["train"]
    )
