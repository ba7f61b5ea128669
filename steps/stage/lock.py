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
- The lock file is opened without following a link and must be a regular file: a link there
  (whose target the record would overwrite), a folder, a FIFO or a read-only checkout is one
  line. `IMDB_LOCK_WAIT` must be a finite number of seconds, 0 or more (NaN or infinity would
  wait forever).
- Child runs of the holder (main's stages; the ingest and validate that train chains) inherit its
  token in `IMDB_PIPELINE_LOCK` and work under the lock their parent holds.

Hand-written on `fcntl` because `filelock` truncates the lock file when it opens it, which would
erase the holder's name before a refusal could show it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shlex
import socket
import stat
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
    fd = _open(path)
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


def _open(path: Path) -> int:
    """The lock file, opened for reading and writing (created if missing): never through a
    symbolic link (writing the record would overwrite what it points at), only a regular file;
    anything else is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StageError(
            f"cannot take the pipeline lock {path}: its folder cannot be made there"
            f" ({exc.strerror or exc}); run from a writable checkout"
        ) from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if path.is_symlink():
            why = "it is a symbolic link, refused (the lock's record would overwrite its target)"
        elif path.is_dir():
            why = "it is a folder"
        else:
            why = f"{exc.strerror or exc}: is the checkout read-only?"
        raise StageError(
            f"cannot take the pipeline lock {path}: {why}; a stage writes its lock there:"
            " remove what is in the way, or run from a writable checkout"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StageError(
            f"cannot take the pipeline lock {path}: it is not a regular file; remove it"
        )
    return fd


def holder(path: Path = PIPELINE_LOCK) -> dict[str, Any]:
    """The record of whoever holds (or last held) the lock; {} when there is none (or it is not
    a regular file: never read through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        return _read(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else {}
    finally:
        os.close(fd)


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
    # NaN and infinity would wait forever (a NaN deadline is never reached).
    if not math.isfinite(seconds) or seconds < 0:
        raise StageError(f"{WAIT_ENV}={text!r} must be a finite number of seconds, 0 or more")
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
