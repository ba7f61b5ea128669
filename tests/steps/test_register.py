"""register: each trained model becomes a new version with a model card and the few tags code
reads; the model is the one train saved or the one chosen by its run or URI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

from steps import register
from steps.stage.errors import StageError
from steps.tracking import cards, runs, store

KEYWORD_MODEL = Path(__file__).with_name("keyword_model.py")
NAME = "imdb-sentiment"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "review")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
)
DATA = "c0ffee" * 10


@pytest.fixture
def local_store(tracking_uri) -> str:
    store.configure()
    return tracking_uri


def train_run(C: str = "0.5", logged_as: str = NAME) -> runs.TrainedModel:
    """A keyword model logged by a run tagged as train logs it, as train leaves it (runs from
    before train named the model after the registered model logged it as `model`)."""
    with store.stage_run("train") as run:
        mlflow.log_params({"C": C, "ngram_range": "1,3", "params": "params.yaml"})
        mlflow.set_tags({store.DATA_TAG: DATA, store.SOURCE_TAG: "https://example.org/a.tar.gz"})
        info = mlflow.pyfunc.log_model(
            name=logged_as,
            python_model=str(KEYWORD_MODEL),
            model_config={"positive": ["good"], "negative": ["bad"]},
            signature=SIGNATURE,
            pip_requirements=["mlflow", "pandas"],
        )
        mlflow.set_tag(store.MODEL_URI_TAG, info.model_uri)
    return runs.from_run(run.info.run_id)


def write_report(folder: Path, model_uri: str | None, passed: bool = True) -> tuple[Path, Path]:
    """evaluate's two files: metrics (numbers only) and the record of what was evaluated."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "accuracy": 0.9123456,
        "f1": 0.91,
        "n_reviews": 5000,
        "behavioural_directional_pass_rate": 1.0,
        "behavioural_invariance_pass_rate": 0.9,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    record = {register.CHECKS_SUMMARY_KEY: passed, "model_uri": model_uri, "train_run_id": "x"}
    (folder / "evaluation.json").write_text(json.dumps(record), encoding="utf-8")
    return folder / "metrics.json", folder / "evaluation.json"


def test_each_registration_is_a_new_version_with_a_model_card_and_few_tags(local_store, tmp_path):
    trained = train_run()
    report = register.read_report(*write_report(tmp_path / "a", trained.model_uri))
    v1 = register.register(NAME, trained, report)
    version = MlflowClient().get_model_version(NAME, str(v1.version))
    assert version.tags == {
        "behavioural_checks": "passed",
        "data_manifest_sha256": DATA,
        "git_commit": store.git_commit() or "unknown",
        "test_accuracy": "0.912346",  # monitor compares a labelled batch with it
    }
    assert version.run_id == trained.run_id
    card = version.description
    assert card.startswith(f"Trained by run `{trained.run_id}` ({trained.model_uri})")
    assert not MlflowClient().get_registered_model(NAME).description.startswith("<!--")
    assert f"manifest `{DATA}` from `https://example.org/a.tar.gz`" in card
    assert "| accuracy | 0.912346 |" in card and "| n_reviews | 5000 |" in card
    assert "**Behavioural checks: passed** (directional 100%, invariance 90%)" in card
    assert "`C=0.5`" in card and "`ngram_range=1,3`" in card and "params.yaml" not in card
    assert cards.HISTORY_HEADING in card
    model = MlflowClient().get_registered_model(NAME)
    assert model.description == cards.model_card(NAME)
    line = register.summary(v1, report)
    assert line.startswith(f"registered {NAME} version 1 (behavioural checks passed; ")
    assert "accuracy=0.912346" in line

    second = train_run("2.0")
    report = register.read_report(*write_report(tmp_path / "b", second.model_uri, passed=False))
    v2 = register.register(NAME, second, report)
    assert int(v2.version) == int(v1.version) + 1
    assert MlflowClient().get_model_version(NAME, str(v2.version)).tags["behavioural_checks"] == (
        "failed"
    )
    assert MlflowClient().get_registered_model(NAME).aliases == {}  # promote moves aliases


def test_a_description_written_by_someone_else_is_kept(local_store, tmp_path):
    trained = train_run()
    MlflowClient().create_registered_model(NAME, description="Owned by the NLP team.")
    register.register(
        NAME, trained, register.read_report(*write_report(tmp_path, trained.model_uri))
    )
    assert MlflowClient().get_registered_model(NAME).description == "Owned by the NLP team."


