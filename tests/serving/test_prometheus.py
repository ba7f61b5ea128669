"""The served model's metrics, scraped by a real Prometheus (Debian's package) on 127.0.0.1.

A real `mlflow models serve` of the champion with two uvicorn workers and monitoring switched on
the way the pods switch it on (pyfunc/telemetry.py) takes a bounded load of good and bad
requests from several clients at once; a real Prometheus scrapes the model's exporter every
second with the alert rules loaded. Everything is asserted through Prometheus's HTTP API: the
counts equal what was sent (both workers summed in one scrape), the histograms are filled, the
labels name the slot and the model, every dashboard query returns series and every rule
evaluates. The JSON log line per call is checked on the server's output.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import model_server
import prometheus_server
import pytest
import requests
from support import free_port, serving_env

from pyfunc import contract
from steps.monitoring import promql
from steps.tracking import registry

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

MODEL_NAME = "imdb-sentiment"  # the champion of tests/serving/conftest.py
READY_TIMEOUT = 180.0
MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
SLOT = "green"
EVALUATED = "0.9123"  # the version's evaluated accuracy, as deploy would set it
MARKER = "zqxjvmarker"  # in every review sent: it must never reach the log
TIMEOUT = 60
GOOD_SINGLE = 24
GOOD_BATCHES = 8
BATCH = 3
BAD = {  # body -> (how many are sent, the reason the model counts)
    "too long": ({"dataframe_records": [{"review": "x" * 100_001}]}, 4, "review_too_long"),
    "nulls": (
        {"dataframe_records": [{"review": None}, {"review": "A fine film."}]},
        3,
        "not_a_string",
    ),
}
# Refused by MLflow's schema check before the model is called: not counted (a known limit).
SCHEMA_REFUSED = {"dataframe_records": [{"text": "A fine film."}]}


def review(i: int) -> str:
    words = ("wonderful, moving", "awful, boring", "brilliant", "dull and tedious")
    return f"A {words[i % 4]} film, {MARKER} number {i}." + " Really." * (i % 5)


@pytest.fixture(scope="module")
def monitored(champion_store, prometheus_tools, tmp_path_factory):
    """The champion served with metrics on, Prometheus scraping it, and the load already sent."""
    uri, version = champion_store
    folder = Path(tmp_path_factory.mktemp("prometheus"))
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "IMDB_"))}
    env.update({
        "MLFLOW_TRACKING_URI": uri,
        contract.METRICS_PORT_ENV: f"127.0.0.1:{metrics_port}",
        contract.PREDICTION_LOG_ENV: "1",
        contract.SLOT_ENV: SLOT,
        contract.MODEL_NAME_ENV: MODEL_NAME,
        contract.MODEL_VERSION_ENV: version,
        contract.EVALUATED_ACCURACY_ENV: EVALUATED,
        contract.MULTIPROC_DIR_ENV: str(folder / "multiproc"),
        **serving_env(),  # as the pods set them: the "too long" requests are refused
    })  # fmt: skip
    server = model_server.start(
        registry.model_uri(MODEL_NAME, registry.CHAMPION_ALIAS), free_port(),
        folder / "serve.log", workers=2, env=env,
    )  # fmt: skip
    prometheus = prometheus_server.start(
        prometheus_tools["prometheus"], free_port(), folder / "prometheus",
        [f"127.0.0.1:{metrics_port}"], rule_files=[MONITORING / "alerts.rules.yaml"],
    )  # fmt: skip
    try:
        model_server.wait_ready(server, timeout=READY_TIMEOUT)
        prometheus_server.wait_ready(prometheus)
        wait_for_workers(folder / "multiproc", 2)
        # Prometheus scrapes the series at 0 (the workers make them before any call) before the
        # load, as it would a new pod before traffic: a rate needs a sample before the increase
        # (else the recorded estimate is 0/0), and from 0 every counter's rate is extrapolated
        # alike, so their ratio is exactly the estimate.
        zero = prometheus.wait_for(f"sum({contract.EXPECTED_CORRECT_METRIC}_total)", 0.0)
        assert zero == 0.0, zero
        sent = send_load(server.url)
        extra = 0
        while len({line["pid"] for line in log_lines(server)}) < 2 and extra < 100:
            # A loaded machine may hand every connection to one worker: more good requests,
            # counted like the rest, until both have answered (bounded).
            more = send_load(server.url, single=4, batches=0, bad=False)
            sent = {k: sent[k] + more[k] for k in sent}
            extra += 4
        seen = prometheus.wait_for("sum(imdb_sentiment_calls_total)", sent["calls"])
        assert seen == sent["calls"], (seen, sent, server.log_tail())
        run_id = mlflow.MlflowClient(uri).get_model_version(MODEL_NAME, version).run_id
        yield {"prometheus": prometheus, "server": server, "sent": sent, "version": version,
               "run_id": run_id}  # fmt: skip
    finally:
        prometheus_server.stop(prometheus)
        model_server.stop(server)


def wait_for_workers(folder: Path, count: int) -> None:
    """Until `count` workers have loaded the model (each writes its metric files on load)."""
    pids: set[str] = set()
    for _ in range(int(READY_TIMEOUT * 2)):
        pids = {path.stem.rsplit("_", 1)[1] for path in folder.glob("*.db")}
        if len(pids) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"only workers {pids} loaded the model in {READY_TIMEOUT:.0f} s")


def send_load(
    url: str, single: int = GOOD_SINGLE, batches: int = GOOD_BATCHES, bad: bool = True
) -> dict:
    """The bounded load, four clients at a time, each request on a new connection (so both
    workers get some); what was sent and answered, counted."""
    bodies = [{"inputs": [review(i)]} for i in range(single)]
    bodies += [
        {"inputs": [review(100 + b * BATCH + j) for j in range(BATCH)]} for b in range(batches)
    ]
    refusals = [body for body, count, _ in BAD.values() for _ in range(count)] if bad else []

    def post(body: dict) -> requests.Response:
        return requests.post(f"{url}/invocations", json=body, timeout=TIMEOUT)

    with ThreadPoolExecutor(4) as pool:
        good = list(pool.map(post, bodies))
        refused = list(pool.map(post, [*refusals, SCHEMA_REFUSED] if bad else []))
    assert all(r.status_code == 200 for r in good), [r.text[:200] for r in good]
    assert all(r.status_code == 400 for r in refused), [r.text[:200] for r in refused]
    labels = collections.Counter(p["label"] for r in good for p in r.json()["predictions"])
    scores = [p["score"] for r in good for p in r.json()["predictions"]]
    texts = [text for body in bodies for text in body["inputs"]]
    return {
        "calls": len(bodies) + len(refusals),
        "ok": len(bodies),
        "rejected": len(refusals),
        "reviews": len(texts),
        "chars": sum(map(len, texts)),
        "labels": labels,
        "expected_correct": sum(max(p, 1 - p) for p in scores),
    }


def test_counts_equal_what_was_sent_across_both_workers(monitored):
    prometheus, sent = monitored["prometheus"], monitored["sent"]
    calls = {
        s["metric"]["outcome"]: float(s["value"][1])
        for s in prometheus.query("sum by (outcome) (imdb_sentiment_calls_total)")
    }
    assert calls == {"ok": sent["ok"], "rejected": sent["rejected"], "error": 0}
    by_label = {
        s["metric"]["label"]: float(s["value"][1])
        for s in prometheus.query("sum by (label) (imdb_sentiment_reviews_total)")
    }
    assert {k: v for k, v in by_label.items() if v} == dict(sent["labels"])
    reasons = {
        s["metric"]["reason"]: float(s["value"][1])
        for s in prometheus.query("sum by (reason) (imdb_sentiment_rejected_total)")
    }
    assert reasons == {reason: count for _, count, reason in BAD.values()}
    # Both workers answered (their pids in the log) and one scrape summed them.
    pids = {line["pid"] for line in log_lines(monitored["server"])}
    assert len(pids) == 2, pids


def test_the_label_free_estimate_equals_what_was_sent(monitored):
    """The served model is calibrated: the expected-correct counter is the sum of max(p, 1 - p)
    of the scores answered, and the recording rule divides it by the reviews."""
    prometheus, sent = monitored["prometheus"], monitored["sent"]
    total = prometheus.value(f"sum({contract.EXPECTED_CORRECT_METRIC}_total)")
    assert total == pytest.approx(sent["expected_correct"], rel=1e-9)
    assert prometheus.value(promql.evaluated_accuracy(SLOT)) == float(EVALUATED)
    expected = sent["expected_correct"] / sent["reviews"]
    assert 0.5 < expected < 1
    recorded = []
    for _ in range(60):  # bounded: the rule evaluates every second, after the last scrape too
        recorded = prometheus.query(f'{promql.ESTIMATE_RECORD}{{slot="{SLOT}"}}')
        if recorded and float(recorded[0]["value"][1]) == pytest.approx(expected, rel=1e-6):
            break
        time.sleep(0.5)
    assert recorded, f"{promql.ESTIMATE_RECORD} never recorded"
    assert float(recorded[0]["value"][1]) == pytest.approx(expected, rel=1e-6)


def test_histograms_are_filled(monitored):
    prometheus, sent = monitored["prometheus"], monitored["sent"]
    assert prometheus.value("sum(imdb_sentiment_predict_seconds_count)") == sent["calls"]
    assert prometheus.value("sum(imdb_sentiment_score_count)") == sent["reviews"]
    assert prometheus.value("sum(imdb_sentiment_review_chars_count)") == sent["reviews"]
    assert prometheus.value("sum(imdb_sentiment_review_chars_sum)") == sent["chars"]
    positives = sent["labels"]["positive"]
    above_half = prometheus.value(
        'sum(imdb_sentiment_score_count) - sum(imdb_sentiment_score_bucket{le="0.5"})'
    )
    assert above_half == positives
    p99 = prometheus.value(
        "histogram_quantile(0.99, sum by (le) (imdb_sentiment_predict_seconds_bucket))"
    )
    assert 0 < p99 < 10


def test_every_series_names_the_slot_and_the_model(monitored):
    prometheus = monitored["prometheus"]
    series = prometheus.query('{__name__=~"imdb_sentiment_.*"}')
    assert series and {s["metric"].get("slot") for s in series} == {SLOT}
    (info,) = prometheus.query("imdb_sentiment_model_info")
    labels = info["metric"]
    assert labels["model_name"] == MODEL_NAME and labels["model_version"] == monitored["version"]
    assert labels["run_id"] == monitored["run_id"] and labels["model_id"].startswith("m-")
    assert info["value"][1] == "1"


def log_lines(server) -> list[dict]:
    text = server.log_path.read_text(encoding="utf-8", errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"time"')]


def test_one_json_log_line_per_call_without_the_review_text(monitored):
    server, sent = monitored["server"], monitored["sent"]
    lines = log_lines(server)
    assert len(lines) == sent["calls"]
    assert MARKER not in server.log_path.read_text()
    ok = [line for line in lines if line["outcome"] == "ok"]
    assert len(ok) == sent["ok"] and sum(line["reviews"] for line in ok) == sent["reviews"]
    totals = collections.Counter()
    for line in ok:
        totals.update(line["labels"])
    assert totals == sent["labels"]
    for line in lines:
        assert line["slot"] == SLOT and line["version"] == monitored["version"]
        assert line["model"] == MODEL_NAME and line["latency_ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    rejected = collections.Counter(line["reason"] for line in lines if line["outcome"] != "ok")
    assert rejected == {reason: count for _, count, reason in BAD.values()}


def test_every_dashboard_query_returns_series(monitored):
    prometheus = monitored["prometheus"]
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "2m").replace("$__range", "10m")
            result = []
            for _ in range(30):  # a series born with the load needs two scrapes for rate()
                result = prometheus.query(expr)
                if result:
                    break
                time.sleep(0.5)
            assert result, f"{panel['title']}: {expr} returned no series"
            assert all(s["metric"].get("slot") == SLOT for s in result), panel["title"]


def test_alert_rules_load_and_evaluate(monitored):
    prometheus = monitored["prometheus"]
    evaluated = []
    for _ in range(60):  # bounded: rules evaluate every second
        answer = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
        rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules):
            evaluated = rules
            break
        time.sleep(0.5)
    assert len(evaluated) == 9, "the rules never evaluated"  # 8 alerts and 1 recording rule
    assert {r["name"]: r["health"] for r in evaluated} == {r["name"]: "ok" for r in evaluated}
