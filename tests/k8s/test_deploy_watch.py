"""The post-promotion watch fails closed: every answer from Prometheus that the analysis cannot
judge is a failed analysis, so the switch is undone exactly as when Prometheus is unreachable.

A local HTTP server answers GET /api/v1/query as Prometheus does, with a body chosen per query
(the three queries of steps/monitoring/promql.py's `slot_queries`); the cluster is the stub API
server, the registry a real SQLite store, the pods real `mlflow models serve` processes.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest
from deploy_support import LIVE, log_sample
from mlflow import MlflowClient

from pyfunc.contract import EXPECTED_CORRECT_METRIC, SLOT_LABEL
from steps import deploy
from steps.monitoring import promql
from steps.rollout import analysis
from steps.stage.errors import StageError
from steps.tracking.deployments import LIVE_SLOT_TAG

from test_deploy_analysis import (  # isort: skip
    assert_switched_back,
    make_deployer,
    promote_two,
    version_tags,
)

pytestmark = pytest.mark.slow  # a rollout and its undo per body, on real model servers

SLOT, WINDOW = "green", "7s"
QUERIES = promql.slot_queries(SLOT, WINDOW)
# What a healthy slot answers: no errors, fast, the positive share the sample of version 2 has.
HEALTHY = {"error_ratio": "0", "p99_seconds": "0.01", "positive_share": "0.3333"}


def vector(*values: object) -> bytes:
    """A successful instant-query answer holding one series per value, as Prometheus sends."""
    series = [{"metric": {}, "value": [1765000000.0, value]} for value in values]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})


def success(data: object) -> bytes:
    return json.dumps({"status": "success", "data": data})


def result(series: object) -> bytes:
    """A successful vector answer whose result is `series`, whatever it is."""
    return success({"resultType": "vector", "result": series})


class PromAnswers(http.server.ThreadingHTTPServer):
    """Answers /api/v1/query: `hostile[name]` for that figure's query, else a healthy vector."""

    def __init__(self, hostile: dict[str, tuple[int, str, bytes | str]]) -> None:
        super().__init__(("127.0.0.1", 0), _PromHandler)
        self.hostile = hostile
        self.asked: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _PromHandler(http.server.BaseHTTPRequestHandler):
    server: PromAnswers

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        expr = parse_qs(parts.query).get("query", [""])[0]
        names = [name for name, query in QUERIES.items() if query == expr]
        if parts.path != "/api/v1/query" or not names:
            status, kind = 400, "application/json"
            body = json.dumps({"status": "error", "errorType": "bad_data", "error": expr})
        elif names[0] in self.server.hostile:
            status, kind, body = self.server.hostile[names[0]]
        else:
            status, kind, body = 200, "application/json", vector(HEALTHY[names[0]])
        self.server.asked.append(names[0] if names else expr)
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def prom_answers(hostile: dict) -> Iterator[PromAnswers]:
    server = PromAnswers(hostile)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


