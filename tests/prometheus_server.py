"""Run Debian's `prometheus` as a child process for tests: a generated config scraping given
targets every second, storage in a temp folder, on a free 127.0.0.1 port; query its HTTP API.

Started in its own process group and stopped by its PID, like tests/model_server.py's servers.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import model_server
import requests
import yaml

SCRAPE_INTERVAL = "1s"


@dataclass
class Prometheus:
    """A running Prometheus."""

    process: subprocess.Popen
    url: str  # http://127.0.0.1:<port>
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; an error answer fails with Prometheus's words."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single value of a query that returns one series, or None when it returns none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 60.0) -> float | None:
        """Poll `expr` until it equals `expected` (bounded); return the last value seen."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(expr)
            if seen == expected:
                return seen
            time.sleep(0.5)
        return seen


def start(
    binary: str,
    port: int,
    folder: Path,
    targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    job: str = "imdb-sentiment",
) -> Prometheus:
    """Start Prometheus scraping `targets` (host:port) as `job`, with `rule_files` loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log_path = folder / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Prometheus(process, f"http://127.0.0.1:{port}", log_path)


def wait_ready(prometheus: Prometheus, timeout: float = 60.0) -> None:
    """Poll /-/ready until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {prometheus.process.returncode}:"
                f" {prometheus.log_path.read_text()[-2000:]}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"prometheus not ready in {timeout:.0f} s: {prometheus.log_path}")


def stop(prometheus: Prometheus) -> None:
    """SIGTERM its process group, SIGKILL after a grace period."""
    model_server.stop_group(prometheus.process)
