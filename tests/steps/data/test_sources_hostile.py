"""Sources as an attacker would write them (issue 11, items 4 and 5): only regular files inside
the dataset are read, whatever links it holds, and odd paths and URLs (NUL bytes, control
characters, percent-encoded or not, malformed hosts and ports) are one printable line, never a
traceback."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from support import (
    REPO_ROOT,
    aclimdb_order,
    make_reviews,
    review_server,
    stage_env,
    write_aclimdb,
    write_aclimdb_tar,
)

from steps.data.sources import Labels, load
from steps.stage.config import load_params
from steps.stage.errors import SourceError
from steps.stage.paths import PROJECT_ROOT

CFG = dataclasses.replace(load_params(REPO_ROOT / "params.yaml").ingest, sha256="")
SECRET_TEXT = "root:x:0:0:a file from outside the dataset"


def read_path(path):
    """A local path read as ingest reads it: through the table of source kinds."""
    return load(dataclasses.replace(CFG, source=str(path)), Path("unused"), labels=Labels.REQUIRED)


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return {"train": make_reviews(40, seed=61), "test": make_reviews(20, seed=62)}


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET_TEXT)
    return path


def test_symlinks_in_an_aclimdb_folder_are_skipped_and_counted(tmp_path, splits, outside):
    acl = write_aclimdb(tmp_path / "src", splits)
    (acl / "train" / "pos" / "123_9.txt").symlink_to(outside)  # a file outside the dataset
    (acl / "train" / "neg" / "124_1.txt").symlink_to(acl / "test" / "neg" / "0_3.txt")  # inside
    linked = tmp_path / "elsewhere"
    linked.mkdir()
    (linked / "7_8.txt").write_text(SECRET_TEXT + " via a linked folder")
    (acl / "test" / "pos").rename(tmp_path / "real-test-pos")
    (acl / "test" / "pos").symlink_to(linked, target_is_directory=True)

    loaded = load(
        dataclasses.replace(CFG, source=str(tmp_path / "src")),
        tmp_path / "dl",
        labels=Labels.REQUIRED,
    )
    everything = pd.concat([loaded.train, loaded.test])
    assert not everything["review"].str.contains("root:x:0:0").any()
    assert len(loaded.train) == len(splits["train"])  # the two links in train/ are not reviews
    assert loaded.details["skipped"].startswith("3 (links or outside the dataset): ")
    assert "train/pos/123_9.txt" in loaded.details["skipped"]


OUTSIDE = "<the file outside>"


@pytest.mark.parametrize(
    ("names", "target", "read"),
    [
        (["train/pos/123_9.txt"], OUTSIDE, False),
        (["train/pos/123_9.txt", "train/neg/124_1.txt"], OUTSIDE, False),
        (["train/neg/124_1.txt"], "test/neg/0_3.txt", True),
        (["train/pos/123_9.txt", "train/neg/124_1.txt"], "train/pos/0_8.txt", True),
    ],
    ids=["outside", "outside-two-names-inside", "inside-other-split", "inside-three-names"],
)
def test_hard_links_in_an_aclimdb_folder(tmp_path, splits, outside, names, target, read):
    """A review file that is another name of a file outside the folder is skipped and counted
    (its link count is above its names in the dataset); a file whose names are all inside is
    read under each of them."""
    acl = write_aclimdb(tmp_path / "src", splits, urls=False)
    source = outside if target == OUTSIDE else acl / target
    for name in names:
        os.link(source, acl / name)
    loaded = read_path(tmp_path / "src")
    texts = pd.concat([loaded.train, loaded.test])["review"]
    if read:
        assert "skipped" not in loaded.details
        assert len(loaded.train) == len(splits["train"]) + len(names)
        copies = len(names) + 1  # the new names and the original one
        assert (texts == source.read_text()).sum() == copies
    else:
        assert loaded.details["skipped"] == (
            f"{len(names)} (links or outside the dataset): {', '.join(names)}"
        )
        assert len(loaded.train) == len(splits["train"])
        assert not texts.str.contains("root:x:0:0").any()


def test_a_url_file_hard_linked_outside_is_skipped(tmp_path, splits):
    """The same rule for the URL files: the split is read without a movie column."""
    acl = write_aclimdb(tmp_path / "src", splits)
    copy = tmp_path / "outside-urls.txt"
    (acl / "train" / "urls_pos.txt").rename(copy)
    os.link(copy, acl / "train" / "urls_pos.txt")
    loaded = read_path(tmp_path / "src")
    assert loaded.details["skipped"] == "1 (links or outside the dataset): train/urls_pos.txt"
    assert "movie" not in loaded.train.columns
    assert "movie" in loaded.test.columns


# Every character str.splitlines() breaks on besides "\n": the official URL files are split on
# "\n" only, so one of these inside a line must not shift the movie of every later review.
LINE_BREAKS_NOT_NEWLINE = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize(
    "breaker", LINE_BREAKS_NOT_NEWLINE, ids=[repr(c) for c in LINE_BREAKS_NOT_NEWLINE]
)
def test_a_line_break_inside_a_url_line_does_not_shift_the_movies(tmp_path, splits, breaker):
    acl = write_aclimdb(tmp_path / "src", splits)
    urls = acl / "train" / "urls_pos.txt"
    lines = urls.read_text().split("\n")
    lines[1] = lines[1].replace("/usercomments", f"/user{breaker}comments")
    urls.write_text("\n".join(lines), newline="")
    loaded = read_path(tmp_path / "src")
    assert loaded.train["movie"].tolist() == aclimdb_order(splits["train"])["movie"].tolist()


@pytest.mark.parametrize(
    ("change", "lines"),
    [
        (lambda text: text.split("\n", 1)[1], "19"),  # the first line gone: all shift by one
        (lambda text: text + "http://www.imdb.com/title/tt9999999/usercomments\n", "21"),
        (lambda text: text + "\n", "21"),  # an empty line at the end
        (lambda text: text.replace("\n", "\n\n", 1), "21"),
    ],
    ids=["one-fewer", "one-more", "blank-at-end", "blank-inside"],
)
@pytest.mark.parametrize("form", ["folder", "archive"])
def test_url_lines_not_matching_the_reviews_are_refused_in_one_line(
    tmp_path, splits, change, lines, form
):
    acl = write_aclimdb(tmp_path / "src", splits)
    urls = acl / "train" / "urls_pos.txt"
    urls.write_text(change(urls.read_text()), newline="")
    source = acl
    if form == "archive":
        source = tmp_path / "aclImdb_v1.tar.gz"
        with tarfile.open(source, "w:gz") as archive:
            archive.add(acl, arcname="aclImdb")
    with pytest.raises(SourceError) as error:
        read_path(source)
    assert str(error.value) == (
        f"{source}: train/urls_pos.txt has {lines} lines for 20 reviews in train/pos/ (line i is"
        " the movie of review id i, so the counts must be equal): the dataset is damaged or"
        " altered; fetch it again"
    )


@pytest.mark.parametrize(
    "change",
    [lambda text: text.replace("\n", "\r\n"), lambda text: text.removesuffix("\n")],
    ids=["crlf", "no-final-newline"],
)
def test_url_files_written_otherwise_still_map_every_review(tmp_path, splits, change):
    acl = write_aclimdb(tmp_path / "src", splits)
    urls = acl / "train" / "urls_neg.txt"
    urls.write_text(change(urls.read_text()), newline="")
    loaded = read_path(tmp_path / "src")
    assert loaded.train["movie"].tolist() == aclimdb_order(splits["train"])["movie"].tolist()


@pytest.mark.integration
def test_a_fifo_posing_as_a_review_is_refused_not_waited_on(tmp_path, splits):
    acl = write_aclimdb(tmp_path / "src", splits)
    os.mkfifo(acl / "train" / "pos" / "5_9.txt")  # reading it would block forever
    script = (
        "import dataclasses, sys\n"
        "from steps.data.sources import Labels, load\n"
        "from steps.stage.config import load_params\n"
        "from steps.stage.errors import SourceError\n"
        "cfg = dataclasses.replace(load_params(sys.argv[2]).ingest, source=sys.argv[1])\n"
        "try:\n    load(cfg, 'unused', labels=Labels.REQUIRED)\n"
        "except SourceError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(acl), str(REPO_ROOT / "params.yaml")],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == f"{acl}: train/pos/5_9.txt is not a regular file: refused"


def test_links_and_climbing_names_in_an_archive_are_skipped_and_counted(tmp_path, splits, outside):
    archive = write_aclimdb_tar(tmp_path / "aclImdb_v1.tar.gz", splits)
    with tarfile.open(archive, "r:gz") as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None) for m in source]
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as out:
        for member, data in members:
            out.addfile(member, io.BytesIO(data) if data is not None else None)
        link = tarfile.TarInfo("aclImdb/train/pos/900_9.txt")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        out.addfile(link)
        hard = tarfile.TarInfo("aclImdb/train/neg/901_1.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "aclImdb/test/neg/0_3.txt"
        out.addfile(hard)
        text = SECRET_TEXT.encode()
        climbing = tarfile.TarInfo("aclImdb/../../train/pos/902_9.txt")
        climbing.size = len(text)
        out.addfile(climbing, io.BytesIO(text))

    loaded = read_path(hostile)
    assert len(loaded.train) == len(splits["train"])
    assert not loaded.train["review"].str.contains("root:x:0:0").any()
    assert loaded.details["skipped"].startswith("3 (links or outside the dataset): ")


def test_a_split_file_that_is_a_symlink_is_refused(tmp_path, splits, outside):
    folder = tmp_path / "exports"
    folder.mkdir()
    splits["test"].to_csv(folder / "test.csv", index=False)
    stolen = tmp_path / "outside" / "reviews.csv"
    splits["train"].to_csv(stolen, index=False)
    (folder / "train.csv").symlink_to(stolen)
    with pytest.raises(
        SourceError, match=r"train\.csv is a symlink or resolves outside the folder"
    ):
        read_path(folder)


ODD = [
    "data/re\x00views.csv",
    "data/re\nviews.csv",
    "\x1b[31mred.csv",
    "~\x00/x.csv",
    "https://127.0.0.1:1/a\x00b.csv",
    "https://127.0.0.1:1/a%00b.csv",
    "https://127.0.0.1:1/x\r\nHost: evil/x.csv",
    "https://127.0.0.1:1/x%0d%0aHost:%20evil/x.csv",
    "https://\x00/x.csv",
    "https://[::1/x.csv",
    "https://127.0.0.1:99999/x.csv",
    "https://exa mple.com/x.csv",
    "s3://b\x00/k.csv",
    "s3://bucket/k\n.csv",
    "s3://[::1/k.csv",
    "odbc:DSN=\x00x",
    "odbc:Driver=SQLite3;Database=/tmp/x\x00.db",
    "mssql://u@h\x00/db",
    "mssql://u@[::1/db",
    "mssql://u@h:99999/db",
]


@pytest.mark.parametrize("source", ODD, ids=[repr(s) for s in ODD])
def test_odd_paths_and_urls_are_one_printable_line(source, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = dataclasses.replace(CFG, source=source, s3_endpoint_url="http://127.0.0.1:1")
    with pytest.raises(SourceError) as error:
        load(cfg, tmp_path / "downloads", labels=Labels.REQUIRED)
    message = str(error.value)
    assert message.isprintable(), repr(message)
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())


@pytest.mark.parametrize("path", ["/a%00b.csv", "/x%0d%0a.csv", "/%1b%5b31m.csv"])
@pytest.mark.integration
def test_percent_encoded_control_characters_in_a_served_url_are_refused(path, tmp_path):
    with review_server() as server:
        server.bodies[path] = make_reviews(20, seed=63).to_csv(index=False).encode()
        with pytest.raises(SourceError, match="the URL encodes control characters"):
            load(
                dataclasses.replace(CFG, source=server.url(path)),
                tmp_path / "downloads",
                labels=Labels.REQUIRED,
            )
        assert server.requests == []  # refused before any request
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())


@pytest.mark.slow
@pytest.mark.integration
def test_the_ingest_command_says_it_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "steps.ingest", "--source", "https://127.0.0.1:1/a\x1b]0;x\x07.csv"],
        cwd=tmp_path,
        env=stage_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert not (tmp_path / "data").exists()
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "error: ingest: https://127.0.0.1:1/a\\x1b]0;x\\x07.csv: the source contains control"
        " characters (NUL, newline, escape ...): refused; give the path or URL as plain text"
    )


@pytest.mark.parametrize("source", ["odbc:DSN=imdb", "mssql://reader@db.example:1433/imdb"])
def test_an_odbc_source_without_unixodbc_is_one_line_naming_the_package(
    source, tmp_path, monkeypatch
):
    """pyodbc's wheel installs anywhere but loads libodbc: without it, one line, no traceback."""
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # import fails as without libodbc.so.2
    monkeypatch.setenv("IMDB_SQL_PASSWORD", "not-used")
    cfg = dataclasses.replace(load_params(PROJECT_ROOT / "params.yaml").ingest, source=source)
    with pytest.raises(SourceError) as error:
        load(cfg, tmp_path / "downloads", labels=Labels.REQUIRED)
    message = str(error.value)
    assert "\n" not in message and "cannot load pyodbc" in message
    assert "apt install unixodbc" in message and message.startswith(source.split(":")[0])
