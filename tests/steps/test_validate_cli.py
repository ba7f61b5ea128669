"""validate as people run it: the CLI in a project copy logging to a real SQLite MLflow store,
and the real 25k IMDB reviews against the default bounds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import make_reviews, write_ingested

from steps import validate as stage
from steps.stage.config import load_params
from steps.tracking.store import EXPERIMENT_NAME

REPO = Path(__file__).resolve().parents[2]


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.validate", "--min_rows", "100", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def validate_runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    return client.search_runs(
        [experiment.experiment_id], "tags.stage = 'validate'", order_by=["attributes.start_time"]
    )


@pytest.mark.slow
@pytest.mark.integration
def test_cli_fails_with_a_plain_words_report_and_no_marker(project_copy, tracking_uri):
    train, test = make_reviews(400, seed=1), make_reviews(120, seed=2)
    train.loc[[3, 8, 13], "review"] = ["", " ", "\t"]
    test.loc[:11, "review"] = train["review"].iloc[20:32].to_numpy()
    write_ingested(project_copy / "data" / "ingested", train, test)

    done = run_cli(project_copy)

    assert done.returncode == 1, done.stderr
    assert "validation failed: 3 of 25 expectations not met" in done.stderr
    assert "train: review: 3 of 400 rows are blank, e.g. '', ' ', '\\t'" in done.stderr
    assert "test: review: 12 of 120 rows (10.0%) also occur in train" in done.stderr
    assert "error: validate: 3 of 25 expectations not met" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Calculating Metrics" not in done.stderr  # GX progress bars are off
    assert not (project_copy / "data" / "validated.json").exists()
    report = json.loads((project_copy / "reports/validation/validation_result.json").read_text())
    assert report["success"] is False and len(report["failures"]) == 3
    assert not (project_copy / "gx").exists()

    (run,) = validate_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["validation_success"] == "false"
    assert run.data.metrics["expectations_failed"] == 3
    assert run.data.params["max_overlap_fraction"] == "0.02"
    logged = {
        a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id, "validation")
    }
    assert {"validation/index.html", "validation/validation_result.json"} <= logged


@pytest.mark.slow
@pytest.mark.integration
def test_cli_passes_writes_the_marker_and_reuses_it(project_copy, tracking_uri):
    write_ingested(
        project_copy / "data" / "ingested", make_reviews(400, seed=1), make_reviews(120, seed=2)
    )

    first = run_cli(project_copy)
    second = run_cli(project_copy)

    assert first.returncode == 0, first.stderr
    assert "validation passed: 25 expectations met" in first.stderr
    marker = json.loads((project_copy / "data" / "validated.json").read_text())
    assert marker["bounds"]["min_rows"] == 100
    assert second.returncode == 0, second.stderr
    assert "already validated" in second.stderr
    runs = validate_runs(tracking_uri)
    assert [r.data.tags["validation_cached"] for r in runs] == ["false", "true"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["validation_success"] == "true"
        assert run.data.metrics["expectations_evaluated"] == 25
        assert run.data.metrics["rows_train"] == 400
        files = {
            a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id, "validation")
        }
        assert "validation/validation_result.json" in files


@pytest.fixture(scope="module")
def real_splits(shared_imdb_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 25k real reviews carved 20k/5k as ingest does (stratified, seed 0)."""
    from sklearn.model_selection import train_test_split

    reviews = pd.read_csv(shared_imdb_dir / "train.csv.gz")
    train, test = train_test_split(
        reviews, test_size=0.2, stratify=reviews["sentiment"], random_state=0
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture
def defaults():
    cfg = load_params(REPO / "params.yaml").validate
    return dataclasses.replace(
        cfg,
        suite=str(REPO / cfg.suite),
        train_test_suite=str(REPO / cfg.train_test_suite),
    )


@pytest.mark.slow
def test_real_data_passes_the_default_bounds(real_splits, defaults, tmp_path):
    train, test = real_splits
    assert train["review"].duplicated().sum() > 0  # the real duplicates are in there
    write_ingested(tmp_path / "ingested", train, test)

    outcome = stage.check(defaults, tmp_path / "ingested", tmp_path / "ok.json", tmp_path / "r")

    assert outcome.success, outcome.failures
    results = json.loads((tmp_path / "r" / "validation_result.json").read_text())["results"]
    (overlap,) = results["train+test"]["results"]
    # Duplicates land on both sides of a random carve: overlap is real, and within bounds.
    assert 0 < overlap["result"]["observed_value"] <= defaults.max_overlap_fraction


@pytest.mark.slow
def test_real_data_with_leakage_fails(real_splits, defaults, tmp_path):
    train, test = real_splits
    leaked = test.copy()
    leaked.loc[:249, "review"] = train["review"].iloc[:250].to_numpy()  # 5% of the test split
    write_ingested(tmp_path / "ingested", train, leaked)

    outcome = stage.check(defaults, tmp_path / "ingested", tmp_path / "ok.json", tmp_path / "r")

    assert not outcome.success
    (failure,) = outcome.failures
    assert failure.startswith("test: review: ")
    assert "of 5,000 rows" in failure and "also occur in train" in failure
