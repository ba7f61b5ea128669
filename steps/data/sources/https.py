"""https:// sources: download once with a progress bar, verify, cache, then read like a local file.

The download goes to a temp file beside its final name under the download folder; only when the
byte count matches Content-Length, the sha256 matches the expected one (if any) and the file reads
as reviews is it renamed into place and a `<name>.verified.json` record written next to it. A later
run reuses the file only when that record matches the URL, the size and a fresh sha256 of the
file, so an interrupted, truncated or mismatched download is never trusted.
Plain http:// is accepted only for loopback hosts (tests, local mirrors). A URL whose decoded file
name is not a plain name (percent-encoded control characters, `/`) is refused.
score's stream streams a table file from the cached copy (Spark reads that copy too); it reads an
archive whole. `ingest.sha256` pins ingest's own download, so a stream never checks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
import urllib3

from steps.data.dataset import file_sha256
from steps.data.sources.common import KNOWN_ENDINGS, TABLE_KINDS, kind_of, progress
from steps.data.sources.kind import Columns, Labels, Loaded, Request, ReviewStream, SourceKind
from steps.data.sources.local import LocalFile, read_file
from steps.data.sources.streams import chunked, stream_files
from steps.stage.config import IngestConfig
from steps.stage.errors import SourceError, one_line
from steps.stage.files import atomic_path, sweep_stale, write_json
from steps.stage.secrets import printable, shown

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TIMEOUT_SECONDS = (10, 60)  # connect, then between bytes
CHUNK_BYTES = 1 << 20
RECORD_SUFFIX = ".verified.json"


class Https(SourceKind):
    """A file at an https:// URL (http:// on loopback): .tar.gz, .csv[.gz] or .parquet."""

    name = "https"
    prefixes = ("https://", "http://")

    def load(self, request: Request, labels: Labels) -> Loaded:
        return _load(request, request.settings.sha256, labels)

    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        url, where = request.source, request.where
        if kind_of(urlsplit(url).path) not in TABLE_KINDS:  # an archive (or what is refused)
            return chunked(_load(request, "", Labels.REQUIRED), where, chunk_rows)
        with downloaded(url, "", request.download_dir) as (path, facts):
            stream = stream_files([LocalFile(path)], where, columns, chunk_rows, stack, str(path))
        stream.details.update(sha256=facts["sha256"], cache=facts["cache"])
        return stream

    def password_remedy(self, settings: IngestConfig) -> str:
        return "put the credentials in ~/.netrc (the download reads it)"


def _load(request: Request, expected_sha256: str, labels: Labels) -> Loaded:
    """Reviews from the URL's file, cached in the download folder."""
    where = request.where  # a presigned URL's signature is a credential
    with downloaded(request.source, expected_sha256, request.download_dir) as (target, facts):
        loaded = read_file(target, where, labels)
    return loaded.with_details(
        url=where,
        sha256=facts["sha256"],
        bytes=str(facts["bytes"]),
        sha256_checked="yes" if facts["expected"] else "no (ingest.sha256 empty)",
        cache=facts["cache"],
    )


@contextmanager
def downloaded(url: str, expected_sha256: str, download_dir: Path) -> Iterator[tuple[Path, dict]]:
    """The verified local copy of `url` and its facts (bytes, sha256, expected, cache).

    Reused when a valid record says so, else downloaded. A fresh download the body of the `with`
    fails to read (any exception) is removed; one it reads is recorded for the next run.
    """
    expected = expected_sha256.strip().lower()  # its form is checked with the field (config.py)
    where = shown(url)  # a presigned URL's signature is a credential
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise SourceError(f"{where}: plain http is only accepted for loopback hosts: use https://")
    name = Path(unquote(parts.path)).name
    if printable(unquote(url)) != unquote(url):
        raise SourceError(f"{where}: the URL encodes control characters (%00-%1F, %7F): refused")
    if kind_of(name) is None:
        raise SourceError(
            f"{where}: the URL must name a file ending in {KNOWN_ENDINGS}"
            " (e.g. .../aclImdb_v1.tar.gz)"
        )
    target = download_dir / name
    record = download_dir / f"{name}{RECORD_SUFFIX}"
    sweep_stale(download_dir)  # the temp file of a download that was killed

    facts = _reuse(where, target, record, expected)
    fresh = facts is None
    if fresh:
        facts = _download(url, target, expected)
    try:
        yield target, {**facts, "expected": expected, "cache": "downloaded" if fresh else "reused"}
    except BaseException:
        if fresh:  # never keep a download that does not read as reviews
            target.unlink(missing_ok=True)
        raise
    if fresh:
        # The URL as shown: a presigned URL's signature or a token never lands in a file.
        write_json(record, {"url": where, **facts})


