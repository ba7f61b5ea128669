"""The MLflow Project's entry points run for real with `mlflow run` (`--env-manager local`):
the data stages on the shared 25k reviews and on the official aclImdb train archive (with its
50k unlabeled reviews and movie URLs), `main` end to end on an aclImdb folder and a second time
on the same data, and `train` on a checkout with no data, which runs ingest and validate first as
child runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import small_data_project

from steps.data.dataset import model_text
from steps.stage.paths import (
    INGESTED_DIR,
    MANIFEST_FILE_NAME,
    UNLABELED_FILE_NAME,
    VALIDATED_MARKER,
)
from steps.tracking.store import EXPERIMENT_NAME

VENV_BIN = Path(sys.executable).parent  # `python` in the entry points must be this one


def mlflow_run(project: Path, entry_point: str, *params: str, timeout: int = 900) -> str:
    """`mlflow run <project> -e <entry_point> -P ... --env-manager local`; returns its stderr."""
    command = [str(VENV_BIN / "mlflow"), "run", str(project), "-e", entry_point]
    for param in params:
        command += ["-P", param]
    command += ["--env-manager", "local", "--experiment-name", EXPERIMENT_NAME]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def runs_by_stage(tracking_uri: str) -> dict[str, list]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id], order_by=["start_time ASC"]):
        runs.setdefault(run.data.tags.get("stage"), []).append(run)
    return runs


@pytest.mark.slow
def test_ingest_then_validate_entry_points_on_the_real_data(
    project_copy, tracking_uri, shared_imdb_dir
):
    mlflow_run(project_copy, "ingest", f"source={shared_imdb_dir}")
    mlflow_run(project_copy, "validate")
    manifest = json.loads((project_copy / INGESTED_DIR / MANIFEST_FILE_NAME).read_text())
    assert manifest["rows"] == {"train": 20_000, "test": 5_000}
    assert manifest["positives"] == {"train": 10_000, "test": 2_500}
    marker = json.loads((project_copy / VALIDATED_MARKER).read_text())
    assert marker["content_sha256"] == manifest["content_sha256"]
    runs = runs_by_stage(tracking_uri)
    (ingest,), (validate,) = runs["ingest"], runs["validate"]
    assert ingest.data.params["source"] == str(shared_imdb_dir)
    assert ingest.data.metrics["train_rows"] == 20_000
    assert validate.info.status == "FINISHED"
    assert validate.data.tags["validation_success"] == "true"
    assert validate.data.metrics["expectations_failed"] == 0
    assert "validation/validation_result.json" in {
        a.path for a in MlflowClient().list_artifacts(validate.info.run_id, "validation")
    }


@pytest.mark.slow
def test_ingest_then_validate_entry_points_on_the_aclimdb_archive(
    project_copy, tracking_uri, shared_aclimdb_archive
):
    """The official layout: 25k labelled reviews with movies (the test split carved by whole
    movies), the 50k unlabeled reviews less any copy of a test review, all validated."""
    mlflow_run(project_copy, "ingest", f"source={shared_aclimdb_archive}")
    mlflow_run(project_copy, "validate")
    ingested = project_copy / INGESTED_DIR
    manifest = json.loads((ingested / MANIFEST_FILE_NAME).read_text())
    train, test = (pd.read_parquet(ingested / f"{split}.parquet") for split in ("train", "test"))
    unlabeled = pd.read_parquet(ingested / UNLABELED_FILE_NAME)
    assert len(train) + len(test) == 25_000
    assert 5_000 <= len(test) <= 5_030  # whole movies (at most 30 reviews each) until 20%
    assert not set(train["movie"]) & set(test["movie"])
    assert train["movie"].str.fullmatch(r"tt\d{7}").all()
    dropped = int(manifest["details"].get("unlabeled_dropped", "0 copies").split()[0])
    assert manifest["unlabeled_rows"] == len(unlabeled) == 50_000 - dropped
    assert 0 < dropped < 200  # the unlabeled reviews hold a few copies of labelled ones
    assert not set(unlabeled["review"]) & set(test["review"])
    assert not set(model_text(unlabeled["review"])) & set(model_text(test["review"]))  # as seen
    assert not set(unlabeled["movie"]) & (set(train["movie"]) | set(test["movie"]))
    assert manifest["test_split"] == "carved (grouped by movie, test_size=0.2, seed=0)"
    marker = json.loads((project_copy / VALIDATED_MARKER).read_text())
    assert marker["content_sha256"] == manifest["content_sha256"]
    (validate,) = runs_by_stage(tracking_uri)["validate"]
    assert validate.data.tags["validation_success"] == "true"
    assert validate.data.metrics["rows_unlabeled"] == len(unlabeled)
    assert validate.data.metrics["expectations_failed"] == 0


@pytest.mark.slow
def test_main_runs_every_stage_and_a_second_run_reuses_the_data(project_copy, tracking_uri):
    """On an aclImdb folder: the unlabeled split goes through ingest, validate and train."""
    source = small_data_project(project_copy, unlabeled=600)
    mlflow_run(project_copy, "main", f"source={source}", "C=0.5")
    ingested = project_copy / INGESTED_DIR
    before = {p.name: p.stat().st_mtime_ns for p in ingested.iterdir()}
    second = mlflow_run(project_copy, "main", f"source={source}")
    assert {p.name: p.stat().st_mtime_ns for p in ingested.iterdir()} == before
    assert "already validated" in second

    runs = runs_by_stage(tracking_uri)
    stages = ("ingest", "validate", "train", "evaluate", "register", "promote")
    assert {stage: len(runs.get(stage, [])) for stage in stages} == dict.fromkeys(stages, 2)
    first_main = runs["main"][0]
    children = [r for s in stages for r in runs[s][:1]]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {first_main.info.run_id}
    assert runs["train"][0].data.params["C"] == "0.5"
    assert runs["train"][0].data.metrics["unlabeled_reviews"] == 600
    assert runs["train"][0].data.metrics["val_grouped"] == 1.0
    assert runs["validate"][0].data.metrics["rows_unlabeled"] == 600
    assert runs["ingest"][1].data.tags["ingest.output"] == "unchanged"
    assert runs["validate"][1].data.tags["validation_cached"] == "true"
    champion = MlflowClient().get_model_version_by_alias("imdb-sentiment", "champion")
    assert str(champion.version) == "1"
    # Runs are named after their stage (MLflow named them `<adjective>-<animal>-<n>`), and the
    # main run carries one comparable row: the recipe, the metrics, what was registered.
    assert {r.info.run_name for stage in ("main", *stages) for r in runs[stage]} == {
        "main", *stages,
    }  # fmt: skip
    assert first_main.data.params["C"] == "0.5" and first_main.data.params["ngram_range"] == "1,3"
    evaluated = runs["evaluate"][0].data.metrics
    assert first_main.data.metrics["test_accuracy"] == evaluated["test_accuracy"]
    assert first_main.data.metrics["val_accuracy"] == runs["train"][0].data.metrics["val_accuracy"]
    assert first_main.data.tags["registered_version"] == "1"
    assert first_main.data.tags["promotion.decision"] == "promoted"


@pytest.mark.slow
def test_train_on_a_fresh_checkout_runs_ingest_and_validate_first(project_copy, tracking_uri):
    small_data_project(project_copy)
    mlflow_run(project_copy, "train")
    runs = runs_by_stage(tracking_uri)
    (train,) = runs["train"]
    for stage in ("ingest", "validate"):
        (child,) = runs[stage]
        assert child.data.tags["mlflow.parentRunId"] == train.info.run_id
        assert child.info.status == "FINISHED"
    assert train.info.status == "FINISHED"
    assert (project_copy / VALIDATED_MARKER).is_file()
    assert (project_copy / "models" / "model" / "MLmodel").is_file()
