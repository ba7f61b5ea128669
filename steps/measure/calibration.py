"""Calibration measured: the expected calibration error (ECE), the reliability table behind it,
the out-of-fold scores a calibrator is fitted on, and the choice between calibration methods.

The model's own calibrator (what ships) is pyfunc/calibration.py; only `train` imports it and
hands its `fit` to `choose` here, so this module loads none of the model's code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from steps.data.dataset import POSITIVE
from steps.data.splits import cv_folds

log = logging.getLogger(__name__)

ECE_BINS = 15


def expected_calibration_error(
    positive: Sequence[bool] | np.ndarray, scores: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: reviews binned by confidence max(p, 1 - p) into `bins` equal-width bins
    over [0.5, 1]; the mean over reviews of |accuracy - mean confidence| of their bin. Bin by bin,
    it is how far the label-free accuracy estimate (mean confidence) is from the truth."""
    table = reliability_table(positive, scores, bins)
    filled = table["count"] > 0
    n = table["count"].sum()
    if n == 0:
        return 0.0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(table["count"][filled] * gaps) / n)


def reliability_table(
    positive: Sequence[bool] | np.ndarray, scores: np.ndarray, bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Per confidence bin: its lower edge, review count, mean confidence and accuracy (an empty
    bin: count 0, the two means NaN). Scores of exactly 0.5 (no evidence) count as wrong."""
    truth = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    confidence = np.maximum(scores, 1 - scores)
    correct = (scores > 0.5) == truth
    correct[scores == 0.5] = False
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / count
    return {"lower": edges[:-1], "count": count, "confidence": mean_conf, "accuracy": accuracy}


def choose(
    scores: np.ndarray,
    positive: np.ndarray,
    fit: Callable[[str, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    methods: Sequence[str],
    seed: int = 0,
) -> tuple[Any, dict[str, float]]:
    """The method with the lowest ECE on held-out halves of (scores, positive), refitted on all,
    and each ECE measured (`raw`, and one per method: the mean over both halves)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.random.default_rng(seed).permutation(len(scores))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    measured = {"raw": expected_calibration_error(positive, scores)}
    for method in methods:
        errors = []
        for held, fitted in (halves, halves[::-1]):
            calibrate = fit(method, scores[fitted], positive[fitted])
            errors.append(expected_calibration_error(positive[held], calibrate(scores[held])))
        measured[method] = float(np.mean(errors))
    best = min(methods, key=measured.__getitem__)
    return fit(best, scores, positive), measured


def out_of_fold_scores(
    fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray | Callable[[], np.ndarray]],
    labels: Sequence[str],
    movies: Sequence[str] | None,
    folds: int,
    seed: int,
) -> tuple[np.ndarray, str]:
    """Every review's score from a model that never saw it (nor, grouped, its movie):
    `fit_and_score(fit_rows, held_rows)` fits on the first and returns scores of the second, or
    a function that returns them once done: every fold is started before any is waited for, so
    the folds may be fitted at once (in worker processes)."""
    scores = np.full(len(labels), np.nan)
    splits, how = cv_folds(labels, movies, folds, seed)
    started = [(held_rows, fit_and_score(fit_rows, held_rows)) for fit_rows, held_rows in splits]
    for held_rows, fold in started:
        scores[held_rows] = fold() if callable(fold) else fold
    return scores, how


def fit_calibrator(
    fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray | Callable[[], np.ndarray]],
    fit: Callable[[str, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    methods: Sequence[str],
    labels: Sequence[str],
    movies: Sequence[str] | None,
    folds: int,
    seed: int,
) -> tuple[Any, dict[str, float]]:
    """A calibrator (the best of `methods`, fitted by `fit`) on out-of-fold scores, and the
    figures: calibration_ece_raw and _<method> (held-out halves), calibration_cpu_seconds."""
    cpu = time.process_time()
    scores, how = out_of_fold_scores(fit_and_score, labels, movies, folds, seed)
    positive = np.asarray(labels) == POSITIVE
    calibrator, measured = choose(scores, positive, fit, methods, seed)
    log.info(
        "calibration: %s, out-of-fold ECE (%s) %s",
        calibrator.method, how, ", ".join(f"{k} {v:.4f}" for k, v in measured.items()),
    )  # fmt: skip
    figures = {f"calibration_ece_{name}": value for name, value in measured.items()}
    figures["calibration_cpu_seconds"] = time.process_time() - cpu
    return calibrator, figures
