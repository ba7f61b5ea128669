"""pyfunc/telemetry.py in-process: what switches it on, what identifies the model, and the JSON
log line per call. The metrics and the exporter run in real servers: tests/serving/."""

from __future__ import annotations

import json

import pytest
from support import make_reviews

from pyfunc import contract, telemetry
from pyfunc.model import InvalidReviews, RequestLimits, SentimentModel
from pyfunc.pipeline import build_pipeline, token_counts


@pytest.fixture(scope="module")
def pipeline():
    reviews = make_reviews(300, seed=3)
    return build_pipeline().fit(reviews["review"].tolist(), reviews["sentiment"].tolist())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9102", ("0.0.0.0", 9102)),
        ("127.0.0.1:9102", ("127.0.0.1", 9102)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_metrics_address(text, expected):
    assert telemetry.parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "port", "127.0.0.1:", "70000", "0"])
def test_a_bad_metrics_address_names_the_variable(text):
    with pytest.raises(ValueError, match=contract.METRICS_PORT_ENV):
        telemetry.parse_address(text)


def test_off_unless_a_variable_says_otherwise(tmp_path):
    assert telemetry.from_environment(tmp_path / "x", environ={}) is None
    blank = {contract.METRICS_PORT_ENV: " ", contract.PREDICTION_LOG_ENV: "0"}
    assert telemetry.from_environment(tmp_path / "x", environ=blank) is None


def test_identity_comes_from_the_environment_and_the_mlmodel_file(tmp_path):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "MLmodel").write_text("run_id: 0123abc\nmodel_id: m-42\nflavors: {}\n")
    environ = {contract.SLOT_ENV: "blue", contract.MODEL_VERSION_ENV: "7"}
    found = telemetry.identity(tmp_path / "artifacts" / "pipeline.joblib", environ)
    assert found == telemetry.Identity("unknown", "7", "0123abc", "m-42", "blue")
    assert telemetry.identity(None, {}) == telemetry.Identity(*["unknown"] * 5)


def test_one_json_line_per_call_with_counts_and_never_the_text(pipeline, capfd, tmp_path):
    model = SentimentModel(pipeline)
    environ = {contract.PREDICTION_LOG_ENV: "1", contract.SLOT_ENV: "green"}
    model.telemetry = telemetry.from_environment(None, environ=environ)
    assert model.telemetry.metrics is None  # logs only: no metrics asked for
    answer = model.predict(None, ["A superb, moving film. secretword", "Dull. secretword", ""])
    with pytest.raises(InvalidReviews):
        model.predict(None, ["fine", None])
    out = capfd.readouterr().out
    assert "secretword" not in out
    ok, rejected = (json.loads(line) for line in out.splitlines())
    assert ok["outcome"] == "ok" and ok["reviews"] == 3 and ok["slot"] == "green"
    assert ok["labels"] == answer["label"].value_counts().to_dict()
    assert ok["latency_ms"] > 0 and ok["version"] == "unknown"
    assert rejected["outcome"] == "rejected" and rejected["reason"] == "not_a_string"


def test_an_error_inside_the_model_is_logged_as_an_error(capfd):
    class Broken:
        classes_ = ("negative", "positive")

        def predict_proba(self, reviews):
            raise RuntimeError("boom")

    model = SentimentModel(Broken())
    model.telemetry = telemetry.from_environment(None, environ={contract.PREDICTION_LOG_ENV: "1"})
    with pytest.raises(RuntimeError):
        model.predict(None, ["A film."])
    (line,) = capfd.readouterr().out.splitlines()
    assert json.loads(line)["outcome"] == "error" and json.loads(line)["reason"] == "RuntimeError"


def test_rejections_carry_a_reason_for_the_metrics(pipeline):
    model = SentimentModel(pipeline, RequestLimits(50, 20, max_call_reviews=4))
    cases = {
        "no_text_column": {"text": ["x"]},
        "not_a_string": [1.5],
        "review_too_long": ["x" * 21],
        "call_too_long": ["x" * 20] * 3,
        "call_too_many_reviews": ["x"] * 5,
        "unreadable_input": 42,
    }
    for reason, given in cases.items():
        with pytest.raises(InvalidReviews) as caught:
            model.predict(None, given)
        assert caught.value.reason == reason


def test_token_counts_tell_unseen_words_from_seen_ones(pipeline):
    unseen, tokens = token_counts(pipeline, ["the plot was wonderful", "zyxw qwerty plot", ""])
    assert tokens.tolist() == [4, 3, 0]
    assert unseen.tolist() == [0, 2, 0]
