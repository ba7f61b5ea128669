"""Calibration: the pipeline's probability of positive mapped to one that means what it says.

The averaged linear views are overconfident (a review scored 0.95 is right less than 95% of the
time), so their mean confidence overstates accuracy. `train` fits a monotone map on out-of-fold
scores of the train split and ships it in the state (pyfunc/state.py) as plain numbers:
- "isotonic": a non-decreasing step function, kept as its knots (x, y), applied with np.interp,
  which is exactly what scikit-learn's IsotonicRegression.predict computes;
- "platt": a sigmoid of the raw score's logit, p' = 1 / (1 + exp(-(a * logit(p) + b))).
`train` measures both on held-out halves of those scores and keeps the one with the lower
expected calibration error (steps/measure/calibration.py). Once the score is calibrated, the mean
of max(p, 1 - p) over a batch estimates the model's accuracy on it without labels.

A review without evidence keeps the exact NO_EVIDENCE score (its "unknown" answer); no other
review lands on it after calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit

from pyfunc.classifier import NO_EVIDENCE
from pyfunc.contract import CALIBRATIONS as METHODS

# Calibrated scores stay this far from 0 and 1: an isotonic end step at exactly 0 or 1 would
# claim certainty (infinite log loss) from a few thousand training scores.
MARGIN = 1e-4


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from the pipeline's score to a calibrated probability of positive."""

    method: str  # one of METHODS
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))  # isotonic knots: raw scores
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))  # isotonic knots: calibrated
    a: float = 1.0  # platt: slope on the raw logit
    b: float = 0.0  # platt: intercept

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        raw = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            calibrated = np.interp(raw, self.x, self.y)
        else:
            clipped = np.clip(raw, MARGIN, 1 - MARGIN)
            calibrated = expit(self.a * logit(clipped) + self.b)
        calibrated = np.clip(calibrated, MARGIN, 1 - MARGIN)
        evidence = raw != NO_EVIDENCE
        # keep the side of 0.5 the calibrated figure leans to; only "no evidence" is exactly 0.5
        tie = evidence & (calibrated == NO_EVIDENCE)
        calibrated[tie] = np.where(raw[tie] > NO_EVIDENCE, 0.5 + 1e-9, 0.5 - 1e-9)
        calibrated[~evidence] = NO_EVIDENCE
        return calibrated


def fit(method: str, scores: np.ndarray, positive: np.ndarray) -> Calibrator:
    """A calibrator of `method` fitted on raw scores and whether each review is positive."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=MARGIN, y_max=1 - MARGIN, out_of_bounds="clip")
        iso.fit(scores, positive.astype(np.float64))
        return Calibrator(method, x=np.asarray(iso.X_thresholds_, dtype=np.float64),
                          y=np.asarray(iso.y_thresholds_, dtype=np.float64))  # fmt: skip
    if method == "platt":
        feature = logit(np.clip(scores, MARGIN, 1 - MARGIN)).reshape(-1, 1)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(feature, positive)
        return Calibrator(method, a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
    raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
