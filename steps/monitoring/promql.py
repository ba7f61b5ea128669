"""The PromQL over the served model's series, written once.

The alert rules (k8s/monitoring/alerts.rules.yaml, and the same groups as a PrometheusRule for the
Operator: prometheusrule.yaml), the Grafana dashboard (dashboard.json) and the post-promotion
analysis (steps/rollout/analysis.py, through `slot_queries`) are built here from the names in
pyfunc/contract.py. Kubernetes and Grafana read the committed files, so they stay in the
repository, generated: `make monitoring-files` writes them and a test fails while they differ from
what `rendered` returns. The bounds the post-promotion analysis and the alerts share (error ratio,
p99, positive-share shift) come from params.yaml `deploy.analysis`.

Each query is one expression for every reader: by slot for the alerts and the panels, or for one
slot (`slot="green"`) for the analysis, over the window each reader gives (`5m`,
`$__rate_interval`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyfunc.contract import (
    BASELINE_SHARE_METRIC,
    CALLS_METRIC,
    ERROR,
    EVALUATED_ACCURACY_METRIC,
    EXPECTED_CORRECT_METRIC,
    IDENTITY_LABELS,
    MODEL_INFO_METRIC,
    OUTCOME_LABEL,
    POSITIVE,
    PREDICT_SECONDS_METRIC,
    PREDICTED_LABEL,
    REASON_LABEL,
    REJECTED,
    REJECTED_METRIC,
    REVIEW_CHARS_METRIC,
    REVIEWS_METRIC,
    SCORE_METRIC,
    SLOT_LABEL,
)
from steps.stage.config import DeployConfig
from steps.stage.files import YamlBlock, atomic_path, yaml_text
from steps.stage.paths import MONITORING_DIR

RULES_FILE = MONITORING_DIR / "alerts.rules.yaml"
PROMETHEUS_RULE_FILE = MONITORING_DIR / "prometheusrule.yaml"
DASHBOARD_FILE = MONITORING_DIR / "dashboard.json"
COMMAND = "make monitoring-files"
# Series of the cluster, not of the model: kube-state-metrics (restarts) and cAdvisor (throttling).
RESTARTS = "kube_pod_container_status_restarts_total"
CPU_PERIODS = "container_cpu_cfs_periods_total"
CPU_THROTTLED = "container_cpu_cfs_throttled_periods_total"
GRAFANA_RATE = "$__rate_interval"  # Grafana's window for rate(): at least four scrapes
GRAFANA_RANGE = "$__range"  # the dashboard's whole time range
# The rolling label-free accuracy estimate by slot (expected-correct reviews per review scored).
ESTIMATE_RECORD = "slot:imdb_sentiment_estimated_accuracy:ratio_rate1h"


# --- the queries --------------------------------------------------------------------------------


def selector(series: str, labels: Mapping[str, str] | None = None) -> str:
    """`series{a="x",b="y"}` (just `series` without labels)."""
    if not labels:
        return series
    return series + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _aggregate(expr: str, by: tuple[str, ...] = (), op: str = "sum") -> str:
    return f"{op} by ({', '.join(by)}) ({expr})" if by else f"{op}({expr})"


def _rate(series: str, window: str, labels: Mapping[str, str] | None = None) -> str:
    return f"rate({selector(series, labels)}[{window}])"


def _share(counter: str, part: Mapping[str, str], window: str, slot: str | None) -> str:
    """Of a counter's rate, the share with `part`'s labels: by slot, or for `slot` alone."""
    by = () if slot else (SLOT_LABEL,)
    only = {SLOT_LABEL: slot} if slot else {}
    series = f"{counter}_total"
    part_rate = _aggregate(_rate(series, window, {**only, **part}), by)
    return f"{part_rate} / {_aggregate(_rate(series, window, only), by)}"


def error_ratio(window: str, slot: str | None = None) -> str:
    """Calls that failed inside the model (HTTP 500) per call."""
    return _share(CALLS_METRIC, {OUTCOME_LABEL: ERROR}, window, slot)


def rejected_ratio(window: str, slot: str | None = None) -> str:
    """Calls refused as bad input (HTTP 400) per call."""
    return _share(CALLS_METRIC, {OUTCOME_LABEL: REJECTED}, window, slot)


def positive_share(window: str, slot: str | None = None) -> str:
    """Reviews answered positive per review scored."""
    return _share(REVIEWS_METRIC, {PREDICTED_LABEL: POSITIVE}, window, slot)


def estimated_accuracy(window: str, slot: str | None = None) -> str:
    """Mean max(p, 1 - p) of the reviews scored: calibrated models only export its numerator."""
    by, only = ((), {SLOT_LABEL: slot}) if slot else ((SLOT_LABEL,), {})
    expected = _aggregate(_rate(f"{EXPECTED_CORRECT_METRIC}_total", window, only), by)
    return f"{expected} / {_aggregate(_rate(f'{REVIEWS_METRIC}_total', window, only), by)}"


def evaluated_accuracy(slot: str | None = None) -> str:
    return _aggregate(selector(EVALUATED_ACCURACY_METRIC, {SLOT_LABEL: slot} if slot else None),
                      () if slot else (SLOT_LABEL,), "max")  # fmt: skip


def quantile(q: float, histogram: str, window: str, slot: str | None = None) -> str:
    """The q-quantile of a histogram's observations: by slot, or for `slot` alone."""
    by = ("le",) if slot else (SLOT_LABEL, "le")
    buckets = _rate(f"{histogram}_bucket", window, {SLOT_LABEL: slot} if slot else None)
    return f"histogram_quantile({q:g}, {_aggregate(buckets, by)})"


