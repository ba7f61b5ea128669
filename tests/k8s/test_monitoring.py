"""k8s/monitoring/ and the monitoring parts of the pod spec: the metrics port, scrape discovery
for both set-ups (the Operator's PodMonitor, the prometheus.io/* annotations), the NetworkPolicy,
the alert rules (`promtool check rules` and `promtool test rules`) and the Grafana dashboard's
structure. The rules, the PrometheusRule and the dashboard are generated
(steps/monitoring/promql.py): the committed files must be what it renders. Their queries run
against a real Prometheus in tests/serving/test_prometheus.py.

kubernetes-validate has no schema for the Operator's CRDs, so their structure is checked here.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from deploy_support import kustomization_documents

from pyfunc import contract, telemetry
from steps.monitoring import promql
from steps.rollout import slots
from steps.stage import paths
from steps.stage.config import load_params
from steps.stage.paths import PROJECT_ROOT

MONITORING_DIR = PROJECT_ROOT / paths.MONITORING_DIR
RULES_FILE = PROJECT_ROOT / promql.RULES_FILE
DASHBOARD_FILE = PROJECT_ROOT / promql.DASHBOARD_FILE
PARAMS = load_params(PROJECT_ROOT / "params.yaml")
# Series the rules may use besides the model's own: kube-state-metrics and cAdvisor names.
CLUSTER_SERIES = {
    "kube_pod_container_status_restarts_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
}
# What the model exports, by Prometheus's naming of each kind: counters `_total`, histograms
# `_bucket` (the ones queried), gauges as named.
COUNTERS = (
    contract.CALLS_METRIC, contract.REVIEWS_METRIC, contract.REJECTED_METRIC,
    contract.EXPECTED_CORRECT_METRIC,
)  # fmt: skip
HISTOGRAMS = (contract.PREDICT_SECONDS_METRIC, contract.SCORE_METRIC, contract.REVIEW_CHARS_METRIC)
GAUGES = (
    contract.MODEL_INFO_METRIC,
    contract.BASELINE_SHARE_METRIC,
    contract.EVALUATED_ACCURACY_METRIC,
)
MODEL_SERIES = {f"{c}_total" for c in COUNTERS} | {f"{h}_bucket" for h in HISTOGRAMS} | set(GAUGES)


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def model_deployments() -> list[dict]:
    return [d for d in kustomization_documents() if d["kind"] == "Deployment"]


def only_container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_monitoring_kustomization_holds_the_operator_resources_only():
    documents = kustomization_documents(MONITORING_DIR)
    assert sorted(d["kind"] for d in documents) == ["PodMonitor", "PrometheusRule"]
    for document in documents:
        assert document["apiVersion"] == "monitoring.coreos.com/v1"
        assert document["metadata"]["namespace"] == PARAMS.deploy.namespace
    # The core kustomization needs no CRD: nothing of monitoring.coreos.com in it.
    assert all("coreos" not in d["apiVersion"] for d in kustomization_documents())


@pytest.mark.parametrize("deployment", model_deployments(), ids=lambda d: d["metadata"]["name"])
def test_each_slot_exposes_metrics_labelled_with_its_slot_and_version(deployment):
    template = deployment["spec"]["template"]
    container = only_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    variables = env(container)
    metrics_port = ports["metrics"]
    assert variables[contract.METRICS_PORT_ENV]["value"] == str(metrics_port)
    assert telemetry.parse_address(str(metrics_port)) == ("0.0.0.0", metrics_port)
    assert container["ports"][0]["name"] == "http"  # the serving port stays first
    annotations = template["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port),
        "prometheus.io/path": "/metrics",
    }
    # The slot and the model version come from the pod's own labels (downward API).
    slot_ref = variables[contract.SLOT_ENV]["valueFrom"]["fieldRef"]["fieldPath"]
    assert slot_ref == f"metadata.labels['{slots.SLOT_LABEL}']"
    assert slots.SLOT_LABEL in template["metadata"]["labels"]
    version_ref = variables[contract.MODEL_VERSION_ENV]["valueFrom"]["fieldRef"]["fieldPath"]
    assert version_ref == f"metadata.labels['{slots.VERSION_LABEL}']"
    assert variables[contract.MODEL_NAME_ENV]["value"] == PARAMS.register.model_name
    assert variables[contract.PREDICTION_LOG_ENV]["value"] == "1"
    # The workers' metric files live on a volume of their own (the root is read-only).
    folder = variables[contract.MULTIPROC_DIR_ENV]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert folder in mounts and "emptyDir" in volumes[mounts[folder]]


def test_pod_monitor_selects_both_slots_on_the_metrics_port():
    (monitor,) = [d for d in kustomization_documents(MONITORING_DIR) if d["kind"] == "PodMonitor"]
    spec = monitor["spec"]
    assert set(spec) == {"selector", "podMetricsEndpoints"}
    selector = spec["selector"]["matchLabels"].items()
    for deployment in model_deployments():
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ports = {p["name"] for p in only_container(deployment)["ports"]}
        assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["metrics"]
        assert "metrics" in ports
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics" and re.fullmatch(r"\d+s", endpoint["interval"])


def test_network_policy_lets_only_the_scraper_reach_the_metrics_port():
    (policy,) = [d for d in kustomization_documents() if d["kind"] == "NetworkPolicy"]
    rules = policy["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in rules}
    assert set(by_port) == {"http", "metrics"}
    assert "from" not in by_port["http"]  # clients, ingress and the API server's proxy
    (source,) = by_port["metrics"]["from"]
    assert set(source) == {"namespaceSelector", "podSelector"}  # both: Prometheus pods only
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert policy["spec"]["egress"] == []


def test_the_committed_files_are_the_generated_ones():
    stale = [
        str(path)
        for path, text in promql.rendered(PARAMS.deploy).items()
        if (PROJECT_ROOT / path).read_text() != text
    ]
    assert stale == [], f"{', '.join(stale)}: out of date; run `{promql.COMMAND}`"


def test_rules_cover_the_issue_and_use_only_known_series():
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    names = {r["alert"] for r in rules if "alert" in r}
    assert names == {
        "ImdbSentimentErrors", "ImdbSentimentRejectsSpike", "ImdbSentimentLatencyHigh",
        "ImdbSentimentNoTraffic", "ImdbSentimentPositiveShareDrift",
        "ImdbSentimentPodRestarting", "ImdbSentimentCPUThrottled",
        "ImdbSentimentEstimatedAccuracyLow",
    }  # fmt: skip
    assert {r["record"] for r in rules if "record" in r} == {promql.ESTIMATE_RECORD}
    for rule in rules:
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
        expr = rule["expr"].replace(promql.ESTIMATE_RECORD, "")
        series = set(re.findall(r"\b((?:imdb_sentiment|kube|container)_\w+)", expr))
        assert series <= MODEL_SERIES | CLUSTER_SERIES, rule["alert"]
        for namespace in re.findall(r'namespace="([^"]+)"', rule["expr"]):
            assert namespace == PARAMS.deploy.namespace


@pytest.mark.prometheus
def test_promtool_checks_the_rules_and_their_unit_tests_pass(prometheus_tools):
    for command in (["check", "rules", RULES_FILE.name], ["test", "rules", "alerts.test.yaml"]):
        result = subprocess.run(
            [prometheus_tools["promtool"], *command], cwd=MONITORING_DIR,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((MONITORING_DIR / "alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    rules = yaml.safe_load(RULES_FILE.read_text())["groups"][0]["rules"]
    assert fired == {r["alert"] for r in rules}  # every rule is made to fire at least once


@pytest.mark.prometheus
def test_promtool_test_rules_fails_when_a_rule_no_longer_fires(prometheus_tools, tmp_path):
    """The unit tests can fail: a rule with a bound nothing reaches breaks them."""
    broken = RULES_FILE.read_text().replace("> 0.01", "> 0.5", 1)
    assert broken != RULES_FILE.read_text()
    (tmp_path / RULES_FILE.name).write_text(broken)
    (tmp_path / "alerts.test.yaml").write_text((MONITORING_DIR / "alerts.test.yaml").read_text())
    result = subprocess.run(
        [prometheus_tools["promtool"], "test", "rules", "alerts.test.yaml"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "ImdbSentimentErrors" in result.stdout + result.stderr


def dashboard_queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("calls", "reviews", "error", "p50", "p99", "positive share", "score"):
        assert topic in titles, topic
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "slot" in target["expr"], panel["title"]  # every query is split by slot
            series = set(re.findall(r"\b(imdb_sentiment_\w+)", target["expr"]))
            assert series and series <= MODEL_SERIES, panel["title"]
    assert len({t["refId"] for p in dashboard["panels"] for t in p["targets"]}) >= 2
