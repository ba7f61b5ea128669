"""register: each trained model becomes a new version, tagged with its evaluation and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

from steps import register
from steps.data.dataset import Manifest
from steps.stage.errors import StageError
from steps.tracking import store

KEYWORD_MODEL = Path(__file__).with_name("keyword_model.py")
NAME = "imdb-sentiment"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "review")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
)
MANIFEST = Manifest(
    source="https://example.org/aclImdb_v1.tar.gz",
    content_sha256="c0ffee" * 10,
    rows={"train": 100, "test": 100},
    positives={"train": 50, "test": 50},
    test_split="source",
)


@pytest.fixture
def local_store(tracking_uri) -> str:
    store.configure()
    return tracking_uri


def log_model() -> register.TrainedModel:
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(KEYWORD_MODEL),
            model_config={"positive": ["good"], "negative": ["bad"]},
            signature=SIGNATURE,
            pip_requirements=["mlflow", "pandas"],
        )
    return register.TrainedModel(run_id=run.info.run_id, model_uri=info.model_uri)


def write_report(path: Path, model_uri: str | None, passed: bool = True, **extra) -> Path:
    report = {
        "test_accuracy": 0.9123456,
        "test_f1": 0.91,
        "behavioural": {"directional_pass_rate": 1.0, "invariance_pass_rate": 0.98},
        register.CHECKS_SUMMARY_KEY: passed,
        "model_uri": model_uri,
        "notes": "text is not a metric",
        **extra,
    }
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def test_each_registration_is_a_new_version_tagged_with_evaluation_and_lineage(
    local_store, tmp_path
):
    trained = log_model()
    report = register.read_report(write_report(tmp_path / "metrics.json", trained.model_uri))
    v1 = register.register(NAME, trained, report, MANIFEST, commit="abc123")
    tags = MlflowClient().get_model_version(NAME, str(v1.version)).tags
    assert tags["metric.test_accuracy"] == "0.912346"
    assert tags["metric.behavioural.directional_pass_rate"] == "1"
    assert tags["behavioural_checks"] == "passed"
    assert tags["data_manifest_sha256"] == MANIFEST.content_sha256
    assert tags["data_source"] == MANIFEST.source
    assert tags["git_commit"] == "abc123"
    assert tags["train_run_id"] == trained.run_id
    assert "metric.notes" not in tags and "metric.model_uri" not in tags
    assert MlflowClient().get_model_version(NAME, str(v1.version)).run_id == trained.run_id
    line = register.summary(v1, report)
    assert line.startswith(f"registered {NAME} version 1 (behavioural checks passed; ")
    assert "test_accuracy=0.912346" in line

    second = log_model()
    report = register.read_report(write_report(tmp_path / "m2.json", second.model_uri, False))
    v2 = register.register(NAME, second, report, MANIFEST, commit=None)
    assert int(v2.version) == int(v1.version) + 1
    tags = MlflowClient().get_model_version(NAME, str(v2.version)).tags
    assert tags["behavioural_checks"] == "failed"
    assert tags["git_commit"] == "unknown"
    assert MlflowClient().get_registered_model(NAME).aliases == {}  # promote moves aliases


def test_a_report_for_another_model_is_refused_and_nothing_registered(local_store, tmp_path):
    trained = log_model()
    stale = register.read_report(write_report(tmp_path / "m.json", "models:/m-some-older-model"))
    with pytest.raises(StageError, match="the evaluation report is for models:/m-some-older"):
        register.register(NAME, trained, stale, MANIFEST, commit="abc")
    assert MlflowClient().search_model_versions(f"name = '{NAME}'") == []


def test_report_problems_are_one_line_errors_naming_the_file(tmp_path):
    with pytest.raises(
        StageError, match="metrics.json: evaluation report not found: run the evaluate stage first"
    ):
        register.read_report(tmp_path / "metrics.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(StageError, match="bad.json: evaluation report is not valid JSON"):
        register.read_report(bad)
    no_verdict = tmp_path / "nv.json"
    no_verdict.write_text(json.dumps({"test_accuracy": 0.9}), encoding="utf-8")
    with pytest.raises(StageError, match=f"no boolean '{register.CHECKS_SUMMARY_KEY}'"):
        register.read_report(no_verdict)
    with pytest.raises(StageError, match="run the train stage first"):
        register.read_trained_model(tmp_path / "model.json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"run_id": "x"}), encoding="utf-8")
    with pytest.raises(StageError, match="missing key 'model_uri'"):
        register.read_trained_model(partial)
