"""Run `mlflow models serve` as a child process: start it, wait for `/ping`, stop it by its PID.

Used by the serving tests and the serving benchmark, which both exercise the real server that
`make serve` runs. `mlflow models serve --env-manager local` execs `uvicorn` from PATH, so the
child's PATH starts with this interpreter's bin folder (the project venv's `uvicorn`). The child
gets its own process group, so stopping it also stops the uvicorn workers it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from steps.stage.errors import StageError

BIN_DIR = Path(sys.executable).parent
STOP_GRACE_SECONDS = 15.0


@dataclass
class Server:
    """A running `mlflow models serve`."""

    process: subprocess.Popen
    url: str  # http://127.0.0.1:<port>
    log_path: Path
    started_at: float  # time.perf_counter() just before the process started

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def serve_command(model_uri: str, port: int, workers: int = 1) -> list[str]:
    """The command `make serve` runs, on loopback."""
    return [
        str(BIN_DIR / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers),
    ]  # fmt: skip


def start(
    model_uri: str,
    port: int,
    log_path: Path,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start the server in its own process group, output to `log_path`; does not wait."""
    child_env = dict(os.environ if env is None else env)
    child_env["PATH"] = f"{BIN_DIR}{os.pathsep}{child_env.get('PATH', '')}"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            serve_command(model_uri, port, workers),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path, started)


def wait_ready(server: Server, timeout: float = 120.0, interval: float = 0.1) -> float:
    """Poll `/ping` until it answers 200; return seconds since start. Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise StageError(
                f"mlflow models serve exited with code {server.process.returncode} before"
                f" answering /ping; its output ends:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - server.started_at
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(interval)
    raise StageError(
        f"mlflow models serve did not answer {server.url}/ping within {timeout:.0f} s;"
        f" its output ends:\n{server.log_tail()}"
    )


def stop(server: Server) -> None:
    """Stop the server and its workers: SIGTERM to its process group, SIGKILL after a grace."""
    stop_group(server.process)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a child started with start_new_session and everything in its process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_SECONDS)
        except ProcessLookupError:
            process.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):  # a uvicorn worker that outlived its parent
        os.killpg(process.pid, signal.SIGKILL)
