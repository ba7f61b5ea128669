"""The PythonModel adapter: accepted inputs, the defined answers, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from support import make_reviews

from pyfunc.model import SentimentModel
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
