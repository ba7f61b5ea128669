"""Benchmark: the whole pipeline (`main`) on the official aclImdb train archive, per stage.

    python bench/bench_pipeline.py   (make bench; data: ../shared/data/imdb-aclimdb-train or
                                      $IMDB_ACLIMDB_DATA, the aclImdb train archive)

Runs `python -m steps.main --source <archive>` once, as `make run` does after its check, in a
scratch copy of the project's tracked files with its own SQLite MLflow store (nothing is
written here), and prints the table main prints at the end: each stage's wall seconds and CPU
seconds (user + system of the stage's process and all it started), and their total. The machine
may be shared: the load average before and after is printed, and CPU seconds are the figure to
compare. Aim (issue 26): under 210 s wall on 2 otherwise idle cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "aclImdb-train.tar.gz"
AIM_SECONDS = 210.0
TABLE_START = "stage times (load average"


def data_file() -> Path:
    default = REPO.parent / "shared" / "data" / "imdb-aclimdb-train"
    return Path(os.environ.get("IMDB_ACLIMDB_DATA", default)) / ARCHIVE_NAME


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def project_copy(into: Path) -> None:
    """The tracked files only (no data/, models/, mlflow.db of this checkout)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def main() -> int:
    if not data_file().is_file():
        print(f"skipped: {data_file()} not found (set IMDB_ACLIMDB_DATA)")
        return 0
    steering = ("MLFLOW_", "_MLFLOW_", "DAGSHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(steering)}
    env.pop("PYTHONPATH", None)  # the copy's own code, found from its working directory
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="bench_pipeline.") as scratch:
        work = Path(scratch)
        project_copy(work)
        before = load_avg()
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "steps.main", "--source", str(data_file())],
            cwd=work, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
    if done.returncode != 0:
        print(
            f"error: bench_pipeline: main failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
        return 1
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_START))
    table = [line for line in lines[start + 1 :] if line.startswith("|")]
    where = data_file().parent
    print(f"aclImdb train archive in {where}; load average before {before}, after {load_avg()}")
    print(
        f"python -m steps.main: {wall:.1f} s wall in all (aim: < {AIM_SECONDS:.0f} s, 2 idle cores)"
    )
    print(f"{lines[start]}\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
