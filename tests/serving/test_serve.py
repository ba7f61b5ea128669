"""`mlflow models serve -m models:/imdb-sentiment@champion`: every input format, every bad input.

One real server (tests/serving/conftest.py) answers all of these; the last test checks it still
answers correctly after every bad request before it.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from support import REPO_ROOT, checkout_files, serving_limits

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
REVIEWS = ["A great, wonderful film.", "An awful, boring film."]
TIMEOUT = 60


def invoke(server, body, headers=JSON):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{server.url}/invocations", data=data, headers=headers, timeout=TIMEOUT)


def predictions(response) -> list[dict]:
    assert response.status_code == 200, response.text[:500]
    return response.json()["predictions"]


def assert_two_reviews_scored(rows: list[dict]) -> None:
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert rows[0]["score"] > 0.5 > rows[1]["score"]
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert all(set(r) == {"label", "score"} for r in rows)


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_probes_answer_200(server, path):
    assert requests.get(f"{server.url}{path}", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["review"], "data": [[r] for r in REVIEWS]}},
        {"dataframe_records": [{"review": r} for r in REVIEWS]},
        {"inputs": REVIEWS},
        {"inputs": {"review": REVIEWS}},
    ],
    ids=["dataframe_split", "dataframe_records", "inputs-list", "inputs-columns"],
)
def test_every_json_format_returns_label_and_score_per_review(server, body):
    assert_two_reviews_scored(predictions(invoke(server, body)))


def test_csv_returns_label_and_score_per_review(server):
    body = "review\n" + "".join(f'"{r}"\n' for r in REVIEWS)
    assert_two_reviews_scored(predictions(invoke(server, body, CSV)))


def test_charset_utf8_is_accepted(server):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert (
        len(predictions(invoke(server, {"inputs": ["Ein großartiger Film, great."]}, headers))) == 1
    )


# --- bad input: each is a 4xx whose message says what to send instead ---------------------------


def error_message(response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < 20_000  # never the whole payload echoed back
    try:
        return response.json()["message"]
    except ValueError:
        return response.text


def test_malformed_json_is_400_saying_send_valid_json(server):
    message = error_message(invoke(server, '{"inputs": ["unterminated'), 400)
    assert "Ensure that input is a valid JSON formatted string" in message


def test_json_without_a_known_key_is_400_listing_the_formats(server):
    message = error_message(invoke(server, {"reviews": REVIEWS}), 400)
    assert "dataframe_split" in message and "inputs" in message


def test_json_list_instead_of_object_is_400(server):
    message = error_message(invoke(server, REVIEWS), 400)
    assert "must be a JSON dictionary" in message


def test_the_old_text_column_is_400_naming_the_review_column(server):
    body = {"dataframe_records": [{"text": r} for r in REVIEWS]}
    message = error_message(invoke(server, body), 400)
    assert "Model is missing inputs ['review']" in message


def test_csv_without_review_header_is_400_naming_the_column(server):
    message = error_message(invoke(server, "text\nA great film.\n", CSV), 400)
    assert "missing inputs ['review']" in message


def test_one_bare_string_in_inputs_is_400_naming_the_column(server):
    """MLflow turns `{"inputs": "..."}` into a one-cell table without the column name, so the
    docs show a list, `{"inputs": ["..."]}` (test_docs checks every documented request)."""
    message = error_message(invoke(server, {"inputs": REVIEWS[0]}), 400)
    assert "missing inputs ['review']" in message


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415_listing_the_supported_types(server, content_type):
    response = invoke(server, "A great film.", {"Content-Type": content_type})
    message = error_message(response, 415)
    assert "application/json" in message and "text/csv" in message


def test_non_utf8_charset_is_415(server):
    response = invoke(
        server, {"inputs": REVIEWS}, {"Content-Type": "application/json; charset=latin-1"}
    )
    assert "only supports UTF-8" in error_message(response, 415)


@pytest.mark.parametrize("headers", [JSON, CSV], ids=["json", "csv"])
def test_non_utf8_bytes_are_400(server, headers):
    body = b'{"inputs": ["caf\xe9"]}' if headers is JSON else b"review\ncaf\xe9\n"
    message = error_message(invoke(server, body, headers), 400)
    assert "UnicodeDecodeError" in message or "UTF-8" in message


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [{"review": 1}, {"review": "A great film."}]},
        {"dataframe_split": {"columns": ["review"], "data": [[2.5], ["A great film."]]}},
        {"dataframe_records": [{"review": True}]},
    ],
    ids=["records-int", "split-float", "records-bool"],
)
def test_numbers_instead_of_text_are_400_saying_send_strings(server, body):
    message = error_message(invoke(server, body), 400)
    assert "must be a string" in message
    assert "dataframe_records" in message  # says what to send instead


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"dataframe_records": [{"review": None}, {"review": "A great film."}]}, JSON),
        ({"dataframe_split": {"columns": ["review"], "data": [[None]]}}, JSON),
        ('review\n"A great film."\n""\n', CSV),  # pandas reads an empty CSV field as null
    ],
    ids=["records", "split", "csv-empty-cell"],
)
def test_nulls_instead_of_text_are_400_naming_the_row(server, body, headers):
    message = error_message(invoke(server, body, headers), 400)
    assert "is null" in message
    assert "dataframe_records" in message


@pytest.mark.parametrize("text", ["10", "None", "1.5", "True", "null"])
@pytest.mark.parametrize("fmt", ["dataframe_records", "dataframe_split", "inputs"])
def test_a_string_is_a_review_and_is_scored_in_every_format(server, text, fmt):
    texts = [text, REVIEWS[0]]
    body = {
        "dataframe_records": {"dataframe_records": [{"review": t} for t in texts]},
        "dataframe_split": {
            "dataframe_split": {"columns": ["review"], "data": [[t] for t in texts]}
        },
        "inputs": {"inputs": texts},
    }[fmt]
    rows = predictions(invoke(server, body))
    assert len(rows) == 2 and rows[1]["label"] == "positive"
    assert rows[0]["label"] in ("positive", "negative", "unknown")


def test_inputs_turns_json_null_numbers_and_booleans_into_text_before_the_model(server):
    """What the README says of `{"inputs": [...]}`: MLflow's parser makes every value a string
    (np.array(..., dtype=str)), so null, 10 and true are scored as the reviews "None", "10" and
    "True", exactly like those strings sent in dataframe_records."""
    stringified = predictions(invoke(server, {"inputs": [None, 10, True]}))
    as_text = predictions(
        invoke(server, {"dataframe_records": [{"review": t} for t in ("None", "10", "True")]})
    )
    assert stringified == as_text


@pytest.mark.parametrize("text", ["", "   ", "<br /><br />"])
def test_a_review_without_words_gets_the_defined_answer(server, text):
    rows = predictions(invoke(server, {"inputs": [text, REVIEWS[0]]}))
    assert rows[0] == {"label": "unknown", "score": 0.5}
    assert rows[1]["label"] == "positive"  # the rest of the batch is scored as usual


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ({"inputs": ["x" * 20_000_000]}, "IMDB_MAX_REVIEW_CHARS"),
        ({"dataframe_records": [{"review": "word " * 4_000_000}]}, "IMDB_MAX_REVIEW_CHARS"),
        ({"inputs": [REVIEWS[0] * 50] * 16_000}, "IMDB_MAX_CALL_CHARS"),  # 20 MB of reviews
        ({"inputs": ["ok"] * 1_000_000}, "IMDB_MAX_CALL_REVIEWS"),  # a million tiny reviews
    ],
    ids=["one-20MB-review-inputs", "one-20MB-review-records", "16k-reviews", "1M-tiny-reviews"],
)
def test_a_20_mb_payload_is_400_saying_which_server_limit_and_what_to_do(server, body, setting):
    # The server runs with the limits the pods set; the model in-process has none
    # (tests/pyfunc/test_model.py scores the same sizes).
    message = error_message(invoke(server, body), 400)
    limit = int(serving_limits()[setting])
    assert f"this server's limit is {limit:,}" in message and setting in message
    assert "split them" in message or "shorten it" in message


def test_server_still_answers_correctly_after_bad_requests(server):
    # Runs last in this module: every bad request above has hit the same server by now.
    assert_two_reviews_scored(predictions(invoke(server, {"inputs": REVIEWS})))
    assert server.process.poll() is None


def documented_requests() -> list[tuple[str, str]]:
    """(doc, body) for every `curl .../invocations ... -d '<JSON>'` in the docs."""
    request = re.compile(r"/invocations\b[^\n]*(?:\\\n[^\n]*)*?-d '([^']+)'")
    found = []
    for doc in checkout_files("*.md"):
        shown = str(doc.relative_to(REPO_ROOT))
        found += [(shown, match.group(1)) for match in request.finditer(doc.read_text())]
    return found


@pytest.mark.parametrize(("doc", "body"), documented_requests())
def test_every_request_the_docs_show_is_answered(server, doc, body):
    rows = predictions(invoke(server, body))
    assert rows and all(set(r) == {"label", "score"} for r in rows), doc
