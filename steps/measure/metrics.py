"""How well probabilities of positive match true labels: one definition for train and evaluate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from steps.data.dataset import POSITIVE
from steps.measure.calibration import expected_calibration_error

# The figures' names (train logs them as val_<name>, evaluate as test_<name>).
ACCURACY, F1, PRECISION, RECALL = "accuracy", "f1", "precision", "recall"
ROC_AUC, LOG_LOSS, N_REVIEWS = "roc_auc", "log_loss", "n_reviews"
ECE = "ece"  # expected calibration error, 15 bins (steps/measure/calibration.py)


def classification_metrics(labels: Sequence[str], scores: np.ndarray) -> dict[str, float]:
    """Threshold-0.5 and ranking metrics of scores (probability of positive) against labels."""
    truth = np.asarray(labels) == POSITIVE
    predicted = scores > 0.5
    return {
        ACCURACY: float(accuracy_score(truth, predicted)),
        F1: float(f1_score(truth, predicted, zero_division=0)),
        PRECISION: float(precision_score(truth, predicted, zero_division=0)),
        RECALL: float(recall_score(truth, predicted, zero_division=0)),
        ROC_AUC: float(roc_auc_score(truth, scores)),
        LOG_LOSS: float(log_loss(truth, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        ECE: expected_calibration_error(truth, scores),
        N_REVIEWS: float(len(truth)),
    }
