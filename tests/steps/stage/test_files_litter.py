"""Interrupted runs leave no litter (issue 11, item 6): the temp files of an ingest or a download
that was killed are removed by the next run, and the temp files of a run still at work are not."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO_ROOT, make_reviews, review_server, stage_env

from steps import ingest
from steps.stage.config import load_params

CFG = dataclasses.replace(load_params(REPO_ROOT / "params.yaml").ingest, sha256="")
# A process that starts replacing `folder` as ingest does, says so, and waits to be killed.
WRITING = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from steps.stage.files import atomic_dir\n"
    "with atomic_dir(Path(sys.argv[1])) as tmp:\n"
    "    (tmp / 'train.parquet').write_bytes(b'half a file')\n"
    "    print('writing', flush=True)\n"
    "    time.sleep(600)\n"
)


def writer(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITING, str(folder)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "writing"
    return process


def temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp")) if folder.exists() else []


@pytest.mark.integration
def test_a_killed_ingest_leaves_a_temp_folder_the_next_run_removes(tmp_path):
    data = tmp_path / "data"
    killed = writer(data / "ingested")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (litter,) = temps(data, "ingested")
    live = writer(data / "ingested")  # another run, still writing: its temp must survive
    try:
        (working,) = (p for p in temps(data, "ingested") if p != litter)
        source = tmp_path / "reviews.csv"
        make_reviews(100, seed=71).to_csv(source, index=False)
        outcome = ingest.run(
            dataclasses.replace(CFG, source=str(source)),
            out_dir=data / "ingested",
            download_dir=data / "downloads",
        )
        assert outcome.written
        assert not litter.exists()
        assert working.is_dir() and (working / "train.parquet").read_bytes() == b"half a file"
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_a_killed_download_leaves_a_temp_file_the_next_run_removes(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    body = make_reviews(4000, seed=72).to_csv(index=False).encode()
    downloads = tmp_path / "data" / "downloads"
    env = stage_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with review_server() as server:
        server.bodies["/reviews.csv"] = body
        server.stalled.add("/reviews.csv")
        command = [sys.executable, "-m", "steps.ingest", "--source", server.url("/reviews.csv")]
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (temps(downloads, "reviews.csv") and server.requests):
            assert time.monotonic() < deadline and first.poll() is None, "no download started"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(temps(downloads, "reviews.csv")) == 1  # killed mid-body

        server.stalled.clear()
        again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "removed 1 temp file(s) left by interrupted runs" in again.stderr
    assert temps(downloads, "reviews.csv") == []
    assert (downloads / "reviews.csv").read_bytes() == body


@pytest.mark.parametrize("suffix", ["tmp", "old"])
def test_only_names_with_a_dead_pid_are_swept(tmp_path, suffix):
    from steps.stage.files import sweep_stale

    mine = tmp_path / f".model.{os.getpid()}-abc.{suffix}"
    dead = tmp_path / f".model.{2**22 + 12345}-abc.{suffix}"  # above pid_max: never running
    user = tmp_path / f".model.notes.{suffix}"  # not a name atomic writes make
    for path in (mine, dead, user):
        path.mkdir()
    assert sweep_stale(tmp_path) == [dead]
    assert mine.exists() and user.exists() and not dead.exists()
