"""`migrate`: a version logged as pickles becomes a new version logged as code and data, with the
same weights (scores equal), the same run, card and model tags, and a record of where it came
from; it then loads where pickles are refused. What cannot be migrated is one line, and nothing
is registered."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pickled_model import log_pickled
from support import PICKLE_GUARD, make_reviews

from pyfunc import packaging
from pyfunc.pipeline import build_pipeline
from steps import migrate
from steps.measure import sample
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT
from steps.tracking import loading, registry, store

# The stages run in-process keep their lock and default store in the working directory.
pytestmark = pytest.mark.usefixtures("in_project_dir")

PARAMS = PROJECT_ROOT / "params.yaml"
MODEL_NAME = load_params(PARAMS).register.model_name
REVIEWS = ["A wonderful, moving film.", "Dull and dreadful.", "", "qwertz"]


@pytest.fixture
def old_version(tracking_uri, tmp_path) -> str:
    """Version 1, logged the old way by a run that also logged an analysis sample; registered
    with model tags and a card, as register does."""
    store.configure()
    frame = make_reviews(300, seed=101)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    held_out = make_reviews(40, seed=102)
    with mlflow.start_run():
        info = log_pickled(pipeline, name="model")
        drawn = sample.Sample(
            reviews=held_out["review"].tolist(), labels=held_out["sentiment"].tolist(),
            accuracy=1.0, positive_share=0.5, sample_accuracy=1.0, model_uri=info.model_uri,
        )  # fmt: skip
        drawn.write(tmp_path / sample.FILE_NAME)
        mlflow.log_artifact(str(tmp_path / sample.FILE_NAME), sample.ARTIFACT_DIR)
    tags = {registry.CHECKS_TAG: registry.CHECKS_PASSED, registry.ACCURACY_TAG: "0.91"}
    version = mlflow.register_model(info.model_uri, MODEL_NAME, tags=tags).version
    MlflowClient().update_model_version(MODEL_NAME, version, description="the card")
    return str(version)


def cli(*argv: str) -> int:
    return migrate.main(["--params", str(PARAMS), *argv])


@pytest.mark.slow
@pytest.mark.integration
def test_a_pickled_version_becomes_a_code_and_data_version_with_the_same_scores(
    old_version, monkeypatch, capsys
):
    monkeypatch.setenv(PICKLE_GUARD, "false")  # a hardened shell: migrate reads the one it is named
    assert cli("--version", old_version) == 0
    printed = capsys.readouterr().out
    assert f"{MODEL_NAME} version 1 (pickles) -> version 2 (code and data" in printed
    assert "no alias moved" in printed
    client = MlflowClient()
    old, new = (client.get_model_version(MODEL_NAME, v) for v in ("1", "2"))
    assert new.run_id == old.run_id  # the run that trained the weights: its sample, its figures
    assert new.tags[registry.MIGRATED_FROM_TAG] == "1" and old.tags[registry.MIGRATED_TO_TAG] == "2"
    for carried in (registry.CHECKS_TAG, registry.ACCURACY_TAG):
        assert new.tags[carried] == old.tags[carried]
    assert new.description.startswith("the card")
    assert "migrated from version 1 (pickles) to code and data" in new.description
    assert "re-logged as version 2 (code and data)" in old.description
    assert not client.get_registered_model(MODEL_NAME).aliases
    new_uri, old_uri = (registry.model_uri(MODEL_NAME, v) for v in ("2", "1"))
    assert loading.is_pickled(old_uri) and not loading.is_pickled(new_uri)
    (migration,) = client.search_runs(
        [client.get_experiment_by_name(store.EXPERIMENT_NAME).experiment_id],
        "tags.stage = 'migrate'",
    )
    assert migration.data.metrics["reviews_compared"] >= 40 + len(migrate.EDGE_REVIEWS)
    assert migration.data.metrics["max_score_difference"] <= 1e-9
    assert "max_score_difference" in migration.data.params  # as users type it, no migrate. prefix
    logged = mlflow.search_logged_models(
        [migration.info.experiment_id],
        filter_string=f"source_run_id = '{migration.info.run_id}'",
        output_format="list",
    )
    assert [m.name for m in logged] == [MODEL_NAME]  # named as the registered model, not `model`
    frame = pd.DataFrame({"review": REVIEWS})
    served = mlflow.pyfunc.load_model(new_uri).predict(frame)  # with pickles refused
    monkeypatch.setenv(PICKLE_GUARD, "true")
    before = mlflow.pyfunc.load_model(old_uri).predict(frame)
    assert served["label"].tolist() == before["label"].tolist()
    assert np.abs(served["score"].to_numpy() - before["score"].to_numpy()).max() <= 1e-9


def _last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_a_version_already_code_and_data_is_refused(tracking_uri, capsys):
    store.configure()
    frame = make_reviews(200, seed=103)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    with mlflow.start_run():
        info = packaging.log_model(pipeline, name="model")
    mlflow.register_model(info.model_uri, MODEL_NAME)
    assert cli("--version", "1") == 1
    assert _last_error(capsys) == (
        f"error: migrate: {MODEL_NAME} version 1 is already code and data: nothing to migrate"
    )
    assert len(registry.all_versions(MODEL_NAME)) == 1


def test_a_pipeline_that_cannot_be_read_is_one_line_and_nothing_registered(
    old_version, tmp_path, capsys
):
    (pickled,) = (tmp_path / "mlartifacts").rglob("pipeline.joblib")
    pickled.write_bytes(pickled.read_bytes()[:200])
    assert cli("--version", old_version) == 1
    line = _last_error(capsys)
    assert line.startswith(f"error: migrate: cannot read {MODEL_NAME} version 1's pipeline")
    assert line.endswith("train and register a new version instead")
    assert len(registry.all_versions(MODEL_NAME)) == 1
    assert registry.MIGRATED_TO_TAG not in registry.get_version(MODEL_NAME, "1").tags


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--version", "7"], f"{MODEL_NAME} has no version 7 (registered versions: 1)"),
        (["--version", "x"], "model version must be a whole number, got 'x'"),
        ([], "migrate needs the version to re-log: python -m steps.migrate --version N"),
        (
            ["--version", "1", "--max_score_difference", "-1"],
            "migrate parameters: max_score_difference must be at least 0 and under 0.5, got -1.0",
        ),
    ],
)
def test_bad_arguments_are_one_line(old_version, argv, expected, capsys):
    assert cli(*argv) == 1
    assert _last_error(capsys) == f"error: migrate: {expected}"
    assert len(registry.all_versions(MODEL_NAME)) == 1
