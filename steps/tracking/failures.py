"""What a tracking server's failure means, in one line: the credentials it rejected, the server it
could not reach and why, after how many attempts (steps/tracking/store.py's retry budget)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.exceptions import MlflowException

from steps.stage.errors import one_line
from steps.stage.secrets import shown

if TYPE_CHECKING:
    from steps.tracking.store import Target


def explain(exc: MlflowException, target: Target) -> str:
    """One line saying what the tracking server said and which variables to check."""
    where = f"tracking server {shown(target.tracking_uri)}"
    check = (
        "DAGSHUB_USER_TOKEN (and DAGSHUB_USERNAME, if set)"
        if target.username is not None
        else "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
    )
    status = exc.get_http_status_code()
    if status == 401:
        return f"{where} rejected the credentials (HTTP 401): check {check}"
    if status == 403:
        return f"{where} refused access (HTTP 403): the user of {check} lacks permission"
    if unreachable := unreachable_reason(exc):
        return f"{where} ({target.origin}) {unreachable}"
    return shown(f"{where} ({target.origin}) failed: {one_line(exc.message, 300)}")


_REQUEST_FAILED = re.compile(r"^API request to \S+ failed with exception")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_STATUS = re.compile(r"too many (\d{3}) error responses")


def unreachable_reason(exc: MlflowException) -> str | None:
    """For a request that never got a usable answer (refused, timed out, unknown host, an error
    status on every attempt), the words "is unreachable (<why>) after N attempts (...)"; None for
    any other MLflow error."""
    message = one_line(exc.message)
    if not _REQUEST_FAILED.match(message):
        return None
    verb = "is unreachable"
    if errno := _ERRNO.search(message):
        why = errno.group(1).strip()
    elif status := _STATUS.search(message):
        verb, why = "keeps failing", f"HTTP {status.group(1)} on every attempt"
    elif "timed out" in message.lower() or "timeout" in message.lower():
        timeout = MLFLOW_HTTP_REQUEST_TIMEOUT
        why = f"no answer within {timeout.name}={timeout.get()} s"
    else:
        why = shown(one_line(message.split(" failed with exception ", 1)[-1], 200))
    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    return (
        f"{verb} ({why}) after {retries + 1} attempts"
        f" ({MLFLOW_HTTP_REQUEST_MAX_RETRIES.name}={retries}): check the URI and that the server"
        " is running"
    )
