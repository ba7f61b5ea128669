"""Analysis of a new slot before and after it takes traffic (deploy.analysis.* bounds).

Before the switch the labelled sample is replayed through the preview Service
(steps/rollout/replay.py).

After the switch (`watch_live`): every `interval` seconds for `duration` seconds, Prometheus is
asked for the live slot's error ratio, p99 time inside the model and positive share over the
last `window` seconds (the series pyfunc/telemetry.py exports, labelled by `slot`), against
`max_error_ratio`, `max_p99_seconds` and `max_positive_share_shift` from the evaluated share,
and, for a calibrated version (its pods export expected-correct reviews) over at least
`min_estimate_reviews` reviews, the label-free accuracy estimate against
`max_estimated_accuracy_drop` below the evaluated accuracy (an uncalibrated one: one line). Fail
closed: Prometheus unreachable, an error answer, no series, or any answer that cannot be judged
(not JSON, no result list, several series, a sample that is not a finite number, a figure outside
its range, some figures NaN and others not) is a failed analysis, as is an analysis that never
saw a call to judge. A round without calls (every figure NaN) is inconclusive.

Either way a failure is an `AnalysisFailed` naming the check and its numbers; the executor
(deployer.py) decides what to undo.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests

from pyfunc.contract import EXPECTED_CORRECT_METRIC, REVIEWS_METRIC, SLOT_LABEL
from steps.monitoring import promql
from steps.stage.config import AnalysisConfig
from steps.stage.errors import StageError, one_line

log = logging.getLogger(__name__)

PROMETHEUS_URL_ENV = "IMDB_PROMETHEUS_URL"


class AnalysisFailed(StageError):
    """An analysis found a breach (or could not judge): which check, and its numbers."""

    def __init__(self, check: str, message: str, figures: dict[str, float] | None = None):
        super().__init__(message)
        self.check = check
        self.figures = dict(figures or {})


@dataclass(frozen=True)
class Verdict:
    """A passed analysis: what it measured."""

    figures: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


# -- after the switch ----------------------------------------------------------------------


def prometheus_url(bounds: AnalysisConfig, environ: dict | None = None) -> str:
    """deploy.analysis.prometheus_url, else $IMDB_PROMETHEUS_URL, else "" (none)."""
    environ = os.environ if environ is None else environ
    return (bounds.prometheus_url or environ.get(PROMETHEUS_URL_ENV, "")).strip().rstrip("/")


def shown_url(url: str) -> str:
    """The URL without credentials, for logs and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Prometheus:
    """Instant queries against Prometheus's HTTP API (GET /api/v1/query)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def value(self, name: str, expr: str) -> float:
        """The single value of `expr` (NaN when no calls fell in the window); AnalysisFailed
        when Prometheus cannot be asked, refuses the query or gives an answer that cannot be
        judged (fail closed: whatever is not one finite-or-NaN sample is a failed analysis)."""
        where = shown_url(self.url)
        try:
            answer = requests.get(
                f"{self.url}/api/v1/query", params={"query": expr}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise AnalysisFailed(
                "prometheus", f"Prometheus at {where} did not answer ({one_line(exc)[:200]})"
            ) from None
        try:
            body = answer.json()
        except ValueError:  # requests' JSONDecodeError, whatever the body was
            body = None
        refused = not isinstance(body, dict) or body.get("status") != "success"
        if answer.status_code != 200 or refused:
            said = body.get("error", "") if isinstance(body, dict) else answer.text
            raise AnalysisFailed(
                "prometheus",
                f"Prometheus at {where} refused the {name} query: HTTP {answer.status_code}"
                f" {one_line(str(said))[:200]}",
            )
        return sample_value(body, f"Prometheus at {where}", name, expr)

    def has_series(self, expr: str) -> bool:
        """Whether `expr` returns any series now (a failed query counts as none)."""
        try:
            answer = requests.get(
                f"{self.url}/api/v1/query", params={"query": expr}, timeout=self.timeout
            )
            return bool(answer.json().get("data", {}).get("result"))
        except (requests.RequestException, ValueError, AttributeError):
            return False


def sample_value(body: dict, where: str, name: str, expr: str) -> float:
    """The one sample of an instant query's successful answer, as a float (NaN kept: no calls);
    AnalysisFailed for any other shape: not a vector, no series, several series, a value that is
    not [time, "number"], an infinite number."""
    data = body.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or data.get("resultType") != "vector":
        raise AnalysisFailed(
            "prometheus", f"{where} answered the {name} query with data {data!r:.80}, not a vector"
        )
    if not result:
        raise AnalysisFailed(
            "prometheus",
            f"{where} has no series for {name} ({expr}): is it scraping the slot's metrics port?",
        )
    if len(result) != 1:
        raise AnalysisFailed(
            "prometheus", f"{where} answered the {name} query with {len(result)} series, not one"
        )
    pair = result[0].get("value") if isinstance(result[0], dict) else None
    try:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            raise ValueError
        value = float(pair[1])
    except ValueError:
        raise AnalysisFailed(
            "prometheus",
            f"{where} answered the {name} query with the sample {result[0]!r:.80}, not"
            ' [time, "number"]',
        ) from None
    if math.isinf(value):
        raise AnalysisFailed("prometheus", f"{where} answered the {name} query with {value}")
    return value


def watch_live(
    prometheus: Prometheus,
    bounds: AnalysisConfig,
    slot: str,
    expected_share: float | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    evaluated_accuracy: float | None = None,
) -> Verdict:
    """Query the live slot every `interval` s for `duration` s; raise AnalysisFailed on a breach.

    `expected_share` is the positive share evaluation measured, `evaluated_accuracy` its
    accuracy (None: that check is skipped).
    """
    window = f"{max(1, round(bounds.window))}s"
    estimate = _estimate_queries(prometheus, slot, window, evaluated_accuracy)
    limits = {
        "error_ratio": bounds.max_error_ratio,
        "p99_seconds": bounds.max_p99_seconds,
        "positive_share": bounds.max_positive_share_shift,
    }
    deadline = clock() + bounds.duration
    judged, rounds, figures = 0, 0, {}
    while True:
        sleep(max(0.0, min(bounds.interval, deadline - clock())))
        rounds += 1
        figures = {
            name: prometheus.value(name, query)
            for name, query in promql.slot_queries(slot, window).items()
        }
        missing = [name for name, value in figures.items() if math.isnan(value)]
        if len(missing) == len(figures):
            log.info("post-promotion round %d: no calls to slot %s in %s", rounds, slot, window)
        else:
            _in_range(figures, slot, window)
            # A NaN never breaches a bound, so a partial answer's real breach is named first.
            _judge(figures, limits, slot, window, expected_share)
            if missing:
                raise AnalysisFailed(
                    "prometheus",
                    f"no value for {', '.join(missing)} while the other figures have one"
                    f" (slot {slot}, last {window}): cannot judge",
                    figures,
                )
            judged += 1
            if estimate:
                figures.update(_judge_estimate(prometheus, estimate, bounds, slot, window,
                                               evaluated_accuracy, figures))  # fmt: skip
            log.info(
                "post-promotion round %d: slot %s error ratio %.4f, p99 %.3fs, positive %.3f",
                rounds, slot, figures["error_ratio"], figures["p99_seconds"],
                figures["positive_share"],
            )  # fmt: skip
        if clock() >= deadline:
            break
    if not judged:
        raise AnalysisFailed(
            "no-traffic",
            f"no calls to slot {slot} in any of {rounds} rounds over {bounds.duration:g}s:"
            " nothing to judge",
            figures,
        )
    return Verdict({**figures, "rounds": float(rounds), "judged": float(judged)})


# What each figure can be: a ratio, a share, a duration. Outside it, the answer is not judged.
_RANGES = {
    "error_ratio": (0.0, 1.0),
    "p99_seconds": (0.0, math.inf),
    "positive_share": (0.0, 1.0),
    "estimated_accuracy": (0.0, 1.0),
    "reviews": (0.0, math.inf),
}


def _in_range(figures: dict[str, float], slot: str, window: str) -> None:
    for name, value in figures.items():
        low, high = _RANGES[name]
        if not low <= value <= high and not math.isnan(value):
            raise AnalysisFailed(
                "prometheus",
                f"{name} {value:g} is outside [{low:g}, {high:g}] (slot {slot}, last {window}):"
                " cannot judge",
                figures,
            )


def _estimate_queries(
    prometheus: Prometheus, slot: str, window: str, evaluated: float | None
) -> dict[str, str]:
    """The live estimate's queries, or none (one line) when the slot's version is uncalibrated
    (its pods export no expected-correct series) or has no evaluated accuracy."""
    numerator = f'{EXPECTED_CORRECT_METRIC}_total{{{SLOT_LABEL}="{slot}"}}'
    if evaluated is None or not prometheus.has_series(numerator):
        why = "no evaluated accuracy" if evaluated is None else "an uncalibrated version"
        log.info("slot %s: %s, the label-free accuracy estimate is not judged", slot, why)
        return {}
    reviews = f'sum(increase({REVIEWS_METRIC}_total{{{SLOT_LABEL}="{slot}"}}[{window}]))'
    return {"estimated_accuracy": promql.estimated_accuracy(window, slot), "reviews": reviews}


def _judge_estimate(
    prometheus: Prometheus,
    queries: dict[str, str],
    bounds: AnalysisConfig,
    slot: str,
    window: str,
    evaluated: float,
    figures: dict[str, float],
) -> dict[str, float]:
    found = {name: prometheus.value(name, query) for name, query in queries.items()}
    _in_range(found, slot, window)
    if not found["reviews"] >= bounds.min_estimate_reviews:  # too few (or NaN): not judged
        return {"estimated_accuracy": found["estimated_accuracy"]}
    if math.isnan(found["estimated_accuracy"]):  # reviews counted but no estimate: fail closed
        raise AnalysisFailed(
            "prometheus",
            f"no label-free accuracy estimate for {found['reviews']:.0f} reviews (slot {slot},"
            f" last {window}): cannot judge",
            {**figures, **found},
        )
    drop = evaluated - found["estimated_accuracy"]
    if drop > bounds.max_estimated_accuracy_drop:
        raise AnalysisFailed(
            "estimated_accuracy",
            f"label-free accuracy estimate {found['estimated_accuracy']:.4f} is {drop:.4f}"
            f" below the evaluated {evaluated:.4f}, over max_estimated_accuracy_drop"
            f" {bounds.max_estimated_accuracy_drop:g} (slot {slot}, last {window},"
            f" {found['reviews']:.0f} reviews)",
            {**figures, **found, "evaluated_accuracy": evaluated},
        )
    return {"estimated_accuracy": found["estimated_accuracy"]}


def _judge(
    figures: dict[str, float],
    limits: dict[str, float],
    slot: str,
    window: str,
    expected_share: float | None,
) -> None:
    where = f"slot {slot}, last {window}"
    if figures["error_ratio"] > limits["error_ratio"]:
        raise AnalysisFailed(
            "error_ratio",
            f"error ratio {figures['error_ratio']:.4f} over max_error_ratio"
            f" {limits['error_ratio']:g} ({where})",
            figures,
        )
    if figures["p99_seconds"] > limits["p99_seconds"]:
        raise AnalysisFailed(
            "p99_latency",
            f"p99 time in the model {figures['p99_seconds']:.3f}s over max_p99_seconds"
            f" {limits['p99_seconds']:g} ({where})",
            figures,
        )
    if expected_share is not None:
        shift = abs(figures["positive_share"] - expected_share)
        if shift > limits["positive_share"]:
            raise AnalysisFailed(
                "positive_share",
                f"positive share {figures['positive_share']:.3f} is {shift:.3f} from the"
                f" evaluated {expected_share:.3f}, over max_positive_share_shift"
                f" {limits['positive_share']:g} ({where})",
                {**figures, "evaluated_positive_share": expected_share},
            )
