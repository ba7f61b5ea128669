"""https sources against a real HTTP server on 127.0.0.1: download, verify, cache, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from support import aclimdb_order, free_port, make_reviews, write_aclimdb_tar

from steps.data.sources import Labels, load
from steps.stage.config import load_params
from steps.stage.errors import ConfigError, SourceError
from steps.stage.paths import PROJECT_ROOT


@pytest.fixture
def splits() -> dict[str, pd.DataFrame]:
    return {"train": make_reviews(30, seed=11), "test": make_reviews(16, seed=12)}


@pytest.fixture
def archive(tmp_path, splits) -> bytes:
    return write_aclimdb_tar(tmp_path / "served" / "aclImdb_v1.tar.gz", splits).read_bytes()


def _cfg(source: str, sha256: str = ""):
    ingest = load_params(PROJECT_ROOT / "params.yaml").ingest
    return dataclasses.replace(ingest, source=source, sha256=sha256)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_is_verified_cached_and_reused(server, archive, tmp_path, splits):
    server.bodies["/data/aclImdb_v1.tar.gz"] = archive
    url = server.url("/data/aclImdb_v1.tar.gz")
    digest = hashlib.sha256(archive).hexdigest()
    downloads = tmp_path / "downloads"

    first = load(_cfg(url, digest), downloads, labels=Labels.REQUIRED)
    pd.testing.assert_frame_equal(first.train, aclimdb_order(splits["train"]))
    pd.testing.assert_frame_equal(first.test, aclimdb_order(splits["test"], "test"))
    assert first.details["cache"] == "downloaded"
    assert first.details["sha256"] == digest
    assert first.details["sha256_checked"] == "yes"
    assert (downloads / "aclImdb_v1.tar.gz").read_bytes() == archive
    record = json.loads((downloads / "aclImdb_v1.tar.gz.verified.json").read_text())
    assert record == {"url": url, "bytes": len(archive), "sha256": digest}

    second = load(_cfg(url, digest), downloads, labels=Labels.REQUIRED)
    assert second.details["cache"] == "reused"
    assert server.requests == ["/data/aclImdb_v1.tar.gz"]  # the second run made no request
    pd.testing.assert_frame_equal(second.train, first.train)


def test_damaged_cache_is_downloaded_again(server, archive, tmp_path):
    server.bodies["/aclImdb_v1.tar.gz"] = archive
    url = server.url("/aclImdb_v1.tar.gz")
    downloads = tmp_path / "downloads"
    load(_cfg(url), downloads, labels=Labels.REQUIRED)
    cached = downloads / "aclImdb_v1.tar.gz"
    cached.write_bytes(b"x" + cached.read_bytes()[1:])  # same size, different bytes

    again = load(_cfg(url), downloads, labels=Labels.REQUIRED)
    assert again.details["cache"] == "downloaded"
    assert len(server.requests) == 2
    assert cached.read_bytes() == archive


def test_unchecked_download_records_the_computed_digest(server, tmp_path):
    frame = make_reviews(20, seed=13)
    body = frame.to_csv(index=False).encode()
    server.bodies["/exports/reviews.csv"] = body
    loaded = load(
        _cfg(server.url("/exports/reviews.csv")), tmp_path / "downloads", labels=Labels.REQUIRED
    )
    assert loaded.test is None
    pd.testing.assert_frame_equal(loaded.train, frame)
    assert loaded.details["sha256"] == hashlib.sha256(body).hexdigest()
    assert loaded.details["sha256_checked"].startswith("no")


def test_wrong_checksum_keeps_nothing(server, archive, tmp_path):
    server.bodies["/aclImdb_v1.tar.gz"] = archive
    url = server.url("/aclImdb_v1.tar.gz")
    with pytest.raises(SourceError) as err:
        load(_cfg(url, "0" * 64), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert str(err.value).startswith(
        f"{url}: sha256 mismatch: got {hashlib.sha256(archive).hexdigest()}"
    )
    assert "expected " + "0" * 64 in str(err.value)
    assert _files(tmp_path / "downloads") == []


def test_truncated_download_keeps_nothing(server, archive, tmp_path):
    server.bodies["/aclImdb_v1.tar.gz"] = archive
    server.truncated.add("/aclImdb_v1.tar.gz")
    url = server.url("/aclImdb_v1.tar.gz")
    half, whole = len(archive) // 2, len(archive)
    with pytest.raises(SourceError) as err:
        load(_cfg(url), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert str(err.value) == (
        f"{url}: download truncated: the connection ended after {half:,} of {whole:,} bytes:"
        " run again; nothing was kept"
    )
    assert _files(tmp_path / "downloads") == []


def test_http_404_keeps_nothing(server, tmp_path):
    url = server.url("/missing/aclImdb_v1.tar.gz")
    with pytest.raises(SourceError, match=rf"^{url}: HTTP 404 Not Found: check the URL$"):
        load(_cfg(url), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert _files(tmp_path / "downloads") == []


@pytest.mark.integration
def test_unreachable_port_is_reported(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/aclImdb_v1.tar.gz"
    with pytest.raises(SourceError, match=rf"^{url}: cannot connect \(.*Connection refused.*\)"):
        load(_cfg(url), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert _files(tmp_path / "downloads") == []


def test_download_that_is_not_an_archive_is_not_kept(server, tmp_path):
    server.bodies["/aclImdb_v1.tar.gz"] = b"<html>Sorry, we moved</html>"
    url = server.url("/aclImdb_v1.tar.gz")
    for attempt in (1, 2):  # nothing trusted after a failure: the second run asks again
        with pytest.raises(SourceError, match="not a readable .tar.gz archive"):
            load(_cfg(url), tmp_path / "downloads", labels=Labels.REQUIRED)
        assert _files(tmp_path / "downloads") == []
        assert len(server.requests) == attempt


def test_plain_http_is_refused_for_remote_hosts(tmp_path):
    with pytest.raises(SourceError, match=r"plain http is only accepted for loopback hosts"):
        load(_cfg("http://example.com/aclImdb_v1.tar.gz"), tmp_path, labels=Labels.REQUIRED)


def test_url_must_name_a_known_file_type(server, tmp_path):
    url = server.url("/download?id=3")
    with pytest.raises(SourceError, match=r"the URL must name a file ending in \.csv, \.csv\.gz"):
        load(_cfg(url), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert server.requests == []  # refused before any download


def test_malformed_checksum_setting_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"sha256 must be 64 hex digits or empty, got 'abc123'"):
        load(
            _cfg("https://example.com/aclImdb_v1.tar.gz", "abc123"),
            tmp_path,
            labels=Labels.REQUIRED,
        )
