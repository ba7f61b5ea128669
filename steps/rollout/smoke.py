"""The smoke test of a slot: known reviews through the preview Service must get the labels the
registered model version gives in-process.

It goes through the API server's service proxy rather than a URL in params: that needs no
Ingress, port-forward or network route to the pods, uses the credentials that already authorise
the deployment, and reaches exactly the pods the preview Service selects.
"""

from __future__ import annotations

import functools
import io
import json
import logging
from typing import Any

import mlflow

from steps.measure import scoring
from steps.rollout.kube import Kube
from steps.stage.config import DeployConfig
from steps.stage.errors import StageError, one_line
from steps.tracking import loading, registry

log = logging.getLogger(__name__)


def prediction_labels(predictions: Any, field: str) -> list[Any]:
    """The label of each prediction in a /invocations answer's `predictions`."""
    if isinstance(predictions, dict):  # column-oriented output ({"label": [...], ...})
        if field not in predictions:
            raise StageError(f"predictions have no {field!r} field (got {sorted(predictions)})")
        return list(predictions[field])
    labels = []
    for item in predictions:
        if isinstance(item, dict):
            if field not in item:
                raise StageError(
                    f"prediction has no {field!r} field (got {sorted(item)});"
                    " set deploy.label_field"
                )
            labels.append(item[field])
        else:
            labels.append(item)
    return labels


def in_process_predictions(uri: str, frame: Any) -> Any:
    """What the model says in-process, as the scoring server would put it in JSON."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    raw = _load(mlflow.get_registry_uri(), uri).predict(frame)
    buffer = io.StringIO()
    predictions_to_json(raw, buffer)
    return json.loads(buffer.getvalue())["predictions"]


def expected_labels(cfg: DeployConfig, model_name: str, version: int, reviews: list[str]) -> list:
    """The labels the registered `version` gives `reviews` in-process."""
    uri = registry.model_uri(model_name, version)
    try:
        predictions = in_process_predictions(uri, _frame(cfg, reviews))
    except Exception as exc:  # the model's own code may raise anything; say so in one line
        raise StageError(
            f"{uri} failed in-process: {type(exc).__name__}: {one_line(exc)}"
        ) from None
    return prediction_labels(predictions, cfg.label_field)


def served_labels(kube: Kube, cfg: DeployConfig, service: str, reviews: list[str]) -> list:
    """POST `reviews` to `service`'s /invocations through the API server; the labels served."""
    return prediction_labels(served_predictions(kube, cfg, service, reviews), cfg.label_field)


def served_predictions(kube: Kube, cfg: DeployConfig, service: str, reviews: list[str]) -> Any:
    """POST `reviews` to `service`'s /invocations; the `predictions` answered (one per review,
    each with the label field)."""
    payload = {"dataframe_split": _frame(cfg, reviews).to_dict(orient="split", index=False)}
    status, body = kube.proxy_post(service, cfg.port_name, "invocations", payload)
    text = body.decode("utf-8", "replace")
    if status != 200:
        raise StageError(f"preview service {service} answered HTTP {status}: {text[:300]}")
    try:
        predictions = json.loads(text)["predictions"]
        served = prediction_labels(predictions, cfg.label_field)
    except (ValueError, KeyError, TypeError):
        raise StageError(f"preview service {service} answered {text[:300]!r}") from None
    if len(served) != len(reviews):
        raise StageError(f"{len(served)} predictions for {len(reviews)} reviews")
    return predictions


def is_calibrated(model_name: str, version: int) -> bool:
    """Whether the version's score is a calibrated probability (one logged before calibration,
    or another model, is not: its confidence is no accuracy estimate)."""
    uri = registry.model_uri(model_name, version)
    try:
        python_model = _load(mlflow.get_registry_uri(), uri).unwrap_python_model()
    except Exception:  # not a pyfunc of ours: nothing to estimate with
        return False
    return bool(getattr(python_model, "calibrated", False))


@functools.lru_cache(maxsize=1)
def _load(registry_uri: str, uri: str) -> Any:
    """A version loaded once: the smoke test and the replay ask for the same one in turn."""
    return scoring.load_model(uri, version=loading.registered_version(uri))


def smoke_test(
    kube: Kube, cfg: DeployConfig, service: str, model_name: str, version: int, slot: str
) -> list[Any]:
    """Send `cfg.smoke_reviews` to `service` (selecting `slot`); raise unless the labels equal
    those of the registered `version` in-process. Returns the served labels."""
    reviews = list(cfg.smoke_reviews)
    expected = expected_labels(cfg, model_name, version, reviews)
    served = served_labels(kube, cfg, service, reviews)
    wrong = [i for i, (s, e) in enumerate(zip(served, expected, strict=True)) if s != e]
    if wrong:
        i = wrong[0]
        review = cfg.smoke_reviews[i]
        raise StageError(
            f"slot {slot} disagrees with model version {version} in-process on"
            f" {len(wrong)}/{len(expected)} smoke reviews, e.g. {review[:50]!r}:"
            f" served {served[i]!r}, expected {expected[i]!r}"
        )
    log.info("smoke test passed: %d reviews, labels %s", len(served), served)
    return served


def _frame(cfg: DeployConfig, reviews: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame({cfg.text_column: list(reviews)})
