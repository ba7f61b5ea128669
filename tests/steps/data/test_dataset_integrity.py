"""Validated means these exact files (issue 11, items 1 and 2): the marker and the manifest record
the sha256 of each Parquet file's bytes; train, evaluate and promote read only files that match
the marker, ingest rewrites files that no longer match its manifest, and unreadable Parquet is
one line naming the file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import REPO_ROOT, make_reviews

from steps import evaluate, ingest, promote, train, validate
from steps.data import dataset
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.stage.paths import INGESTED_DIR, MODEL_DIR, VALIDATED_MARKER
from steps.tracking import runs

PARAMS = load_params(REPO_ROOT / "params.yaml")


@dataclasses.dataclass
class Data:
    """A real ingest and a real validation of small data in tmp_path."""

    source: Path
    ingested: Path
    marker: Path
    report: Path

    def ingest(self) -> ingest.Outcome:
        cfg = dataclasses.replace(PARAMS.ingest, source=str(self.source), sha256="")
        return ingest.run(cfg, out_dir=self.ingested, download_dir=self.ingested.parent / "dl")

    def validate(self) -> validate.Outcome:
        cfg = dataclasses.replace(
            PARAMS.validate,
            suite=str(REPO_ROOT / PARAMS.validate.suite),
            train_test_suite=str(REPO_ROOT / PARAMS.validate.train_test_suite),
            min_rows=100,
        )
        return validate.check(cfg, self.ingested, self.marker, self.report)


@pytest.fixture
def data(tmp_path) -> Data:
    source = tmp_path / "reviews.csv"
    make_reviews(600, seed=21).to_csv(source, index=False)
    found = Data(
        source,
        tmp_path / "data" / "ingested",
        tmp_path / "data" / "validated.json",
        tmp_path / "reports" / "validation",
    )
    assert found.ingest().written
    assert found.validate().success
    return found


def unvalidated() -> pd.DataFrame:
    """Valid Parquet that validation would refuse: 60 rows, one-sided, one blank review."""
    frame = make_reviews(60, seed=99, positive_share=1.0)
    frame.loc[0, "review"] = " "
    return frame


def test_a_file_swapped_after_validation_is_not_validated_and_not_trained_on(
    data, tracking_uri, tmp_path
):
    assert dataset.is_validated(data.ingested, data.marker)
    unvalidated().to_parquet(data.ingested / "train.parquet", index=False)

    assert not dataset.is_validated(data.ingested, data.marker)
    with pytest.raises(StageError, match=r"train\.parquet has changed since it was validated"):
        dataset.require_validated(data.ingested, data.marker)
    models = tmp_path / "models"
    with mlflow.start_run(), pytest.raises(StageError, match=r"train\.parquet has changed"):
        train.run(
            PARAMS.train,
            ingested_dir=data.ingested,
            model_dir=models / "model",
            info_file=models / "model.json",
            metrics_file=tmp_path / "train_metrics.json",
            marker=data.marker,
        )
    assert not models.exists()  # nothing was fitted, nothing saved


def test_evaluate_and_promote_read_only_the_validated_test_split(data, tmp_path):
    good = dataset.read_validated_split("test", data.ingested, data.marker)
    assert len(good) == 120
    unvalidated().to_parquet(data.ingested / "test.parquet", index=False)
    with pytest.raises(StageError, match=r"test\.parquet has changed since it was validated"):
        dataset.read_validated_split("test", data.ingested, data.marker)
    with pytest.raises(StageError, match=r"test\.parquet has changed"):
        evaluate.run(
            PARAMS.evaluate,
            runs.TrainedModel("run", "models:/m-1", "m-1", str(tmp_path / "model")),
            ingested_dir=data.ingested,
            marker=data.marker,
        )
    with pytest.raises(StageError, match=r"test\.parquet has changed"):
        promote.load_eval_data(PARAMS.promote, data.ingested, data.marker)


def test_ingest_rewrites_damaged_and_swapped_files_then_validation_passes_again(data):
    before = {p.name: p.read_bytes() for p in data.ingested.iterdir()}
    assert not data.ingest().written  # unchanged: left untouched

    (data.ingested / "test.parquet").write_bytes(b"garbage, not Parquet")
    assert data.ingest().written
    assert {p.name: p.read_bytes() for p in data.ingested.iterdir()} == before

    train, test = data.ingested / "train.parquet", data.ingested / "test.parquet"
    swapped = train.read_bytes()
    train.write_bytes(test.read_bytes())
    test.write_bytes(swapped)
    assert data.ingest().written
    assert {p.name: p.read_bytes() for p in data.ingested.iterdir()} == before
    assert data.validate().cached  # the marker matches the rewritten files again
    assert dataset.is_validated(data.ingested, data.marker)


@pytest.mark.slow
@pytest.mark.integration
def test_unreadable_parquet_is_one_line_naming_the_file(data, tmp_path):
    bad = data.ingested / "train.parquet"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(StageError) as error:
        dataset.read_split("train", data.ingested)
    assert str(error.value).startswith(f"{bad}: not a readable Parquet file (")
    # The validate command line says the same in one line, without a traceback.
    project = data.ingested.parent.parent
    (project / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "steps.validate"],
        cwd=project,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: validate: data/ingested/train.parquet: not a readable Parquet")


@pytest.mark.slow
def test_mlflow_run_train_after_tampering_reingests_and_trains_on_the_validated_data(
    project_copy, tracking_uri
):
    """`mlflow run . -e train` on a checkout whose train.parquet was replaced after validation:
    ingest notices, rewrites it from the source, validate passes, and train fits on the real
    rows (today: it fits on the 60 swapped-in rows and tags the run with the old hash)."""
    source = project_copy / "reviews.csv"
    make_reviews(5200, seed=23).to_csv(source, index=False)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}

    def mlflow_train() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "mlflow", "run", str(project_copy), "-e", "train",
             "--env-manager", "local", "--experiment-name", "imdb-sentiment"],
            cwd=project_copy, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    params = (project_copy / "params.yaml").read_text()
    (project_copy / "params.yaml").write_text(
        params.replace(PARAMS.ingest.source, str(source)).replace(
            f"sha256: {PARAMS.ingest.sha256}", 'sha256: ""'
        )
    )
    mlflow_train()
    manifest = dataset.read_manifest(project_copy / INGESTED_DIR)
    assert dataset.is_validated(project_copy / INGESTED_DIR, project_copy / VALIDATED_MARKER)

    unvalidated().to_parquet(project_copy / INGESTED_DIR / "train.parquet", index=False)
    mlflow_train()

    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("imdb-sentiment").experiment_id],
        "tags.stage = 'train'",
        order_by=["start_time DESC"],
    )
    latest = runs[0]
    assert latest.data.metrics["train_reviews"] == manifest.rows["train"] == 4160
    assert latest.data.tags["data_manifest_sha256"] == manifest.content_sha256
    stages = [
        r.data.tags["stage"]
        for r in client.search_runs(
            [latest.info.experiment_id],
            f"tags.mlflow.parentRunId = '{latest.info.run_id}'",
        )
    ]
    assert sorted(stages) == ["ingest", "validate"]
    frame = dataset.read_split("train", project_copy / INGESTED_DIR)
    assert len(frame) == 4160 and (project_copy / MODEL_DIR / "MLmodel").is_file()