def _reuse(url: str, target: Path, record: Path, expected: str) -> dict | None:
    """The recorded facts of a cached, still-valid download of `url` (as shown: credentials
    hidden, so a fresh signature for the same file reuses it), or None to download."""
    if not (target.is_file() and record.is_file()):
        return None
    try:
        facts = json.loads(record.read_text(encoding="utf-8"))
        valid = facts["url"] == url and target.stat().st_size == facts["bytes"]
        digest = file_sha256(target) if valid else None
    except (OSError, ValueError, KeyError, TypeError):
        valid, digest = False, None
    if valid and digest == facts["sha256"] and (not expected or digest == expected):
        log.info("reusing verified download %s (sha256 %s)", target, digest)
        return {"bytes": facts["bytes"], "sha256": digest}
    log.warning("cached %s does not match its record or ingest.sha256: downloading again", target)
    record.unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    return None


def _download(url: str, target: Path, expected: str) -> dict:
    """Fetch url into target through a temp file; return {"bytes", "sha256"} once verified."""
    where = shown(url)
    try:
        response = requests.get(url, stream=True, timeout=TIMEOUT_SECONDS)
    except requests.ConnectionError as exc:
        raise SourceError(
            f"{where}: cannot connect ({_reason(exc)}): check the URL and the network"
        ) from None
    except requests.RequestException as exc:
        raise SourceError(f"{where}: request failed ({_reason(exc)})") from None
    with response:
        if response.status_code != 200:
            advice = "try again later" if response.status_code >= 500 else "check the URL"
            raise SourceError(f"{where}: HTTP {response.status_code} {response.reason}: {advice}")
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        log.info("downloading %s (%s) to %s", where, _size(total), target)
        started = time.monotonic()
        digest = hashlib.sha256()
        size = 0
        with atomic_path(target) as tmp:
            try:
                with open(tmp, "wb") as raw, progress(raw, total, target.name, "write") as out:
                    # Raw bytes as sent (no Content-Encoding decoding), so sizes and digests
                    # are those of the file the server holds.
                    for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                if "IncompleteRead" not in str(exc):  # a short body is reported just below
                    raise SourceError(
                        f"{where}: download interrupted after {size:,} of {_size(total)}"
                        f" ({_reason(exc)}): run again; nothing was kept"
                    ) from None
            if total is not None and size != total:
                raise SourceError(
                    f"{where}: download truncated: the connection ended after {size:,} of"
                    f" {total:,} bytes: run again; nothing was kept"
                )
            got = digest.hexdigest()
            if expected and got != expected:
                raise SourceError(
                    f"{where}: sha256 mismatch: got {got}, expected {expected} (ingest.sha256):"
                    " the file is damaged or has changed; nothing was kept"
                )
    elapsed = time.monotonic() - started
    log.info(
        "downloaded %s bytes in %.1f s, sha256 %s (%s)",
        f"{size:,}",
        elapsed,
        got,
        "verified" if expected else "not checked: ingest.sha256 is empty",
    )
    return {"bytes": size, "sha256": got}


def _size(total: int | None) -> str:
    return f"{total:,} bytes" if total is not None else "unknown size"


def _reason(exc: BaseException) -> str:
    """The useful words of a requests/urllib3 error ('Connection refused', 'timed out')."""
    text = one_line(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    if "timed out" in text:
        return "timed out"
    return shown(text) or type(exc).__name__
