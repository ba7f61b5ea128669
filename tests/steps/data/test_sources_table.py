"""The one table of source kinds (steps/data/sources/__init__.py): every registered kind offers
both reads, each source string goes to its kind, every reader asks the table (nobody else looks
at a source's prefix), S3 has one client, and the two reads of any kind give the same reviews."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from code_graph import direct_imports, module_name, project_modules
from local_services import BUCKET
from support import REPO_ROOT, make_reviews, write_aclimdb, write_aclimdb_tar

from steps.data.sources import KINDS, Columns, Labels, kind_for, load, open_stream
from steps.data.sources.kind import Loaded, Request, ReviewStream, SourceKind
from steps.stage.config import IngestConfig, load_params
from steps.stage.errors import SourceError

INGEST = dataclasses.replace(load_params(REPO_ROOT / "params.yaml").ingest, sha256="")
SOURCES_PACKAGE = REPO_ROOT / "steps" / "data" / "sources"


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_registered_kind_offers_both_reads(kind):
    assert isinstance(kind, SourceKind)
    for read in ("load", "stream"):
        assert getattr(type(kind), read) is not getattr(SourceKind, read), (kind.name, read)
        assert read not in getattr(type(kind), "__abstractmethods__", ()), (kind.name, read)


def test_a_kind_lacking_either_read_cannot_be_registered():
    class LoadOnly(SourceKind):
        name = "load-only"

        def load(self, request: Request, labels: Labels) -> Loaded:
            raise NotImplementedError

    class StreamOnly(SourceKind):
        name = "stream-only"

        def stream(self, request, columns, chunk_rows, stack) -> ReviewStream:
            raise NotImplementedError

    for lacking, missing in ((LoadOnly, "stream"), (StreamOnly, "load")):
        with pytest.raises(TypeError, match=missing):
            lacking()  # the table holds instances: this is where a registration would fail


def test_kind_names_are_unique_and_no_prefix_is_claimed_twice():
    names = [kind.name for kind in KINDS]
    assert len(set(names)) == len(names)
    prefixes = [prefix for kind in KINDS for prefix in kind.prefixes]
    assert len(set(prefixes)) == len(prefixes)
    assert all(prefix == prefix.lower() for prefix in prefixes)


@pytest.fixture
def local_sources(tmp_path) -> dict[str, str]:
    """One source string of every local form, written here."""
    frame = make_reviews(12, seed=91)
    write_aclimdb(tmp_path / "extracted", {"train": frame})
    write_aclimdb_tar(tmp_path / "aclImdb_v1.tar.gz", {"train": frame})
    (tmp_path / "splits").mkdir()
    frame.to_csv(tmp_path / "splits" / "train.csv", index=False)
    (tmp_path / "dataset").mkdir()
    frame.to_parquet(tmp_path / "dataset" / "part-00000.parquet", index=False)
    frame.to_csv(tmp_path / "reviews.csv.gz", index=False)
    return {
        "aclimdb folder": str(tmp_path / "extracted" / "aclImdb"),
        "aclimdb parent": str(tmp_path / "extracted"),
        "aclimdb archive": str(tmp_path / "aclImdb_v1.tar.gz"),
        "split files": str(tmp_path / "splits"),
        "parquet dataset": str(tmp_path / "dataset"),
        "one file": str(tmp_path / "reviews.csv.gz"),
        "missing path": str(tmp_path / "nowhere.csv"),
    }


@pytest.mark.parametrize(
    ("form", "kind"),
    [
        ("aclimdb folder", "aclimdb"),
        ("aclimdb parent", "aclimdb"),
        ("aclimdb archive", "aclimdb"),
        ("split files", "local"),
        ("parquet dataset", "local"),
        ("one file", "local"),
        ("missing path", "local"),  # local says what is missing
        ("https://example.org/aclImdb_v1.tar.gz", "https"),
        ("HTTP://127.0.0.1:8000/reviews.csv", "https"),
        ("s3://bucket/reviews/", "s3"),
        ("odbc:DSN=imdb", "odbc"),
        ("ODBC:DSN=imdb", "odbc"),
        ("mssql://reader@db.example.com/imdb", "odbc"),
    ],
)
def test_each_source_string_goes_to_its_kind(local_sources, form, kind):
    assert kind_for(local_sources.get(form, form)).name == kind


@pytest.mark.parametrize("source", ["ftp://host/reviews.csv", "gs://bucket/reviews.parquet"])
def test_a_scheme_no_kind_claims_is_one_line_at_both_doors(source, tmp_path):
    expected = f"{source}: unsupported scheme '{source.split(':')[0]}': give a local path, https://"
    with pytest.raises(SourceError, match=expected):
        load(dataclasses.replace(INGEST, source=source), tmp_path, labels=Labels.REQUIRED)
    with (
        pytest.raises(SourceError, match=expected),
        open_stream(source, Columns("review", ""), INGEST, tmp_path, 10),
    ):
        pass


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("data/re\nviews.csv", "the source contains control characters"),
        ("s3://bucket/k\x1b[31m.csv", "the source contains control characters"),
        ("odbc:DSN=imdb;PWD=hunter2", "a password in the source is refused"),
        ("https://me:hunter2@example.org/reviews.csv", "a password in the source is refused"),
        ("~nobody-here-at-all/reviews.csv", "no such file or folder"),
    ],
)
def test_both_doors_refuse_what_must_not_be_read_in_one_line(source, expected, tmp_path):
    cfg = dataclasses.replace(INGEST, source=source)
    for door in ("load", "stream"):
        with pytest.raises(SourceError) as raised:
            if door == "load":
                load(cfg, tmp_path, labels=Labels.REQUIRED)
            else:
                with open_stream(source, Columns("review", ""), cfg, tmp_path, 10):
                    pass
        message = str(raised.value)
        assert expected in message and message.isprintable(), (door, message)
        assert "hunter2" not in message


# --- nobody else dispatches on a source, and S3 has one client ------------------------------


def _prefix_tests(path: Path, prefixes: set[str]) -> list[str]:
    """Tests of a string against a source prefix in `path`: `x.startswith("s3://")`, or a
    scheme compared as such (`scheme == "s3"`, `urlsplit(x).scheme in ("https", "http")`).
    Asking the table (`kind_name(x) == "s3"`) is not one."""
    schemes = {prefix.rstrip(":/") for prefix in prefixes}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in ("startswith", "removeprefix", "endswith"):
                continue
            tested, words = node.args, prefixes
        elif isinstance(node, ast.Compare):
            tested = [node.left, *node.comparators]
            names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
            names += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
            words = prefixes | (schemes if any("scheme" in n for n in names) else set())
        else:
            continue
        constants = [
            c.value
            for arg in tested
            for c in ast.walk(arg)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        ]
        found += [f"{path.name}:{node.lineno} {c!r}" for c in constants if c.lower() in words]
    return found


def test_the_table_is_the_only_dispatcher():
    """Every module that reads reviews (imports steps.data.sources) asks the table which kind a
    source is; only the kind modules know their own prefixes."""
    prefixes = {prefix for kind in KINDS for prefix in kind.prefixes}
    readers = [
        path
        for path in project_modules()
        if SOURCES_PACKAGE not in path.parents
        and any(m.startswith("steps.data.sources") for m in direct_imports(path))
    ]
    assert {module_name(p) for p in readers} >= {
        "steps.ingest",
        "steps.monitor",
        "steps.score",
        "steps.batch.local",
        "steps.batch.output",
        "steps.batch.spark",
    }
    assert [hit for path in readers for hit in _prefix_tests(path, prefixes)] == []
    # The detector finds what it is for: the kind modules test their own prefixes and schemes.
    assert _prefix_tests(SOURCES_PACKAGE / "odbc.py", prefixes)
    assert _prefix_tests(SOURCES_PACKAGE / "https.py", prefixes)  # parts.scheme == "http"


def test_s3_has_one_client():
    """boto3 in steps/data/sources/s3.py, for sources and score's outputs alike; no second S3
    client (pyarrow's S3FileSystem, s3fs) anywhere in the project's code."""
    clients = ("boto3", "botocore", "pyarrow.fs", "s3fs")
    users = set()
    for path in project_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            if any(n == c or n.startswith(f"{c}.") for n in names for c in clients):
                users.add(module_name(path))
    assert users == {"steps.data.sources.s3"}


# --- both reads of every kind give the same reviews -----------------------------------------


def _local(tmp_path: Path, frame: pd.DataFrame, request) -> str:
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    return str(tmp_path / "reviews.csv")


def _aclimdb(tmp_path: Path, frame: pd.DataFrame, request) -> str:
    return str(write_aclimdb(tmp_path, {"train": frame.iloc[:20], "test": frame.iloc[20:]}))


def _https(tmp_path: Path, frame: pd.DataFrame, request) -> str:
    server = request.getfixturevalue("server")
    server.bodies["/exports/reviews.csv.gz"] = gzip.compress(frame.to_csv(index=False).encode())
    return server.url("/exports/reviews.csv.gz")


def _s3(tmp_path: Path, frame: pd.DataFrame, request) -> str:
    moto_s3 = request.getfixturevalue("moto_s3")
    request.getfixturevalue("aws_env").setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    body = frame.to_parquet(index=False)
    moto_s3.client().put_object(Bucket=BUCKET, Key="both/reviews.parquet", Body=body)
    return f"s3://{BUCKET}/both/reviews.parquet"


def _odbc(tmp_path: Path, frame: pd.DataFrame, request) -> str:
    driver = request.getfixturevalue("sqlite_odbc_driver")
    request.getfixturevalue("monkeypatch").delenv(INGEST.sql_password_env, raising=False)
    with sqlite3.connect(tmp_path / "reviews.db") as db:
        db.execute("CREATE TABLE reviews (id INTEGER PRIMARY KEY, review TEXT, sentiment TEXT)")
        db.executemany(
            "INSERT INTO reviews (review, sentiment) VALUES (?, ?)", frame.values.tolist()
        )
    return f"odbc:Driver={driver};Database={tmp_path / 'reviews.db'}"


SAMPLES = {"local": _local, "aclimdb": _aclimdb, "https": _https, "s3": _s3, "odbc": _odbc}
# The kinds whose sample needs a server or a driver (left out of the unit tier).
NOT_UNIT = {
    "https": [pytest.mark.integration],
    "s3": [pytest.mark.integration],
    "odbc": [pytest.mark.odbc],
}


def test_every_registered_kind_has_a_sample_here():
    assert set(SAMPLES) == {kind.name for kind in KINDS}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=NOT_UNIT.get(n, [])) for n in sorted(SAMPLES)],
)
def test_both_reads_of_every_kind_give_the_same_reviews(name, tmp_path, request):
    frame = make_reviews(40, seed=92)
    source = SAMPLES[name](tmp_path, frame, request)
    assert kind_for(source).name == name
    cfg = dataclasses.replace(INGEST, source=source)
    loaded = load(cfg, tmp_path / "downloads", labels=Labels.REQUIRED)
    whole = pd.concat([loaded.train, loaded.test], ignore_index=True)
    with open_stream(source, Columns("review", ""), cfg, tmp_path / "downloads", 7) as stream:
        chunks = list(stream.chunks)
    assert all(len(chunk.reviews) <= 7 for chunk in chunks)
    streamed = [review for chunk in chunks for review in chunk.reviews]
    assert sorted(streamed) == sorted(whole["review"]) == sorted(frame["review"])


# --- monitor's batches: labels where the table has them --------------------------------------


def test_labels_are_optional_only_when_the_read_says_so(tmp_path):
    path = tmp_path / "batch.parquet"
    make_reviews(10, seed=93)[["review"]].to_parquet(path, index=False)
    cfg = dataclasses.replace(INGEST, source=str(path))
    with pytest.raises(SourceError, match="missing column sentiment"):
        load(cfg, tmp_path, labels=Labels.REQUIRED)
    assert load(cfg, tmp_path, labels=Labels.OPTIONAL).train.columns.tolist() == ["review"]


# --- S3 streams: ranged reads of the object as it was listed --------------------------------


def _s3_settings(moto_s3) -> IngestConfig:
    return dataclasses.replace(INGEST, s3_endpoint_url=moto_s3.endpoint)


def test_an_s3_csv_prefix_streams_in_chunks_with_ids(moto_s3, aws_env, tmp_path):
    frame = make_reviews(50, seed=94)
    frame.insert(0, "id", [f"r{i}" for i in range(50)])
    client = moto_s3.client()
    client.put_object(
        Bucket=BUCKET,
        Key="csvs/2026/a.csv.gz",
        Body=gzip.compress(frame.iloc[:30].to_csv(index=False).encode()),
    )
    client.put_object(
        Bucket=BUCKET, Key="csvs/2026/b.csv", Body=frame.iloc[30:].to_csv(index=False)
    )
    client.put_object(Bucket=BUCKET, Key="csvs/2026/_SUCCESS", Body=b"")
    uri = f"s3://{BUCKET}/csvs/2026/"
    with open_stream(uri, Columns("Review", "ID"), _s3_settings(moto_s3), tmp_path, 20) as stream:
        assert stream.id_name == "id" and stream.location == uri and stream.kind == "csv"
        chunks = list(stream.chunks)
    assert [len(c.reviews) for c in chunks] == [20, 10, 20]  # file by file, in key order
    assert [i for c in chunks for i in c.ids.to_pylist()] == frame["id"].tolist()
    assert [r for c in chunks for r in c.reviews] == frame["review"].tolist()


def test_s3_csv_objects_are_read_in_growing_ranges(moto_s3, aws_env, tmp_path, monkeypatch):
    """Objects of a prefix are opened (their columns checked) before their turn: each holds only
    its first range until read; a long CSV is then fetched in ranges doubling to the largest."""
    from steps.data.sources import s3

    spans: dict[str, list[tuple[int, int]]] = {}
    fetch = s3.RangedFile._get

    def recorded(self, start, end):
        spans.setdefault(self.key, []).append((start, end))
        return fetch(self, start, end)

    monkeypatch.setattr(s3.RangedFile, "_get", recorded)
    frame = make_reviews(4000, seed=97)
    frame["review"] = frame["review"] * 40  # about 6 MiB of CSV per object
    body = frame.to_csv(index=False).encode()
    client = moto_s3.client()
    for name in ("a", "b"):
        client.put_object(Bucket=BUCKET, Key=f"big/{name}.csv", Body=body)
    uri = f"s3://{BUCKET}/big/"
    with open_stream(uri, Columns("review", ""), _s3_settings(moto_s3), tmp_path, 50) as stream:
        assert spans == {k: [(0, s3.CSV_FIRST_BYTES)] for k in ("big/a.csv", "big/b.csv")}
        assert sum(len(c.reviews) for c in stream.chunks) == 8000
    for key in ("big/a.csv", "big/b.csv"):
        sizes = [end - start for start, end in spans[key]]
        assert [start for start, _ in spans[key]] == [0, *np.cumsum(sizes)[:-1].tolist()]
        assert sum(sizes) == len(body)  # every byte once, in order
        assert sizes[:3] == [s3.CSV_FIRST_BYTES, 2 * s3.CSV_FIRST_BYTES, 4 * s3.CSV_FIRST_BYTES]
        assert max(sizes) <= s3.CSV_READ_BYTES


def test_an_s3_object_replaced_while_it_is_streamed_is_one_line(moto_s3, aws_env, tmp_path):
    key = "changing/reviews.parquet"
    client = moto_s3.client()
    client.put_object(Bucket=BUCKET, Key=key, Body=make_reviews(30, seed=95).to_parquet())
    uri = f"s3://{BUCKET}/{key}"
    with (
        pytest.raises(SourceError) as raised,
        open_stream(uri, Columns("review", ""), _s3_settings(moto_s3), tmp_path, 10) as stream,
    ):
        client.put_object(Bucket=BUCKET, Key=key, Body=make_reviews(30, seed=96).to_parquet())
        list(stream.chunks)
    assert str(raised.value) == f"{uri}: the object changed while it was read: run again"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("nothing/here/", "no object or prefix 'nothing/here/': check the key"),
        ("notes/", "no .parquet, .pq, .csv or .csv.gz objects under this prefix"),
        ("notes/readme.txt", "unknown object type: give a .parquet"),
    ],
)
def test_s3_streams_of_what_is_not_there_are_one_line(moto_s3, aws_env, tmp_path, key, expected):
    moto_s3.client().put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"hello")
    uri = f"s3://{BUCKET}/{key}"
    with (
        pytest.raises(SourceError, match=f"^{uri}: {expected}"),
        open_stream(uri, Columns("review", ""), _s3_settings(moto_s3), tmp_path, 10),
    ):
        pass
