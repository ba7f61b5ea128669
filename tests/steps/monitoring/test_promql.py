"""steps/monitoring/promql.py: one source for the alert rules, the PrometheusRule, the dashboard
and the post-promotion analysis queries, shaped by params.yaml's deploy section. (The committed
files are checked against it in tests/k8s/test_monitoring.py; the queries run against a real
Prometheus in tests/serving/test_prometheus.py and tests/k8s/test_deploy_prometheus.py.)"""

from __future__ import annotations

import dataclasses
import json
import re

import yaml

from pyfunc import contract
from steps.monitoring import promql
from steps.stage.config import load_params

DEPLOY = load_params().deploy


def rules_by_name(cfg) -> dict[str, dict]:
    text = promql.rendered(cfg)[promql.RULES_FILE]
    rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    return {r["alert"]: r for r in rules if "alert" in r}  # recording rules have none


def test_the_analysis_asks_about_one_slot_over_its_window():
    queries = promql.slot_queries("green", "60s")
    assert set(queries) == {"error_ratio", "p99_seconds", "positive_share"}
    for expr in queries.values():
        selectors = re.findall(r"\{([^}]*)\}\[(\w+)\]", expr)
        assert selectors and all('slot="green"' in s and w == "60s" for s, w in selectors), expr
        assert f"by ({contract.SLOT_LABEL}" not in expr  # one number, not one per slot


def test_the_alerts_and_the_panels_are_built_from_the_same_queries():
    errors = rules_by_name(DEPLOY)["ImdbSentimentErrors"]["expr"]
    bound = DEPLOY.analysis.max_error_ratio
    assert " ".join(errors.split()) == f"{promql.error_ratio('5m')} > {bound:g}"
    rendered = json.loads(promql.rendered(DEPLOY)[promql.DASHBOARD_FILE])
    exprs = [t["expr"] for p in rendered["panels"] for t in p["targets"]]
    assert promql.error_ratio(promql.GRAFANA_RATE) in exprs
    assert promql.positive_share(promql.GRAFANA_RATE) in exprs


def test_the_bounds_shared_with_the_analysis_come_from_params():
    bounds = dataclasses.replace(
        DEPLOY.analysis, max_error_ratio=0.05, max_p99_seconds=2.0, max_positive_share_shift=0.1
    )
    rules = rules_by_name(dataclasses.replace(DEPLOY, analysis=bounds))
    errors, slow = rules["ImdbSentimentErrors"], rules["ImdbSentimentLatencyHigh"]
    drift = rules["ImdbSentimentPositiveShareDrift"]
    assert errors["expr"].rstrip().endswith("> 0.05")
    assert "over 5% of calls" in errors["annotations"]["summary"]
    assert slow["expr"].rstrip().endswith("> 2") and "over 2 s" in slow["annotations"]["summary"]
    assert ") > 0.1\n" in drift["expr"] and "10 points away" in drift["annotations"]["summary"]


def test_the_cluster_names_come_from_params():
    cfg = dataclasses.replace(DEPLOY, namespace="reviews", app="sentiment", container="scorer")
    files = promql.rendered(cfg)
    rule = yaml.safe_load(files[promql.PROMETHEUS_RULE_FILE])
    assert rule["metadata"] == {
        "name": "sentiment",
        "namespace": "reviews",
        "labels": {"app.kubernetes.io/part-of": "sentiment"},
    }
    text = files[promql.RULES_FILE]
    assert set(re.findall(r'namespace="([^"]+)"', text)) == {"reviews"}
    assert set(re.findall(r'container="([^"]+)"', text)) == {"scorer"}
    assert "imdb-sentiment" not in text
    assert json.loads(files[promql.DASHBOARD_FILE])["uid"] == "sentiment-model"


def test_write_files_writes_what_changed_and_only_that(tmp_path):
    written = promql.write_files(DEPLOY, tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in written) == sorted(promql.rendered(DEPLOY))
    assert promql.write_files(DEPLOY, tmp_path) == []
    dashboard = tmp_path / promql.DASHBOARD_FILE
    dashboard.write_text("{}")
    assert promql.write_files(DEPLOY, tmp_path) == [dashboard]
    assert sorted(p.name for p in dashboard.parent.iterdir()) == sorted(
        p.name for p in promql.rendered(DEPLOY)
    )  # no temp file left behind
