"""s3://bucket/key sources through boto3: a CSV/CSV.gz/Parquet object or an aclImdb .tar.gz.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws, instance roles). The endpoint is `ingest.s3_endpoint_url` when set, else boto3's own
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, else AWS. The object is streamed: a .tar.gz is read
member by member, a table is read into memory; nothing is written to disk.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlsplit

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from steps.stage.errors import SourceError, one_line
from steps.data.sources import aclimdb
from steps.data.sources.common import KNOWN_ENDINGS, Loaded, ProgressReader, kind_of
from steps.data.sources.tables import read_table

log = logging.getLogger(__name__)

# Fail within seconds on a wrong endpoint instead of retrying for minutes.
CLIENT_CONFIG = Config(
    connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
)
CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
)
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "403",
}


def load_s3(uri: str, endpoint_url: str) -> Loaded:
    """Reviews from one S3 object."""
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise SourceError(f"{uri}: expected s3://bucket/key")
    kind = kind_of(key)
    if kind is None:
        raise SourceError(f"{uri}: unknown object type: the key must end in {KNOWN_ENDINGS}")
    # A fresh session resolves the credential chain now (boto3's default one caches it).
    session = boto3.session.Session()
    client = session.client("s3", endpoint_url=endpoint_url or None, config=CLIENT_CONFIG)
    endpoint = client.meta.endpoint_url
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _client_error(uri, bucket, key, endpoint, exc) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise SourceError(f"{uri}: no AWS credentials found: {CREDENTIALS_HINT}") from None
    except EndpointConnectionError:
        raise SourceError(
            f"{uri}: cannot reach the S3 endpoint {endpoint}: check ingest.s3_endpoint_url"
            " (or AWS_ENDPOINT_URL) and the network"
        ) from None
    except BotoCoreError as exc:
        raise SourceError(f"{uri}: S3 request failed ({one_line(exc)})") from None
    size = obj.get("ContentLength")
    log.info("reading %s (%s bytes) from %s", uri, f"{size:,}" if size else "?", endpoint)
    try:
        with obj["Body"] as body, ProgressReader(body, size, key.rsplit("/", 1)[-1]) as stream:
            if kind == "tar":
                loaded = aclimdb.read_tar(stream, uri)
            else:
                loaded = Loaded(train=read_table(stream, kind, key, uri), test=None)
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


def _client_error(uri: str, bucket: str, key: str, endpoint: str, exc: ClientError) -> SourceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "?"))
    message = error.get("Message", "")
    if code == "NoSuchBucket":
        return SourceError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}: check the name")
    if code in ("NoSuchKey", "404"):
        return SourceError(f"{uri}: no object {key!r} in bucket {bucket!r}: check the key")
    if code in _DENIED:
        return SourceError(f"{uri}: access denied ({code}: {message}): {CREDENTIALS_HINT}")
    return SourceError(f"{uri}: S3 error {code} ({message})")

