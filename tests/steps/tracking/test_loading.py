"""Versions logged as pickles (before the model became code and data) where the pickle guard is
off: every stage that loads a model refuses them in one line naming the version and how to
re-log it, before anything is unpickled; where pickles are allowed they load as before."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from pickled_model import log_pickled
from support import PICKLE_GUARD, make_reviews

from pyfunc import packaging
from pyfunc.pipeline import build_pipeline
from steps import evaluate, models, score
from steps.measure import scoring
from steps.stage.config import load_params
from steps.stage.errors import StageError
from steps.stage.paths import PROJECT_ROOT
from steps.tracking import loading, registry, store

PARAMS = PROJECT_ROOT / "params.yaml"
MODEL_NAME = load_params(PARAMS).register.model_name
ONE_REVIEW = pd.DataFrame({"review": ["A wonderful film."]})


@pytest.fixture
def versions(tracking_uri) -> dict[str, str]:
    """Version 1 logged the old way (pickles), version 2 as code and data; 1 is the champion."""
    store.configure()
    frame = make_reviews(300, seed=91)
    pipeline = build_pipeline().fit(frame["review"].tolist(), frame["sentiment"].tolist())
    with mlflow.start_run():
        old = log_pickled(pipeline, name="old")
        new = packaging.log_model(pipeline, name="new")
    numbers = {
        kind: str(mlflow.register_model(info.model_uri, MODEL_NAME).version)
        for kind, info in (("old", old), ("new", new))
    }
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, numbers["old"])
    return numbers


def _refusal_of(version: str) -> str:
    return (
        f"was logged as pickles, before the model became code and data, and {PICKLE_GUARD}=false"
        f" here refuses them: re-log it with `make migrate VERSION={version}`"
    )


def test_where_pickles_are_allowed_both_versions_load(versions, monkeypatch):
    monkeypatch.delenv(PICKLE_GUARD, raising=False)
    for number in versions.values():
        uri = registry.model_uri(MODEL_NAME, number)
        answer = scoring.load_model(uri, uri, number).predict(ONE_REVIEW)
        assert answer["label"].tolist() == ["positive"]


def test_where_the_guard_is_off_the_old_version_is_refused_in_one_line(versions, monkeypatch):
    monkeypatch.setenv(PICKLE_GUARD, "false")
    old, new = (registry.model_uri(MODEL_NAME, versions[k]) for k in ("old", "new"))
    assert loading.is_pickled(old) and not loading.is_pickled(new)
    with pytest.raises(StageError) as caught:
        scoring.load_model(old, f"{MODEL_NAME} version {versions['old']}", versions["old"])
    message = str(caught.value)
    assert message.startswith(f"{MODEL_NAME} version {versions['old']} {_refusal_of('1')}")
    assert "\n" not in message
    assert scoring.load_model(new, new).predict(ONE_REVIEW)["label"].tolist() == ["positive"]


def test_each_stage_that_loads_a_model_refuses_the_old_version(
    versions, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv(PICKLE_GUARD, "false")
    monkeypatch.chdir(tmp_path)
    old = registry.model_uri(MODEL_NAME, versions["old"])
    with pytest.raises(StageError, match=_refusal_of(versions["old"]).replace("`", ".")):
        evaluate.load_model(old)
    with pytest.raises(StageError, match=f"{MODEL_NAME} v1 was logged as pickles"):
        scoring.score_models([(old, f"{MODEL_NAME} v1")], ["A wonderful film."])
    make_reviews(20, seed=92)[["review"]].to_csv("reviews.csv", index=False)
    argv = ["--params", str(PARAMS), "--input", "reviews.csv", "--output", "s.parquet"]
    assert score.main([*argv, "--model", old]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert f"{MODEL_NAME} version {versions['old']}" in line and _refusal_of("1") in line
    assert not (tmp_path / "s.parquet").exists()
    assert score.main([*argv, "--model", registry.model_uri(MODEL_NAME, versions["new"])]) == 0


def test_make_serves_check_refuses_an_old_champion_and_passes_a_new_one(
    versions, monkeypatch, capsys
):
    monkeypatch.setenv(PICKLE_GUARD, "false")
    assert models.main(["--params", str(PARAMS), "--servable"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{MODEL_NAME} version 1 (@champion) {_refusal_of('1')}" in line
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, versions["new"])
    assert models.main(["--params", str(PARAMS), "--servable"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == versions["new"]
    monkeypatch.setenv(PICKLE_GUARD, "true")  # where pickles are allowed, the old one serves
    registry.set_alias(MODEL_NAME, registry.CHAMPION_ALIAS, versions["old"])
    assert models.main(["--params", str(PARAMS), "--servable"]) == 0
