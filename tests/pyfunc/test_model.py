"""The PythonModel adapter: accepted inputs, the defined answers, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from support import make_reviews

from pyfunc.model import CHUNK_CHARS, CHUNK_REVIEWS, RequestLimits, SentimentModel, chunk_bounds
from pyfunc.pipeline import build_pipeline


@pytest.fixture(scope="module")
def model():
    frame = make_reviews(400, seed=2)
    return SentimentModel(build_pipeline().fit(frame["review"].tolist(), frame["sentiment"]))


GOOD, BAD = "A wonderful, brilliant film.", "A dull and dreadful film."


@pytest.mark.parametrize(
    "given",
    [
        pd.DataFrame({"review": [GOOD, BAD], "id": [1, 2]}),
        {"review": [GOOD, BAD]},
        [GOOD, BAD],
        (GOOD, BAD),
        np.array([GOOD, BAD]),
        pd.Series([GOOD, BAD]),
    ],
)
def test_accepts_a_review_column_or_a_list_of_strings(model, given):
    answer = model.predict(None, given)
    assert list(answer.columns) == ["label", "score"]
    assert answer["label"].tolist() == ["positive", "negative"]
    assert answer["score"].dtype == np.float64
    assert answer["score"].iloc[0] > 0.5 > answer["score"].iloc[1]


def test_one_string_is_one_review(model):
    assert model.predict(None, GOOD)["label"].tolist() == ["positive"]


def test_empty_and_wordless_reviews_get_the_defined_unknown_answer(model):
    answer = model.predict(None, pd.DataFrame({"review": ["", "   ", "<br />", GOOD]}))
    assert answer["label"].tolist() == ["unknown", "unknown", "unknown", "positive"]
    assert answer["score"].tolist()[:3] == [0.5, 0.5, 0.5]


def test_no_rows_give_no_rows(model):
    answer = model.predict(None, pd.DataFrame({"review": pd.Series([], dtype=object)}))
    assert len(answer) == 0 and list(answer.columns) == ["label", "score"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (pd.DataFrame({"text": [GOOD]}), r'no "review" column \(columns: \'text\'\)'),
        ({"text": [GOOD]}, 'no "review" key'),
        (pd.DataFrame({"review": [GOOD, None]}), "row 1 is null"),
        (pd.DataFrame({"review": [np.nan]}), "row 0 is null"),
        (pd.DataFrame({"review": [GOOD, 10]}), "row 1 is int 10"),
        (pd.DataFrame({"review": [True]}), "row 0 is bool True"),
        ([GOOD, 42], "row 1 is int 42"),
        ([[GOOD]], "row 0 is list"),
        (42, "cannot read reviews from a int"),
    ],
)
def test_bad_input_is_an_mlflow_error_saying_what_to_send(model, given, message):
    with pytest.raises(MlflowException, match=message) as raised:
        model.predict(None, given)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert '"review"' in raised.value.message  # what to send instead


@pytest.mark.parametrize("text", ["10", "None", "1.5", "True", "nan", "null"])
def test_a_string_is_a_review_whatever_it_says(model, text):
    """Only values that are not strings are refused: "10" or "None" is what someone wrote."""
    answer = model.predict(None, pd.DataFrame({"review": [text, GOOD]}))
    assert answer["label"].iloc[1] == "positive"
    assert answer["label"].iloc[0] in ("positive", "negative", "unknown")
    assert 0.0 <= answer["score"].iloc[0] <= 1.0


# --- any batch size in-process; request limits only where the server's environment sets them ---


class RecordingPipeline:
    """The real fitted pipeline, recording how many reviews and characters each call gets."""

    def __init__(self, pipeline):
        self.pipeline, self.calls = pipeline, []
        self.classes_ = pipeline.classes_

    def predict_proba(self, reviews):
        self.calls.append((len(reviews), sum(map(len, reviews))))
        return self.pipeline.predict_proba(reviews)


def test_a_batch_over_the_old_call_limit_is_scored_in_bounded_chunks(model):
    # 6,000 reviews of 1,000 characters: 6 M characters in one call, which the model refused
    # before (5 M per call); now scored, and no pipeline call sees more than one chunk.
    reviews = [(GOOD if i % 2 else BAD).ljust(1000, "!") for i in range(6000)]
    recorder = RecordingPipeline(model.pipeline)
    answer = SentimentModel(recorder).predict(None, pd.DataFrame({"review": reviews}))
    assert len(answer) == 6000
    assert answer["label"].tolist() == ["negative", "positive"] * 3000
    assert max(n for n, _ in recorder.calls) <= CHUNK_REVIEWS
    assert max(chars for _, chars in recorder.calls) <= CHUNK_CHARS
    assert sum(n for n, _ in recorder.calls) == 6000
    whole = model.pipeline.predict_proba(reviews[:10])[:, 1]
    assert answer["score"].tolist()[:10] == pytest.approx(whole.tolist(), abs=1e-12)


def test_a_review_longer_than_a_chunk_is_scored_alone(model):
    long = GOOD + " more" * 1_000_000  # 5 M characters: over a chunk, and the old review limit
    recorder = RecordingPipeline(model.pipeline)
    answer = SentimentModel(recorder).predict(None, [BAD, long, BAD])
    assert answer["label"].tolist()[0::2] == ["negative", "negative"]
    assert recorder.calls == [(1, len(BAD)), (1, len(long)), (1, len(BAD))]


@pytest.mark.parametrize(
    ("lengths", "max_reviews", "max_chars", "expected"),
    [
        ([1] * 5, 2, 100, [(0, 2), (2, 4), (4, 5)]),
        ([40, 40, 40], 10, 100, [(0, 2), (2, 3)]),
        ([500, 1, 1], 10, 100, [(0, 1), (1, 3)]),
        ([], 10, 100, []),
    ],
)
def test_chunk_bounds_respect_both_caps(lengths, max_reviews, max_chars, expected):
    reviews = ["x" * n for n in lengths]
    assert list(chunk_bounds(reviews, max_reviews, max_chars)) == expected


def test_the_serving_environment_sets_the_limits_and_nothing_else_does():
    assert RequestLimits.from_environment({}) == RequestLimits(None, None, None)
    limits = RequestLimits.from_environment(
        {
            "IMDB_MAX_CALL_CHARS": "5_000_000",
            "IMDB_MAX_REVIEW_CHARS": " 100000 ",
            "IMDB_MAX_CALL_REVIEWS": "20_000",
        }
    )
    assert limits == RequestLimits(
        max_call_chars=5_000_000, max_review_chars=100_000, max_call_reviews=20_000
    )
    assert RequestLimits.from_environment({"IMDB_MAX_CALL_CHARS": ""}).max_call_chars is None
    for name, unit in [("IMDB_MAX_CALL_CHARS", "characters"), ("IMDB_MAX_CALL_REVIEWS", "reviews")]:
        for bad in ("lots", "0", "-5", "1.5"):
            with pytest.raises(
                ValueError, match=f"{name} must be a positive whole number of {unit}"
            ):
                RequestLimits.from_environment({name: bad})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["x" * 30, "y"], "row 0 has 30 characters; this server's limit is 20 per review"),
        (["x" * 15] * 4, "4 reviews with 60 characters in one call; this server's limit is 50"),
        # the count is checked first: a million tiny reviews are refused before any is read
        (["x"] * 6, "6 reviews in one call; this server's limit is 5 reviews per call"),
        (["x" * 30] * 6, "6 reviews in one call; this server's limit is 5 reviews per call"),
        ([""] * 1_000_000, "1,000,000 reviews in one call; this server's limit is 5 reviews"),
    ],
    ids=["long-review", "long-call", "many-reviews", "many-long-reviews", "a-million-empty"],
)
def test_a_call_over_a_servers_limit_is_refused_saying_which(model, given, message):
    served = SentimentModel(model.pipeline, RequestLimits(50, 20, max_call_reviews=5))
    with pytest.raises(MlflowException, match=message) as raised:
        served.predict(None, given)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "IMDB_MAX_" in raised.value.message  # the setting that refused it
    assert len(served.predict(None, ["x" * 15] * 3)) == 3  # under both limits: scored
