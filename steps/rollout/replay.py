"""The analysis of a new slot before the switch: the labelled sample stored with the version at
evaluation (steps/measure/sample.py) goes through the preview Service one review per request,
through the API server's service proxy like the smoke test. The served labels must equal the
registered version's in-process labels, their accuracy must be within `max_accuracy_drop` of the
accuracy evaluation measured, and the p99 round trip under `replay_p99_seconds`. Beside the
labelled accuracy it reports the label-free estimate (mean max(p, 1 - p) of the served scores) of
a calibrated version, not judged: the sample is too small (200 reviews: +-2.6 points). A breach
is an AnalysisFailed (steps/rollout/analysis.py), as after the switch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from pyfunc.contract import SCORE_FIELD
from steps.measure import sample as samples
from steps.rollout import smoke
from steps.rollout.analysis import AnalysisFailed, Verdict
from steps.rollout.kube import Kube
from steps.stage.config import DeployConfig
from steps.stage.errors import StageError

log = logging.getLogger(__name__)


def replay(
    kube: Kube,
    cfg: DeployConfig,
    service: str,
    model_name: str,
    version: int,
    sample: samples.Sample,
    clock: Callable[[], float] = time.perf_counter,
) -> Verdict:
    """Replay the version's sample through `service`; raise AnalysisFailed on a breach."""
    bounds = cfg.analysis
    expected = smoke.expected_labels(cfg, model_name, version, sample.reviews)
    served, seconds, scores = [], [], []
    for i, review in enumerate(sample.reviews):
        started = clock()
        try:
            (answer,) = smoke.served_predictions(kube, cfg, service, [review])
        except StageError as exc:
            raise AnalysisFailed(
                "replay", f"replayed review {i + 1}/{len(sample.reviews)}: {exc}"
            ) from None
        seconds.append(clock() - started)
        served.append(answer[cfg.label_field] if isinstance(answer, dict) else answer)
        scores.append(answer.get(SCORE_FIELD) if isinstance(answer, dict) else None)
    accuracy = float(np.mean([s == t for s, t in zip(served, sample.labels, strict=True)]))
    p99 = float(np.percentile(seconds, 99))
    figures = {
        "reviews": float(len(served)),
        "accuracy": accuracy,
        "evaluated_accuracy": sample.accuracy,
        "p99_seconds": p99,
    }
    if None not in scores and smoke.is_calibrated(model_name, version):
        figures["estimated_accuracy"] = float(np.mean([max(p, 1 - p) for p in scores]))
    else:
        log.info("version %d is not calibrated: no label-free accuracy estimate", version)
    wrong = [i for i, (s, e) in enumerate(zip(served, expected, strict=True)) if s != e]
    if wrong:
        i = wrong[0]
        raise AnalysisFailed(
            "labels",
            f"served labels differ from version {version} in-process on {len(wrong)}/"
            f"{len(served)} sample reviews, e.g. {sample.reviews[i][:50]!r}: served"
            f" {served[i]!r}, expected {expected[i]!r}",
            figures,
        )
    floor = sample.accuracy - bounds.max_accuracy_drop
    if accuracy < floor:
        raise AnalysisFailed(
            "accuracy",
            f"accuracy {accuracy:.4f} on {len(served)} sample reviews is below {floor:.4f}"
            f" (evaluated {sample.accuracy:.4f} - max_accuracy_drop {bounds.max_accuracy_drop:g})",
            figures,
        )
    if p99 > bounds.replay_p99_seconds:
        raise AnalysisFailed(
            "latency",
            f"p99 round trip {p99:.3f}s over {len(served)} sample reviews is over"
            f" replay_p99_seconds {bounds.replay_p99_seconds:g}",
            figures,
        )
    log.info(
        "pre-promotion analysis passed: %d reviews, accuracy %.4f (evaluated %.4f, label-free"
        " estimate %s), p99 %.3fs",
        len(served), accuracy, sample.accuracy,
        f"{figures['estimated_accuracy']:.4f}" if "estimated_accuracy" in figures else "none", p99,
    )  # fmt: skip
    return Verdict(figures)