OK, JSON = 200, "application/json"
# Each body the watch cannot judge, by the figure whose query gets it, and the words it is
# reported with. The other queries get healthy answers.
UNJUDGEABLE = {
    "empty-result": ("error_ratio", (OK, JSON, vector()), "has no series for error_ratio"),
    "data-null": ("error_ratio", (OK, JSON, success(None)), "with data None, not a vector"),
    "data-missing": ("error_ratio", (OK, JSON, '{"status": "success"}'), "not a vector"),
    "data-list": ("p99_seconds", (OK, JSON, success([])), "with data [], not a vector"),
    "no-result-key": ("error_ratio", (OK, JSON, success({"resultType": "vector"})), "a vector"),
    "result-not-list": ("error_ratio", (OK, JSON, result({"value": [1, "0"]})), "not a vector"),
    "result-null": ("error_ratio", (OK, JSON, result(None)), "not a vector"),
    "scalar-result": (
        "error_ratio", (OK, JSON, success({"resultType": "scalar", "result": [1, "0"]})),
        "not a vector",
    ),
    "two-series": ("positive_share", (OK, JSON, vector("0.3", "0.4")), "with 2 series, not one"),
    "series-without-value": ("error_ratio", (OK, JSON, result([{"metric": {}}])), "not [time,"),
    "series-not-object": ("error_ratio", (OK, JSON, result(["0"])), "not [time,"),
    "value-short": ("error_ratio", (OK, JSON, result([{"value": ["0"]}])), "not [time,"),
    "value-not-number": ("error_ratio", (OK, JSON, vector("abc")), "not [time, \"number\"]"),
    "value-json-number": ("p99_seconds", (OK, JSON, vector(0.01)), "not [time, \"number\"]"),
    "value-null": ("error_ratio", (OK, JSON, vector(None)), "not [time, \"number\"]"),
    "value-inf": ("p99_seconds", (OK, JSON, vector("+Inf")), "p99_seconds query with inf"),
    "value-minus-inf": ("error_ratio", (OK, JSON, vector("-Inf")), "with -inf"),
    "ratio-negative": ("error_ratio", (OK, JSON, vector("-0.5")), "error_ratio -0.5 is outside"),
    "share-over-one": ("positive_share", (OK, JSON, vector("1.5")), "positive_share 1.5 is"),
    "p99-negative": ("p99_seconds", (OK, JSON, vector("-1")), "p99_seconds -1 is outside"),
    "partly-nan": ("p99_seconds", (OK, JSON, vector("NaN")), "no value for p99_seconds while"),
    "body-json-list": ("error_ratio", (OK, JSON, "[]"), "refused the error_ratio query: HTTP 200"),
    "body-json-string": ("error_ratio", (OK, JSON, '"success"'), "refused the error_ratio query"),
    "body-json-null": ("error_ratio", (OK, JSON, "null"), "refused the error_ratio query"),
    "body-not-json": (
        "error_ratio", (OK, "text/html", "<html>proxy login</html>"), "HTTP 200 <html>proxy login",
    ),
    "body-cut": ("error_ratio", (OK, JSON, '{"status": "succ'), "refused the error_ratio query"),
    "status-error": (
        "error_ratio",
        (OK, JSON, json.dumps({"status": "error", "error": "query timed out"})),
        "HTTP 200 query timed out",
    ),
    "http-500-html": ("error_ratio", (500, "text/html", "<h1>oops</h1>"), "HTTP 500 <h1>oops"),
    "http-503-json": (
        "positive_share",
        (503, JSON, json.dumps({"status": "error", "error": "overloaded"})),
        "HTTP 503 overloaded",
    ),
}  # fmt: skip


def watched_cfg(deploy_cfg, url: str):
    bounds = dataclasses.replace(
        deploy_cfg.analysis, duration=0.2, interval=0.1, window=7.0, prometheus_url=url
    )
    return dataclasses.replace(deploy_cfg, build=False, scale_down_delay=0.0, analysis=bounds)


def promote_watched(cluster, registry, model_servers, cfg, tmp_path) -> tuple[MlflowClient, str]:
    client, name = promote_two(cluster, registry, model_servers, cfg)
    client.set_registered_model_alias(name, "previous", "1")  # as promote leaves it
    log_sample(client, name, 2, tmp_path)
    return client, name


@pytest.mark.parametrize(("figure", "answer", "said"), UNJUDGEABLE.values(), ids=UNJUDGEABLE)
def test_an_answer_the_watch_cannot_judge_rolls_back(
    cluster, registry, model_servers, deploy_cfg, tmp_path, capsys, figure, answer, said
):
    with prom_answers({figure: answer}) as prometheus:
        cfg = watched_cfg(deploy_cfg, prometheus.url)
        client, name = promote_watched(cluster, registry, model_servers, cfg, tmp_path)

        with pytest.raises(StageError) as failure:
            deploy.reconcile(make_deployer(cfg, name))

    text = str(failure.value)
    assert text.startswith("step post-analysis failed: ") and said in text, text
    assert text.endswith("; live slot blue serves version 1") and "\n" not in text
    assert figure in prometheus.asked  # the hostile body was the one asked for
    assert "switching the live Service back to slot blue" in capsys.readouterr().out
    assert_switched_back(cluster, client, name, 2, "prometheus")
    assert client.get_registered_model(name).tags[LIVE_SLOT_TAG] == "blue"