def slot_queries(slot: str, window: str) -> dict[str, str]:
    """What the post-promotion analysis asks about the live slot, by figure name."""
    return {
        "error_ratio": error_ratio(window, slot),
        "p99_seconds": quantile(0.99, PREDICT_SECONDS_METRIC, window, slot),
        "positive_share": positive_share(window, slot),
    }


# --- the alert rules ----------------------------------------------------------------------------


def alert_rules(cfg: DeployConfig) -> dict[str, Any]:
    """The rule groups (a Prometheus rules file; the PrometheusRule's `spec`)."""
    bounds = cfg.analysis
    app, ns = cfg.app, cfg.namespace
    in_pods = {"namespace": ns, "container": cfg.container}
    per_pod = ("namespace", "pod")
    slot, pod = "{{ $labels.slot }}", "{{ $labels.pod }}"
    shift, drop = bounds.max_positive_share_shift, bounds.max_estimated_accuracy_drop
    rules = [
        # Calls that failed inside the model (HTTP 500), not bad input.
        _alert(
            "ImdbSentimentErrors", f"{error_ratio('5m')} > {bounds.max_error_ratio:g}", "5m",
            "critical",
            f"{app} slot {slot}: over {bounds.max_error_ratio:.0%} of calls fail inside the model",
            f"Check the pods' logs (kubectl -n {ns} logs -l slot={slot});"
            " make deploy-rollback if the slot is live.",
        ),
        # Input the model refuses (HTTP 400): usually a client sending the wrong shape.
        _alert(
            "ImdbSentimentRejectsSpike", f"{rejected_ratio('5m')} > 0.2", "10m", "warning",
            f"{app} slot {slot}: over 20% of calls are rejected as bad input",
            f"{REJECTED_METRIC}_total says why (its {REASON_LABEL} label); see pyfunc/README.md"
            " for what the model accepts.",
        ),
        _alert(
            "ImdbSentimentLatencyHigh",
            f"{quantile(0.99, PREDICT_SECONDS_METRIC, '5m')} > {bounds.max_p99_seconds:g}",
            "10m", "warning",
            f"{app} slot {slot}: p99 time in the model over {bounds.max_p99_seconds:g} s",
            "Large batches or CPU throttling (see ImdbSentimentCPUThrottled); the HPA scales on"
            " CPU.",
        ),
        # The idle slot only sees smoke tests, so no calls in any slot means the live slot gets
        # none (nothing scraped at all counts too).
        _alert(
            "ImdbSentimentNoTraffic",
            f"({_aggregate(_rate(f'{CALLS_METRIC}_total', '15m'))} or vector(0)) == 0", "15m",
            "critical",
            f"{app}: no calls reached the model for 15 minutes",
            f"Check the live Service's selector (kubectl -n {ns} get svc {app} -o wide), its"
            " endpoints and the scrape targets.",
        ),
        # Predicted positive share over the last hour against the share the model predicted on
        # its validation split at train time (shipped with the model), given enough reviews.
        _alert(
            "ImdbSentimentPositiveShareDrift",
            f"abs({positive_share('1h')} - on ({SLOT_LABEL})"
            f" {_aggregate(BASELINE_SHARE_METRIC, (SLOT_LABEL,), 'max')}) > {shift:g}"
            f" and on ({SLOT_LABEL})"
            f" {_aggregate(f'increase({REVIEWS_METRIC}_total[1h])', (SLOT_LABEL,))} > 200",
            "30m", "warning",
            f"{app} slot {slot}: positive share {shift * 100:g} points away from training",
            "Run the drift report on recent reviews: make monitor BATCH=<source>"
            " (k8s/monitoring/README.md).",
        ),
        _alert(
            "ImdbSentimentPodRestarting", f"increase({selector(RESTARTS, in_pods)}[30m]) > 2",
            None, "warning",
            f"{app} pod {pod} restarted more than twice in 30 minutes",
            f"kubectl -n {ns} describe pod {pod} (OOMKilled? failed probes?).",
        ),
        _alert(
            "ImdbSentimentCPUThrottled",
            f"{_aggregate(_rate(CPU_THROTTLED, '5m', in_pods), per_pod)}"
            f" / {_aggregate(_rate(CPU_PERIODS, '5m', in_pods), per_pod)} > 0.25",
            "15m", "warning",
            f"{app} pod {pod}: over 25% of CPU periods throttled",
            "The pod hits its CPU limit: raise the limit in k8s/deployment-*.yaml or lower"
            " deploy.workers.",
        ),
        # Skipped (no series) for a version logged without a calibrator: see ESTIMATE_RECORD.
        _alert(
            "ImdbSentimentEstimatedAccuracyLow",
            f"{ESTIMATE_RECORD} < on ({SLOT_LABEL}) {evaluated_accuracy()} - {drop:g} and on"
            f" ({SLOT_LABEL}) {_aggregate(f'increase({REVIEWS_METRIC}_total[1h])', (SLOT_LABEL,))}"
            f" > {bounds.min_estimate_reviews}", "30m", "warning",
            f"{app} slot {slot}: label-free accuracy estimate {drop * 100:g} points under the"
            " evaluated accuracy",
            "The scores say the model is less sure than on its test split: make monitor"
            " BATCH=<recent reviews>, with a small labelled sample (k8s/monitoring/README.md).",
        ),
    ]  # fmt: skip
    record = {"record": ESTIMATE_RECORD, "expr": estimated_accuracy("1h")}
    return {"groups": [{"name": app, "rules": rules},
                       {"name": f"{app}-records", "rules": [record]}]}  # fmt: skip