def test_a_report_for_another_model_is_refused_and_nothing_registered(local_store, tmp_path):
    chosen = train_run()
    stale = register.read_report(*write_report(tmp_path, "models:/m-some-older-model"))
    with pytest.raises(
        StageError,
        match="the evaluation report is for models:/m-some-older-model, not the trained model"
        rf" {chosen.model_uri}: run evaluate on it first \(python -m steps.evaluate"
        rf" --run_id {chosen.run_id}\)",
    ):
        register.register(NAME, chosen, stale)
    assert MlflowClient().search_model_versions(f"name = '{NAME}'") == []


def test_report_problems_are_one_line_errors_naming_the_file(tmp_path):
    metrics, record = tmp_path / "metrics.json", tmp_path / "evaluation.json"
    with pytest.raises(
        StageError, match="evaluation.json: evaluation record not found: run the evaluate stage"
    ):
        register.read_report(metrics, record)
    record.write_text("{not json", encoding="utf-8")
    with pytest.raises(StageError, match="evaluation.json: evaluation record is not valid JSON"):
        register.read_report(metrics, record)
    record.write_text(json.dumps({"model_uri": "x"}), encoding="utf-8")
    with pytest.raises(StageError, match=f"no boolean '{register.CHECKS_SUMMARY_KEY}'"):
        register.read_report(metrics, record)
    record.write_text(json.dumps({register.CHECKS_SUMMARY_KEY: True}), encoding="utf-8")
    with pytest.raises(StageError, match="metrics.json: evaluation metrics not found"):
        register.read_report(metrics, record)
    with pytest.raises(StageError, match="run the train stage first"):
        runs.from_record(tmp_path / "model.json")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"run_id": "x"}), encoding="utf-8")
    with pytest.raises(StageError, match="missing key 'model_uri'"):
        runs.from_record(partial)


@pytest.mark.parametrize(
    ("logged_as", "asked", "refusal"),
    [
        (NAME, NAME, None),
        ("model", "model", None),  # a run from before: its model keeps loading by its old name
        (NAME, f"{NAME}/", None),
        (NAME, "other", f"logged its model as '{NAME}', not 'other'"),
        ("model", "other", "logged its model as 'model', not 'other'"),
        (NAME, f"{NAME}/extra", "model_uri must be models:/<model id> (m-...) or runs:/"),
    ],
)
def test_runs_uri_names_the_model_as_the_run_logged_it(local_store, logged_as, asked, refusal):
    trained = train_run(logged_as=logged_as)
    uri = f"runs:/{trained.run_id}/{asked}"
    if refusal is None:
        assert runs.from_uri(uri) == trained
        model = mlflow.pyfunc.load_model(trained.location)  # loads by what the run recorded
        answer = model.predict(pd.DataFrame({"review": ["good", "bad"]}))
        assert answer["label"].tolist() == ["positive", "negative"]
    else:
        with pytest.raises(StageError, match=re.escape(refusal)):
            runs.from_uri(uri)


def test_a_model_is_chosen_by_run_id_or_uri_and_other_runs_are_refused(local_store):
    trained = train_run()
    assert trained.model_uri.startswith("models:/m-") and trained.model_id
    assert trained.location == trained.model_uri and trained.data_sha256 == DATA
    assert runs.from_uri(trained.model_uri) == trained
    assert runs.from_uri(f"runs:/{trained.run_id}/{NAME}") == trained
    assert runs.from_uri(f"runs:/{trained.run_id}/model") == trained  # the name it had before
    assert runs.choose(trained.run_id, None) == trained

    with store.stage_run("evaluate") as evaluate_run:
        pass
    with pytest.raises(StageError, match="was logged by the evaluate stage, not by train"):
        runs.from_run(evaluate_run.info.run_id)
    with pytest.raises(StageError, match="run 'nope' not found"):
        runs.from_run("nope")
    with pytest.raises(StageError, match="model_uri must be models:/<model id>"):
        runs.from_uri("models:/imdb-sentiment/1")
    with pytest.raises(StageError, match="either run_id or model_uri, not both"):
        runs.choose(trained.run_id, trained.model_uri)
