"""`main` ends with register and promote: each run adds a version; the rule decides the alias."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import make_reviews

from steps.stage import chain

NAME = "imdb-sentiment"


@pytest.mark.slow
def test_each_main_run_registers_a_version_and_promote_decides(tracking_uri, project_copy):
    assert chain.PIPELINE[-2:] == ("register", "promote")
    source = project_copy / "reviews.csv"
    make_reviews(5200, seed=5).to_csv(source, index=False)  # >= 1,000 test rows after the split
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The synthetic reviews carry none of the behavioural suites' phrases; 0 lets them pass.
    command = [
        sys.executable, "-m", "steps.main", "--source", str(source),
        "--min_check_pass_rate", "0",
    ]  # fmt: skip
    for _ in range(2):
        done = subprocess.run(
            command, cwd=project_copy, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    versions = sorted(
        client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version)
    )
    assert [str(v.version) for v in versions] == ["1", "2"]
    first, second = (client.get_model_version(NAME, str(v.version)) for v in versions)
    for version in (first, second):
        accuracy = re.search(r"\| accuracy \| ([0-9.]+) \|", version.description)
        assert float(accuracy.group(1)) > 0.9
        assert version.tags["behavioural_checks"] == "passed"
        assert len(version.tags["data_manifest_sha256"]) == 64
        assert version.tags["git_commit"]
    assert first.tags["promotion.decision"] == "promoted"
    # Same data, same recipe: no gain, so the second run's model is refused and says why.
    assert second.tags["promotion.decision"] == "refused"
    assert "REFUSED (auto): not better enough" in second.description
    assert {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()} == {
        "champion": "1"
    }
    assert "version 2: REFUSED (auto): not better enough" in done.stdout
