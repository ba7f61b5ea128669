"""The serving image of a model version: built by `mlflow models build-docker`, then pushed.

The build runs MLflow's own CLI in a child process with this interpreter, so the image holds the
model exactly as the registry has it; the child's output is echoed (indented) and, on failure,
its last meaningful line becomes the one-line error.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from collections import deque
from collections.abc import Mapping

import mlflow

from steps.stage.errors import StageError

log = logging.getLogger(__name__)

DOCKER = "docker"
OUTPUT_TAIL_LINES = 20  # of a failed command's output, kept to find the line that says why


def build_command(uri: str, image: str) -> list[str]:
    """`mlflow models build-docker` for one model version (the image serves on port 8080)."""
    return [
        sys.executable, "-m", "mlflow", "models", "build-docker",
        "-m", uri, "-n", image, "--env-manager", "local",
    ]  # fmt: skip


def build_and_push(uri: str, image: str) -> None:
    """Build the serving image of a model version with MLflow, then push it."""
    # The child resolves models:/ against the same store (configure() may not have set the env).
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    run_echoed(build_command(uri, image), env, "mlflow models build-docker")
    run_echoed([DOCKER, "push", image], env, "docker push")


def run_echoed(command: list[str], env: Mapping[str, str], what: str) -> None:
    """Run a command, echoing its output; raise with the line that says why it failed."""
    log.info("running %s", shlex.join(command))
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env),
            text=True, errors="replace",
        )  # fmt: skip
    except FileNotFoundError:
        raise StageError(
            f"{what}: {command[0]!r} not found on PATH (building needs a Docker engine;"
            " --image IMAGE skips the build)"
        ) from None
    with process:
        for line in process.stdout:
            sys.stderr.write(f"  | {line}")
            if line.strip():
                tail.append(line.strip())
    if process.returncode:
        why = tail[-1] if tail else "no output"
        raise StageError(
            f"{what} exited with code {process.returncode}: {why}"
            " (is a Docker engine running? --image IMAGE skips the build)"
        )
