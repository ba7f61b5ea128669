"""Fixtures of the stage tests: moto's S3 server (with credentials in the environment only)
and a local HTTP server, from tests/local_services.py."""

from __future__ import annotations

import os
import threading

import pytest
from local_services import REGION, ReviewServer, moto_s3_server


@pytest.fixture(scope="module")
def moto_s3():
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_s3):
    """Credentials from the environment only (no ~/.aws, no instance metadata)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret)
    return monkeypatch


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving `server.bodies[path]`."""
    srv = ReviewServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
