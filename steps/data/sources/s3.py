"""s3://bucket/key sources through boto3, the project's one S3 client (score's s3:// outputs
go through `exists` and `upload` here too).

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws, instance roles). The endpoint is `ingest.s3_endpoint_url` when set, else boto3's own
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, else AWS. Nothing is written to disk:
- load (ingest, monitor): one object streamed: a .tar.gz member by member, a table into memory;
- stream (score): an object, or every table object under a prefix (a Parquet dataset), through
  `RangedFile`: ranged GETs pinned to the ETag found, so Parquet reads only its footer and the
  pages of the columns it needs, and memory stays at about one chunk (steps/data/README.md has
  the measurements behind this choice).
boto3 is imported when an S3 source is read, not when the table is.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3

from steps.data.sources import aclimdb
from steps.data.sources.common import (
    KNOWN_ENDINGS,
    TABLE_ENDINGS,
    TABLE_KINDS,
    is_data,
    kind_of,
    progress,
)
from steps.data.sources.kind import Columns, Labels, Loaded, Request, ReviewStream, SourceKind
from steps.data.sources.local import STREAM_WHAT_TO_GIVE
from steps.data.sources.streams import chunked, stream_files
from steps.data.sources.tables import read_table
from steps.stage.errors import SourceError, one_line

log = logging.getLogger(__name__)

CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
)
PARQUET_READ_BYTES = 4 << 20  # one ranged GET per 4 MiB of a Parquet column's pages
# A CSV is read front to back in ranges that grow from the first (its header and first rows) to
# the largest, so the objects of a prefix, opened before their turn, hold little each.
CSV_FIRST_BYTES, CSV_READ_BYTES = 256 << 10, 8 << 20
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "403",
}
T = TypeVar("T")


class S3(SourceKind):
    """An S3 object (.csv[.gz], .parquet, aclImdb .tar.gz) or, for score, a prefix of tables."""

    name = "s3"
    prefixes = ("s3://",)

    def load(self, request: Request, labels: Labels) -> Loaded:
        from botocore.exceptions import BotoCoreError

        uri = request.source
        bucket, key = split(uri)
        if not key:
            raise SourceError(f"{uri}: expected s3://bucket/key")
        kind = kind_of(key)
        if kind is None:
            raise SourceError(f"{uri}: unknown object type: the key must end in {KNOWN_ENDINGS}")
        s3 = client(request.settings.s3_endpoint_url)
        endpoint = s3.meta.endpoint_url
        obj = call(uri, endpoint, lambda: s3.get_object(Bucket=bucket, Key=key), bucket, key)
        size = obj.get("ContentLength")
        log.info("reading %s (%s bytes) from %s", uri, f"{size:,}" if size else "?", endpoint)
        try:
            with obj["Body"] as body, progress(body, size, key.rsplit("/", 1)[-1]) as stream:
                if kind == "tar":
                    loaded = aclimdb.read_tar(stream, uri)
                else:
                    loaded = Loaded(train=read_table(stream, kind, key, uri, labels), test=None)
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(
                f"{uri}: reading the object failed ({one_line(exc)}): run again"
            ) from None
        details = {
            **loaded.details,
            "format": loaded.details.get("format", kind),
            "endpoint": endpoint,
            "etag": str(obj.get("ETag", "")).strip('"'),
            "bytes": str(size),
        }
        if obj.get("VersionId"):
            details["version_id"] = obj["VersionId"]
        return replace(loaded, details=details)

    def stream(
        self, request: Request, columns: Columns, chunk_rows: int, stack: ExitStack
    ) -> ReviewStream:
        uri, where = request.source, request.where
        bucket, key = split(uri)
        if kind_of(key) == "tar":  # an aclImdb archive: read whole
            return chunked(self.load(request, Labels.REQUIRED), where, chunk_rows)
        s3 = client(request.settings.s3_endpoint_url)
        files = _table_objects(s3, uri, bucket, key)
        return stream_files(files, where, columns, chunk_rows, stack, uri)


def split(uri: str) -> tuple[str, str]:
    """Bucket and key ("" for the bucket itself) of an s3:// URI."""
    parts = urlsplit(uri)
    if not parts.netloc:
        raise SourceError(f"{uri}: expected s3://bucket/key")
    return parts.netloc, parts.path.lstrip("/")


def client(endpoint_url: str) -> Any:
    """A boto3 S3 client on `endpoint_url` (or boto3's own endpoint settings), failing within
    seconds on a wrong endpoint instead of retrying for minutes."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
    )
    # A fresh session resolves the credential chain now (boto3's default one caches it).
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


def call(
    uri: str,
    endpoint: str,
    action: Callable[[], T],
    bucket: str = "",
    key: str = "",
    no_bucket: str = "check the name",
) -> T:
    """Run one S3 request; its failure as one SourceError line saying what to check."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    try:
        return action()
    except ClientError as exc:
        raise _client_error(uri, bucket, key, endpoint, exc, no_bucket) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise SourceError(f"{uri}: no AWS credentials found: {CREDENTIALS_HINT}") from None
    except EndpointConnectionError:
        raise SourceError(
            f"{uri}: cannot reach the S3 endpoint {endpoint}: check ingest.s3_endpoint_url"
            " (or AWS_ENDPOINT_URL) and the network"
        ) from None
    except S3UploadFailedError as exc:  # boto3's managed upload wraps the ClientError's words
        text = one_line(exc)
        hint = f": {CREDENTIALS_HINT}" if any(code in text for code in _DENIED) else ": run again"
        raise SourceError(f"{uri}: the upload failed ({text}){hint}") from None
    except (BotoCoreError, urllib3.exceptions.HTTPError) as exc:
        raise SourceError(f"{uri}: S3 request failed ({one_line(exc)})") from None