def test_healthy_answers_pass_and_no_calls_at_all_fails(
    cluster, registry, model_servers, deploy_cfg, tmp_path
):
    """The control: the same server with healthy answers passes the watch (so the failures
    above are the bodies' doing); NaN everywhere (no calls in any round) fails as no-traffic."""
    with prom_answers({}) as prometheus:
        cfg = watched_cfg(deploy_cfg, prometheus.url)
        client, name = promote_watched(cluster, registry, model_servers, cfg, tmp_path)
        deploy.reconcile(make_deployer(cfg, name))
    assert cluster.selector(LIVE)["slot"] == "green"
    assert version_tags(client, name, 2)["analysis.post"] == "passed"
    # the three figures, and whether the slot's version is calibrated (it exports the estimate)
    calibrated = f'{EXPECTED_CORRECT_METRIC}_total{{{SLOT_LABEL}="{SLOT}"}}'
    assert set(prometheus.asked) == {*QUERIES, calibrated}

    nan = (OK, JSON, vector("NaN"))
    with prom_answers(dict.fromkeys(QUERIES, nan)) as prometheus:
        prom = analysis.Prometheus(prometheus.url, 5.0)
        bounds = dataclasses.replace(cfg.analysis, duration=0.0)
        with pytest.raises(analysis.AnalysisFailed) as failure:
            analysis.watch_live(prom, bounds, SLOT, 0.5, lambda _: None, lambda: 0.0)
    assert failure.value.check == "no-traffic"


class _Answers:
    """Prometheus as the watch sees it (value, has_series): healthy figures, and the label-free
    estimate's two queries answered with `estimate` and `reviews`."""

    def __init__(self, estimate: float, reviews: float) -> None:
        self.estimate = {"estimated_accuracy": estimate, "reviews": reviews}

    def has_series(self, expr: str) -> bool:
        return True  # the slot's pods export expected-correct reviews: a calibrated version

    def value(self, name: str, expr: str) -> float:
        return self.estimate[name] if name in self.estimate else float(HEALTHY[name])


@pytest.mark.parametrize(
    ("estimate", "reviews", "said"),
    [
        (float("nan"), 500.0, "no label-free accuracy estimate for 500 reviews"),
        (1.5, 500.0, "estimated_accuracy 1.5 is outside [0, 1]"),
        (-0.1, 500.0, "estimated_accuracy -0.1 is outside [0, 1]"),
        (0.9, -3.0, "reviews -3 is outside [0, inf]"),
    ],
)
def test_an_estimate_the_watch_cannot_judge_fails_the_analysis(deploy_cfg, estimate, reviews, said):
    bounds = dataclasses.replace(deploy_cfg.analysis, duration=0.0, min_estimate_reviews=200)
    with pytest.raises(analysis.AnalysisFailed) as failure:
        analysis.watch_live(
            _Answers(estimate, reviews), bounds, SLOT, 0.3333, lambda _: None, lambda: 0.0, 0.9
        )
    assert failure.value.check == "prometheus" and said in str(failure.value)


def test_a_plausible_estimate_passes_and_too_few_reviews_are_not_judged(deploy_cfg):
    bounds = dataclasses.replace(deploy_cfg.analysis, duration=0.0, min_estimate_reviews=200)
    verdict = analysis.watch_live(
        _Answers(0.895, 500.0), bounds, SLOT, 0.3333, lambda _: None, lambda: 0.0, 0.9
    )
    assert verdict.figures["estimated_accuracy"] == 0.895
    few = analysis.watch_live(  # a NaN estimate on 10 reviews: too few to judge, not a failure
        _Answers(float("nan"), 10.0), bounds, SLOT, 0.3333, lambda _: None, lambda: 0.0, 0.9
    )
    assert few.figures["judged"] == 1.0