def _alert(
    name: str, expr: str, hold: str | None, severity: str, summary: str, description: str
) -> dict[str, Any]:
    # A line per operand of the top-level operators, for people (PromQL ignores line breaks).
    lines = re.sub(r" (/|- on|and on) ", r"\n  \1 ", expr)
    rule: dict[str, Any] = {"alert": name, "expr": YamlBlock(lines + "\n")}
    if hold:
        rule["for"] = hold
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def prometheus_rule(cfg: DeployConfig) -> dict[str, Any]:
    """The same rule groups as a PrometheusRule for the Prometheus Operator."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": cfg.app,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/part-of": cfg.app},
        },
        "spec": alert_rules(cfg),
    }


# --- the dashboard ------------------------------------------------------------------------------


def dashboard(cfg: DeployConfig) -> dict[str, Any]:
    """The Grafana dashboard: every panel split by slot."""
    w = GRAFANA_RATE
    slot = _shown(SLOT_LABEL)
    panels = [
        ("Calls per second, by slot and outcome", "timeseries", "reqps", [
            (_aggregate(_rate(f"{CALLS_METRIC}_total", w), (SLOT_LABEL, OUTCOME_LABEL)),
             f"{slot} {_shown(OUTCOME_LABEL)}"),
        ]),
        ("Reviews per second, by slot and predicted label", "timeseries", "short", [
            (_aggregate(_rate(f"{REVIEWS_METRIC}_total", w), (SLOT_LABEL, PREDICTED_LABEL)),
             f"{slot} {_shown(PREDICTED_LABEL)}"),
        ]),
        ("Error and rejection ratio, by slot", "timeseries", "percentunit", [
            (error_ratio(w), f"{slot} errors"),
            (rejected_ratio(w), f"{slot} rejected"),
        ]),
        ("Rejected inputs per second, by slot and reason", "timeseries", "reqps", [
            (_aggregate(_rate(f"{REJECTED_METRIC}_total", w), (SLOT_LABEL, REASON_LABEL)),
             f"{slot} {_shown(REASON_LABEL)}"),
        ]),
        ("Time in the model per call: p50 and p99, by slot", "timeseries", "s", [
            (quantile(0.5, PREDICT_SECONDS_METRIC, w), f"{slot} p50"),
            (quantile(0.99, PREDICT_SECONDS_METRIC, w), f"{slot} p99"),
        ]),
        ("Positive share of predictions against training, by slot", "timeseries", "percentunit", [
            (positive_share(w), f"{slot} served"),
            (_aggregate(BASELINE_SHARE_METRIC, (SLOT_LABEL,), "max"),
             f"{slot} training (validation split)"),
        ]),
        ("Label-free accuracy estimate against evaluated accuracy, by slot", "timeseries",
         "percentunit", [(estimated_accuracy(w), f"{slot} estimated (calibrated scores)"),
                         (evaluated_accuracy(), f"{slot} evaluated (test split)")]),
        ("Score distribution over the time range, by slot", "bargauge", "short", [
            (_aggregate(f"increase({SCORE_METRIC}_bucket[{GRAFANA_RANGE}])", (SLOT_LABEL, "le")),
             f"{slot} score <= {_shown('le')}"),
        ]),
        ("Review length: p50 and p90 characters, by slot", "timeseries", "short", [
            (quantile(0.5, REVIEW_CHARS_METRIC, w), f"{slot} p50"),
            (quantile(0.9, REVIEW_CHARS_METRIC, w), f"{slot} p90"),
        ]),
        ("Model served, by slot", "table", "none", [
            (_aggregate(MODEL_INFO_METRIC, (SLOT_LABEL, *IDENTITY_LABELS[:3]), "max"), ""),
        ]),
    ]  # fmt: skip
    source = {"type": "prometheus", "uid": "${datasource}"}
    chooser = {
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [],
    }  # fmt: skip
    return {
        "title": f"{cfg.app}: served model",
        "uid": f"{cfg.app}-model",
        "description": "Calls, reviews, errors, latency, predictions and inputs of the served"
        " model, by blue/green slot (pyfunc/telemetry.py; k8s/monitoring/README.md).",
        "tags": [cfg.app, "mlflow"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [chooser]},
        "annotations": {"list": []},
        "panels": [_panel(i, *panel, source) for i, panel in enumerate(panels)],
    }


def _shown(label: str) -> str:
    """A label's value in a Grafana legend."""
    return "{{" + label + "}}"