def _client_error(
    uri: str, bucket: str, key: str, endpoint: str, exc: Any, no_bucket: str
) -> SourceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "?"))
    message = error.get("Message", "")
    if code == "NoSuchBucket":
        return SourceError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}: {no_bucket}")
    if code in ("NoSuchKey", "404"):
        return SourceError(f"{uri}: no object {key!r} in bucket {bucket!r}: check the key")
    if code in _DENIED:
        return SourceError(f"{uri}: access denied ({code}: {message}): {CREDENTIALS_HINT}")
    if code in ("PreconditionFailed", "412"):
        return SourceError(f"{uri}: the object changed while it was read: run again")
    return SourceError(f"{uri}: S3 error {code} ({message})")


def _table_objects(s3: Any, uri: str, bucket: str, key: str) -> list[RangedFile]:
    """The object `key` names, or every table object under it as a prefix, in key order. An
    object is looked up first (a reader may get objects without listing the bucket)."""
    endpoint = s3.meta.endpoint_url
    found = call(uri, endpoint, lambda: _head(s3, bucket, key), bucket, key) if key else None
    if found is not None:
        if kind_of(key) not in TABLE_KINDS:
            raise SourceError(f"{uri}: unknown object type: {STREAM_WHAT_TO_GIVE}")
        return [RangedFile(s3, uri, bucket, key, found["ContentLength"], found["ETag"])]
    prefix = f"{key.rstrip('/')}/" if key else ""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    under = call(uri, endpoint, lambda: [o for p in pages for o in p.get("Contents", ())], bucket)
    if not under and key:
        raise SourceError(f"{uri}: no object or prefix {key!r}: check the key")
    tables = [
        o
        for o in sorted(under, key=lambda o: o["Key"])
        if kind_of(o["Key"]) in TABLE_KINDS and is_data(o["Key"][len(prefix) :])
    ]
    if not tables:
        raise SourceError(f"{uri}: no {TABLE_ENDINGS} objects under this prefix")
    return [
        RangedFile(s3, f"s3://{bucket}/{o['Key']}", bucket, o["Key"], o["Size"], o["ETag"])
        for o in tables
    ]


def _head(s3: Any, bucket: str, key: str) -> dict | None:
    """The object's size and ETag, or None when there is none (or `key` ends in /)."""
    from botocore.exceptions import ClientError

    if key.endswith("/"):
        return None
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None  # maybe a prefix; a missing bucket is said by the listing
        raise


class RangedFile(io.RawIOBase):
    """One S3 object as a seekable read-only file: each read is one ranged GET of the object as
    it was found (If-Match its ETag: a changed object is an error, not a mix of two versions).
    Also a `TableFile` for streams.stream_files."""

    read_bytes = PARQUET_READ_BYTES

    def __init__(self, s3: Any, uri: str, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self.s3, self.uri, self.bucket, self.key = s3, uri, bucket, key
        self.size, self.etag = size, etag
        self.position = 0
        self._span = 0  # a CSV's next range; 0: each read asks for exactly its bytes (Parquet)
        self._ahead, self._ahead_at = b"", 0  # a CSV's bytes fetched past the last read

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def open(self, stack: ExitStack) -> Any:
        """This file from its start: read as asked for Parquet (which seeks to what it needs),
        in growing ranges for a CSV."""
        self.seek(0)
        if kind_of(self.name) != "parquet":
            self._span = CSV_FIRST_BYTES
        return self

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.position = base + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        start = self.position
        end = self.size if size is None or size < 0 else min(start + size, self.size)
        if end <= start:
            return b""
        if 0 <= start - self._ahead_at < len(self._ahead):  # a CSV's next bytes, fetched already
            data = self._ahead[start - self._ahead_at : end - self._ahead_at]
        else:
            fetched = self._fetch(start, min(max(end, start + self._span), self.size))
            if self._span:
                self._ahead, self._ahead_at = fetched, start
                self._span = min(2 * self._span, CSV_READ_BYTES)
            data = fetched[: end - start]
        self.position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes start..end-1 of the object, in one ranged GET."""
        endpoint = self.s3.meta.endpoint_url
        return call(self.uri, endpoint, lambda: self._get(start, end), self.bucket, self.key)

    def _get(self, start: int, end: int) -> bytes:
        span = f"bytes={start}-{end - 1}"
        reply = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=span, IfMatch=self.etag)
        with reply["Body"] as body:
            return body.read()


def exists(uri: str, endpoint_url: str) -> bool:
    """Whether the object `uri` names exists; an error when its bucket does not."""
    bucket, key = split(uri)
    if not key:
        raise SourceError(f"{uri}: give a key in the bucket (s3://bucket/scores.parquet)")
    s3 = client(endpoint_url)
    # The first key with this prefix is the object itself when it exists (it sorts first).
    listed = call(
        uri,
        s3.meta.endpoint_url,
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1),
        bucket,
        key,
        no_bucket="create it first",
    )
    return any(o["Key"] == key for o in listed.get("Contents", ()))


def upload(local: Path, uri: str, endpoint_url: str) -> None:
    """Upload a finished local file as the object `uri` (S3 shows it only once complete)."""
    bucket, key = split(uri)
    s3 = client(endpoint_url)
    log.info("uploading %s bytes to %s", f"{local.stat().st_size:,}", uri)
    call(uri, s3.meta.endpoint_url, lambda: s3.upload_file(str(local), bucket, key), bucket, key)
