"""A thin adapter over the `docker` command line: is an engine there, what images it has, pull,
build, tag, push (and the digest the registry gave the pushed tag).

The CLI rather than a Python client: `mlflow models build-docker` itself shells out to `docker`,
so whatever engine, context and credentials it uses, these calls use too. Long commands (build,
push) echo their output as log lines of `steps.rollout.docker.output` (a library prints nothing
itself); a failure becomes one line, the last meaningful line the command printed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from steps.stage.errors import StageError, one_line

log = logging.getLogger(__name__)
echo = logging.getLogger(f"{__name__}.output")  # a long command's output, line by line

DOCKER = "docker"
ENGINE_TIMEOUT = 15.0  # seconds for `docker version` to reach the engine
QUICK_TIMEOUT = 60.0  # seconds for inspect, tag and remove
OUTPUT_TAIL_LINES = 80  # of a failed command's output, searched for the line that says why
START_ENGINE = (
    "start one: `sudo .ci/start-dockerd` (installs Debian's docker.io if missing) or"
    " `sudo systemctl start docker`"
)
# `docker push` ends with `<tag>: digest: sha256:<hex> size: <bytes>`.
ERROR_LINE = re.compile(r"(?i)\berror\b")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the colours docker build puts in
PUSHED_DIGEST = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: \d+")


def check_engine() -> str:
    """The engine's version; a StageError saying how to get one when none answers."""
    try:
        done = subprocess.run(
            [DOCKER, "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=ENGINE_TIMEOUT,
        )  # fmt: skip
    except FileNotFoundError:
        raise StageError(
            f"{DOCKER!r} is not on PATH, so no Docker engine; {START_ENGINE}"
        ) from None
    except subprocess.TimeoutExpired:
        raise StageError(
            f"the Docker engine did not answer `docker version` in {ENGINE_TIMEOUT:g} s"
        ) from None
    if done.returncode or not done.stdout.strip():
        why = _last_line(done.stderr) or "no answer"
        raise StageError(f"no Docker engine answers ({why}); {START_ENGINE}")
    return done.stdout.strip()


def image_exists(ref: str) -> bool:
    return _quick(["image", "inspect", "--format", "{{.Id}}", ref]).returncode == 0


def image_labels(ref: str) -> dict[str, str]:
    """The image's labels ({} when it has none or does not exist)."""
    done = _quick(["image", "inspect", "--format", "{{json .Config.Labels}}", ref])
    if done.returncode:
        return {}
    return json.loads(done.stdout) or {}


def pull(ref: str, timeout: float) -> str | None:
    """Pull an image; None when pulled, else the one line that says why not."""
    log.info("pulling %s", ref)
    try:
        done = subprocess.run(
            [DOCKER, "pull", "--quiet", ref], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"`docker pull {ref}` took more than {timeout:g} s"
    if done.returncode:
        return _last_line(done.stderr) or f"`docker pull` exited with code {done.returncode}"
    return None


def tag(source: str, target: str) -> None:
    done = _quick(["tag", source, target])
    if done.returncode:
        raise StageError(f"docker tag {source} {target}: {_last_line(done.stderr)}")


def untag(ref: str) -> None:
    """Remove a tag (and the image, when nothing else refers to it); absent is fine."""
    _quick(["image", "rm", ref])


def build(context: Path, tag_: str, **build_args: str) -> None:
    """`docker build` (the engine's default builder, as MLflow's build-docker uses it)."""
    command = [DOCKER, "build", "--force-rm", "--tag", tag_]  # no containers left by a failure
    for name, value in build_args.items():
        command += ["--build-arg", f"{name}={value}"]
    run_echoed([*command, str(context)], "docker build")


def push(ref: str) -> str:
    """Push a tag; return the digest the registry stored it under (sha256:...)."""
    lines = run_echoed([DOCKER, "push", ref], "docker push")
    name_tag = ref.rsplit("/", 1)[-1]
    tag_ = name_tag.split(":", 1)[1] if ":" in name_tag else "latest"
    for line in reversed(lines):
        found = PUSHED_DIGEST.match(line)
        if found and found["tag"] == tag_:
            return found["digest"]
    raise StageError(f"docker push {ref} succeeded but printed no digest for tag {tag_!r}")


def run_echoed(
    command: Sequence[str], what: str, env: Mapping[str, str] | None = None
) -> list[str]:
    """Run a command, echoing its output; return its lines, or raise with the line that says why
    it failed."""
    log.info("running %s", shlex.join(command))
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env), text=True, errors="replace",
        )  # fmt: skip
    except FileNotFoundError:
        raise StageError(f"{what}: {command[0]!r} not found on PATH") from None
    with process:
        for line in process.stdout:
            echo.info("| %s", line.rstrip("\n"))
            lines.append(line.rstrip("\n"))
            if text := ANSI_ESCAPE.sub("", line).strip():
                tail.append(text)
    if process.returncode:
        raise StageError(f"{what} exited with code {process.returncode}: {_why(tail)}")
    return lines


def _why(tail: Sequence[str]) -> str:
    """The line of a failed command's output that says why: its last error line, else its last
    line (a failed build ends with generic lines such as MLflow's "Docker build failed.")."""
    errors = [line for line in tail if ERROR_LINE.search(line)]
    return one_line((errors or list(tail) or ["no output"])[-1], 400)


def _quick(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=QUICK_TIMEOUT, check=False
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else ""
