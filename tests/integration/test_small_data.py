"""A new user's own small file, through the README's commands: `make run SOURCE=... P=...` ends
saying what serves (or the exact command that promotes by hand), and nothing dead-ends in a
traceback (issue 25, point 1)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from support import REPO_ROOT, make_reviews

ROWS = 2000  # one file, carved 80/20: 400 test reviews, under validate.min_rows' 1,000


def make(project, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    steering = ("MLFLOW_", "_MLFLOW_", "DAGSHUB_", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "IMDB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(steering)}
    venv = REPO_ROOT / ".venv"
    # -o: the venv counts as installed even when the copied pyproject.toml is newer than its
    # stamp, or make would reinstall the project editable from this tmp copy into the real venv.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", str(venv / ".installed"), *args, f"VENV={venv}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_a_small_file_goes_from_make_run_to_a_champion(project_copy):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, project_copy / name)
    make_reviews(ROWS, seed=25).to_csv(project_copy / "mine.csv", index=False)

    refused = make(project_copy, "run", "SOURCE=mine.csv")
    assert refused.returncode != 0
    assert 'fewer than the 1,000 required (a smaller source for one run: P="min_rows=400")' in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr

    done = make(project_copy, "run", "SOURCE=mine.csv", "P=min_rows=300 min_check_pass_rate=0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [int(n) for n in re.findall(r"\[(\d)/6\] \w+", done.stderr)] == [1, 2, 3, 4, 5, 6]
    last = done.stdout.strip().splitlines()
    assert re.fullmatch(
        r"runs: http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning"
        r" \(make ui\)",
        last[-2],
    )
    # min_check_pass_rate=0: the checks pass, and version 1 beats no champion.
    assert last[-1] == "imdb-sentiment version 1 is @champion"
    assert make(project_copy, "models").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["serve", "image", "deploy"])
def test_without_a_champion_serve_image_deploy_are_one_line(project_copy, target):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, project_copy / name)
    failed = make(project_copy, target, timeout=300)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: models: imdb-sentiment has no registered version yet: run the pipeline (make run)"
    ], failed.stderr
    assert "Traceback" not in failed.stderr
