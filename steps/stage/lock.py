"""One pipeline at a time in a checkout: the lock every pipeline stage holds while it works.

The working files (data/ingested, data/validated.json, models/, reports/) are fixed paths: DVC
tracks them and each stage hands its output to the next through them, so they cannot be made per
run without giving up `dvc repro`. Two pipelines in one checkout (or a pipeline and a stage run by
hand) would read each other's data and register each other's models; the lock makes them take
turns instead.

- `hold(stage)` takes an exclusive `fcntl.flock` on `.pipeline.lock` in the working directory
  and writes who holds it (stage, pid, command, host, start time) into it. Another process
  refuses at once with one line naming the holder, or, with `IMDB_LOCK_WAIT=<seconds>`, waits up
  to that long for its turn.
- The kernel releases a flock when its process ends, however it ends: the lock of a killed run is
  free at once and its leftover record is reported as recovered. No PID guessing, no lock that
  outlives its holder. (flock is per host: two machines sharing one checkout over NFS are not
  kept apart.)
- Child runs of the holder (main's stages; the ingest and validate that train chains) inherit its
  token in `IMDB_PIPELINE_LOCK` and work under the lock their parent holds.

Hand-written on `fcntl` because `filelock` truncates the lock file when it opens it, which would
erase the holder's name before a refusal could show it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steps.stage.errors import StageError
from steps.stage.paths import PIPELINE_LOCK
from steps.stage.secrets import shown

log = logging.getLogger(__name__)

TOKEN_ENV = "IMDB_PIPELINE_LOCK"  # the holder's token, inherited by its child runs
WAIT_ENV = "IMDB_LOCK_WAIT"  # seconds to wait for a busy lock (default 0: refuse at once)
POLL_SECONDS = 0.5


class LockBusy(StageError):
    """Another pipeline holds the lock."""


@contextmanager
def hold(stage: str, path: Path = PIPELINE_LOCK, wait: float | None = None) -> Iterator[None]:
    """Hold the pipeline lock for `stage` (see the module docstring); `wait` overrides
    IMDB_LOCK_WAIT."""
    path = Path(path)
    token = os.environ.get(TOKEN_ENV)
    if token and holder(path).get("token") == token:
        yield  # a child run of the holder: its parent's lock covers it
        return
    wait = wait_seconds() if wait is None else wait
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, stage, wait)
        stale = _read(fd)
        if stale:
            log.info("recovered %s: its holder %s is gone", path, describe(stale))
        token = uuid.uuid4().hex
        _write(fd, _record(stage, token))
        os.environ[TOKEN_ENV] = token
        try:
            yield
        finally:
            os.environ.pop(TOKEN_ENV, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def holder(path: Path = PIPELINE_LOCK) -> dict[str, Any]:
    """The record of whoever holds (or last held) the lock; {} when there is none."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def describe(record: dict[str, Any]) -> str:
    """'main (pid 123 on host, `python -m steps.main`, since 12:00:01 UTC)'."""
    if not record:
        return "another process (no record yet)"
    return (
        f"{record.get('stage', '?')} (pid {record.get('pid', '?')} on {record.get('host', '?')},"
        f" `{record.get('command', '?')}`, since {record.get('started', '?')})"
    )


def wait_seconds() -> float:
    """IMDB_LOCK_WAIT as seconds (0 when unset)."""
    text = os.environ.get(WAIT_ENV, "").strip()
    try:
        seconds = float(text) if text else 0.0
    except ValueError:
        raise StageError(f"{WAIT_ENV}={text!r} must be a number of seconds") from None
    if seconds < 0:
        raise StageError(f"{WAIT_ENV}={text!r} must not be negative")
    return seconds


def _acquire(fd: int, path: Path, stage: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        busy = describe(holder(path))
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:g} s" if wait else ""
            raise LockBusy(
                f"another pipeline is working in this checkout{waited}: {busy} holds {path};"
                f" {stage} would mix its data and models with it: run again when it is done"
                f" (or set {WAIT_ENV}=<seconds> to wait for it)"
            )
        if not announced:
            log.info("waiting up to %g s for %s, held by %s", wait, path, busy)
            announced = True
        time.sleep(POLL_SECONDS)


def _record(stage: str, token: str) -> dict[str, Any]:
    return {
        "stage": stage,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command_line(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "token": token,
    }


def _command_line() -> str:
    """How this process was started, as `python -m steps.main --source ...` (redacted)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["python", "-m", spec.name] if spec else [sys.argv[0]]
    return shown(shlex.join(program + sys.argv[1:]))[:200]


def _read(fd: int) -> dict[str, Any]:
    data = os.pread(fd, 1 << 16, 0)
    try:
        raw = json.loads(data or b"{}")
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}


def _write(fd: int, record: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
