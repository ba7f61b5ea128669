"""A batch of reviews against the model's training profile: each drift figure and its bound.

The statistics are scipy's: the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`) and
the population stability index as the symmetric Kullback-Leibler divergence of the binned shares
(`scipy.stats.entropy` both ways; PSI = sum((p - q) ln(p / q)) is exactly that sum). Evidently
(0.7) would install beside our pins, but brings ~20 packages (a web framework, plotly,
statsmodels) into the project for these two statistics; the text figures are ours either way,
since they need the model's vocabulary.

Each figure and the params.yaml bound it is held to (`monitor.<bound>`):
- `review_length_psi`: PSI of review length over the profile's deciles (max_length_psi);
- `unseen_token_increase`: share of tokens the model never saw, minus the profile's
  (max_unseen_token_increase);
- `not_english_increase`: share of reviews not in English, minus the profile's
  (max_not_english_increase);
- `markup_increase`: share of characters that are markup, minus the profile's
  (max_markup_increase);
- `score_psi`: PSI of the predicted score over ten bins of 0.1 (max_score_psi);
- `score_ks`: two-sample KS statistic of the scores, its p-value reported (max_score_ks);
- with labels, `positive_label_shift`: their positive share minus training's, absolute
  (max_label_shift), and `accuracy_drop`: evaluate's accuracy of the version (or the profile's
  validation accuracy) minus the batch's (max_accuracy_drop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from pyfunc.contract import BASELINE_SHARE_KEY, POSITIVE
from steps.monitoring import text
from steps.stage.config import MonitorConfig

SCORE_EDGES = np.linspace(0.0, 1.0, 11)
SMOOTHING = 1e-4  # added to each bin's share, so an empty bin does not make PSI infinite


@dataclass(frozen=True)
class Figure:
    """One drift figure: the batch's value, the training value, and the bound it is held to."""

    name: str
    value: float
    batch: float | None  # the batch's own figure (for increases: before subtracting)
    training: float | None  # the profile's figure
    bound: float | None  # None: reported, not judged
    bound_key: str | None  # the params.yaml key of the bound
    detail: str = ""

    @property
    def crossed(self) -> bool:
        return self.bound is not None and self.value > self.bound

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crossed": self.crossed}

    def verdict(self) -> str:
        """`score_psi 0.412 > monitor.max_score_psi 0.25`"""
        return f"{self.name} {self.value:.4g} > {self.bound_key} {self.bound:g}"


def psi(expected: np.ndarray, actual: np.ndarray, edges: np.ndarray) -> float:
    """Population stability index of `actual` against `expected` over the bins `edges`."""
    p = _shares(expected, edges)
    q = _shares(actual, edges)
    return float(stats.entropy(q, p) + stats.entropy(p, q))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, edges[0], edges[-1])
    counts = np.histogram(clipped, bins=edges)[0].astype(float)
    return counts / max(counts.sum(), 1.0) + SMOOTHING


def length_edges(training_lengths: np.ndarray) -> np.ndarray:
    """Decile edges of the training lengths, opened to 0 and infinity-ish at the ends."""
    inner = np.unique(np.quantile(training_lengths, np.linspace(0.1, 0.9, 9)))
    return np.concatenate([[0.0], inner, [max(float(training_lengths.max()), 1e9)]])


def compare(
    profile: dict[str, Any],
    reviews: Sequence[str],
    scores: np.ndarray,
    token_counts: tuple[np.ndarray, np.ndarray],
    cfg: MonitorConfig,
    labels: Sequence[str] | None = None,
    evaluated_accuracy: float | None = None,
) -> list[Figure]:
    """Every figure of the batch against the profile (labels: "positive"/"negative" or None)."""
    scores = np.asarray(scores, dtype=float)
    train_lengths = np.asarray(profile["review_chars"], dtype=float)
    train_scores = np.asarray(profile["scores"], dtype=float)
    lengths = text.lengths(reviews).astype(float)
    unseen, tokens = token_counts
    unseen_share = float(unseen.sum() / max(int(tokens.sum()), 1))
    not_english = float(np.mean(text.not_english(reviews)))
    markup = text.markup_share(reviews)
    ks = stats.ks_2samp(scores, train_scores)
    figures = [
        Figure(
            "review_length_psi", psi(train_lengths, lengths, length_edges(train_lengths)),
            float(np.median(lengths)), float(np.median(train_lengths)),
            cfg.max_length_psi, "monitor.max_length_psi", "batch/training: median characters",
        ),
        _increase(
            "unseen_token_increase", unseen_share, profile["unseen_token_share"],
            cfg.max_unseen_token_increase, "monitor.max_unseen_token_increase",
        ),
        _increase(
            "not_english_increase", not_english, profile["not_english_share"],
            cfg.max_not_english_increase, "monitor.max_not_english_increase",
        ),
        _increase(
            "markup_increase", markup, profile["markup_share"],
            cfg.max_markup_increase, "monitor.max_markup_increase",
        ),
        Figure(
            "score_psi", psi(train_scores, scores, SCORE_EDGES),
            float(np.mean(scores > 0.5)), profile[BASELINE_SHARE_KEY],
            cfg.max_score_psi, "monitor.max_score_psi", "batch/training: predicted positive share",
        ),
        Figure(
            "score_ks", float(ks.statistic), None, None, cfg.max_score_ks,
            "monitor.max_score_ks", f"p-value {ks.pvalue:.3g}",
        ),
    ]  # fmt: skip
    if labels is not None:
        truth = np.asarray(labels) == POSITIVE
        share = float(truth.mean())
        training_share = profile["positive_label_share"]
        figures.append(
            Figure(
                "positive_label_shift",
                abs(share - training_share),
                share,
                training_share,
                cfg.max_label_shift,
                "monitor.max_label_shift",
                "batch/training: positive labels",
            )
        )
        accuracy = float(np.mean((scores > 0.5) == truth))
        reference = profile["accuracy"] if evaluated_accuracy is None else evaluated_accuracy
        where = "validation split" if evaluated_accuracy is None else "evaluate's test split"
        figures.append(
            Figure(
                "accuracy_drop",
                reference - accuracy,
                accuracy,
                reference,
                cfg.max_accuracy_drop,
                "monitor.max_accuracy_drop",
                f"reference: {where}",
            )
        )
    return figures


def _increase(name: str, batch: float, training: float, bound: float, key: str) -> Figure:
    return Figure(name, batch - training, batch, float(training), bound, key, "batch/training")