def _panel(
    index: int, title: str, kind: str, unit: str, targets: list[tuple[str, str]], source: dict
) -> dict[str, Any]:
    instant = kind != "timeseries"  # a table or a distribution shows the latest value
    return {
        "id": index + 1,
        "title": title,
        "type": kind,
        "datasource": source,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [_target(chr(ord("A") + i), expr, legend, instant, kind, source)
                    for i, (expr, legend) in enumerate(targets)],
    }  # fmt: skip


def _target(
    ref: str, expr: str, legend: str, instant: bool, kind: str, source: dict
) -> dict[str, Any]:
    target = {
        "datasource": source, "expr": expr, "legendFormat": legend, "refId": ref,
        "range": not instant, "instant": instant,
    }  # fmt: skip
    if kind == "table":
        target["format"] = "table"
    return target


# --- the files ----------------------------------------------------------------------------------

HEADER = f"# Generated by steps/monitoring/promql.py: edit there, then `{COMMAND}`.\n"
RULES_HEADER = """\
# Alert rules for the served model (a plain Prometheus rules file: `rule_files:` in
# prometheus.yml); prometheusrule.yaml carries the same groups for the Prometheus Operator.
# alerts.test.yaml fires and quiets each rule with `promtool test rules`. Series come from the
# model (pyfunc/telemetry.py), from kube-state-metrics (restarts) and from the kubelet's cAdvisor
# (CPU throttling).
"""
PROMETHEUS_RULE_HEADER = """\
# The alert rules of alerts.rules.yaml for the Prometheus Operator (kube-prometheus-stack). Your
# Prometheus must select it: kube-prometheus-stack's default ruleSelector wants the label
# `release: <helm release name>`; add it here or set ruleSelector to match part-of.
"""


def rendered(cfg: DeployConfig) -> dict[Path, str]:
    """Each generated file (relative to the project root) and its text."""
    return {
        RULES_FILE: HEADER + RULES_HEADER + yaml_text(alert_rules(cfg)),
        PROMETHEUS_RULE_FILE: HEADER + PROMETHEUS_RULE_HEADER + yaml_text(prometheus_rule(cfg)),
        DASHBOARD_FILE: json.dumps(dashboard(cfg), indent=2) + "\n",
    }


def write_files(cfg: DeployConfig, root: Path = Path()) -> list[Path]:
    """Write the generated files under `root`; returns those whose text changed."""
    changed = []
    for relative, text in rendered(cfg).items():
        path = root / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed
