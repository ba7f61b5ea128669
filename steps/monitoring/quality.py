"""Is the model still right? Its accuracy, precision, recall and F1 on a batch, estimated
without labels from calibrated scores (confidence-based performance estimation, as NannyML's
CBPE does for tabular models).

A calibrated score p says the review is positive with probability p, so each prediction is right
with probability max(p, 1 - p): the estimated accuracy is their mean, and the expected confusion
matrix sums p and 1 - p over the reviews predicted positive and negative. The 95% intervals come
from the labels the scores imply, drawn DRAWS times (each review positive with probability p):
the spread a batch of this size has even when the model is exactly as calibrated as it claims.

What it cannot see: a shift the text does not show (reviews of another quality, a new meaning
of a word) leaves the scores as they were while the truth moves; `monitor` with labels, on a small
labelled sample, measures that (k8s/monitoring/README.md has the benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyfunc.contract import POSITIVE

DRAWS = 1000  # simulated label sets for the intervals
_CHUNK = 100  # draws at a time (memory: chunk x reviews booleans)
NAMES = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class Estimate:
    """One figure: estimated without labels (with its 95% interval), and the truth if known."""

    name: str
    estimate: float
    low: float
    high: float
    truth: float | None = None
    reviews: int = 0  # in the batch

    def to_dict(self) -> dict[str, Any]:
        interval = [self.low, self.high]
        return {"estimate": self.estimate, "interval_95": interval, "truth": self.truth}


def estimate(
    scores: np.ndarray, labels: Sequence[str] | None = None, seed: int = 0
) -> dict[str, Estimate]:
    """Accuracy, precision, recall and F1 of the predictions (score > 0.5 is positive), estimated
    from the scores alone as if they are calibrated; with `labels`, each beside its true value.
    Reviews without evidence (score exactly 0.5) count as predicted negative, right half the
    time."""
    p = np.asarray(scores, dtype=np.float64)
    predicted = p > 0.5
    point = _figures(
        tp=p[predicted].sum(), fp=(1 - p[predicted]).sum(),
        fn=p[~predicted].sum(), tn=(1 - p[~predicted]).sum(),
    )  # fmt: skip
    draws = {name: [] for name in NAMES}
    rng = np.random.default_rng(seed)
    for start in range(0, DRAWS, _CHUNK):
        positive = rng.uniform(size=(min(_CHUNK, DRAWS - start), len(p))) < p
        tp = (positive & predicted).sum(axis=1)
        fp = (~positive & predicted).sum(axis=1)
        fn = (positive & ~predicted).sum(axis=1)
        tn = (~positive & ~predicted).sum(axis=1)
        for name, values in _figures(tp, fp, fn, tn).items():
            draws[name].append(np.atleast_1d(values))
    truth = _truth(predicted, labels) if labels is not None else {}
    result = {}
    for name in NAMES:
        low, high = np.nanpercentile(np.concatenate(draws[name]), [2.5, 97.5])
        value = float(point[name])
        # the draws are whole counts: near 1 their percentiles can sit just beside the estimate
        low, high = min(float(low), value), max(float(high), value)
        result[name] = Estimate(name, value, low, high, truth.get(name), len(p))
    return result


def _figures(tp, fp, fn, tn) -> dict[str, Any]:
    tp, fp, fn, tn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn, tn))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    accuracy = (tp + tn) / np.maximum(tp + fp + fn + tn, 1)
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def _truth(predicted: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    positive = np.asarray(labels) == POSITIVE
    figures = _figures(
        (positive & predicted).sum(), (~positive & predicted).sum(),
        (positive & ~predicted).sum(), (~positive & ~predicted).sum(),
    )  # fmt: skip
    return {name: float(value) for name, value in figures.items()}
