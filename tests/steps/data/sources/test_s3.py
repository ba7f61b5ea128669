"""s3:// sources against moto in server mode on 127.0.0.1, with IAM authentication enforced.

The moto server starts with INITIAL_NO_AUTH_ACTION_COUNT=3: the first three requests (create an
IAM user, give it s3:*, create its access key) go through unauthenticated, every later request
must be signed with a key moto knows. So good credentials work and bad ones are really refused.
"""

from __future__ import annotations

import dataclasses
import gzip
import io

import pandas as pd
import pytest
from local_services import BUCKET, MotoS3
from support import aclimdb_order, free_port, make_reviews, write_aclimdb_tar

from steps.data.sources import Labels, load
from steps.stage.config import load_params
from steps.stage.errors import SourceError
from steps.stage.paths import PROJECT_ROOT


def _cfg(source: str, endpoint: str):
    ingest = load_params(PROJECT_ROOT / "params.yaml").ingest
    return dataclasses.replace(ingest, source=source, s3_endpoint_url=endpoint)


def _put(moto_s3: MotoS3, key: str, body: bytes) -> str:
    moto_s3.client().put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("key", "encode"),
    [
        ("exports/reviews.csv", lambda f: f.to_csv(index=False).encode()),
        ("exports/reviews.csv.gz", lambda f: gzip.compress(f.to_csv(index=False).encode())),
        ("exports/reviews.parquet", _parquet_bytes),
    ],
)
def test_table_objects(moto_s3, aws_env, tmp_path, key, encode):
    frame = make_reviews(25, seed=21)
    uri = _put(moto_s3, key, encode(frame))
    loaded = load(_cfg(uri, moto_s3.endpoint), tmp_path / "downloads", labels=Labels.REQUIRED)
    assert loaded.test is None
    pd.testing.assert_frame_equal(loaded.train, frame)
    assert loaded.details["endpoint"] == moto_s3.endpoint
    assert loaded.details["etag"]
    assert not (tmp_path / "downloads").exists()  # streamed, nothing written


def test_archive_object_is_read_from_the_stream(moto_s3, aws_env, tmp_path):
    splits = {"train": make_reviews(20, seed=22), "test": make_reviews(12, seed=23)}
    archive = write_aclimdb_tar(tmp_path / "aclImdb_v1.tar.gz", splits)
    uri = _put(moto_s3, "archives/aclImdb_v1.tar.gz", archive.read_bytes())
    loaded = load(_cfg(uri, moto_s3.endpoint), tmp_path / "downloads", labels=Labels.REQUIRED)
    pd.testing.assert_frame_equal(loaded.train, aclimdb_order(splits["train"]))
    pd.testing.assert_frame_equal(loaded.test, aclimdb_order(splits["test"], "test"))
    assert loaded.details["bytes"] == str(archive.stat().st_size)


def test_boto3_endpoint_variable_is_honoured(moto_s3, aws_env, tmp_path):
    uri = _put(moto_s3, "env/reviews.csv", make_reviews(10, seed=24).to_csv(index=False).encode())
    aws_env.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    loaded = load(_cfg(uri, ""), tmp_path, labels=Labels.REQUIRED)
    assert len(loaded.train) == 10
    assert loaded.details["endpoint"] == moto_s3.endpoint


def test_missing_bucket(moto_s3, aws_env, tmp_path):
    uri = "s3://no-such-bucket/reviews.csv"
    with pytest.raises(SourceError, match=rf"^{uri}: bucket 'no-such-bucket' does not exist at"):
        load(_cfg(uri, moto_s3.endpoint), tmp_path, labels=Labels.REQUIRED)


def test_missing_key(moto_s3, aws_env, tmp_path):
    uri = f"s3://{BUCKET}/nothing/here.csv.gz"
    with pytest.raises(SourceError, match=rf"^{uri}: no object 'nothing/here.csv.gz' in bucket"):
        load(_cfg(uri, moto_s3.endpoint), tmp_path, labels=Labels.REQUIRED)


@pytest.mark.parametrize(
    ("key_id", "use_real_secret", "code"),
    [("AKIAUNKNOWNKEY000000", True, "InvalidAccessKeyId"), (None, False, "SignatureDoesNotMatch")],
)
def test_bad_credentials_are_refused(moto_s3, aws_env, tmp_path, key_id, use_real_secret, code):
    uri = _put(moto_s3, "auth/reviews.csv", make_reviews(10, seed=25).to_csv(index=False).encode())
    aws_env.setenv("AWS_ACCESS_KEY_ID", key_id or moto_s3.key_id)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret if use_real_secret else "not-the-secret")
    with pytest.raises(SourceError) as err:
        load(_cfg(uri, moto_s3.endpoint), tmp_path, labels=Labels.REQUIRED)
    message = str(err.value)
    assert message.startswith(f"{uri}: access denied ({code}: ")
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)" in message
    assert "not-the-secret" not in message


def test_no_credentials_at_all(moto_s3, aws_env, tmp_path):
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    uri = f"s3://{BUCKET}/auth/reviews.csv"
    with pytest.raises(
        SourceError, match=rf"^{uri}: no AWS credentials found: check AWS_ACCESS_KEY_ID"
    ):
        load(_cfg(uri, moto_s3.endpoint), tmp_path, labels=Labels.REQUIRED)


@pytest.mark.slow
def test_unreachable_endpoint(aws_env, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    uri = f"s3://{BUCKET}/reviews.csv"
    with pytest.raises(SourceError, match=rf"cannot reach the S3 endpoint {endpoint}"):
        load(_cfg(uri, endpoint), tmp_path, labels=Labels.REQUIRED)


def test_non_utf8_object_names_the_object(moto_s3, aws_env, tmp_path):
    uri = _put(moto_s3, "bad/latin1.csv", "review,sentiment\nSehr schön,pos\n".encode("latin-1"))
    with pytest.raises(SourceError, match=rf"^{uri}: not UTF-8 text"):
        load(_cfg(uri, moto_s3.endpoint), tmp_path, labels=Labels.REQUIRED)


@pytest.mark.parametrize(
    ("uri", "cause"),
    [
        ("s3://bucket-only", "expected s3://bucket/key"),
        ("s3://b/reviews.json", "unknown object type"),
    ],
)
def test_unusable_s3_uris(tmp_path, uri, cause):
    with pytest.raises(SourceError, match=cause):
        load(_cfg(uri, ""), tmp_path, labels=Labels.REQUIRED)
