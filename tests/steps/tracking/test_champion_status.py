"""Without a champion, serve/image/deploy and the end of the pipeline say so in one line with the
exact command that promotes by hand, in the words of the interface the user called."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from steps import models
from steps.stage.errors import StageError
from steps.stage.hints import CALLER_ENV
from steps.tracking import champion, registry

NAME = "imdb-sentiment"  # params.yaml's register.model_name: `python -m steps.models` reads it


@pytest.fixture
def refused(tracking_uri, tmp_path) -> MlflowClient:
    """Version 1, refused by promote (the small-data case): no champion."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=(tmp_path / "model").as_uri())
    client.set_model_version_tag(NAME, "1", registry.DECISION_TAG, "REFUSED (auto): checks failed")
    return client


@pytest.mark.parametrize(
    ("caller", "command"),
    [
        ("make", "make promote VERSION=1"),
        ("mlflow", "mlflow run . -e promote -P version=1 --env-manager local"),
        ("python", "python -m steps.promote --version 1"),
    ],
)
def test_no_champion_names_the_command_that_promotes_by_hand(refused, monkeypatch, caller, command):
    monkeypatch.setenv(CALLER_ENV, caller)
    line = champion.status(NAME)
    assert line == (
        f"{NAME} has no @champion (version 1: REFUSED (auto): checks failed): to serve version 1"
        f" anyway, promote it by hand: {command}"
    )


def test_with_a_champion_the_status_names_it(refused):
    refused.set_registered_model_alias(NAME, "champion", "1")
    assert champion.status(NAME) == f"{NAME} version 1 is @champion"


def test_nothing_registered_says_run_the_pipeline(tracking_uri, monkeypatch):
    monkeypatch.setenv(CALLER_ENV, "make")
    assert (
        champion.status(NAME)
        == f"{NAME} has no registered version yet: run the pipeline (make run)"
    )


@pytest.mark.parametrize("flag", ["--champion", "--servable"])
def test_models_without_a_champion_is_one_line_not_a_traceback(refused, monkeypatch, capsys, flag):
    """make serve, image, dockerfile and deploy ask this first."""
    monkeypatch.setenv(CALLER_ENV, "make")
    assert models.main([flag]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: models: imdb-sentiment has no @champion")
    assert err[-1].endswith("promote it by hand: make promote VERSION=1")
    assert "Traceback" not in "\n".join(err)


def test_rollback_with_nothing_to_go_back_to_suggests_make_promote(refused, monkeypatch):
    monkeypatch.setenv(CALLER_ENV, "make")
    refused.set_registered_model_alias(NAME, "champion", "1")
    with pytest.raises(StageError) as raised:
        champion.roll_back(NAME, by="rollback")
    assert str(raised.value).endswith("(promote a version by hand instead: make promote VERSION=N)")


def test_a_champion_recorded_under_the_old_tag_name_is_moved_and_still_noticed(refused):
    """Registries written before the bookkeeping tag was renamed keep their memory."""
    refused.create_model_version(NAME, source="file:///elsewhere")
    refused.set_registered_model_alias(NAME, "champion", "1")
    refused.set_registered_model_tag(NAME, "champion.recorded", "1")
    refused.set_registered_model_alias(NAME, "champion", "2")  # by hand, in the UI
    move = champion.notice(NAME, by="models")
    assert move == champion.HandMove(champion="2", before="1")
    tags = refused.get_registered_model(NAME).tags
    assert tags == {"bookkeeping.last_seen_champion": "2"}
    aliases = refused.get_registered_model(NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "2", "previous": "1"}


@pytest.mark.parametrize(
    ("legacy", "new", "before"),
    [
        ("1", None, None),  # only the old name, naming the champion: moved, nothing noticed
        ("2", None, "2"),  # only the old name, another version: moved, the hand move noticed
        ("", None, None),  # the old name recording "no champion": moved, nothing to go back to
        ("2", "1", None),  # both (an older tool ran after a newer one): the new name wins
    ],
)
def test_the_old_tag_name_is_read_once_and_removed(refused, legacy, new, before):
    refused.create_model_version(NAME, source="file:///elsewhere")
    refused.set_registered_model_alias(NAME, "champion", "1")
    refused.set_registered_model_tag(NAME, "champion.recorded", legacy)
    if new is not None:
        refused.set_registered_model_tag(NAME, registry.RECORDED_CHAMPION_TAG, new)
    move = champion.notice(NAME, by="models")
    assert move == (champion.HandMove(champion="1", before=before) if before else None)
    model = refused.get_registered_model(NAME)
    assert model.tags == {"bookkeeping.last_seen_champion": "1"}
    assert {k: str(v) for k, v in model.aliases.items()} == (
        {"champion": "1", "previous": before} if before else {"champion": "1"}
    )
    assert champion.notice(NAME, by="models") is None  # read once: nothing left to move
