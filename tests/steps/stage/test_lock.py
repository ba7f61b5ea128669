"""One pipeline at a time per checkout (issue 11, item 3): the pipeline lock against real
processes, and two real `mlflow run . -e main` started together on different data, each of whose
registered versions must be the model its own run trained on its own data."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import REPO_ROOT, make_reviews, stage_env

from steps import ingest
from steps.stage import lock
from steps.stage.config import load_params
from steps.tracking.store import EXPERIMENT_NAME

VENV_BIN = Path(sys.executable).parent
HOLD = (
    "import sys, time\n"
    "from steps.stage import lock\n"
    "with lock.hold(sys.argv[2], path=__import__('pathlib').Path(sys.argv[1]), wait=0):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


def holding(path: Path, stage: str = "main") -> subprocess.Popen:
    """A real process that holds the lock at `path` until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), stage],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.integration
def test_a_second_holder_is_refused_with_the_holder_named_then_waits_when_asked(tmp_path):
    path = tmp_path / ".pipeline.lock"
    holder = holding(path, "train")
    try:
        with pytest.raises(lock.LockBusy) as refused, lock.hold("ingest", path=path, wait=0):
            pass
        message = str(refused.value)
        assert "\n" not in message
        assert f"train (pid {holder.pid} on " in message and "holds" in message
        assert f"{lock.WAIT_ENV}=<seconds>" in message
        started = time.monotonic()
        busy = pytest.raises(lock.LockBusy, match=r"after waiting 1\.5 s")
        with busy, lock.hold("ingest", path=path, wait=1.5):
            pass
        assert time.monotonic() - started >= 1.5
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.integration
def test_the_lock_of_a_killed_holder_is_recovered_at_once(tmp_path, caplog):
    path = tmp_path / ".pipeline.lock"
    holder = holding(path, "main")
    dead = holder.pid
    os.kill(dead, signal.SIGKILL)
    holder.wait()
    assert lock.holder(path)["pid"] == dead  # its record is still there
    with caplog.at_level(logging.INFO, logger="steps.stage.lock"), lock.hold("main", path=path):
        assert lock.holder(path)["pid"] == os.getpid()
    assert f"pid {dead} on" in caplog.text and "is gone" in caplog.text
    assert lock.holder(path) == {}  # released cleanly: no record left


@pytest.mark.integration
def test_child_runs_of_the_holder_work_under_its_lock(tmp_path):
    path = tmp_path / ".pipeline.lock"
    with lock.hold("main", path=path):
        child = subprocess.run(
            [sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(path), "ingest"],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert child.returncode == 0, child.stderr
        stranger = subprocess.run(
            [sys.executable, "-c", HOLD, str(path), "ingest"],
            env={**{k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV},
                 "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stranger.returncode != 0 and "LockBusy" in stranger.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_a_stage_command_refuses_in_one_line_while_a_pipeline_runs(project_copy, tmp_path):
    holder = holding(project_copy / ".pipeline.lock", "main")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "steps.validate"],
            cwd=project_copy,
            env=stage_env(
                MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", **{lock.WAIT_ENV: "0"}
            ),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: validate: another pipeline is working in this checkout: main")
    assert f"(pid {holder.pid} on" in last


def _source(project: Path, name: str, seed: int, marker_sentiment: str) -> tuple[Path, str]:
    """Reviews in which the made-up word 'zorblax' marks every `marker_sentiment` review: a model
    trained on them scores 'zorblax' that way, which tells the two pipelines' models apart."""
    frame = make_reviews(5200, seed=seed)
    marked = frame["sentiment"] == marker_sentiment
    frame.loc[marked, "review"] = frame.loc[marked, "review"] + " Zorblax zorblax."
    path = project / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, marker_sentiment


def _pipeline(project: Path, source: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [str(VENV_BIN / "mlflow"), "run", str(project), "-e", "main",
               "-P", f"source={source}", "--env-manager", "local",
               "--experiment-name", EXPERIMENT_NAME]  # fmt: skip
    return subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_pipelines_started_together_each_register_their_own_model(
    project_copy, tracking_uri, tmp_path
):
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["ingest"]["sha256"] = ""
    params["evaluate"]["min_check_pass_rate"] = 0.0  # the synthetic reviews are not IMDB's
    params["promote"]["min_gain"] = -1.0  # every version is promoted in turn
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sources = dict(
        [
            _source(project_copy, "alpha", 31, "positive"),
            _source(project_copy, "beta", 32, "negative"),
        ]
    )
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           lock.WAIT_ENV: "1200"}  # fmt: skip
    started = [_pipeline(project_copy, source, env) for source in sources]
    outputs = [p.communicate(timeout=1800) for p in started]
    for process, (_, err) in zip(started, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    assert any("waiting up to 1200 s for .pipeline.lock" in err for _, err in outputs)

    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    runs = client.search_runs([experiment])
    by_id = {r.info.run_id: r for r in runs}
    children: dict[str, dict[str, mlflow.entities.Run]] = {}
    for run in runs:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            children.setdefault(parent, {})[run.data.tags["stage"]] = run
    versions = client.search_model_versions("name = 'imdb-sentiment'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert len({v.source for v in versions}) == 2  # two models, not one registered twice
    seen_sources = set()
    ingest_cfg = load_params(project_copy / "params.yaml").ingest
    for version in versions:
        train_run = by_id[version.run_id]
        main_run = by_id[train_run.data.tags["mlflow.parentRunId"]]
        stages = children[main_run.info.run_id]
        assert set(stages) == {"ingest", "validate", "train", "evaluate", "register", "promote"}
        assert stages["train"].info.run_id == version.run_id
        source = Path(main_run.data.params["source"])
        seen_sources.add(source)
        assert stages["ingest"].data.params["source"] == str(source)
        # The data it trained on is its own source's, end to end: what ingesting that source
        # alone gives.
        alone = ingest.run(
            dataclasses.replace(ingest_cfg, source=str(source)),
            out_dir=tmp_path / source.stem / "ingested",
            download_dir=tmp_path / source.stem / "downloads",
        ).manifest
        content = stages["ingest"].data.tags["ingest.content_sha256"]
        assert content == alone.content_sha256
        assert train_run.data.tags["data_manifest_sha256"] == content
        assert version.tags["data_manifest_sha256"] == content
        assert stages["register"].data.tags["registered_version"] == str(version.version)
        assert train_run.data.metrics["train_reviews"] == alone.rows["train"]
        # The model is the one trained on that data: it learnt that source's marker word.
        model = mlflow.pyfunc.load_model(f"models:/imdb-sentiment/{version.version}")
        score = model.predict(pd.DataFrame({"review": ["Zorblax zorblax zorblax."]}))["score"][0]
        assert (score > 0.5) == (sources[source] == "positive"), (source, score)
    assert seen_sources == set(sources)
    assert json.loads((project_copy / "models" / "model.json").read_text())["run_id"] in {
        v.run_id for v in versions
    }
