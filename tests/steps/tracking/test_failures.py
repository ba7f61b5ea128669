"""A tracking server's failure in one line: rejected credentials, refused access, a server that
never answered usefully (and why), anything else; never a password."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, UNAUTHENTICATED

from steps.tracking.failures import explain, unreachable_reason
from steps.tracking.store import Target

URI = "http://alice:s3cret@127.0.0.1:5000"
LOCAL = Target(URI, None, "MLFLOW_TRACKING_URI")
DAGSHUB = Target("https://dagshub.com/o/r.mlflow", None, "DAGSHUB_REPO", "alice", "token")
REQUEST = "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception"
UNREACHABLE = {
    "refused": (
        f"{REQUEST} HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded"
        ' (Caused by NewConnectionError("Failed to establish a new connection: [Errno 111]'
        ' Connection refused"))',
        "is unreachable (Connection refused) after",
    ),
    "unknown host": (
        f"{REQUEST} HTTPSConnectionPool(host='nowhere.invalid', port=443): Max retries exceeded"
        ' (Caused by NameResolutionError("[Errno -2] Name or service not known"))',
        "is unreachable (Name or service not known) after",
    ),
    "error status": (
        f"{REQUEST} HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded"
        " (Caused by ResponseError('too many 503 error responses'))",
        "keeps failing (HTTP 503 on every attempt) after",
    ),
    "timeout": (
        f"{REQUEST} HTTPConnectionPool(host='127.0.0.1', port=5000): Read timed out.",
        "is unreachable (no answer within MLFLOW_HTTP_REQUEST_TIMEOUT=",
    ),
    "anything else": (f"{REQUEST} SSLError('bad handshake')", "is unreachable (SSLError("),
}


@pytest.mark.parametrize(("message", "words"), UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_a_request_that_never_got_an_answer_says_why_and_after_how_many_attempts(
    message, words, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    reason = unreachable_reason(MlflowException(message))
    assert reason.startswith(words)
    assert reason.endswith(
        "after 3 attempts (MLFLOW_HTTP_REQUEST_MAX_RETRIES=2): check the URI and that the server"
        " is running"
    )
    line = explain(MlflowException(message), LOCAL)
    assert line.startswith("tracking server http://alice:***@127.0.0.1:5000 (MLFLOW_TRACKING_URI) ")
    assert "s3cret" not in line and "\n" not in line


def test_an_answer_that_is_an_error_is_not_unreachable():
    assert unreachable_reason(MlflowException("RESOURCE_DOES_NOT_EXIST: no run abc")) is None
    line = explain(MlflowException("RESOURCE_DOES_NOT_EXIST: no run abc\nmore"), LOCAL)
    assert line == (
        "tracking server http://alice:***@127.0.0.1:5000 (MLFLOW_TRACKING_URI) failed:"
        " RESOURCE_DOES_NOT_EXIST: no run abc more"
    )


@pytest.mark.parametrize(
    ("code", "target", "line"),
    [
        (
            UNAUTHENTICATED,
            LOCAL,
            "tracking server http://alice:***@127.0.0.1:5000 rejected the credentials (HTTP 401):"
            " check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD",
        ),
        (
            UNAUTHENTICATED,
            DAGSHUB,
            "tracking server https://dagshub.com/o/r.mlflow rejected the credentials (HTTP 401):"
            " check DAGSHUB_USER_TOKEN (and DAGSHUB_USERNAME, if set)",
        ),
        (
            PERMISSION_DENIED,
            DAGSHUB,
            "tracking server https://dagshub.com/o/r.mlflow refused access (HTTP 403): the user of"
            " DAGSHUB_USER_TOKEN (and DAGSHUB_USERNAME, if set) lacks permission",
        ),
    ],
    ids=["401", "401-dagshub", "403-dagshub"],
)
def test_rejected_credentials_name_the_variables_to_check(code, target, line):
    exc = MlflowException("denied", error_code=code)
    assert explain(exc, target) == line
