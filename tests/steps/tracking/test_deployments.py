"""What deploy records in MLflow (steps/tracking/deployments.py), against a real SQLite store:
slot aliases and deploy's tags on the registered model, analysis verdicts on a version and in
its card, the plan logged to the active run."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from steps.stage.errors import StageError
from steps.tracking import deployments
from steps.tracking.deployments import HELD_TAG, LIVE_SLOT_TAG, TAG_TEXT_LIMIT, Recorded

NAME = "imdb-sentiment-test"
SLOTS = ("blue", "green")


@pytest.fixture
def client(tracking_uri, tmp_path) -> MlflowClient:
    """A registered model with versions 1 and 2 (no model behind them: nothing here loads one)."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source=(tmp_path / "model").as_uri())
    return client


def model_state(client: MlflowClient) -> tuple[dict[str, str], dict[str, str]]:
    model = client.get_registered_model(NAME)
    return {k: str(v) for k, v in model.aliases.items()}, dict(model.tags)


def history(client: MlflowClient, version: int) -> list[str]:
    """The dated lines of a version's card."""
    card = client.get_model_version(NAME, str(version)).description
    return [line for line in card.splitlines() if line.startswith("- ")]


def test_nothing_recorded_without_a_registered_model(tracking_uri):
    assert deployments.recorded(NAME, SLOTS) is None
    assert deployments.champion_version(NAME) is None


def test_slots_recorded_then_moved_held_and_released(client):
    client.set_registered_model_alias(NAME, "champion", "2")

    deployments.record_slots(NAME, {"blue": 1, "green": 2}, live="green", held=None)

    aliases, tags = model_state(client)
    assert aliases == {"champion": "2", "blue": "1", "green": "2"}
    assert tags[LIVE_SLOT_TAG] == "green" and HELD_TAG not in tags
    # Only the slot aliases are deploy's: the champion is read on its own.
    assert deployments.recorded(NAME, SLOTS, client) == Recorded(
        aliases={"blue": 1, "green": 2}, live_slot="green", held=None
    )
    assert deployments.champion_version(NAME, client) == 2

    # A rollback: green emptied, blue live, version 2 held.
    deployments.record_slots(NAME, {"blue": 1, "green": None}, live="blue", held=2)

    aliases, tags = model_state(client)
    assert aliases == {"champion": "2", "blue": "1"}
    assert tags[LIVE_SLOT_TAG] == "blue" and tags[HELD_TAG] == "2"
    assert deployments.recorded(NAME, SLOTS) == Recorded({"blue": 1}, "blue", 2)

    # The hold lifted; a slot without a version and without an alias is left alone.
    deployments.record_slots(NAME, {"blue": 1, "green": None}, live="blue", held=None)

    aliases, tags = model_state(client)
    assert aliases == {"champion": "2", "blue": "1"} and HELD_TAG not in tags
    assert deployments.recorded(NAME, SLOTS).held is None


def test_recording_on_a_model_that_is_not_there_is_one_line(tracking_uri):
    with pytest.raises(StageError) as failure:
        deployments.record_slots(NAME, {"blue": 1}, live="blue", held=None)
    message = str(failure.value)
    assert message.startswith(f"registry: set {NAME}@blue -> version 1: ") and "\n" not in message


def test_a_passed_analysis_is_tagged_and_said_in_the_card(client):
    figures = {"reviews": 6.0, "accuracy": 5 / 6, "p99_seconds": 0.0123456789}

    deployments.record_analysis(NAME, 1, "pre", "passed", figures)

    tags = client.get_model_version(NAME, "1").tags
    assert {k: v for k, v in tags.items() if k.startswith("analysis.")} == {
        "analysis.pre": "passed",
        "analysis.pre.reviews": "6",
        "analysis.pre.accuracy": "0.833333",
        "analysis.pre.p99_seconds": "0.0123457",
    }
    (line,) = history(client, 1)
    assert line.endswith(
        ": deploy: pre-promotion analysis passed (reviews 6, accuracy 0.833333,"
        " p99_seconds 0.0123457)"
    )
    assert not client.get_model_version(NAME, "2").tags  # only the version analysed


@pytest.mark.parametrize(
    ("figures", "line"),
    [
        ({}, "deploy: post-promotion analysis failed: "),
        ({"error_ratio": 0.5}, "deploy: post-promotion analysis failed (error_ratio 0.5): "),
    ],
    ids=["no figures", "figures"],
)
def test_a_failed_analysis_says_which_check_and_why(client, figures, line):
    reason = "error ratio 0.5 over max_error_ratio 0.01 " + "x" * 5000  # over a tag's limit

    deployments.record_failed_analysis(NAME, 2, "post", "error_ratio", reason, figures)

    tags = client.get_model_version(NAME, "2").tags
    assert tags["analysis.post"] == "failed"
    assert tags["analysis.post.failed_check"] == "error_ratio"
    assert tags["analysis.post.reason"] == reason[:TAG_TEXT_LIMIT]
    assert {k.removeprefix("analysis.post.") for k in tags} >= set(figures)
    (said,) = history(client, 2)
    assert said.endswith(line + reason)  # the card keeps all of it


def test_a_plan_is_logged_only_to_an_active_run(tracking_uri, tmp_path):
    text = "plan: noop: live slot blue already runs champion version 1\n  (nothing to do)\n"
    assert deployments.log_plan(text, "deploy/plan-001-noop.txt") is False

    with mlflow.start_run() as run:
        assert deployments.log_plan(text, "deploy/plan-001-noop.txt") is True

    logged = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/deploy/plan-001-noop.txt")
    assert logged == text
