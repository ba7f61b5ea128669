"""MultiViewClassifier: rows weighted and scored in batches, and fit_scored's scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from support import make_reviews

from pyfunc import classifier
from pyfunc.classifier import NO_EVIDENCE, MultiViewClassifier
from pyfunc.pipeline import build_pipeline


def _started(X, y, warm: bool) -> MultiViewClassifier:
    """Unfitted; or fitted once with warm_start, so a refit starts from it (self-training)."""
    model = MultiViewClassifier(warm_start=warm)
    return model.fit(X, y) if warm else model


@pytest.fixture(scope="module")
def counts():
    frame = make_reviews(300, seed=7)
    features = build_pipeline(ngram_range=(1, 2), min_df=1)[:-1]
    X = features.fit_transform(frame["review"].tolist(), frame["sentiment"])
    X = sp.vstack([X, sp.csr_matrix((1, X.shape[1]), dtype=X.dtype)], format="csr")  # no words
    return X, np.append(frame["sentiment"].to_numpy(), frame["sentiment"].iloc[0])


def test_batches_change_no_probability(counts, monkeypatch):
    X, y = counts
    whole = MultiViewClassifier().fit(X, y)
    monkeypatch.setattr(classifier, "VIEW_BATCH", 64)
    batched = MultiViewClassifier().fit(X, y)
    np.testing.assert_array_equal(batched.predict_proba(X), whole.predict_proba(X))
    assert batched.predict_proba(X)[-1, 1] == NO_EVIDENCE


@pytest.mark.parametrize("from_row", [0, 100, 250])
def test_fit_scored_gives_what_predict_proba_gives_after_fit(counts, monkeypatch, from_row):
    X, y = counts
    weights = np.linspace(0.1, 1, X.shape[0])
    monkeypatch.setattr(classifier, "VIEW_BATCH", 64)  # scores gathered over several batches
    for warm in (False, True):
        fitted = _started(X, y, warm).fit(X, y, sample_weight=weights)
        model = _started(X, y, warm)
        scores = model.fit_scored(X, y, weights, from_row=from_row)
        np.testing.assert_array_equal(scores, fitted.predict_proba(X[from_row:])[:, 1])
        np.testing.assert_array_equal(model.predict_proba(X), fitted.predict_proba(X))
